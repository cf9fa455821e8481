! Trains a small MLP on Fashion-MNIST data parallel over MPI with descent's Fortran module: every
! rank loads the data, trains on its shard of each global batch of 128, and rank 0 prints.
!   mpirun -np 2 train_fmnist_mpi_f [data folder] [epochs] [sample limit (0: all)]
!
! MPI through `use mpi_f08`: descent takes the integer handle inside a type(MPI_Comm),
! comm%MPI_VAL (with `use mpi`, MPI_COMM_WORLD itself is that integer). The samples stay in
! descent's dataset handles, which descent_trainer_fit cuts into each rank's shards.

! What runs after each epoch: a bind(c) subroutine descent_trainer_fit calls through c_funloc.
module fmnist_mpi_report
  use, intrinsic :: iso_c_binding, only: c_ptr, c_int, c_f_pointer
  use descent, only: descent_epoch_stats
  implicit none
  private
  public :: print_epoch

contains

  ! The statistics are over every rank's samples, the same on each: rank 0 (user points to the
  ! rank) prints them.
  subroutine print_epoch(stats, user) bind(c)
    type(descent_epoch_stats), intent(in) :: stats
    type(c_ptr), value :: user
    integer(c_int), pointer :: rank
    call c_f_pointer(user, rank)
    if (rank /= 0) return
    print '(a, i0, a, i0, a, f0.4, a, f0.4, a, f0.2, a)', "epoch ", stats%epoch, "/", &
      stats%epochs, ": train loss ", stats%train_loss, ", test loss ", stats%test_loss, &
      ", test accuracy ", 100 * stats%test_accuracy, "%"
    flush(6)
  end subroutine

end module fmnist_mpi_report

program train_fmnist_mpi
  use, intrinsic :: iso_c_binding, only: c_ptr, c_null_ptr, c_int, c_int64_t, c_float, &
    c_double, c_loc, c_funloc, c_associated
  use, intrinsic :: iso_fortran_env, only: error_unit
  use mpi_f08, only: MPI_Init, MPI_Finalize, MPI_Abort, MPI_COMM_WORLD
  use descent
  use fmnist_mpi_report, only: print_epoch
  implicit none

  integer(c_int64_t), parameter :: batch = 128  ! the global batch, over all ranks
  character(4096) :: dir, arg
  integer :: epochs
  integer(c_int64_t) :: limit, n_train, features, classes
  type(c_ptr) :: ctx, comm, train, test, model, opt, trainer
  integer(c_int), target :: rank
  integer(c_int) :: ranks
  real(c_double) :: loss, accuracy

  call MPI_Init()
  comm = c_null_ptr
  dir = "/usr/share/datasets/fashion-mnist"
  epochs = 3
  limit = 0
  if (command_argument_count() >= 1) call get_command_argument(1, dir)
  if (command_argument_count() >= 2) then
    call get_command_argument(2, arg)
    read(arg, *) epochs
  end if
  if (command_argument_count() >= 3) then
    call get_command_argument(3, arg)
    read(arg, *) limit
  end if

  ! The CPU backend sums gradients over MPI; a CUDA context needs a build with NCCL.
  call check(descent_context_create("cpu", 0, ctx))
  call check(descent_communicator_create_mpi(ctx, MPI_COMM_WORLD%MPI_VAL, comm))
  call check(descent_communicator_rank(comm, rank))
  call check(descent_communicator_size(comm, ranks))

  ! Every rank holds the whole dataset; fit and evaluate_dataset pick each rank's shard.
  call check(descent_dataset_load_idx(trim(dir) // "/train-images-idx3-ubyte.gz", &
    trim(dir) // "/train-labels-idx1-ubyte.gz", limit, train))
  call check(descent_dataset_load_idx(trim(dir) // "/t10k-images-idx3-ubyte.gz", &
    trim(dir) // "/t10k-labels-idx1-ubyte.gz", limit, test))
  call check(descent_dataset_shape(train, n_train, features, classes))

  ! The same seed on every rank: the replicas start equal and stay so.
  call check(descent_model_create(ctx, [features, 512_c_int64_t, 256_c_int64_t, classes], &
    "relu", 0_c_int64_t, model))
  call check(descent_optimizer_create(model, 0.05_c_float, 0.9_c_float, 0.0_c_float, .false., &
    "cosine", epochs * ((n_train + batch - 1) / batch), 0.0_c_float, opt))
  call check(descent_trainer_create_parallel(model, opt, "softmax_cross_entropy", comm, trainer))

  call check(descent_trainer_evaluate_dataset(trainer, test, 1000_c_int64_t, loss, accuracy))
  if (rank == 0) then
    print '(a, i0, a, i0, a)', "Fortran on cpu, ", ranks, " ranks, ", n_train, &
      " training samples"
    print '(a, f0.4, a, f0.2, a)', "initial: test loss ", loss, ", test accuracy ", &
      100 * accuracy, "%"
    flush(6)
  end if
  call check(descent_trainer_fit(trainer, train, test, batch, int(epochs, c_int64_t), &
    1_c_int64_t, c_funloc(print_epoch), c_loc(rank)))
  ! The replicas are identical: one checkpoint, written by rank 0.
  if (rank == 0) call check(descent_checkpoint_save("fmnist_mpi_f.ckpt", model, opt))

  call descent_trainer_destroy(trainer)
  call descent_optimizer_destroy(opt)
  call descent_model_destroy(model)
  call descent_dataset_destroy(test)
  call descent_dataset_destroy(train)
  call descent_communicator_destroy(comm)  ! before MPI_Finalize
  call descent_context_destroy(ctx)
  call MPI_Finalize()

contains

  ! Any failing call: the other ranks may be waiting in a collective, so end the whole job with
  ! descent's message (before the communicator exists, through MPI directly).
  subroutine check(status)
    integer(c_int), intent(in) :: status
    character(16) :: code
    if (status == DESCENT_OK) return
    write(code, '(i0)') status
    if (c_associated(comm)) then
      call descent_communicator_abort(comm, "train_fmnist_mpi_f: status " // trim(code) // &
        ": " // descent_last_error(), 1)
    end if
    write(error_unit, '(a, a, a, a)') "train_fmnist_mpi_f: status ", trim(code), ": ", &
      descent_last_error()
    call MPI_Abort(MPI_COMM_WORLD, 1)
  end subroutine

end program train_fmnist_mpi
