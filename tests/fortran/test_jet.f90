! The Fortran wrappers of the jet calls: arrays whose sizes the C side cannot see are checked on
! the Fortran side (a refusal, never a read past an array), and the blocks read back are the
! derivatives of a model whose answer is known; an L-BFGS step through a Fortran callback fits
! that model from other parameters, in float32 and in float64 (JetF64, LBfgsF64), the float64 one
! to float64 accuracy. Exits 1 on the first failed check.

! The loss an L-BFGS step evaluates: the mean squared error of the model on fixed points.
module lbfgs_loss
  use, intrinsic :: iso_c_binding, only: c_ptr, c_int, c_int64_t, c_float, c_double
  use descent
  implicit none
  type(c_ptr) :: fit_model
  real(c_float) :: fit_x(2, 5), fit_y(1, 5)
  integer :: evaluations = 0
  ! The float64 fit: the jet, the points and the values.
  type(c_ptr) :: fit_jet
  real(c_double) :: fit_x64(2, 5), fit_y64(1, 5)
contains
  integer(c_int) function mse64(user, x, grad, n, loss) bind(c) result(status)
    type(c_ptr), value :: user
    integer(c_int64_t), value :: n
    real(c_double), intent(in), target :: x(n)
    real(c_double), intent(out), target :: grad(n)
    real(c_double), intent(out) :: loss
    status = descent_jet_mse_step_f64(fit_jet, x, fit_x64, fit_y64, grad, accumulate=.false., &
      loss=loss)
  end function
  integer(c_int) function mse(user, loss) bind(c) result(status)
    type(c_ptr), value :: user
    real(c_float), intent(out) :: loss
    real(c_double) :: value
    evaluations = evaluations + 1
    status = descent_model_mse_gradient(fit_model, fit_x, fit_y, loss=value)
    loss = real(value, c_float)
  end function
end module

