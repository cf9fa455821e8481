! Training inside a running simulation: a 2-D heat solver (a plate heated by a source that
! circles over it and cooled towards 0, with a conductivity that grows with the temperature:
! u_t = ∇·((1 + u)∇u) + s(x, t) - γ u, explicit finite differences, u = 0 on the boundary) on an
! n × n grid split into slabs of rows among the MPI ranks, which learns a surrogate of its own
! time step while it runs. Every `every` steps each rank draws `per_rank` random points of its
! slab - the five-point stencil of u and the source there before a step, and the change the
! solver made - and the ranks train one shared model on them, data parallel (descent's communicator over the simulation's
! own MPI communicator; a global batch of ranks × per_rank samples). The surrogate then predicts
! the next step on the whole grid, and its error against the solver is reported over time with
! the cost of training as a fraction of the solver's. At the end rank 0 writes the model as
! safetensors, for PyTorch or descent to load.
!   mpirun -np 4 heat_insitu_f [n] [steps] [every] [train steps a round] [model path]
! Exits 3 when the median of the surrogate's errors over the second half of the rounds is not
! below `tolerance`: a run that did not learn.
program heat_insitu
  use, intrinsic :: iso_c_binding, only: c_ptr, c_int, c_int64_t, c_float, c_double
  use mpi_f08
  use descent
  implicit none

  ! The step in grid units: u += alpha (1 + u) (sum of the 4 neighbours - 4 u) + s - gamma u,
  ! with s = amplitude exp(-r² / width²) at a distance of r cells from the source's centre. The
  ! scheme is stable while alpha (1 + u) <= 1/4: the run stops if u passes 1.4.
  real(c_float), parameter :: alpha = 0.1, gamma = 0.01, amplitude = 0.02, width = 3
  real(c_float), parameter :: two_pi = 6.2831853
  integer, parameter :: per_rank = 256
  real(c_double), parameter :: tolerance = 0.1
  integer(c_int64_t), parameter :: widths(4) = [6_c_int64_t, 32_c_int64_t, 32_c_int64_t, &
    1_c_int64_t]
  integer :: n, steps, every, train_steps, step, i, j, k, rank, ranks, first, ny
  character(256) :: arg, model_path
  real(c_float), allocatable :: u(:, :), before(:, :), source(:, :), x(:, :), target(:, :), &
    xall(:, :), pred(:, :), again(:, :)
  real(c_double) :: t0, t_solver, t_train, t_infer, error, sums(2)
  real(c_double), allocatable :: errors(:)
  type(c_ptr) :: ctx, comm, model, opt, trainer, loaded

  call MPI_Init()
  call MPI_Comm_rank(MPI_COMM_WORLD, rank)
  call MPI_Comm_size(MPI_COMM_WORLD, ranks)
  n = 128
  steps = 2000
  every = 100
  train_steps = 20
  model_path = "heat_surrogate.safetensors"
  if (command_argument_count() >= 1) call read_arg(1, n)
  if (command_argument_count() >= 2) call read_arg(2, steps)
  if (command_argument_count() >= 3) call read_arg(3, every)
  if (command_argument_count() >= 4) call read_arg(4, train_steps)
  if (command_argument_count() >= 5) call get_command_argument(5, model_path)
  if (n < ranks .or. steps < 1 .or. every < 1 .or. train_steps < 1) then
    if (rank == 0) write(*, '(a)') "usage: heat_insitu_f [n >= ranks] [steps >= 1] " // &
      "[every >= 1] [train steps >= 1] [model path]"
    call MPI_Abort(MPI_COMM_WORLD, 2)
  end if

  ! This rank's slab: rows first .. first + ny - 1 of the grid (the remainder spread over the
  ! first ranks), with a halo row on each side; columns 0 and n + 1 are the boundary.
  ny = n / ranks
  first = rank * ny + min(rank, mod(n, ranks)) + 1
  if (rank < mod(n, ranks)) ny = ny + 1
  allocate(errors(steps / every))
  allocate(u(0:n + 1, 0:ny + 1), before(0:n + 1, 0:ny + 1), source(n, ny))
  allocate(x(6, 2 * per_rank), target(1, 2 * per_rank), xall(6, n * ny), pred(1, n * ny), &
    again(1, n))
  u = 0

  ! The surrogate: one model on every rank, kept identical by the data-parallel trainer. Each
  ! rank's context gets its share of the node's cores (this CPU example asks for "cpu"; "auto"
  ! would give each rank a GPU of its own on a GPU node, with a build that has NCCL).
  call check(descent_context_create_for_rank(MPI_COMM_WORLD%MPI_VAL, ctx, "cpu"))
  call check(descent_communicator_create_mpi(ctx, MPI_COMM_WORLD%MPI_VAL, comm))
  call check(descent_model_create(ctx, widths, "tanh", 1_c_int64_t, model))
  call check(descent_optimizer_create_adam(model, "adam", 5e-3, 0.9, 0.999, 1e-8, 0.0, .false., &
    "constant", 0_c_int64_t, 0.0, opt))
  call check(descent_trainer_create_parallel(model, opt, "mse", comm, trainer))
  call random_seed(put=[(1000 * rank + i, i = 1, 64)])

  if (rank == 0) then
    write(*, '(a, i0, a, i0, a, i0, a, i0, a, i0, a)') "A heated plate, ", n, " x ", n, &
      " grid, ", ranks, " rank(s): a training round of ", train_steps, " steps every ", every, &
      " solver steps"
  end if
  t_solver = 0
  t_train = 0
  t_infer = 0
  error = huge(1.0_c_double)
  do step = 1, steps
    if (mod(step, every) == 0) then
      ! A training round on the step about to be taken, then the surrogate's error on it.
      t0 = MPI_Wtime()
      before = u
      call solver_step(step)
      call draw_samples(mod(step / every, 2) * per_rank)
      if (step == every) call draw_samples(0)  ! no last round yet: two draws of this one
      do k = 1, train_steps
        call check(descent_trainer_step(trainer, x, target))
      end do
      t_train = t_train + (MPI_Wtime() - t0)
      t0 = MPI_Wtime()
      error = surrogate_error()
      errors(step / every) = error
      t_infer = t_infer + (MPI_Wtime() - t0)
      if (maxval(u(1:n, 1:ny)) > 1.4) then
        write(*, '(a, i0, a)') "heat_insitu_f: rank ", rank, ": u passed 1.4, the scheme is unstable"
        call MPI_Abort(MPI_COMM_WORLD, 4)
      end if
      if (rank == 0) then
        write(*, '(a, i6, a, es10.3)') "step ", step, &
          ": the surrogate's relative error on the step ", error
      end if
    else
      t0 = MPI_Wtime()
      call solver_step(step)
      t_solver = t_solver + (MPI_Wtime() - t0)
    end if
  end do

  error = huge(1.0_c_double)
  if (size(errors) > 0) error = median(errors(size(errors) / 2 + 1:))
  if (rank == 0) then
    write(*, '(a, es10.3)') "the surrogate's median error over the second half of the run ", error
    write(*, '(a, es10.3, a, es10.3, a, es10.3, a)') "time: solver ", t_solver, &
      " s, training ", t_train, " s, surrogate inference ", t_infer, " s"
    write(*, '(a, es10.3, a, es10.3, a, f0.1, a, f0.1, a)') "a solver step ", &
      t_solver / real(steps - steps / every, c_double), " s, a training round ", &
      t_train / real(steps / every, c_double), " s (", t_train / real(steps / every, c_double) / &
      (t_solver / real(steps - steps / every, c_double)), " solver steps): training takes ", &
      100 * t_train / (t_train + t_solver), "% of the run"
    call check(descent_model_save_safetensors(model, trim(model_path)))
    ! Read back, the file gives the same predictions as the model that wrote it.
    call check(descent_model_load_safetensors(ctx, trim(model_path), loaded))
    call check(descent_model_predict(model, xall(:, 1:n), pred(:, 1:n)))
    call check(descent_model_predict(loaded, xall(:, 1:n), again))
    call descent_model_destroy(loaded)
    if (any(pred(1, 1:n) /= again(1, :))) then
      write(*, '(a)') "heat_insitu_f: the model read back from the file predicts otherwise"
      error = huge(1.0_c_double)
    end if
    write(*, '(a, a)') "surrogate written to ", trim(model_path)
  end if
  call MPI_Bcast(error, 1, MPI_DOUBLE_PRECISION, 0, MPI_COMM_WORLD)
  call descent_trainer_destroy(trainer)
  call descent_optimizer_destroy(opt)
  call descent_model_destroy(model)
  call descent_communicator_destroy(comm)
  call descent_context_destroy(ctx)
  deallocate(errors, u, before, source, x, target, xall, pred, again)
  if (.not. (error < tolerance)) then
    if (rank == 0) write(*, '(a, es10.3, a, es10.3)') "heat_insitu_f: the surrogate's median " // &
      "error ", error, " is not below ", tolerance
    call MPI_Finalize()
    error stop 3
  end if
  call MPI_Finalize()

