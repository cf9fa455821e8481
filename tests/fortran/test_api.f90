! The Fortran module's conveniences for a simulation code: a regression dataset and a training
! step from its own arrays (real(c_float) and real(c_double)), the model's shape, status names,
! optimizers by keyword, predict in double precision (a double beyond float's range is refused,
! not turned into an infinity), and scaling kept with the model. Exits 1 on the first failed check.
! fit's callback for the test: counts the epochs in the integer `user` points to.
module test_api_epochs
  use, intrinsic :: iso_c_binding, only: c_ptr, c_int, c_f_pointer
  use descent, only: descent_epoch_stats
  implicit none
  private
  public :: count_epoch

contains

  subroutine count_epoch(stats, user) bind(c)
    type(descent_epoch_stats), intent(in) :: stats
    type(c_ptr), value :: user
    integer(c_int), pointer :: seen
    call c_f_pointer(user, seen)
    seen = seen + 1
    if (stats%epoch /= seen) seen = -1000  ! out of order: the count check fails
  end subroutine

end module test_api_epochs

program test_api
  use, intrinsic :: iso_c_binding, only: c_ptr, c_null_ptr, c_int, c_int64_t, c_float, &
    c_double, c_funloc, c_loc
  use descent
  use checks
  use test_api_epochs, only: count_epoch
  implicit none

  type(c_ptr) :: ctx, model, opt, trainer, data, lbfgs, other, fit_opt, fit_trainer
  real(c_float) :: x(2, 16), y(1, 16), got(1, 16), scaled(2, 1), raw(1, 1)
  real(c_double) :: xd(2, 16), yd(1, 16), outd(1, 16), before, after, accuracy
  integer(c_int64_t) :: inputs, outputs, rows, features, classes
  integer :: i, step
  integer(c_int), target :: epochs_seen
  character(:), allocatable :: kind

  do i = 1, 16
    x(:, i) = [real(i, c_float) / 16, cos(real(i, c_float))]
    y(1, i) = 0.5 * x(1, i) - x(2, i)
  end do
  xd = x
  yd = y
  call expect(descent_context_create("cpu", 1, ctx), DESCENT_OK, "context")
  call expect(descent_model_create(ctx, [2_c_int64_t, 8_c_int64_t, 1_c_int64_t], "tanh", &
    3_c_int64_t, model), DESCENT_OK, "model")
  call expect(descent_model_shape(model, inputs, outputs), DESCENT_OK, "shape")
  if (inputs /= 2 .or. outputs /= 1) call fail("descent_model_shape: expected 2 inputs, 1 output")
  if (descent_status_string(DESCENT_ERROR_SHAPE) /= "DESCENT_ERROR_SHAPE") &
    call fail("descent_status_string(DESCENT_ERROR_SHAPE) is " // &
      descent_status_string(DESCENT_ERROR_SHAPE))

  call expect(descent_dataset_create_targets(x, y, data), DESCENT_OK, "dataset from arrays")
  call expect(descent_dataset_shape(data, rows, features, classes), DESCENT_OK, "dataset shape")
  if (rows /= 16 .or. features /= 2) call fail("the dataset is not 16 rows of 2 features")
  call expect(descent_dataset_create_targets(x, y(:, 1:15), other), DESCENT_ERROR_SHAPE, &
    "targets of 15 samples for 16")

  ! Optimizers by keyword: only the options given, the kind's own names.
  call expect(descent_optimizer_make(model, "adamw", opt, lr=0.01, weight_decay=0.0), &
    DESCENT_OK, "adamw by keyword")
  call expect(descent_optimizer_kind(opt, kind), DESCENT_OK, "kind")
  if (kind /= "adamw") call fail("descent_optimizer_make made " // kind)
  call expect(descent_optimizer_make(model, "sgd", lbfgs, beta1=0.9), DESCENT_ERROR_ARGUMENT, &
    "sgd with beta1")
  call expect(descent_optimizer_make(model, "lbfgs", lbfgs, strong_wolfe=.true., max_iter=5), &
    DESCENT_OK, "lbfgs by keyword")
  call descent_optimizer_destroy(lbfgs)

  ! Training steps from double-precision arrays lower the loss; predict in double agrees with
  ! predict in float.
  call expect(descent_trainer_create(model, opt, "mse", trainer), DESCENT_OK, "trainer")
  call expect(descent_trainer_evaluate(trainer, x, y, before, accuracy), DESCENT_OK, "evaluate")
  do step = 1, 200
    call expect(descent_trainer_step(trainer, xd, yd), DESCENT_OK, "a real(8) step")
  end do
  call expect(descent_trainer_evaluate(trainer, x, y, after, accuracy), DESCENT_OK, "evaluate")
  if (.not. (after < 0.1 * before)) call fail("200 real(8) steps did not lower the loss tenfold")
  call expect(descent_model_predict(model, xd, outd), DESCENT_OK, "predict real(8)")
  call expect(descent_model_predict(model, x, got), DESCENT_OK, "predict real(4)")
  if (maxval(abs(outd - got)) > 0) call fail("predict in double differs from predict in float")
  xd(2, 5) = 1e300_c_double
  call expect(descent_model_predict(model, xd, outd), DESCENT_ERROR_ARGUMENT, "x beyond float")
  call expect_message("x(2, 5) =")
  call expect(descent_trainer_step(trainer, xd, yd), DESCENT_ERROR_ARGUMENT, "a step beyond float")

  ! Scaling kept with the model: predict answers in the caller's units.
  call expect(descent_model_set_scaling(model, input_mean=[0.5, 0.0], input_scale=[0.25, 1.0], &
    output_mean=[10.0], output_scale=[2.0]), DESCENT_OK, "set scaling")
  call expect(descent_model_predict(model, x(:, 1:1), got(:, 1:1)), DESCENT_OK, "scaled predict")
  scaled = x(:, 1:1)
  call expect(descent_model_scale(model, scaled), DESCENT_OK, "scale x")
  call expect(descent_model_set_scaling(model), DESCENT_OK, "no scaling")
  call expect(descent_model_predict(model, scaled, raw), DESCENT_OK, "unscaled predict")
  if (abs(got(1, 1) - (raw(1, 1) * 2 + 10)) > 1e-5) &
    call fail("predict does not apply the output scaling")
  if (abs(scaled(1, 1) - (x(1, 1) - 0.5) / 0.25) > 1e-6) call fail("scale did not scale x")
  call expect(descent_model_set_scaling(model, input_mean=[0.5], input_scale=[1.0]), &
    DESCENT_ERROR_ARGUMENT, "one input mean for 2 inputs")
  call expect(descent_model_set_scaling(model, input_mean=[0.5, 0.0], &
    input_scale=[0.25, 0.0]), DESCENT_ERROR_ARGUMENT, "a zero scale")
  call expect(descent_model_scale(model, x(1:1, :)), DESCENT_ERROR_ARGUMENT, "x of 1 input")
  call expect(descent_dataset_standardize(data, model), DESCENT_OK, "standardize")
  ! fit without its optional callback and user pointer.
  call expect(descent_trainer_fit(trainer, data, c_null_ptr, 8_c_int64_t, 2_c_int64_t, &
    1_c_int64_t), DESCENT_OK, "fit without a callback")
  ! fit with one: called once per epoch, with the user pointer (c_funloc as the argument). A
  ! fresh optimizer, since fit counts the epochs its optimizer has done.
  call expect(descent_optimizer_make(model, "sgd", fit_opt, lr=0.01), DESCENT_OK, "fit's optimizer")
  call expect(descent_trainer_create(model, fit_opt, "mse", fit_trainer), DESCENT_OK, &
    "fit's trainer")
  epochs_seen = 0
  call expect(descent_trainer_fit(fit_trainer, data, c_null_ptr, 8_c_int64_t, 3_c_int64_t, &
    1_c_int64_t, c_funloc(count_epoch), c_loc(epochs_seen)), DESCENT_OK, "fit with a callback")
  if (epochs_seen /= 3) call fail("fit's callback was not called for epochs 1, 2 and 3 in turn")
  call descent_trainer_destroy(fit_trainer)
  call descent_optimizer_destroy(fit_opt)

  call descent_trainer_destroy(trainer)
  call descent_optimizer_destroy(opt)
  call descent_dataset_destroy(data)
  call descent_model_destroy(model)
  call descent_context_destroy(ctx)
  deallocate(kind)  ! a main program's allocatables live to the end: freed for leak checkers
  call finish("test_api")

end program test_api