program test_jet
  use, intrinsic :: iso_c_binding, only: c_ptr, c_int, c_int64_t, c_float, c_double, c_funloc, &
    c_null_ptr
  use descent
  use lbfgs_loss
  use checks
  implicit none

  type(c_ptr) :: ctx, model, jet, other, lbfgs, lbfgs64
  real(c_double) :: p64(3), g64(3), x64(2, 3), loss64, q64(3)
  type(c_ptr) :: resumed
  integer :: unit
  integer(c_int64_t) :: iterations, evals64
  character(:), allocatable :: reason
  real(c_float) :: first, fitted(3)
  real(c_float) :: x(2, 3), u(1, 3), du(1, 3), lap(1, 3), params(5)
  real(c_double) :: loss, dxd(2, 3)
  real(c_float) :: dy(1, 3), dx(2, 3)

  call expect(descent_context_create("cpu", 1, ctx), DESCENT_OK, "context")
  ! A linear model u = 2 x1 - 3 x2 + 0.5: du/dx1 = 2, du/dx2 = -3, Laplacian 0.
  call expect(descent_model_create(ctx, [2_c_int64_t, 1_c_int64_t], "tanh", 1_c_int64_t, model), &
    DESCENT_OK, "model")
  params = [2.0, -3.0, 0.5, 0.0, 0.0]
  call expect(descent_model_set_params(model, params(1:3)), DESCENT_OK, "set params")
  call expect(descent_jet_create(model, jet), DESCENT_OK, "jet")
  x = reshape([0.1, 0.2, 0.3, -0.4, 1.0, 2.0], [2, 3])
  call expect(descent_jet_forward(jet, x), DESCENT_OK, "forward")
  call expect(descent_jet_read(jet, 0, u), DESCENT_OK, "read u")
  call expect(descent_jet_read(jet, 1, du), DESCENT_OK, "read du/dx1")
  call expect(descent_jet_read(jet, 3, lap), DESCENT_OK, "read the Laplacian")
  call check_near(u(1, :), 2 * x(1, :) - 3 * x(2, :) + 0.5, "u")
  call check_near(du(1, :), [2.0, 2.0, 2.0], "du/dx1")
  call check_near(lap(1, :), [0.0, 0.0, 0.0], "Laplacian")

  ! The input gradient dy . du/dx by a reverse pass: 2 * (2, -3) at every point, in single and
  ! double precision; a dx of another shape is refused before any call.
  dy = 2.0
  call expect(descent_model_input_gradient(model, x, dy, dx), DESCENT_OK, "input gradient")
  call check_near(dx(1, :), [4.0, 4.0, 4.0], "dx1")
  call check_near(dx(2, :), [-6.0, -6.0, -6.0], "dx2")
  call expect(descent_model_input_gradient(model, real(x, c_double), real(dy, c_double), dxd), &
    DESCENT_OK, "input gradient in double")
  call check_near(real(dxd(2, :), c_float), [-6.0, -6.0, -6.0], "dx2 in double")
  call expect(descent_model_input_gradient(model, x, dy, dx(:, 1:2)), DESCENT_ERROR_SHAPE, &
    "dx of 2 points")
  call expect_message("dx: 2 samples, x has 3")
  call expect(descent_model_input_gradient(model, x, dy, dx(1:1, :)), DESCENT_ERROR_SHAPE, &
    "dx of 1 value a point")

  ! b and d hold one value per direction (2), source one column per point of the pass (3).
  call expect(descent_jet_pde_residual(jet, 1.0, 0.0, b=[1.0, 2.0, 3.0]), DESCENT_ERROR_ARGUMENT, &
    "b of 3 values")
  call expect_message("b: 3 values, the jet has 2 directions")
  call expect(descent_jet_pde_residual(jet, 1.0, 0.0, d=[1.0]), DESCENT_ERROR_ARGUMENT, &
    "d of 1 value")
  call expect(descent_jet_pde_residual(jet, 1.0, 0.0, source=u(:, 1:2)), DESCENT_ERROR_ARGUMENT, &
    "a source of 2 points")
  call expect_message("rows: expected 3")
  call expect(descent_jet_read(jet, 0, u(:, 1:2)), DESCENT_ERROR_ARGUMENT, "reading 2 points")
  call expect(descent_jet_read(jet, 4, u), DESCENT_ERROR_ARGUMENT, "which = 4")
  call expect(descent_jet_create(model, other, weights=[1.0]), DESCENT_ERROR_ARGUMENT, &
    "1 weight for 2 unit directions")
  ! r = u - u = 0 with source = u: a zero loss.
  call expect(descent_jet_pde_residual(jet, 1.0, 0.0, source=u, loss=loss), DESCENT_OK, "residual")
  if (abs(loss) > 1e-10_c_double) call fail("the residual u - u is not 0")
  ! The same in one call (forward, residual, gradients), its outputs read back after it; a
  ! source of other than x's points is refused before any call.
  call expect(descent_jet_pde_residual_step(jet, x, 1.0, 0.0, source=u, loss=loss), DESCENT_OK, &
    "residual step")
  if (abs(loss) > 1e-10_c_double) call fail("the one-call residual u - u is not 0")
  call expect(descent_jet_read(jet, 1, du), DESCENT_OK, "read du/dx1 after the step")
  call check_near(du(1, :), [2.0, 2.0, 2.0], "du/dx1 after the step")
  call expect(descent_jet_pde_residual_step(jet, x, 1.0, 0.0, source=u(:, 1:2)), &
    DESCENT_ERROR_ARGUMENT, "a step's source of 2 points")
  call expect_message("source: 2 points, x has 3")
  call expect(descent_jet_pde_residual_step(jet, x, 1.0, 0.0, b=[1.0]), DESCENT_ERROR_ARGUMENT, &
    "a step's b of 1 value")
  call expect_message("b: 1 values, the jet has 2 directions")

  ! L-BFGS fits the same model from zero parameters to the linear function's values.
  fit_model = model
  fit_x = reshape([0.1, 0.2, 0.3, -0.4, 1.0, 2.0, -1.0, 0.5, 0.7, 0.7], [2, 5])
  fit_y(1, :) = 2 * fit_x(1, :) - 3 * fit_x(2, :) + 0.5
  params = 0
  call expect(descent_model_set_params(model, params(1:3)), DESCENT_OK, "zero params")
  call expect(descent_optimizer_create_from(model, "lbfgs", lbfgs, &
    options="strong_wolfe=1, max_iter=50"), DESCENT_OK, "lbfgs")
  call expect(descent_optimizer_lbfgs_step(lbfgs, c_funloc(mse), c_null_ptr, first), DESCENT_OK, &
    "lbfgs step")
  call expect(descent_model_get_params(model, fitted), DESCENT_OK, "get params")
  if (maxval(abs(fitted - [2.0, -3.0, 0.5])) > 1e-4) call fail("L-BFGS did not fit 2, -3, 0.5")
  if (evaluations < 2 .or. first <= 0) call fail("L-BFGS did not evaluate the loss")
  call expect(descent_optimizer_step(lbfgs), DESCENT_ERROR_ARGUMENT, "a one-gradient step")
  call descent_optimizer_destroy(lbfgs)

  ! The same fit in float64: L-BFGS over float64 parameters, the loss from the float64 jet; the
  ! parameters come out right to 1e-10, which float32 cannot hold.
  fit_jet = jet
  fit_x64 = real(fit_x, c_double)
  fit_y64(1, :) = 2 * fit_x64(1, :) - 3 * fit_x64(2, :) + 0.5d0
  p64 = 0
  call expect(descent_lbfgs_f64_create(lbfgs64, "strong_wolfe=1, max_iter=100, " // &
    "tolerance_grad=0, tolerance_change=0"), DESCENT_OK, "lbfgs f64")
  call expect(descent_lbfgs_f64_step(lbfgs64, p64, c_funloc(mse64), first_loss=loss64), &
    DESCENT_OK, "lbfgs f64 step")
  if (maxval(abs(p64 - [2d0, -3d0, 0.5d0])) > 1d-10) then
    call fail("float64 L-BFGS did not fit 2, -3, 0.5")
  end if
  call expect(descent_lbfgs_f64_progress(lbfgs64, iterations, evals64, reason), DESCENT_OK, &
    "progress")
  if (iterations < 1 .or. evals64 < iterations .or. len(reason) == 0) call fail("progress")
  deallocate(reason)
  ! Its state in a file and back: the point and the counts come back as they were; a state of
  ! three parameters does not load into two, nor one saved for another problem.
  call expect(descent_lbfgs_f64_set_problem(lbfgs64, "linear fit, 3 parameters"), DESCENT_OK, &
    "lbfgs f64 problem")
  call expect(descent_lbfgs_f64_save(lbfgs64, "fortran_lbfgs_f64.state", p64), DESCENT_OK, &
    "lbfgs f64 save")
  call expect(descent_lbfgs_f64_create(resumed, "strong_wolfe=1"), DESCENT_OK, "lbfgs f64 again")
  q64 = 0
  call expect(descent_lbfgs_f64_load(resumed, "fortran_lbfgs_f64.state", q64(1:2)), &
    DESCENT_ERROR_DATA, "a state of another size")
  call expect(descent_lbfgs_f64_load(resumed, "fortran_lbfgs_f64.state", q64), &
    DESCENT_ERROR_DATA, "a state of another problem")
  if (any(q64 /= 0)) call fail("a refused load changed x")
  call expect(descent_lbfgs_f64_set_problem(resumed, "linear fit, 3 parameters   "), DESCENT_OK, &
    "lbfgs f64 problem again")
  call expect(descent_lbfgs_f64_load(resumed, "fortran_lbfgs_f64.state", q64), DESCENT_OK, &
    "lbfgs f64 load")
  if (any(q64 /= p64)) call fail("the loaded point is not the saved one")
  call expect(descent_lbfgs_f64_progress(resumed, iterations, evals64), DESCENT_OK, "progress")
  if (iterations < 1) call fail("the loaded counts are not the saved ones")
  call descent_lbfgs_f64_destroy(resumed)
  open(newunit=unit, file="fortran_lbfgs_f64.state", status="old")
  close(unit, status="delete")
  call descent_lbfgs_f64_destroy(lbfgs64)
  ! The residual u_x1 − 2 of the fitted model is 0 (to float64 rounding), its gradient too.
  x64 = real(x, c_double)
  g64 = 1
  call expect(descent_jet_pde_residual_step_f64(jet, p64, x64, 0.0, 0.0, g64, b=[1.0, 0.0], &
    source=reshape([2d0, 2d0, 2d0], [1, 3]), accumulate=.false., loss=loss64), DESCENT_OK, &
    "residual f64")
  if (loss64 > 1d-20 .or. maxval(abs(g64)) > 1d-9) call fail("the float64 residual is not 0")
  call expect(descent_jet_pde_residual_step_f64(jet, p64(1:2), x64, 0.0, 0.0, g64), &
    DESCENT_ERROR_SHAPE, "float64 params of another size")
  call expect_message("count: expected 3 (the model's parameter count), got 2")
  call expect(descent_model_set_params_f64(model, p64), DESCENT_OK, "set params f64")
  call expect(descent_model_get_params(model, fitted), DESCENT_OK, "get params")
  if (maxval(abs(fitted - real(p64, c_float))) > 0) call fail("set params f64 did not round")

  call descent_jet_destroy(jet)
  call descent_model_destroy(model)
  call descent_context_destroy(ctx)
  call finish("test_jet")

contains

  subroutine check_near(got, want, what)
    real(c_float), intent(in) :: got(:), want(:)
    character(*), intent(in) :: what
    if (maxval(abs(got - want)) > 1e-5) call fail(what // " differs from the known answer")
  end subroutine

end program test_jet