contains

  ! The median of a few values (sorted by insertion).
  real(c_double) function median(values) result(m)
    real(c_double), intent(in) :: values(:)
    real(c_double) :: v(size(values)), t
    integer :: a, b
    v = values
    do a = 2, size(v)
      t = v(a)
      b = a - 1
      do while (b >= 1)
        if (v(b) <= t) exit
        v(b + 1) = v(b)
        b = b - 1
      end do
      v(b + 1) = t
    end do
    m = v((size(v) + 1) / 2)
    if (mod(size(v), 2) == 0) m = 0.5_c_double * (v(size(v) / 2) + v(size(v) / 2 + 1))
  end function

  subroutine read_arg(index, value)
    integer, intent(in) :: index
    integer, intent(out) :: value
    integer :: ios
    call get_command_argument(index, arg)
    read(arg, *, iostat=ios) value
    if (ios /= 0) value = -1
  end subroutine

  ! The halo rows from the neighbouring ranks (0 beyond the grid), then one explicit step with
  ! the source where it is at this step (once round the plate over the run).
  subroutine solver_step(at)
    integer, intent(in) :: at
    real(c_float) :: next(n, ny), cx, cy, px, py
    cx = real(n + 1) * (0.5 + 0.3 * cos(two_pi * real(at) / real(steps)))
    cy = real(n + 1) * (0.5 + 0.3 * sin(two_pi * real(at) / real(steps)))
    do j = 1, ny
      py = real(first + j - 1)
      do i = 1, n
        px = real(i)
        source(i, j) = amplitude * exp(-((px - cx)**2 + (py - cy)**2) / width**2)
      end do
    end do
    call MPI_Sendrecv(u(1:n, 1), n, MPI_REAL, left_rank(), 0, u(1:n, ny + 1), n, MPI_REAL, &
      right_rank(), 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE)
    call MPI_Sendrecv(u(1:n, ny), n, MPI_REAL, right_rank(), 1, u(1:n, 0), n, MPI_REAL, &
      left_rank(), 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE)
    if (rank == 0) u(:, 0) = 0
    if (rank == ranks - 1) u(:, ny + 1) = 0
    do j = 1, ny
      do i = 1, n
        next(i, j) = u(i, j) + alpha * (1 + u(i, j)) * (u(i - 1, j) + u(i + 1, j) + u(i, j - 1) + &
          u(i, j + 1) - 4 * u(i, j)) + source(i, j) - gamma * u(i, j)
      end do
    end do
    u(1:n, 1:ny) = next
  end subroutine

  integer function left_rank()
    left_rank = MPI_PROC_NULL
    if (rank > 0) left_rank = rank - 1
  end function

  integer function right_rank()
    right_rank = MPI_PROC_NULL
    if (rank < ranks - 1) right_rank = rank + 1
  end function

  ! The model's input at point (i, j) of `state`: u there, its differences to the four
  ! neighbours (times 10, to the order of the other inputs), and the source there (from the
  ! step just taken, over its peak).
  pure function stencil(state, i, j) result(s)
    real(c_float), intent(in) :: state(0:, 0:)
    integer, intent(in) :: i, j
    real(c_float) :: s(6)
    s = [state(i, j), 10 * (state(i - 1, j) - state(i, j)), 10 * (state(i + 1, j) - state(i, j)), &
      10 * (state(i, j - 1) - state(i, j)), 10 * (state(i, j + 1) - state(i, j)), &
      source(i, j) / amplitude]
  end function

  ! per_rank points of the slab into x and target from column offset + 1 on (the batch holds
  ! this round's samples and the last round's, so that the model does not forget what it saw
  ! last): the model's input before the step, and the change (in units of alpha, so that the
  ! targets are of order 1) the solver made. Half are drawn uniformly; the other half are the
  ! points of largest change among 8 times as many drawn uniformly, so that the few cells under
  ! the source, where the solution changes most, are not missed on a large grid.
  subroutine draw_samples(offset)
    integer, intent(in) :: offset
    integer, parameter :: candidates = 8 * per_rank
    real :: r(2)
    integer :: s, c, best, at(2, candidates)
    real(c_float) :: change(candidates)
    do s = 1, per_rank / 2
      call random_number(r)
      call add_sample(offset + s, min(int(r(1) * n) + 1, n), min(int(r(2) * ny) + 1, ny))
    end do
    do c = 1, candidates
      call random_number(r)
      at(:, c) = [min(int(r(1) * n) + 1, n), min(int(r(2) * ny) + 1, ny)]
      change(c) = abs(u(at(1, c), at(2, c)) - before(at(1, c), at(2, c)))
    end do
    do s = per_rank / 2 + 1, per_rank
      best = maxloc(change, 1)
      call add_sample(offset + s, at(1, best), at(2, best))
      change(best) = -1
    end do
  end subroutine

  subroutine add_sample(s, pi, pj)
    integer, intent(in) :: s, pi, pj
    x(:, s) = stencil(before, pi, pj)
    target(1, s) = (u(pi, pj) - before(pi, pj)) / alpha
  end subroutine

  ! The relative L2 error, over the whole grid, of the surrogate's prediction of the last step's
  ! change against the solver's.
  real(c_double) function surrogate_error() result(e)
    do j = 1, ny
      do i = 1, n
        xall(:, (j - 1) * n + i) = stencil(before, i, j)
      end do
    end do
    call check(descent_model_predict(model, xall, pred))
    sums = 0
    do j = 1, ny
      do i = 1, n
        sums(1) = sums(1) + (alpha * pred(1, (j - 1) * n + i) - (u(i, j) - before(i, j)))**2
        sums(2) = sums(2) + (u(i, j) - before(i, j))**2
      end do
    end do
    call MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_DOUBLE_PRECISION, MPI_SUM, MPI_COMM_WORLD)
    e = sqrt(sums(1) / max(sums(2), 1e-300_c_double))
  end function

  ! A failed call ends every rank, naming this one (descent_communicator_abort).
  subroutine check(status)
    integer(c_int), intent(in) :: status
    if (status /= DESCENT_OK) then
      write(*, '(a, i0, a, i0, a, a)') "heat_insitu_f: rank ", rank, ": status ", status, ": ", &
        descent_last_error()
      call MPI_Abort(MPI_COMM_WORLD, 1)
    end if
  end subroutine

end program heat_insitu
