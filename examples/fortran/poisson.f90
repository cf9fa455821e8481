! Poisson's equation -Δu = f on the unit square, u = 0 on its boundary, solved by
! physics-informed training through descent's Fortran module (examples/poisson.cpp is the same in
! C++). Points are columns of ordinary arrays: xi(2, n) inside, xb(2, m) on the boundary. Each
! step writes the boundary term's gradients, adds those of the residual -Δu - f (through a
! forward jet: its second-order sum with the unit directions is the Laplacian) and takes one
! Adam step. Then, on the last step's points held fixed, L-BFGS (the usual schedule after Adam)
! runs through a bind(c) loss function that builds the same loss.
!   poisson_f [steps] [interior points per step] [boundary points per step] [L-BFGS iterations]

! What the L-BFGS loss function reads: the model, the jet and the fixed points.
module poisson_problem
  use, intrinsic :: iso_c_binding, only: c_ptr, c_int, c_float, c_double
  use descent
  implicit none
  type(c_ptr) :: model, jet
  real(c_float), allocatable :: xi(:, :), fi(:, :), xb(:, :), ub(:, :)
contains
  ! The boundary term's gradients, then the residual's added: the loss L-BFGS minimises.
  integer(c_int) function full_batch_loss(user, loss) bind(c) result(status)
    type(c_ptr), value :: user
    real(c_float), intent(out) :: loss
    real(c_double) :: boundary_loss, residual_loss
    loss = 0
    status = descent_model_mse_gradient(model, xb, ub, loss=boundary_loss)
    if (status == DESCENT_OK) &
      status = descent_jet_pde_residual_step(jet, xi, 0.0, -1.0, source=fi, loss=residual_loss)
    if (status == DESCENT_OK) loss = real(boundary_loss + residual_loss, c_float)
  end function
end module

