! Trains a small MLP on Fashion-MNIST with descent's Fortran module.
!   train_fmnist_f [data folder] [epochs] [sample limit (0: all)]
!
! The samples live in ordinary Fortran arrays x(784, n) (one image a column) with labels(n) in
! 0..9. descent sees x(:, first:last) as a row-major [batch, 784] matrix in the same memory: each
! step hands the section to the library without a copy.
program train_fmnist
  use, intrinsic :: iso_c_binding, only: c_ptr, c_null_ptr, c_int, c_int32_t, c_int64_t, &
    c_float, c_double
  use descent
  implicit none

  integer(c_int64_t), parameter :: batch = 128
  character(4096) :: dir, arg
  integer :: epochs, epoch
  integer(c_int64_t) :: limit, n_train, n_test, features, classes, first, last
  type(c_ptr) :: ctx, train, test, model, opt, trainer
  real(c_float), allocatable :: x_train(:, :), x_test(:, :)
  integer(c_int32_t), allocatable :: y_train(:), y_test(:)
  real(c_double) :: loss, accuracy, train_loss
  character(8) :: device

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

  device = "cpu"
  if (descent_cuda_device_count() > 0) device = "cuda:0"
  call check(descent_context_create(trim(device), 0, ctx))

  ! Read the IDX files through descent, then copy the samples into Fortran arrays.
  call check(descent_dataset_load_idx(trim(dir) // "/train-images-idx3-ubyte.gz", &
    trim(dir) // "/train-labels-idx1-ubyte.gz", limit, train))
  call check(descent_dataset_load_idx(trim(dir) // "/t10k-images-idx3-ubyte.gz", &
    trim(dir) // "/t10k-labels-idx1-ubyte.gz", limit, test))
  call check(descent_dataset_shape(train, n_train, features, classes))
  call check(descent_dataset_shape(test, n_test, features, classes))
  allocate(x_train(features, n_train), y_train(n_train), x_test(features, n_test), y_test(n_test))
  call check(descent_dataset_copy(train, 0_c_int64_t, x_train, y_train))
  call check(descent_dataset_copy(test, 0_c_int64_t, x_test, y_test))
  call descent_dataset_destroy(train)
  call descent_dataset_destroy(test)

  call check(descent_model_create(ctx, [features, 512_c_int64_t, 256_c_int64_t, classes], &
    "relu", 0_c_int64_t, model))
  call check(descent_optimizer_create_from(model, "sgd", opt, options="lr=0.05, momentum=0.9", &
    schedule="cosine", schedule_steps=epochs * ((n_train + batch - 1) / batch)))
  call check(descent_trainer_create(model, opt, "softmax_cross_entropy", trainer))

  print '(a, a, a, i0, a)', "Fortran on ", trim(device), ", ", n_train, " training samples"
  call check(descent_trainer_evaluate(trainer, x_test, y_test, loss, accuracy))
  print '(a, f0.4, a, f0.2, a)', "initial: test loss ", loss, ", test accuracy ", &
    100 * accuracy, "%"
  do epoch = 1, epochs
    do first = 1, n_train, batch
      last = min(first + batch - 1, n_train)
      ! A contiguous section of columns: passed to descent in place.
      call check(descent_trainer_step(trainer, x_train(:, first:last), y_train(first:last)))
    end do
    call check(descent_trainer_take_loss(trainer, train_loss))
    call check(descent_trainer_evaluate(trainer, x_test, y_test, loss, accuracy))
    print '(a, i0, a, i0, a, f0.4, a, f0.4, a, f0.2, a)', "epoch ", epoch, "/", epochs, &
      ": train loss ", train_loss, ", test loss ", loss, ", test accuracy ", 100 * accuracy, "%"
  end do
  call check(descent_checkpoint_save("fmnist_f.ckpt", model, opt))

  call descent_trainer_destroy(trainer)
  call descent_optimizer_destroy(opt)
  call descent_model_destroy(model)
  call descent_context_destroy(ctx)
  deallocate(x_train, y_train, x_test, y_test)

contains

  ! Stops with descent's message when a call failed.
  subroutine check(status)
    integer(c_int), intent(in) :: status
    if (status /= DESCENT_OK) then
      write(*, '(a, i0, a, a)') "train_fmnist_f: status ", status, ": ", descent_last_error()
      error stop 1
    end if
  end subroutine

end program train_fmnist