program poisson
  use, intrinsic :: iso_c_binding, only: c_ptr, c_int, c_int64_t, c_float, c_double, c_funloc, &
    c_null_ptr
  use descent
  use poisson_problem
  implicit none

  real(c_double), parameter :: pi = 3.14159265358979323846_c_double
  integer(c_int64_t), parameter :: widths(5) = [2_c_int64_t, 32_c_int64_t, 32_c_int64_t, &
    32_c_int64_t, 1_c_int64_t]
  integer :: steps, interior, boundary, lbfgs_iterations, step, i, side
  character(64) :: arg
  character(8) :: device
  type(c_ptr) :: ctx, opt, lbfgs
  real(c_float) :: s, r, first_loss
  real(c_double) :: boundary_loss, residual_loss, initial, error

  steps = 4000
  interior = 1024
  boundary = 256
  lbfgs_iterations = 200
  if (command_argument_count() >= 1) then
    call get_command_argument(1, arg)
    read(arg, *) steps
  end if
  if (command_argument_count() >= 2) then
    call get_command_argument(2, arg)
    read(arg, *) interior
  end if
  if (command_argument_count() >= 3) then
    call get_command_argument(3, arg)
    read(arg, *) boundary
  end if
  if (command_argument_count() >= 4) then
    call get_command_argument(4, arg)
    read(arg, *) lbfgs_iterations
  end if
  if (steps < 1 .or. interior < 1 .or. boundary < 1 .or. lbfgs_iterations < 0) then
    write(*, '(a)') "usage: poisson_f [steps >= 1] [interior points >= 1] [boundary >= 1] " // &
      "[L-BFGS iterations >= 0]"
    error stop 2
  end if
  allocate(xi(2, interior), fi(1, interior), xb(2, boundary), ub(1, boundary))
  ub = 0

  device = "cpu"
  if (descent_cuda_device_count() > 0) device = "cuda:0"
  call check(descent_context_create(trim(device), 0, ctx))
  call check(descent_model_create(ctx, widths, "tanh", 1_c_int64_t, model))
  call check(descent_optimizer_create_adam(model, "adam", 2e-3, 0.9, 0.999, 1e-8, 0.0, .false., &
    "cosine", int(steps, c_int64_t), 0.0, opt))
  call check(descent_jet_create(model, jet))

  call random_seed(put=[(17 + i, i = 1, 64)])
  initial = relative_error(101)
  error = initial
  write(*, '(a, f7.4)') "initial relative L2 error ", initial
  do step = 1, steps
    call random_number(xi)
    fi(1, :) = real(2 * pi**2 * sin(pi * xi(1, :)) * sin(pi * xi(2, :)), c_float)
    do i = 1, boundary  ! a random side, a random point on it
      call random_number(s)
      call random_number(r)
      side = min(int(4 * r), 3)
      if (side < 2) then
        xb(:, i) = [s, real(side, c_float)]
      else
        xb(:, i) = [real(side - 2, c_float), s]
      end if
    end do
    if (mod(step, max(steps / 4, 1)) == 0 .or. step == steps) then
      call check(descent_model_mse_gradient(model, xb, ub, loss=boundary_loss))
      call check(descent_jet_pde_residual_step(jet, xi, 0.0, -1.0, source=fi, loss=residual_loss))
      call check(descent_optimizer_step(opt))
      error = relative_error(101)
      write(*, '(a, i5, a, es10.3, a, es10.3, a, f7.4)') "step ", step, ": residual ", &
        residual_loss, ", boundary ", boundary_loss, ", relative L2 error ", error
    else  ! no loss read back: the step does not wait for the device
      call check(descent_model_mse_gradient(model, xb, ub))
      call check(descent_jet_pde_residual_step(jet, xi, 0.0, -1.0, source=fi))
      call check(descent_optimizer_step(opt))
    end if
  end do

  if (lbfgs_iterations > 0) then
    ! Full batch on the last points: L-BFGS with the strong-Wolfe line search, options by keyword.
    call check(descent_optimizer_make(model, "lbfgs", lbfgs, max_iter=lbfgs_iterations, &
      history_size=50, strong_wolfe=.true.))
    call check(descent_optimizer_lbfgs_step(lbfgs, c_funloc(full_batch_loss), c_null_ptr, &
      first_loss))
    error = relative_error(101)
    write(*, '(a, i0, a, es10.3, a, f7.4)') "L-BFGS, up to ", lbfgs_iterations, &
      " iterations from loss ", first_loss, ": relative L2 error ", error
    call descent_optimizer_destroy(lbfgs)
  end if

  call descent_jet_destroy(jet)
  call descent_optimizer_destroy(opt)
  call descent_model_destroy(model)
  call descent_context_destroy(ctx)
  deallocate(xi, fi, xb, ub)
  if (.not. (error < 0.5 * initial)) then
    write(*, '(a, f7.4, a, f7.4, a)') "poisson_f: the error did not halve (", initial, " -> ", &
      error, ")"
    error stop 3
  end if

contains

  ! The relative L2 error of the model against sin(pi x) sin(pi y) on an n x n grid.
  real(c_double) function relative_error(n) result(e)
    integer, intent(in) :: n
    real(c_float) :: points(2, n * n), u(1, n * n)
    real(c_double) :: want, err, norm
    integer :: a, b, k
    do a = 0, n - 1
      do b = 0, n - 1
        points(:, a * n + b + 1) = [real(a, c_float) / (n - 1), real(b, c_float) / (n - 1)]
      end do
    end do
    call check(descent_model_predict(model, points, u))
    err = 0
    norm = 0
    do k = 1, n * n
      want = sin(pi * points(1, k)) * sin(pi * points(2, k))
      err = err + (u(1, k) - want)**2
      norm = norm + want**2
    end do
    e = sqrt(err / norm)
  end function

  subroutine check(status)
    integer(c_int), intent(in) :: status
    if (status /= DESCENT_OK) then
      write(*, '(a, i0, a, a)') "poisson_f: status ", status, ": ", descent_last_error()
      error stop 1
    end if
  end subroutine

end program poisson
