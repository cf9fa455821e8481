! Fortran module over descent's C API (include/descent/descent.h), through iso_c_binding.
!
! Column-major mapping. descent stores a batch row-major, one sample per row: x is [rows, cols]
! with element (r, c) at x[r * ld + c]. A Fortran array x(features, batch) is column-major, one
! sample per column, and has exactly that memory layout with rows = batch, cols = features and
! ld = size(x, 1). So the procedures here take x(features, batch), targets(outputs, batch) and
! labels(batch) and hand their memory to descent WITHOUT a copy: contiguous arrays and
! contiguous sections such as x(:, first:last) pass as they are (the dummies are `contiguous`;
! a non-contiguous section, e.g. x(1:10, :) of a larger array, is copied in by the compiler).
! To use a leading dimension larger than the feature count without that copy, call the C
! function through descent_c_trainer_step / descent_c_trainer_evaluate with c_loc(x(1, first))
! and ld = size(x, 1).
!
! Labels are 0-based class indices (0 .. classes-1), as in C. Handles are type(c_ptr); every
! function returns a status (DESCENT_OK = 0) and descent_last_error() says what went wrong.
! Strings are Fortran strings (trailing blanks are ignored).
!
! Data parallel (descent.h's "data parallel" section): descent_communicator_create_mpi takes the
! integer handle of an MPI communicator, as `use mpi` gives it (MPI_COMM_WORLD); with `use
! mpi_f08`, pass the handle inside a type(MPI_Comm): comm%MPI_VAL. A trainer made with
! descent_trainer_create_parallel makes descent_trainer_fit and descent_trainer_evaluate_dataset
! collective, with the batch size the global batch and each rank training on its shard.
module descent
  use, intrinsic :: iso_fortran_env, only: error_unit
  use, intrinsic :: iso_c_binding, only: c_ptr, c_null_ptr, c_funptr, c_null_funptr, c_int, &
    c_int32_t, c_int64_t, c_float, c_double, c_char, c_null_char, c_loc, c_associated, &
    c_f_pointer, c_size_t
  implicit none
  private

  ! Status codes (descent_status) and memory kinds (descent_memory).
  integer(c_int), parameter, public :: DESCENT_OK = 0, DESCENT_ERROR_SHAPE = 1, &
    DESCENT_ERROR_ARGUMENT = 2, DESCENT_ERROR_DATA = 3, DESCENT_ERROR_DEVICE = 4, &
    DESCENT_ERROR_OUT_OF_MEMORY = 5, DESCENT_ERROR_IO = 6, DESCENT_ERROR_NUMERIC = 7, &
    DESCENT_ERROR_UNKNOWN = 8
  integer(c_int), parameter, public :: DESCENT_MEMORY_HOST = 0, DESCENT_MEMORY_DEVICE = 1

  public :: descent_last_error, descent_version, descent_built_with_cuda, &
    descent_cuda_device_count, descent_built_with_mpi
  public :: descent_context_create, descent_context_destroy, descent_context_set_stream, &
    descent_context_get_stream, descent_context_synchronize
  public :: descent_model_create, descent_model_load, descent_model_destroy, &
    descent_model_parameter_count, descent_model_get_params, descent_model_set_params, &
    descent_model_predict, descent_model_shape, descent_status_string, &
    descent_model_input_gradient
  public :: descent_optimizer_make, descent_dataset_create_labels, descent_dataset_create_targets
  public :: descent_model_set_scaling, descent_model_scale, descent_dataset_standardize
  public :: descent_optimizer_create, descent_optimizer_create_adam, descent_optimizer_destroy, &
    descent_optimizer_create_from, descent_optimizer_kind, descent_optimizer_lr, descent_optimizer_steps
  public :: descent_dataset_load_idx, descent_dataset_shape, descent_dataset_copy, &
    descent_dataset_destroy
  public :: descent_context_create_for_rank, descent_communicator_sum_gradients
  public :: descent_communicator_create_mpi, descent_communicator_create_single, &
    descent_communicator_destroy, descent_communicator_rank, descent_communicator_size, &
    descent_communicator_abort
  public :: descent_trainer_create, descent_trainer_create_parallel, descent_trainer_destroy, &
    descent_trainer_step, descent_trainer_take_loss, descent_trainer_evaluate, &
    descent_trainer_evaluate_dataset, descent_trainer_fit, descent_epoch_stats, &
    descent_trainer_set_non_finite, descent_trainer_skipped_steps, &
    descent_trainer_set_clip_grad_norm, descent_trainer_last_grad_norm
  public :: descent_checkpoint_save, descent_checkpoint_load
  public :: descent_model_save_safetensors, descent_model_load_safetensors, &
    descent_model_load_safetensors_into, descent_model_save_onnx
  public :: descent_c_trainer_step, descent_c_trainer_evaluate
  public :: descent_model_mse_gradient, descent_optimizer_step, descent_optimizer_lbfgs_step, &
    descent_jet_create, &
    descent_jet_destroy, descent_jet_forward, descent_jet_read, descent_jet_pde_residual, &
    descent_jet_pde_residual_step
  public :: descent_model_get_params_f64, descent_model_set_params_f64, &
    descent_jet_pde_residual_step_f64, descent_jet_mse_step_f64, descent_lbfgs_f64_create, &
    descent_lbfgs_f64_destroy, descent_lbfgs_f64_step, descent_lbfgs_f64_progress, &
    descent_lbfgs_f64_set_problem, descent_lbfgs_f64_save, descent_lbfgs_f64_load

  ! descent_trainer_fit(trainer, train, test, batch_size, epochs, seed [, callback [, user]]):
  ! see trainer_fit_quiet and trainer_fit_reporting below.
  interface descent_trainer_fit
    module procedure trainer_fit_quiet, trainer_fit_reporting
  end interface

  ! What descent_trainer_fit hands its callback after each epoch (descent_epoch_stats in C):
  ! test_loss and test_accuracy are NaN without a test set. A callback is a bind(c) subroutine
  !   subroutine on_epoch(stats, user) bind(c)
  !     type(descent_epoch_stats), intent(in) :: stats
  !     type(c_ptr), value :: user
  ! passed as c_funloc(on_epoch).
  type, bind(c), public :: descent_epoch_stats
    integer(c_int64_t) :: epoch   ! 1-based
    integer(c_int64_t) :: epochs  ! of the whole run
    real(c_double) :: train_loss, test_loss, test_accuracy, samples_per_second
    real(c_double) :: seconds     ! this epoch's training and evaluation
    real(c_float) :: lr           ! the learning rate of the next step
  end type

  ! The message of a failure found on the Fortran side (array extents that disagree).
  character(:), allocatable :: local_error

  ! One training step on x(features, batch) with labels(batch) or targets(outputs, batch).
  interface descent_trainer_step
    module procedure trainer_step_labels, trainer_step_targets, trainer_step_targets_f64
  end interface
  ! The model's outputs out(outputs, n) for x(inputs, n), in real(c_float) or real(c_double)
  ! (converted to float: a value beyond float's range is refused, never turned into infinity).
  interface descent_model_predict
    module procedure model_predict_f32, model_predict_f64
  end interface
  ! dx(inputs, n) = dy . du/dx at x(inputs, n) for dy(outputs, n): the gradient of a loss with
  ! respect to the inputs given its gradient at the outputs (forces: -dx of an energy, dy = 1),
  ! in the caller's units as descent_model_predict; real(c_float) or real(c_double).
  interface descent_model_input_gradient
    module procedure model_input_gradient_f32, model_input_gradient_f64
  end interface
  ! Mean loss and accuracy on x(features, n) with labels(n) or targets(outputs, n).
  interface descent_trainer_evaluate
    module procedure trainer_evaluate_labels, trainer_evaluate_targets
  end interface

  ! The C functions. Those whose Fortran wrapper has the C name are bound as c_<name>.

  ! A residual call's optional arguments as the C API takes them (residual_arguments).
  type :: residual_args
    type(c_ptr) :: b = c_null_ptr, d = c_null_ptr, source = c_null_ptr, loss = c_null_ptr
    integer(c_int64_t) :: ld = 0, rows = 0
    real(c_float) :: weight = 1.0_c_float
    integer(c_int) :: accumulate = 1
  end type
  interface
    function c_last_error() bind(c, name="descent_last_error") result(p)
      import :: c_ptr
      type(c_ptr) :: p
    end function
    function c_version() bind(c, name="descent_version") result(p)
      import :: c_ptr
      type(c_ptr) :: p
    end function
    function descent_built_with_cuda() bind(c, name="descent_built_with_cuda") result(r)
      import :: c_int
      integer(c_int) :: r
    end function
    function descent_cuda_device_count() bind(c, name="descent_cuda_device_count") result(r)
      import :: c_int
      integer(c_int) :: r
    end function
    function descent_built_with_mpi() bind(c, name="descent_built_with_mpi") result(r)
      import :: c_int
      integer(c_int) :: r
    end function
    function c_strlen(s) bind(c, name="strlen") result(n)
      import :: c_ptr, c_size_t
      type(c_ptr), value :: s
      integer(c_size_t) :: n
    end function

    function c_context_create(device, threads, out) bind(c, name="descent_context_create") &
        result(status)
      import :: c_char, c_int, c_ptr
      character(kind=c_char), intent(in) :: device(*)
      integer(c_int), value :: threads
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function
    subroutine descent_context_destroy(ctx) bind(c, name="descent_context_destroy")
      import :: c_ptr
      type(c_ptr), value :: ctx
    end subroutine
    function descent_context_set_stream(ctx, stream) bind(c, name="descent_context_set_stream") &
        result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: ctx, stream
      integer(c_int) :: status
    end function
    function descent_context_get_stream(ctx, stream) bind(c, name="descent_context_get_stream") &
        result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: ctx
      type(c_ptr), intent(out) :: stream
      integer(c_int) :: status
    end function
    function descent_context_synchronize(ctx) bind(c, name="descent_context_synchronize") &
        result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: ctx
      integer(c_int) :: status
    end function

    function c_model_create(ctx, widths, n, activation, seed, out) &
        bind(c, name="descent_model_create") result(status)
      import :: c_ptr, c_int64_t, c_int, c_char
      type(c_ptr), value :: ctx
      integer(c_int64_t), intent(in) :: widths(*)
      integer(c_int), value :: n
      character(kind=c_char), intent(in) :: activation(*)
      integer(c_int64_t), value :: seed
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function
    function c_model_load(ctx, path, out) bind(c, name="descent_model_load") result(status)
      import :: c_ptr, c_char, c_int
      type(c_ptr), value :: ctx
      character(kind=c_char), intent(in) :: path(*)
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function
    subroutine descent_model_destroy(model) bind(c, name="descent_model_destroy")
      import :: c_ptr
      type(c_ptr), value :: model
    end subroutine
    function descent_model_parameter_count(model, count) &
        bind(c, name="descent_model_parameter_count") result(status)
      import :: c_ptr, c_int64_t, c_int
      type(c_ptr), value :: model
      integer(c_int64_t), intent(out) :: count
      integer(c_int) :: status
    end function
    function c_model_set_scaling(model, input_mean, input_scale, output_mean, output_scale) &
        bind(c, name="descent_model_set_scaling") result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: model, input_mean, input_scale, output_mean, output_scale
      integer(c_int) :: status
    end function
    function c_model_scale(model, x, rows, ld_x, targets, ld_targets) &
        bind(c, name="descent_model_scale") result(status)
      import :: c_ptr, c_int64_t, c_int
      type(c_ptr), value :: model, x, targets
      integer(c_int64_t), value :: rows, ld_x, ld_targets
      integer(c_int) :: status
    end function
    function descent_dataset_standardize(data, model) &
        bind(c, name="descent_dataset_standardize") result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: data, model
      integer(c_int) :: status
    end function
    function c_status_string(status) bind(c, name="descent_status_string") result(p)
      import :: c_ptr, c_int
      integer(c_int), value :: status
      type(c_ptr) :: p
    end function
    function c_dataset_create_targets(features, rows, cols, ld, targets, target_cols, &
        ld_targets, out) bind(c, name="descent_dataset_create_targets") result(status)
      import :: c_ptr, c_int64_t, c_int
      type(c_ptr), value :: features, targets
      integer(c_int64_t), value :: rows, cols, ld, target_cols, ld_targets
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function
    function c_dataset_create_labels(features, rows, cols, ld, labels, classes, out) &
        bind(c, name="descent_dataset_create_labels") result(status)
      import :: c_ptr, c_int64_t, c_int
      type(c_ptr), value :: features, labels
      integer(c_int64_t), value :: rows, cols, ld, classes
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function
    function c_model_get_params(model, params, count) bind(c, name="descent_model_get_params") &
        result(status)
      import :: c_ptr, c_float, c_int64_t, c_int
      type(c_ptr), value :: model
      real(c_float), intent(out) :: params(*)
      integer(c_int64_t), value :: count
      integer(c_int) :: status
    end function
    function c_model_set_params(model, params, count) bind(c, name="descent_model_set_params") &
        result(status)
      import :: c_ptr, c_float, c_int64_t, c_int
      type(c_ptr), value :: model
      real(c_float), intent(in) :: params(*)
      integer(c_int64_t), value :: count
      integer(c_int) :: status
    end function
    function c_model_predict(model, x, rows, cols, ld_x, out, ld_out, memory) &
        bind(c, name="descent_model_predict") result(status)
      import :: c_ptr, c_int64_t, c_int
      type(c_ptr), value :: model, x, out
      integer(c_int64_t), value :: rows, cols, ld_x, ld_out
      integer(c_int), value :: memory
      integer(c_int) :: status
    end function

    function c_model_input_gradient(model, x, rows, cols, ld_x, dy, ld_dy, dx, ld_dx, memory) &
        bind(c, name="descent_model_input_gradient") result(status)
      import :: c_ptr, c_int64_t, c_int
      type(c_ptr), value :: model, x, dy, dx
      integer(c_int64_t), value :: rows, cols, ld_x, ld_dy, ld_dx
      integer(c_int), value :: memory
      integer(c_int) :: status
    end function

    function c_optimizer_create(model, lr, momentum, weight_decay, nesterov, schedule, &
        schedule_steps, factor, out) bind(c, name="descent_optimizer_create") result(status)
      import :: c_ptr, c_float, c_int, c_char, c_int64_t
      type(c_ptr), value :: model
      real(c_float), value :: lr, momentum, weight_decay
      integer(c_int), value :: nesterov
      character(kind=c_char), intent(in) :: schedule(*)
      integer(c_int64_t), value :: schedule_steps
      real(c_float), value :: factor
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function
    function c_optimizer_create_from(model, kind, options, schedule, schedule_steps, factor, out) &
        bind(c, name="descent_optimizer_create_from") result(status)
      import :: c_ptr, c_float, c_int, c_char, c_int64_t
      type(c_ptr), value :: model
      character(kind=c_char), intent(in) :: kind(*), options(*), schedule(*)
      integer(c_int64_t), value :: schedule_steps
      real(c_float), value :: factor
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function
    function c_optimizer_create_adam(model, kind, lr, beta1, beta2, eps, weight_decay, amsgrad, &
        schedule, schedule_steps, factor, out) bind(c, name="descent_optimizer_create_adam") &
        result(status)
      import :: c_ptr, c_float, c_int, c_char, c_int64_t
      type(c_ptr), value :: model
      character(kind=c_char), intent(in) :: kind(*)
      real(c_float), value :: lr, beta1, beta2, eps, weight_decay
      integer(c_int), value :: amsgrad
      character(kind=c_char), intent(in) :: schedule(*)
      integer(c_int64_t), value :: schedule_steps
      real(c_float), value :: factor
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function
    subroutine descent_optimizer_destroy(opt) bind(c, name="descent_optimizer_destroy")
      import :: c_ptr
      type(c_ptr), value :: opt
    end subroutine
    function c_optimizer_kind(opt, kind) bind(c, name="descent_optimizer_kind") result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: opt
      type(c_ptr), intent(out) :: kind
      integer(c_int) :: status
    end function
    ! The learning rate of the next step, and the optimizer steps taken so far.
    function descent_optimizer_lr(opt, lr) bind(c, name="descent_optimizer_lr") result(status)
      import :: c_ptr, c_float, c_int
      type(c_ptr), value :: opt
      real(c_float), intent(out) :: lr
      integer(c_int) :: status
    end function
    function descent_optimizer_steps(opt, steps) bind(c, name="descent_optimizer_steps") &
        result(status)
      import :: c_ptr, c_int64_t, c_int
      type(c_ptr), value :: opt
      integer(c_int64_t), intent(out) :: steps
      integer(c_int) :: status
    end function

    function c_dataset_load_idx(images, labels, limit, out) &
        bind(c, name="descent_dataset_load_idx") result(status)
      import :: c_char, c_int64_t, c_ptr, c_int
      character(kind=c_char), intent(in) :: images(*), labels(*)
      integer(c_int64_t), value :: limit
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function
    function descent_dataset_shape(data, rows, features, classes) &
        bind(c, name="descent_dataset_shape") result(status)
      import :: c_ptr, c_int64_t, c_int
      type(c_ptr), value :: data
      integer(c_int64_t), intent(out) :: rows, features, classes
      integer(c_int) :: status
    end function
    function c_dataset_copy(data, first, count, features, ld, labels) &
        bind(c, name="descent_dataset_copy") result(status)
      import :: c_ptr, c_int64_t, c_int
      type(c_ptr), value :: data
      integer(c_int64_t), value :: first, count
      type(c_ptr), value :: features
      integer(c_int64_t), value :: ld
      type(c_ptr), value :: labels
      integer(c_int) :: status
    end function
    subroutine descent_dataset_destroy(data) bind(c, name="descent_dataset_destroy")
      import :: c_ptr
      type(c_ptr), value :: data
    end subroutine

    function c_communicator_create_mpi(ctx, fortran_comm, out) &
        bind(c, name="descent_communicator_create_mpi") result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: ctx
      integer(c_int), value :: fortran_comm
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function
    ! One process alone (rank 0 of 1): a trainer made with it is an ordinary one.
    function descent_communicator_create_single(out) &
        bind(c, name="descent_communicator_create_single") result(status)
      import :: c_ptr, c_int
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function
    subroutine descent_communicator_destroy(comm) bind(c, name="descent_communicator_destroy")
      import :: c_ptr
      type(c_ptr), value :: comm
    end subroutine
    ! This process's rank (0-based), and the number of ranks.
    function descent_communicator_rank(comm, rank) bind(c, name="descent_communicator_rank") &
        result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: comm
      integer(c_int), intent(out) :: rank
      integer(c_int) :: status
    end function
    function descent_communicator_size(comm, size) bind(c, name="descent_communicator_size") &
        result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: comm
      integer(c_int), intent(out) :: size
      integer(c_int) :: status
    end function
    function c_communicator_abort(comm, message, code) &
        bind(c, name="descent_communicator_abort") result(status)
      import :: c_ptr, c_char, c_int
      type(c_ptr), value :: comm
      character(kind=c_char), intent(in) :: message(*)
      integer(c_int), value :: code
      integer(c_int) :: status
    end function

    function c_trainer_create(model, opt, loss, out) bind(c, name="descent_trainer_create") &
        result(status)
      import :: c_ptr, c_char, c_int
      type(c_ptr), value :: model, opt
      character(kind=c_char), intent(in) :: loss(*)
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function
    function c_trainer_create_parallel(model, opt, loss, comm, out) &
        bind(c, name="descent_trainer_create_parallel") result(status)
      import :: c_ptr, c_char, c_int
      type(c_ptr), value :: model, opt
      character(kind=c_char), intent(in) :: loss(*)
      type(c_ptr), value :: comm
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function
    ! Mean loss and accuracy on a dataset handle, in batches of batch_size (collective with a
    ! data-parallel trainer: every rank gets the result over the whole dataset).
    function descent_trainer_evaluate_dataset(trainer, data, batch_size, loss, accuracy) &
        bind(c, name="descent_trainer_evaluate_dataset") result(status)
      import :: c_ptr, c_int64_t, c_double, c_int
      type(c_ptr), value :: trainer, data
      integer(c_int64_t), value :: batch_size
      real(c_double), intent(out) :: loss, accuracy
      integer(c_int) :: status
    end function
    function c_trainer_set_non_finite(trainer, policy) &
        bind(c, name="descent_trainer_set_non_finite") result(status)
      import :: c_ptr, c_char, c_int
      type(c_ptr), value :: trainer
      character(kind=c_char), intent(in) :: policy(*)
      integer(c_int) :: status
    end function
    function descent_trainer_skipped_steps(trainer, skipped) &
        bind(c, name="descent_trainer_skipped_steps") result(status)
      import :: c_ptr, c_int64_t, c_int
      type(c_ptr), value :: trainer
      integer(c_int64_t), intent(out) :: skipped
      integer(c_int) :: status
    end function
    ! Gradient clipping by global norm for the next steps: max_norm = 0 turns it off; norm_type
    ! 2, or infinity (ieee_value(1.0_c_float, ieee_positive_inf) from ieee_arithmetic).
    function descent_trainer_set_clip_grad_norm(trainer, max_norm, norm_type) &
        bind(c, name="descent_trainer_set_clip_grad_norm") result(status)
      import :: c_ptr, c_float, c_int
      type(c_ptr), value :: trainer
      real(c_float), value :: max_norm, norm_type
      integer(c_int) :: status
    end function
    ! The gradient norm before clipping of the latest clipped step (NaN when clipping is off or
    ! no step has been clipped yet).
    function descent_trainer_last_grad_norm(trainer, norm) &
        bind(c, name="descent_trainer_last_grad_norm") result(status)
      import :: c_ptr, c_float, c_int
      type(c_ptr), value :: trainer
      real(c_float), intent(out) :: norm
      integer(c_int) :: status
    end function
    subroutine descent_trainer_destroy(trainer) bind(c, name="descent_trainer_destroy")
      import :: c_ptr
      type(c_ptr), value :: trainer
    end subroutine
    ! The raw C step and evaluation: pointers (c_loc or device addresses) with explicit
    ! rows = samples, cols = features, ld = distance between samples.
    function descent_c_trainer_step(trainer, x, rows, cols, ld_x, labels, targets, ld_targets, &
        memory) bind(c, name="descent_trainer_step") result(status)
      import :: c_ptr, c_int64_t, c_int
      type(c_ptr), value :: trainer, x
      integer(c_int64_t), value :: rows, cols, ld_x
      type(c_ptr), value :: labels, targets
      integer(c_int64_t), value :: ld_targets
      integer(c_int), value :: memory
      integer(c_int) :: status
    end function
    function descent_trainer_take_loss(trainer, loss) bind(c, name="descent_trainer_take_loss") &
        result(status)
      import :: c_ptr, c_double, c_int
      type(c_ptr), value :: trainer
      real(c_double), intent(out) :: loss
      integer(c_int) :: status
    end function
    function descent_c_trainer_evaluate(trainer, x, rows, cols, ld_x, labels, targets, &
        ld_targets, memory, loss, accuracy) bind(c, name="descent_trainer_evaluate") &
        result(status)
      import :: c_ptr, c_int64_t, c_int, c_double
      type(c_ptr), value :: trainer, x
      integer(c_int64_t), value :: rows, cols, ld_x
      type(c_ptr), value :: labels, targets
      integer(c_int64_t), value :: ld_targets
      integer(c_int), value :: memory
      real(c_double), intent(out) :: loss, accuracy
      integer(c_int) :: status
    end function
    function c_trainer_fit(trainer, train, test, batch_size, epochs, seed, callback, user) &
        bind(c, name="descent_trainer_fit") result(status)
      import :: c_ptr, c_int64_t, c_funptr, c_int
      type(c_ptr), value :: trainer, train, test
      integer(c_int64_t), value :: batch_size, epochs, seed
      type(c_funptr), value :: callback
      type(c_ptr), value :: user
      integer(c_int) :: status
    end function

    function c_checkpoint_save(path, model, opt) bind(c, name="descent_checkpoint_save") &
        result(status)
      import :: c_char, c_ptr, c_int
      character(kind=c_char), intent(in) :: path(*)
      type(c_ptr), value :: model, opt
      integer(c_int) :: status
    end function
    function c_checkpoint_load(path, model, opt) bind(c, name="descent_checkpoint_load") &
        result(status)
      import :: c_char, c_ptr, c_int
      character(kind=c_char), intent(in) :: path(*)
      type(c_ptr), value :: model, opt
      integer(c_int) :: status
    end function

    function c_model_save_safetensors(model, path, dtype) &
        bind(c, name="descent_model_save_safetensors") result(status)
      import :: c_char, c_ptr, c_int
      type(c_ptr), value :: model
      character(kind=c_char), intent(in) :: path(*), dtype(*)
      integer(c_int) :: status
    end function
    function c_model_load_safetensors(ctx, path, out) &
        bind(c, name="descent_model_load_safetensors") result(status)
      import :: c_char, c_ptr, c_int
      type(c_ptr), value :: ctx
      character(kind=c_char), intent(in) :: path(*)
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function
    function c_model_load_safetensors_into(model, path) &
        bind(c, name="descent_model_load_safetensors_into") result(status)
      import :: c_char, c_ptr, c_int
      type(c_ptr), value :: model
      character(kind=c_char), intent(in) :: path(*)
      integer(c_int) :: status
    end function
    function c_model_save_onnx(model, path, head) bind(c, name="descent_model_save_onnx") &
        result(status)
      import :: c_char, c_ptr, c_int
      type(c_ptr), value :: model
      character(kind=c_char), intent(in) :: path(*), head(*)
      integer(c_int) :: status
    end function

    function c_model_mse_gradient(model, x, rows, cols, ld_x, targets, ld_targets, memory, &
        weight, loss) bind(c, name="descent_model_mse_gradient") result(status)
      import :: c_ptr, c_int64_t, c_int, c_float
      type(c_ptr), value :: model, x, targets, loss
      integer(c_int64_t), value :: rows, cols, ld_x, ld_targets
      integer(c_int), value :: memory
      real(c_float), value :: weight
      integer(c_int) :: status
    end function
    function descent_optimizer_step(opt) bind(c, name="descent_optimizer_step") result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: opt
      integer(c_int) :: status
    end function
    ! One L-BFGS step of an optimizer of kind "lbfgs" (descent_optimizer_create_from), calling
    ! evaluate once or more: a bind(c) function that computes the loss at the model's current
    ! parameters and leaves its gradient in the model (descent_model_mse_gradient,
    ! descent_jet_pde_residual, ...),
    !   integer(c_int) function evaluate(user, loss) bind(c)
    !     type(c_ptr), value :: user
    !     real(c_float), intent(out) :: loss
    ! returning DESCENT_OK (any other status ends the step, which then changes nothing), passed
    ! as c_funloc(evaluate); user is handed to it as given (c_null_ptr, or c_loc of your data).
    ! first_loss receives the loss of the step's first evaluation.
    function descent_optimizer_lbfgs_step(opt, evaluate, user, first_loss) &
        bind(c, name="descent_optimizer_lbfgs_step") result(status)
      import :: c_ptr, c_funptr, c_float, c_int
      type(c_ptr), value :: opt, user
      type(c_funptr), value :: evaluate
      real(c_float), intent(out) :: first_loss
      integer(c_int) :: status
    end function
    function c_jet_create(model, directions, vectors, weights, second_order, out) &
        bind(c, name="descent_jet_create") result(status)
      import :: c_ptr, c_int64_t, c_int
      type(c_ptr), value :: model, vectors, weights
      integer(c_int64_t), value :: directions
      integer(c_int), value :: second_order
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function
    subroutine descent_jet_destroy(jet) bind(c, name="descent_jet_destroy")
      import :: c_ptr
      type(c_ptr), value :: jet
    end subroutine
    function c_jet_forward(jet, x, rows, cols, ld_x, memory) bind(c, name="descent_jet_forward") &
        result(status)
      import :: c_ptr, c_int64_t, c_int
      type(c_ptr), value :: jet, x
      integer(c_int64_t), value :: rows, cols, ld_x
      integer(c_int), value :: memory
      integer(c_int) :: status
    end function
    function c_jet_read(jet, which, out, rows, ld_out, memory) bind(c, name="descent_jet_read") &
        result(status)
      import :: c_ptr, c_int64_t, c_int
      type(c_ptr), value :: jet, out
      integer(c_int64_t), value :: which, rows, ld_out
      integer(c_int), value :: memory
      integer(c_int) :: status
    end function
    function descent_communicator_sum_gradients(comm, model) &
        bind(c, name="descent_communicator_sum_gradients") result(status)
      import :: c_ptr, c_int
      type(c_ptr), value :: comm, model
      integer(c_int) :: status
    end function
    function c_context_create_for_rank(comm, kind, local_rank, out) &
        bind(c, name="descent_context_create_for_rank") result(status)
      import :: c_ptr, c_int, c_char
      integer(c_int), value :: comm
      character(kind=c_char), intent(in) :: kind(*)
      integer(c_int), intent(out) :: local_rank
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function
    function c_model_shape(model, inputs, outputs) bind(c, name="descent_model_shape") &
        result(status)
      import :: c_ptr, c_int64_t, c_int
      type(c_ptr), value :: model
      integer(c_int64_t), intent(out) :: inputs, outputs
      integer(c_int) :: status
    end function
    function c_jet_directions(jet, directions) bind(c, name="descent_jet_directions") &
        result(status)
      import :: c_ptr, c_int64_t, c_int
      type(c_ptr), value :: jet
      integer(c_int64_t), intent(out) :: directions
      integer(c_int) :: status
    end function
    function c_jet_pde_residual(jet, a, b, c, d, source, rows, ld_source, memory, weight, &
        accumulate, loss) bind(c, name="descent_jet_pde_residual") result(status)
      import :: c_ptr, c_int64_t, c_int, c_float
      type(c_ptr), value :: jet, b, d, source, loss
      real(c_float), value :: a, c, weight
      integer(c_int64_t), value :: rows, ld_source
      integer(c_int), value :: memory, accumulate
      integer(c_int) :: status
    end function
    function c_jet_pde_residual_step(jet, x, rows, cols, ld_x, a, b, c, d, source, ld_source, &
        memory, weight, accumulate, loss) bind(c, name="descent_jet_pde_residual_step") &
        result(status)
      import :: c_ptr, c_int64_t, c_int, c_float
      type(c_ptr), value :: jet, x, b, d, source, loss
      real(c_float), value :: a, c, weight
      integer(c_int64_t), value :: rows, cols, ld_x, ld_source
      integer(c_int), value :: memory, accumulate
      integer(c_int) :: status
    end function
    ! ---- float64 on the CPU (descent.h)
    function c_model_get_params_f64(model, params, count) &
        bind(c, name="descent_model_get_params_f64") result(status)
      import :: c_ptr, c_int64_t, c_int
      type(c_ptr), value :: model, params
      integer(c_int64_t), value :: count
      integer(c_int) :: status
    end function
    function c_model_set_params_f64(model, params, count) &
        bind(c, name="descent_model_set_params_f64") result(status)
      import :: c_ptr, c_int64_t, c_int
      type(c_ptr), value :: model, params
      integer(c_int64_t), value :: count
      integer(c_int) :: status
    end function
    function c_jet_pde_residual_step_f64(jet, params, count, x, rows, cols, ld_x, a, b, c, d, &
        source, ld_source, weight, accumulate, grad, loss) &
        bind(c, name="descent_jet_pde_residual_step_f64") result(status)
      import :: c_ptr, c_int64_t, c_int, c_float, c_double
      type(c_ptr), value :: jet, params, x, b, d, source, grad, loss
      integer(c_int64_t), value :: count, rows, cols, ld_x, ld_source
      real(c_float), value :: a, c
      real(c_double), value :: weight
      integer(c_int), value :: accumulate
      integer(c_int) :: status
    end function
    function c_jet_mse_step_f64(jet, params, count, x, rows, cols, ld_x, targets, ld_targets, &
        weight, accumulate, grad, loss) bind(c, name="descent_jet_mse_step_f64") result(status)
      import :: c_ptr, c_int64_t, c_int, c_double
      type(c_ptr), value :: jet, params, x, targets, grad, loss
      integer(c_int64_t), value :: count, rows, cols, ld_x, ld_targets
      real(c_double), value :: weight
      integer(c_int), value :: accumulate
      integer(c_int) :: status
    end function
    function c_lbfgs_f64_create(options, out) bind(c, name="descent_lbfgs_f64_create") &
        result(status)
      import :: c_ptr, c_int, c_char
      character(kind=c_char), intent(in) :: options(*)
      type(c_ptr), intent(out) :: out
      integer(c_int) :: status
    end function
    subroutine descent_lbfgs_f64_destroy(opt) bind(c, name="descent_lbfgs_f64_destroy")
      import :: c_ptr
      type(c_ptr), value :: opt
    end subroutine
    function c_lbfgs_f64_step(opt, x, count, evaluate, user, loss) &
        bind(c, name="descent_lbfgs_f64_step") result(status)
      import :: c_ptr, c_funptr, c_int64_t, c_int
      type(c_ptr), value :: opt, x, user, loss
      integer(c_int64_t), value :: count
      type(c_funptr), value :: evaluate
      integer(c_int) :: status
    end function
    function c_lbfgs_f64_progress(opt, iterations, evaluations, stop_reason) &
        bind(c, name="descent_lbfgs_f64_progress") result(status)
      import :: c_ptr, c_int64_t, c_int
      type(c_ptr), value :: opt
      integer(c_int64_t), intent(out) :: iterations, evaluations
      type(c_ptr), intent(out) :: stop_reason
      integer(c_int) :: status
    end function
    function c_lbfgs_f64_set_problem(opt, problem) bind(c, name="descent_lbfgs_f64_set_problem") &
        result(status)
      import :: c_ptr, c_char, c_int
      type(c_ptr), value :: opt
      character(kind=c_char), intent(in) :: problem(*)
      integer(c_int) :: status
    end function
    function c_lbfgs_f64_save(opt, path, x, count) bind(c, name="descent_lbfgs_f64_save") &
        result(status)
      import :: c_ptr, c_char, c_int64_t, c_int
      type(c_ptr), value :: opt, x
      character(kind=c_char), intent(in) :: path(*)
      integer(c_int64_t), value :: count
      integer(c_int) :: status
    end function
    function c_lbfgs_f64_load(opt, path, x, count) bind(c, name="descent_lbfgs_f64_load") &
        result(status)
      import :: c_ptr, c_char, c_int64_t, c_int
      type(c_ptr), value :: opt, x
      character(kind=c_char), intent(in) :: path(*)
      integer(c_int64_t), value :: count
      integer(c_int) :: status
    end function
  end interface

contains

  ! A Fortran string as a NUL-terminated C string (trailing blanks dropped).
  pure function c_string(s) result(c)
    character(*), intent(in) :: s
    character(kind=c_char, len=len_trim(s) + 1) :: c
    c = trim(s) // c_null_char
  end function

  ! A C string as a Fortran string ("" for a null pointer).
  function f_string(p) result(s)
    type(c_ptr), intent(in) :: p
    character(:), allocatable :: s
    character(kind=c_char), pointer :: chars(:)
    integer :: i, n
    if (.not. c_associated(p)) then
      s = ""
      return
    end if
    n = int(c_strlen(p))
    call c_f_pointer(p, chars, [n])
    allocate(character(n) :: s)
    do i = 1, n
      s(i:i) = chars(i)
    end do
  end function

  ! The message of the latest failed call on this thread ("" after a success).
  function descent_last_error() result(s)
    character(:), allocatable :: s
    s = f_string(c_last_error())
    if (len(s) == 0 .and. allocated(local_error)) s = local_error
  end function

  ! Records a Fortran-side shape error and returns its status.
  integer(c_int) function shape_error(what, a, b) result(status)
    character(*), intent(in) :: what
    integer, intent(in) :: a, b
    status = x_mismatch(what, a, "samples", b, DESCENT_ERROR_SHAPE)
  end function

  ! Records "what: a <noun>, x has b" and returns `code`.
  integer(c_int) function x_mismatch(what, a, noun, b, code) result(status)
    character(*), intent(in) :: what, noun
    integer, intent(in) :: a, b
    integer(c_int), intent(in) :: code
    character(24) :: sa, sb
    write(sa, '(i0)') a
    write(sb, '(i0)') b
    local_error = what // ": " // trim(sa) // " " // noun // ", x has " // trim(sb)
    status = code
  end function

  ! Records a Fortran-side count error (an array of n values where `expected` are read).
  integer(c_int) function count_error(what, n, expected) result(status)
    character(*), intent(in) :: what
    integer, intent(in) :: n, expected
    character(24) :: sn, se
    write(sn, '(i0)') n
    write(se, '(i0)') expected
    local_error = what // ": " // trim(sn) // " values, the jet has " // trim(se) // " directions"
    status = DESCENT_ERROR_ARGUMENT
  end function

  ! Forgets a Fortran-side error (each array procedure starts with it).
  subroutine clear_local()
    if (allocated(local_error)) deallocate(local_error)
  end subroutine

  ! The library version, "MAJOR.MINOR.PATCH".
  function descent_version() result(s)
    character(:), allocatable :: s
    s = f_string(c_version())
  end function

  ! A context on device "cpu", "cuda" or "cuda:N"; threads = 0 uses all CPU cores.
  integer(c_int) function descent_context_create(device, threads, ctx) result(status)
    character(*), intent(in) :: device
    integer, intent(in) :: threads
    type(c_ptr), intent(out) :: ctx
    status = c_context_create(c_string(device), int(threads, c_int), ctx)
  end function

  ! The ranks of an MPI communicator, given by its integer handle (MPI_COMM_WORLD of `use mpi`;
  ! comm%MPI_VAL of a type(MPI_Comm) of `use mpi_f08`). Collective; MPI must be initialised.
  ! Destroy it, and the trainers made with it, before MPI_Finalize.
  integer(c_int) function descent_communicator_create_mpi(ctx, comm, communicator) &
      result(status)
    type(c_ptr), intent(in) :: ctx
    integer, intent(in) :: comm
    type(c_ptr), intent(out) :: communicator
    status = c_communicator_create_mpi(ctx, int(comm, c_int), communicator)
  end function

  ! Ends the whole job from this rank with exit code `code` (default 1), writing "descent: rank
  ! R of N: message" to standard error: for an error one rank meets alone, so that the others
  ! are not left waiting in a collective. Never returns (a null comm stops this image only).
  subroutine descent_communicator_abort(comm, message, code)
    type(c_ptr), intent(in) :: comm
    character(*), intent(in) :: message
    integer, intent(in), optional :: code
    integer(c_int) :: c, status
    c = 1
    if (present(code)) c = int(code, c_int)
    status = c_communicator_abort(comm, c_string(message), c)
    write(error_unit, '(a, a, a)') message, ": ", descent_last_error()
    error stop 1
  end subroutine

  ! An MLP with the given layer widths (inputs first); activation of the hidden layers.
  integer(c_int) function descent_model_create(ctx, widths, activation, seed, model) &
      result(status)
    type(c_ptr), intent(in) :: ctx
    integer(c_int64_t), intent(in) :: widths(:)
    character(*), intent(in) :: activation
    integer(c_int64_t), intent(in) :: seed
    type(c_ptr), intent(out) :: model
    integer(c_int64_t) :: w(size(widths))
    w = widths
    status = c_model_create(ctx, w, int(size(widths), c_int), c_string(activation), seed, model)
  end function

  ! A model with the architecture and parameters of a checkpoint file.
  integer(c_int) function descent_model_load(ctx, path, model) result(status)
    type(c_ptr), intent(in) :: ctx
    character(*), intent(in) :: path
    type(c_ptr), intent(out) :: model
    status = c_model_load(ctx, c_string(path), model)
  end function

  ! The flat parameter buffer (size must be descent_model_parameter_count).
  integer(c_int) function descent_model_get_params(model, params) result(status)
    type(c_ptr), intent(in) :: model
    real(c_float), intent(out) :: params(:)
    real(c_float) :: buf(size(params))
    status = c_model_get_params(model, buf, int(size(params), c_int64_t))
    params = buf
  end function

  integer(c_int) function descent_model_set_params(model, params) result(status)
    type(c_ptr), intent(in) :: model
    real(c_float), intent(in) :: params(:)
    real(c_float) :: buf(size(params))
    buf = params
    status = c_model_set_params(model, buf, int(size(params), c_int64_t))
  end function

  ! out(:, j) = model(x(:, j)) for every sample j (host memory, no copy of x or out).
  integer(c_int) function model_predict_f32(model, x, out) result(status)
    type(c_ptr), intent(in) :: model
    real(c_float), intent(in), target, contiguous :: x(:, :)
    real(c_float), intent(inout), target, contiguous :: out(:, :)
    call clear_local()
    if (size(x) == 0 .or. size(out) == 0) then
      status = c_model_predict(model, c_null_ptr, int(size(x, 2), c_int64_t), &
        int(size(x, 1), c_int64_t), int(size(x, 1), c_int64_t), c_null_ptr, &
        int(size(out, 1), c_int64_t), DESCENT_MEMORY_HOST)
      return
    end if
    if (size(out, 2) /= size(x, 2)) then
      status = shape_error("out", size(out, 2), size(x, 2))
      return
    end if
    status = c_model_predict(model, c_loc(x), int(size(x, 2), c_int64_t), &
      int(size(x, 1), c_int64_t), int(size(x, 1), c_int64_t), c_loc(out), &
      int(size(out, 1), c_int64_t), DESCENT_MEMORY_HOST)
  end function

  integer(c_int) function model_predict_f64(model, x, out) result(status)
    type(c_ptr), intent(in) :: model
    real(c_double), intent(in) :: x(:, :)
    real(c_double), intent(inout) :: out(:, :)
    real(c_float), allocatable :: xs(:, :), outs(:, :)
    call clear_local()
    if (.not. fits_float(x, "x", status)) return
    xs = real(x, c_float)
    allocate(outs(size(out, 1), size(out, 2)))
    status = model_predict_f32(model, xs, outs)
    if (status == DESCENT_OK) out = real(outs, c_double)
  end function

  integer(c_int) function model_input_gradient_f32(model, x, dy, dx) result(status)
    type(c_ptr), intent(in) :: model
    real(c_float), intent(in), target, contiguous :: x(:, :), dy(:, :)
    real(c_float), intent(inout), target, contiguous :: dx(:, :)
    call clear_local()
    if (size(dy, 2) /= size(x, 2)) then
      status = shape_error("dy", size(dy, 2), size(x, 2))
      return
    end if
    if (size(dx, 2) /= size(x, 2)) then
      status = shape_error("dx", size(dx, 2), size(x, 2))
      return
    end if
    if (size(dx, 1) /= size(x, 1)) then
      status = x_mismatch("dx", size(dx, 1), "values a sample", size(x, 1), DESCENT_ERROR_SHAPE)
      return
    end if
    if (size(x) == 0 .or. size(dy) == 0) then
      status = c_model_input_gradient(model, c_null_ptr, int(size(x, 2), c_int64_t), &
        int(size(x, 1), c_int64_t), int(size(x, 1), c_int64_t), c_null_ptr, &
        int(size(dy, 1), c_int64_t), c_null_ptr, int(size(dx, 1), c_int64_t), DESCENT_MEMORY_HOST)
      return
    end if
    status = c_model_input_gradient(model, c_loc(x), int(size(x, 2), c_int64_t), &
      int(size(x, 1), c_int64_t), int(size(x, 1), c_int64_t), c_loc(dy), &
      int(size(dy, 1), c_int64_t), c_loc(dx), int(size(dx, 1), c_int64_t), DESCENT_MEMORY_HOST)
  end function

  integer(c_int) function model_input_gradient_f64(model, x, dy, dx) result(status)
    type(c_ptr), intent(in) :: model
    real(c_double), intent(in) :: x(:, :), dy(:, :)
    real(c_double), intent(inout) :: dx(:, :)
    real(c_float), allocatable :: xs(:, :), dys(:, :), dxs(:, :)
    call clear_local()
    if (.not. fits_float(x, "x", status)) return
    if (.not. fits_float(dy, "dy", status)) return
    xs = real(x, c_float)
    dys = real(dy, c_float)
    allocate(dxs(size(dx, 1), size(dx, 2)))
    status = model_input_gradient_f32(model, xs, dys, dxs)
    if (status == DESCENT_OK) dx = real(dxs, c_double)
  end function

  ! True when every value of a is within float's range (a finite double beyond it would become an
  ! infinity); otherwise records which one is not and sets status to DESCENT_ERROR_ARGUMENT.
  logical function fits_float(a, what, status) result(ok)
    real(c_double), intent(in) :: a(:, :)
    character(*), intent(in) :: what
    integer(c_int), intent(out) :: status
    integer :: where(2)
    character(64) :: text
    status = DESCENT_OK
    ok = .true.
    if (size(a) == 0) return
    if (all(abs(a) <= real(huge(1.0_c_float), c_double))) return
    where = maxloc(abs(a))
    write(text, '(a, i0, a, i0, a, es12.5)') "(", where(1), ", ", where(2), ") = ", &
      a(where(1), where(2))
    local_error = what // trim(text) // ": not a finite value in float's range (descent " // &
      "computes in single precision)"
    status = DESCENT_ERROR_ARGUMENT
    ok = .false.
  end function

  ! The model's inputs and outputs.
  integer(c_int) function descent_model_shape(model, inputs, outputs) result(status)
    type(c_ptr), intent(in) :: model
    integer(c_int64_t), intent(out) :: inputs, outputs
    status = c_model_shape(model, inputs, outputs)
  end function

  ! Scaling kept with the model and in its checkpoints (see descent.h): the network sees
  ! (x - input_mean) / input_scale and its outputs mean y * output_scale + output_mean. A mean and
  ! its scale are given together, one value per input (per output); leave a pair out for none.
  ! descent_model_predict applies it; train on data scaled by descent_model_scale or
  ! descent_dataset_standardize.
  integer(c_int) function descent_model_set_scaling(model, input_mean, input_scale, &
      output_mean, output_scale) result(status)
    type(c_ptr), intent(in) :: model
    real(c_float), intent(in), target, optional :: input_mean(:), input_scale(:), &
      output_mean(:), output_scale(:)
    integer(c_int64_t) :: inputs, outputs
    type(c_ptr) :: p(4)
    call clear_local()
    status = c_model_shape(model, inputs, outputs)
    if (status /= DESCENT_OK) return
    p = c_null_ptr
    if (.not. sized(input_mean, inputs, "input_mean", 1)) return
    if (.not. sized(input_scale, inputs, "input_scale", 2)) return
    if (.not. sized(output_mean, outputs, "output_mean", 3)) return
    if (.not. sized(output_scale, outputs, "output_scale", 4)) return
    status = c_model_set_scaling(model, p(1), p(2), p(3), p(4))
  contains
    logical function sized(a, n, what, k) result(ok)
      real(c_float), intent(in), target, optional :: a(:)
      integer(c_int64_t), intent(in) :: n
      character(*), intent(in) :: what
      integer, intent(in) :: k
      character(24) :: sa, sn
      ok = .true.
      if (.not. present(a)) return
      if (size(a) /= n) then
        write(sa, '(i0)') size(a)
        write(sn, '(i0)') n
        local_error = what // ": " // trim(sa) // " values, the model has " // trim(sn)
        status = DESCENT_ERROR_ARGUMENT
        ok = .false.
        return
      end if
      if (n > 0) p(k) = c_loc(a(1))
    end function
  end function

  ! Applies the model's scaling in place to x(inputs, n) and, when given, targets(outputs, n).
  integer(c_int) function descent_model_scale(model, x, targets) result(status)
    type(c_ptr), intent(in) :: model
    real(c_float), intent(inout), target, contiguous :: x(:, :)
    real(c_float), intent(inout), target, contiguous, optional :: targets(:, :)
    type(c_ptr) :: t
    integer(c_int64_t) :: ld_t, inputs, outputs
    character(24) :: got, want
    call clear_local()
    status = c_model_shape(model, inputs, outputs)
    if (status /= DESCENT_OK) return
    if (size(x, 1) /= inputs .or. (present(targets) .and. size(targets, 1) /= outputs)) then
      write(got, '(i0)') size(x, 1)
      write(want, '(i0)') inputs
      local_error = "x has " // trim(got) // " rows per sample, the model " // trim(want) // &
        " inputs (or targets' rows are not its outputs)"
      status = DESCENT_ERROR_ARGUMENT
      return
    end if
    t = c_null_ptr
    ld_t = 0
    if (present(targets)) then
      if (size(targets, 2) /= size(x, 2)) then
        status = shape_error("targets", size(targets, 2), size(x, 2))
        return
      end if
      t = first_float(targets)
      ld_t = int(size(targets, 1), c_int64_t)
    end if
    status = c_model_scale(model, first_float(x), int(size(x, 2), c_int64_t), &
      int(size(x, 1), c_int64_t), t, ld_t)
  end function

  ! The name of a status: "DESCENT_OK", "DESCENT_ERROR_SHAPE", ...
  function descent_status_string(status) result(s)
    integer(c_int), intent(in) :: status
    character(:), allocatable :: s
    s = f_string(c_status_string(status))
  end function

  ! A regression dataset from the caller's arrays: features(cols, rows), targets(outputs, rows)
  ! (one sample a column, copied).
  integer(c_int) function descent_dataset_create_targets(features, targets, data) result(status)
    real(c_float), intent(in), target, contiguous :: features(:, :), targets(:, :)
    type(c_ptr), intent(out) :: data
    call clear_local()
    data = c_null_ptr
    if (size(targets, 2) /= size(features, 2)) then
      status = shape_error("targets", size(targets, 2), size(features, 2))
      return
    end if
    status = c_dataset_create_targets(first_float(features), int(size(features, 2), c_int64_t), &
      int(size(features, 1), c_int64_t), int(size(features, 1), c_int64_t), first_float(targets), &
      int(size(targets, 1), c_int64_t), int(size(targets, 1), c_int64_t), data)
  end function

  ! A classification dataset from the caller's arrays: features(cols, rows), labels(rows) in
  ! [0, classes) (copied).
  integer(c_int) function descent_dataset_create_labels(features, labels, classes, data) &
      result(status)
    real(c_float), intent(in), target, contiguous :: features(:, :)
    integer(c_int32_t), intent(in), target, contiguous :: labels(:)
    integer(c_int64_t), intent(in) :: classes
    type(c_ptr), intent(out) :: data
    call clear_local()
    data = c_null_ptr
    if (size(labels) /= size(features, 2)) then
      status = shape_error("labels", size(labels), size(features, 2))
      return
    end if
    status = c_dataset_create_labels(first_float(features), int(size(features, 2), c_int64_t), &
      int(size(features, 1), c_int64_t), int(size(features, 1), c_int64_t), first_label(labels), &
      classes, data)
  end function

  ! Any optimizer by keyword: kind "sgd", "adam", "adamw" or "lbfgs", and only the options you
  ! set (the others keep torch.optim's defaults; an option the kind does not have is refused):
  !   status = descent_optimizer_make(model, "adamw", opt, lr=1e-3, weight_decay=0.01)
  ! schedule, schedule_steps and factor as for descent_optimizer_create.
  integer(c_int) function descent_optimizer_make(model, kind, opt, lr, momentum, dampening, &
      weight_decay, nesterov, beta1, beta2, eps, amsgrad, max_iter, history_size, strong_wolfe, &
      schedule, schedule_steps, factor) result(status)
    type(c_ptr), intent(in) :: model
    character(*), intent(in) :: kind
    type(c_ptr), intent(out) :: opt
    real(c_float), intent(in), optional :: lr, momentum, dampening, weight_decay, beta1, beta2, &
      eps, factor
    logical, intent(in), optional :: nesterov, amsgrad, strong_wolfe
    integer, intent(in), optional :: max_iter, history_size
    character(*), intent(in), optional :: schedule
    integer(c_int64_t), intent(in), optional :: schedule_steps
    character(:), allocatable :: o
    o = ""
    call number("lr", lr)
    call number("momentum", momentum)
    call number("dampening", dampening)
    call number("weight_decay", weight_decay)
    call number("beta1", beta1)
    call number("beta2", beta2)
    call number("eps", eps)
    call flag("nesterov", nesterov)
    call flag("amsgrad", amsgrad)
    call flag("strong_wolfe", strong_wolfe)
    call whole("max_iter", max_iter)
    call whole("history_size", history_size)
    status = descent_optimizer_create_from(model, kind, opt, options=o, schedule=schedule, &
      schedule_steps=schedule_steps, factor=factor)
  contains
    subroutine add(name, value)
      character(*), intent(in) :: name, value
      if (len(o) > 0) o = o // ", "
      o = o // name // "=" // value
    end subroutine
    subroutine number(name, value)
      character(*), intent(in) :: name
      real(c_float), intent(in), optional :: value
      character(32) :: text
      if (.not. present(value)) return
      write(text, '(es16.9)') value  ! 9 digits: the float read back is the float given
      call add(name, trim(adjustl(text)))
    end subroutine
    subroutine flag(name, value)
      character(*), intent(in) :: name
      logical, intent(in), optional :: value
      if (.not. present(value)) return
      if (value) then
        call add(name, "1")
      else
        call add(name, "0")
      end if
    end subroutine
    subroutine whole(name, value)
      character(*), intent(in) :: name
      integer, intent(in), optional :: value
      character(24) :: text
      if (.not. present(value)) return
      write(text, '(i0)') value
      call add(name, trim(text))
    end subroutine
  end function

  ! SGD (torch.optim.SGD semantics). schedule: "constant", "step" or "cosine" (see descent.h).
  integer(c_int) function descent_optimizer_create(model, lr, momentum, weight_decay, nesterov, &
      schedule, schedule_steps, factor, opt) result(status)
    type(c_ptr), intent(in) :: model
    real(c_float), intent(in) :: lr, momentum, weight_decay, factor
    logical, intent(in) :: nesterov
    character(*), intent(in) :: schedule
    integer(c_int64_t), intent(in) :: schedule_steps
    type(c_ptr), intent(out) :: opt
    integer(c_int) :: n
    n = 0
    if (nesterov) n = 1
    status = c_optimizer_create(model, lr, momentum, weight_decay, n, c_string(schedule), &
      schedule_steps, factor, opt)
  end function

  ! Adam or AdamW (torch.optim semantics): kind "adam" or "adamw" (decoupled weight decay; torch's
  ! default weight_decay is 0.01 for it). schedule as for descent_optimizer_create.
  integer(c_int) function descent_optimizer_create_adam(model, kind, lr, beta1, beta2, eps, &
      weight_decay, amsgrad, schedule, schedule_steps, factor, opt) result(status)
    type(c_ptr), intent(in) :: model
    character(*), intent(in) :: kind
    real(c_float), intent(in) :: lr, beta1, beta2, eps, weight_decay, factor
    logical, intent(in) :: amsgrad
    character(*), intent(in) :: schedule
    integer(c_int64_t), intent(in) :: schedule_steps
    type(c_ptr), intent(out) :: opt
    integer(c_int) :: a
    a = 0
    if (amsgrad) a = 1
    status = c_optimizer_create_adam(model, c_string(kind), lr, beta1, beta2, eps, weight_decay, &
      a, c_string(schedule), schedule_steps, factor, opt)
  end function

  ! Any optimizer by name with its options as text, e.g.
  !   status = descent_optimizer_create_from(model, "adamw", opt, options="lr=1e-3, weight_decay=0.01")
  ! kind "sgd", "adam" or "adamw"; options "name=value" pairs (see descent.h; default: torch's
  ! defaults); schedule "constant" (default), "step" or "cosine" with schedule_steps and factor.
  integer(c_int) function descent_optimizer_create_from(model, kind, opt, options, schedule, &
      schedule_steps, factor) result(status)
    type(c_ptr), intent(in) :: model
    character(*), intent(in) :: kind
    type(c_ptr), intent(out) :: opt
    character(*), intent(in), optional :: options, schedule
    integer(c_int64_t), intent(in), optional :: schedule_steps
    real(c_float), intent(in), optional :: factor
    character(:), allocatable :: o, s
    integer(c_int64_t) :: n
    real(c_float) :: f
    o = ""
    s = "constant"
    n = 0
    f = 0
    if (present(options)) o = options
    if (present(schedule)) s = schedule
    if (present(schedule_steps)) n = schedule_steps
    if (present(factor)) f = factor
    status = c_optimizer_create_from(model, c_string(kind), c_string(o), c_string(s), n, f, opt)
  end function

  ! The optimizer's kind: "sgd", "adam" or "adamw" ("" on failure).
  integer(c_int) function descent_optimizer_kind(opt, kind) result(status)
    type(c_ptr), intent(in) :: opt
    character(:), allocatable, intent(out) :: kind
    type(c_ptr) :: p
    status = c_optimizer_kind(opt, p)
    kind = ""
    if (status == DESCENT_OK) kind = f_string(p)
  end function

  ! Loads an IDX image file and its label file (raw or gzip); limit = 0 keeps all samples.
  integer(c_int) function descent_dataset_load_idx(images, labels, limit, data) result(status)
    character(*), intent(in) :: images, labels
    integer(c_int64_t), intent(in) :: limit
    type(c_ptr), intent(out) :: data
    status = c_dataset_load_idx(c_string(images), c_string(labels), limit, data)
  end function

  ! Copies samples first .. first + size(labels) - 1 (0-based first) into x(features, n) and
  ! labels(n), straight into the arrays' memory.
  integer(c_int) function descent_dataset_copy(data, first, x, labels) result(status)
    type(c_ptr), intent(in) :: data
    integer(c_int64_t), intent(in) :: first
    real(c_float), intent(inout), target, contiguous :: x(:, :)
    integer(c_int32_t), intent(inout), target, contiguous :: labels(:)
    call clear_local()
    if (size(x, 2) /= size(labels)) then
      status = shape_error("labels", size(labels), size(x, 2))
      return
    end if
    if (size(labels) == 0) then
      status = DESCENT_OK
      return
    end if
    status = c_dataset_copy(data, first, int(size(labels), c_int64_t), c_loc(x), &
      int(size(x, 1), c_int64_t), c_loc(labels))
  end function

  ! loss: "softmax_cross_entropy" ("ce"), "mse" or "sigmoid_bce" ("bce").
  integer(c_int) function descent_trainer_create(model, opt, loss, trainer) result(status)
    type(c_ptr), intent(in) :: model, opt
    character(*), intent(in) :: loss
    type(c_ptr), intent(out) :: trainer
    status = c_trainer_create(model, opt, c_string(loss), trainer)
  end function

  ! A data-parallel trainer over the ranks of comm (collective; see descent.h).
  integer(c_int) function descent_trainer_create_parallel(model, opt, loss, comm, trainer) &
      result(status)
    type(c_ptr), intent(in) :: model, opt
    character(*), intent(in) :: loss
    type(c_ptr), intent(in) :: comm
    type(c_ptr), intent(out) :: trainer
    status = c_trainer_create_parallel(model, opt, c_string(loss), comm, trainer)
  end function

  ! policy: "error" (a non-finite loss returns DESCENT_ERROR_NUMERIC, once) or "skip".
  integer(c_int) function descent_trainer_set_non_finite(trainer, policy) result(status)
    type(c_ptr), intent(in) :: trainer
    character(*), intent(in) :: policy
    status = c_trainer_set_non_finite(trainer, c_string(policy))
  end function

  ! A pointer to an array's first element, or null for an empty array.
  function first_float(a) result(p)
    real(c_float), intent(in), target, contiguous :: a(:, :)
    type(c_ptr) :: p
    p = c_null_ptr
    if (size(a) > 0) p = c_loc(a(1, 1))
  end function

  function first_label(a) result(p)
    integer(c_int32_t), intent(in), target, contiguous :: a(:)
    type(c_ptr) :: p
    p = c_null_ptr
    if (size(a) > 0) p = c_loc(a(1))
  end function

  integer(c_int) function trainer_step_labels(trainer, x, labels) result(status)
    type(c_ptr), intent(in) :: trainer
    real(c_float), intent(in), target, contiguous :: x(:, :)
    integer(c_int32_t), intent(in), target, contiguous :: labels(:)
    call clear_local()
    if (size(labels) /= size(x, 2)) then
      status = shape_error("labels", size(labels), size(x, 2))
      return
    end if
    status = descent_c_trainer_step(trainer, first_float(x), int(size(x, 2), c_int64_t), &
      int(size(x, 1), c_int64_t), int(size(x, 1), c_int64_t), first_label(labels), c_null_ptr, &
      0_c_int64_t, DESCENT_MEMORY_HOST)
  end function

  integer(c_int) function trainer_step_targets(trainer, x, targets) result(status)
    type(c_ptr), intent(in) :: trainer
    real(c_float), intent(in), target, contiguous :: x(:, :)
    real(c_float), intent(in), target, contiguous :: targets(:, :)
    call clear_local()
    if (size(targets, 2) /= size(x, 2)) then
      status = shape_error("targets", size(targets, 2), size(x, 2))
      return
    end if
    status = descent_c_trainer_step(trainer, first_float(x), int(size(x, 2), c_int64_t), &
      int(size(x, 1), c_int64_t), int(size(x, 1), c_int64_t), c_null_ptr, first_float(targets), &
      int(size(targets, 1), c_int64_t), DESCENT_MEMORY_HOST)
  end function

  integer(c_int) function trainer_step_targets_f64(trainer, x, targets) result(status)
    type(c_ptr), intent(in) :: trainer
    real(c_double), intent(in) :: x(:, :), targets(:, :)
    call clear_local()
    if (.not. fits_float(x, "x", status)) return
    if (.not. fits_float(targets, "targets", status)) return
    status = trainer_step_targets(trainer, real(x, c_float), real(targets, c_float))
  end function

  integer(c_int) function trainer_evaluate_labels(trainer, x, labels, loss, accuracy) &
      result(status)
    type(c_ptr), intent(in) :: trainer
    real(c_float), intent(in), target, contiguous :: x(:, :)
    integer(c_int32_t), intent(in), target, contiguous :: labels(:)
    real(c_double), intent(out) :: loss, accuracy
    call clear_local()
    if (size(labels) /= size(x, 2)) then
      status = shape_error("labels", size(labels), size(x, 2))
      return
    end if
    status = descent_c_trainer_evaluate(trainer, first_float(x), int(size(x, 2), c_int64_t), &
      int(size(x, 1), c_int64_t), int(size(x, 1), c_int64_t), first_label(labels), c_null_ptr, &
      0_c_int64_t, DESCENT_MEMORY_HOST, loss, accuracy)
  end function

  integer(c_int) function trainer_evaluate_targets(trainer, x, targets, loss, accuracy) &
      result(status)
    type(c_ptr), intent(in) :: trainer
    real(c_float), intent(in), target, contiguous :: x(:, :)
    real(c_float), intent(in), target, contiguous :: targets(:, :)
    real(c_double), intent(out) :: loss, accuracy
    call clear_local()
    if (size(targets, 2) /= size(x, 2)) then
      status = shape_error("targets", size(targets, 2), size(x, 2))
      return
    end if
    status = descent_c_trainer_evaluate(trainer, first_float(x), int(size(x, 2), c_int64_t), &
      int(size(x, 1), c_int64_t), int(size(x, 1), c_int64_t), c_null_ptr, first_float(targets), &
      int(size(targets, 1), c_int64_t), DESCENT_MEMORY_HOST, loss, accuracy)
  end function

  ! descent_trainer_fit (the generic above): trains on dataset handles for `epochs` epochs (test
  ! may be c_null_ptr), quietly, or with a callback, c_funloc of a bind(c) subroutine called after
  ! each epoch with a descent_epoch_stats and `user` (optional, c_null_ptr when absent). The
  ! callback is taken by value, so that c_funloc(on_epoch) as the argument needs no text
  ! relocation in a PIE; two specifics, since gfortran loses an optional value argument of a
  ! derived type (present() was false: the callback was never called).
  integer(c_int) function trainer_fit_quiet(trainer, train, test, batch_size, epochs, seed) &
      result(status)
    type(c_ptr), intent(in) :: trainer, train, test
    integer(c_int64_t), intent(in) :: batch_size, epochs, seed
    status = c_trainer_fit(trainer, train, test, batch_size, epochs, seed, c_null_funptr, &
      c_null_ptr)
  end function

  integer(c_int) function trainer_fit_reporting(trainer, train, test, batch_size, epochs, seed, &
      callback, user) result(status)
    type(c_ptr), intent(in) :: trainer, train, test
    integer(c_int64_t), intent(in) :: batch_size, epochs, seed
    type(c_funptr), value :: callback
    type(c_ptr), intent(in), optional :: user
    type(c_ptr) :: u
    u = c_null_ptr
    if (present(user)) u = user
    status = c_trainer_fit(trainer, train, test, batch_size, epochs, seed, callback, u)
  end function

  ! Saves the model (and the optimizer's state unless opt is c_null_ptr).
  integer(c_int) function descent_checkpoint_save(path, model, opt) result(status)
    character(*), intent(in) :: path
    type(c_ptr), intent(in) :: model, opt
    status = c_checkpoint_save(c_string(path), model, opt)
  end function

  integer(c_int) function descent_checkpoint_load(path, model, opt) result(status)
    character(*), intent(in) :: path
    type(c_ptr), intent(in) :: model, opt
    status = c_checkpoint_load(c_string(path), model, opt)
  end function

  ! Writes the model as safetensors, named as torch.nn.Sequential names its tensors (see
  ! descent.h). dtype: "fp32" (the default) or "bf16".
  integer(c_int) function descent_model_save_safetensors(model, path, dtype) result(status)
    type(c_ptr), intent(in) :: model
    character(*), intent(in) :: path
    character(*), intent(in), optional :: dtype
    if (present(dtype)) then
      status = c_model_save_safetensors(model, c_string(path), c_string(dtype))
    else
      status = c_model_save_safetensors(model, c_string(path), c_string("fp32"))
    end if
  end function

  ! A model with the architecture and parameters of a safetensors file.
  integer(c_int) function descent_model_load_safetensors(ctx, path, model) result(status)
    type(c_ptr), intent(in) :: ctx
    character(*), intent(in) :: path
    type(c_ptr), intent(out) :: model
    status = c_model_load_safetensors(ctx, c_string(path), model)
  end function

  ! Replaces the parameters of a model of the same architecture; nothing changes on failure.
  integer(c_int) function descent_model_load_safetensors_into(model, path) result(status)
    type(c_ptr), intent(in) :: model
    character(*), intent(in) :: path
    status = c_model_load_safetensors_into(model, c_string(path))
  end function

  ! Writes the model as ONNX (opset 17). head: "none" (the default), "softmax" or "sigmoid".
  integer(c_int) function descent_model_save_onnx(model, path, head) result(status)
    type(c_ptr), intent(in) :: model
    character(*), intent(in) :: path
    character(*), intent(in), optional :: head
    if (present(head)) then
      status = c_model_save_onnx(model, c_string(path), c_string(head))
    else
      status = c_model_save_onnx(model, c_string(path), c_string("none"))
    end if
  end function

  ! A context for this rank of an MPI job (comm: the integer handle, comm%MPI_VAL with mpi_f08),
  ! placed among the ranks of its node: kind "cuda" a GPU per rank, "cpu" its share of the
  ! node's cores, "auto" (the default) a GPU where the node has one. local_rank, when present,
  ! receives the rank's index on its node. Collective over comm.
  integer(c_int) function descent_context_create_for_rank(comm, ctx, kind, local_rank) &
      result(status)
    integer, intent(in) :: comm
    type(c_ptr), intent(out) :: ctx
    character(*), intent(in), optional :: kind
    integer, intent(out), optional :: local_rank
    integer(c_int) :: local
    if (present(kind)) then
      status = c_context_create_for_rank(int(comm, c_int), c_string(kind), local, ctx)
    else
      status = c_context_create_for_rank(int(comm, c_int), c_string("auto"), local, ctx)
    end if
    if (present(local_rank)) local_rank = int(local)
  end function

  ! ---------------------------------------------------------------- losses on derivatives
  ! A training step built term by term (see descent.h): descent_model_mse_gradient writes the
  ! model's gradients, descent_jet_pde_residual adds its own, descent_optimizer_step applies
  ! them. Arrays are host memory, one sample a column: x(inputs, n), targets(outputs, n).

  ! Gradients of weight * mean((model(x) - targets)**2), written into the model's gradient
  ! buffer; loss, when present, receives the weighted value (and the call waits for it).
  integer(c_int) function descent_model_mse_gradient(model, x, targets, weight, loss) &
      result(status)
    type(c_ptr), intent(in) :: model
    real(c_float), intent(in), target, contiguous :: x(:, :), targets(:, :)
    real(c_float), intent(in), optional :: weight
    real(c_double), intent(out), optional, target :: loss
    real(c_float) :: w
    type(c_ptr) :: loss_ptr
    call clear_local()
    w = 1.0_c_float
    if (present(weight)) w = weight
    loss_ptr = c_null_ptr
    if (present(loss)) loss_ptr = c_loc(loss)
    if (size(x) == 0 .or. size(targets) == 0) then
      status = c_model_mse_gradient(model, c_null_ptr, int(size(x, 2), c_int64_t), &
        int(size(x, 1), c_int64_t), int(size(x, 1), c_int64_t), c_null_ptr, &
        int(size(targets, 1), c_int64_t), DESCENT_MEMORY_HOST, w, loss_ptr)
      return
    end if
    if (size(targets, 2) /= size(x, 2)) then
      status = shape_error("targets", size(targets, 2), size(x, 2))
      return
    end if
    status = c_model_mse_gradient(model, c_loc(x), int(size(x, 2), c_int64_t), &
      int(size(x, 1), c_int64_t), int(size(x, 1), c_int64_t), c_loc(targets), &
      int(size(targets, 1), c_int64_t), DESCENT_MEMORY_HOST, w, loss_ptr)
  end function

  ! A forward jet of the model: vectors(inputs, K) the directions (absent: the unit vectors, and
  ! the second-order sum with all weights 1 is the Laplacian), weights(K) (absent: all 1),
  ! second_order (absent: .true.).
  integer(c_int) function descent_jet_create(model, jet, vectors, weights, second_order) &
      result(status)
    type(c_ptr), intent(in) :: model
    type(c_ptr), intent(out) :: jet
    real(c_float), intent(in), optional, target, contiguous :: vectors(:, :), weights(:)
    logical, intent(in), optional :: second_order
    type(c_ptr) :: v, w
    integer(c_int64_t) :: k, inputs, outputs
    integer(c_int) :: second
    call clear_local()
    v = c_null_ptr
    w = c_null_ptr
    k = 0
    second = 1
    if (present(second_order)) then
      if (.not. second_order) second = 0
    end if
    if (present(vectors)) then
      ! The C side reads K * inputs floats: each column must hold the model's inputs.
      status = c_model_shape(model, inputs, outputs)
      if (status /= DESCENT_OK) then
        jet = c_null_ptr
        return
      end if
      if (size(vectors, 1) /= inputs) then
        local_error = "vectors: each column must hold the model's inputs"
        status = DESCENT_ERROR_SHAPE
        jet = c_null_ptr
        return
      end if
      k = int(size(vectors, 2), c_int64_t)
      if (size(vectors) > 0) v = c_loc(vectors)
    end if
    if (present(weights)) then
      if (present(vectors)) then
        k = int(size(vectors, 2), c_int64_t)
      else
        status = c_model_shape(model, inputs, outputs)
        if (status /= DESCENT_OK) then
          jet = c_null_ptr
          return
        end if
        k = inputs
      end if
      if (size(weights) /= k) then
        status = count_error("weights", size(weights), int(k))
        jet = c_null_ptr
        return
      end if
      if (.not. present(vectors)) k = 0
      if (size(weights) > 0) w = c_loc(weights)
    end if
    status = c_jet_create(model, k, v, w, second, jet)
  end function

  ! Queues the jet forward pass of x(inputs, n).
  integer(c_int) function descent_jet_forward(jet, x) result(status)
    type(c_ptr), intent(in) :: jet
    real(c_float), intent(in), target, contiguous :: x(:, :)
    call clear_local()
    if (size(x) == 0) then
      status = c_jet_forward(jet, c_null_ptr, int(size(x, 2), c_int64_t), &
        int(size(x, 1), c_int64_t), int(size(x, 1), c_int64_t), DESCENT_MEMORY_HOST)
      return
    end if
    status = c_jet_forward(jet, c_loc(x), int(size(x, 2), c_int64_t), int(size(x, 1), c_int64_t), &
      int(size(x, 1), c_int64_t), DESCENT_MEMORY_HOST)
  end function

  ! out(outputs, n) = one block of the last forward pass: which = 0 the value, 1 .. K the
  ! derivative along direction which, K + 1 the second-order sum.
  integer(c_int) function descent_jet_read(jet, which, out) result(status)
    type(c_ptr), intent(in) :: jet
    integer, intent(in) :: which
    real(c_float), intent(inout), target, contiguous :: out(:, :)
    call clear_local()
    if (size(out) == 0) then
      status = c_jet_read(jet, int(which, c_int64_t), c_null_ptr, int(size(out, 2), c_int64_t), &
        int(size(out, 1), c_int64_t), DESCENT_MEMORY_HOST)
      return
    end if
    status = c_jet_read(jet, int(which, c_int64_t), c_loc(out), int(size(out, 2), c_int64_t), &
      int(size(out, 1), c_int64_t), DESCENT_MEMORY_HOST)
  end function

  ! The residual r = a u + sum b_k du_k + c L + sum d_k u du_k - source at the last forward
  ! pass's points, and the gradients of weight * mean(r**2), added to the model's gradient
  ! buffer (accumulate absent or .true.) or written into it. b(K), d(K), source(outputs, n):
  ! absent for 0. loss, when present, receives weight * mean(r**2) (and the call waits for it).
  integer(c_int) function descent_jet_pde_residual(jet, a, c, b, d, source, weight, accumulate, &
      loss) result(status)
    type(c_ptr), intent(in) :: jet
    real(c_float), intent(in) :: a, c
    real(c_float), intent(in), optional, target, contiguous :: b(:), d(:), source(:, :)
    real(c_float), intent(in), optional :: weight
    logical, intent(in), optional :: accumulate
    real(c_double), intent(out), optional, target :: loss
    type(residual_args) :: r
    call clear_local()
    status = residual_arguments(jet, b, d, source, weight, accumulate, loss, r)
    if (status /= DESCENT_OK) return
    status = c_jet_pde_residual(jet, a, r%b, c, r%d, r%source, r%rows, r%ld, DESCENT_MEMORY_HOST, &
      r%weight, r%accumulate, r%loss)
  end function

  ! descent_jet_forward(jet, x) and descent_jet_pde_residual(jet, ...) in one call, the same
  ! results to rounding; on the CPU several times faster (the whole network over slices of points
  ! held in cache). source(outputs, n) has x's n points. The jet's outputs can be read after it
  ! (descent_jet_read); a descent_jet_pde_residual needs a descent_jet_forward first.
  integer(c_int) function descent_jet_pde_residual_step(jet, x, a, c, b, d, source, weight, &
      accumulate, loss) result(status)
    type(c_ptr), intent(in) :: jet
    real(c_float), intent(in), target, contiguous :: x(:, :)
    real(c_float), intent(in) :: a, c
    real(c_float), intent(in), optional, target, contiguous :: b(:), d(:), source(:, :)
    real(c_float), intent(in), optional :: weight
    logical, intent(in), optional :: accumulate
    real(c_double), intent(out), optional, target :: loss
    type(residual_args) :: r
    type(c_ptr) :: px
    call clear_local()
    status = residual_arguments(jet, b, d, source, weight, accumulate, loss, r)
    if (status /= DESCENT_OK) return
    if (present(source)) then
      if (size(source, 2) /= size(x, 2)) then
        status = x_mismatch("source", size(source, 2), "points", size(x, 2), DESCENT_ERROR_ARGUMENT)
        return
      end if
    end if
    px = c_null_ptr
    if (size(x) > 0) px = c_loc(x)
    status = c_jet_pde_residual_step(jet, px, int(size(x, 2), c_int64_t), &
      int(size(x, 1), c_int64_t), int(size(x, 1), c_int64_t), a, r%b, c, r%d, r%source, r%ld, &
      DESCENT_MEMORY_HOST, r%weight, r%accumulate, r%loss)
  end function

  ! The optional arguments of the two residual calls as the C API takes them; not DESCENT_OK
  ! for b or d of other than one value per direction.
  integer(c_int) function residual_arguments(jet, b, d, source, weight, accumulate, loss, r) &
      result(status)
    type(c_ptr), intent(in) :: jet
    real(c_float), intent(in), optional, target, contiguous :: b(:), d(:), source(:, :)
    real(c_float), intent(in), optional :: weight
    logical, intent(in), optional :: accumulate
    real(c_double), intent(out), optional, target :: loss
    type(residual_args), intent(out) :: r
    integer(c_int64_t) :: k
    ! b and d are read for every direction: their sizes are checked here, where they are known.
    status = c_jet_directions(jet, k)
    if (status /= DESCENT_OK) return
    if (present(b)) then
      if (size(b) /= k) then
        status = count_error("b", size(b), int(k))
        return
      end if
      if (size(b) > 0) r%b = c_loc(b)
    end if
    if (present(d)) then
      if (size(d) /= k) then
        status = count_error("d", size(d), int(k))
        return
      end if
      if (size(d) > 0) r%d = c_loc(d)
    end if
    if (present(source)) then
      if (size(source) > 0) r%source = c_loc(source)
      r%ld = int(size(source, 1), c_int64_t)
      r%rows = int(size(source, 2), c_int64_t)
    end if
    if (present(weight)) r%weight = weight
    if (present(accumulate)) then
      if (.not. accumulate) r%accumulate = 0
    end if
    if (present(loss)) r%loss = c_loc(loss)
  end function

  ! ---------------------------------------------------------------- float64 on the CPU
  ! A jet's losses evaluated in float64 for float64 parameters you hold (params(n), the model's
  ! flat layout), their gradients into grad(n), and L-BFGS in float64 over them (descent.h says
  ! why: float32 L-BFGS stalls at the rounding of its loss on stiff problems). Host arrays, one
  ! point a column: x(inputs, n), source and targets (outputs, n).

  ! The model's parameters as float64, and back (rounded to floats).
  integer(c_int) function descent_model_get_params_f64(model, params) result(status)
    type(c_ptr), intent(in) :: model
    real(c_double), intent(out), target, contiguous :: params(:)
    type(c_ptr) :: p
    call clear_local()
    p = c_null_ptr
    if (size(params) > 0) p = c_loc(params)
    status = c_model_get_params_f64(model, p, int(size(params), c_int64_t))
  end function

  integer(c_int) function descent_model_set_params_f64(model, params) result(status)
    type(c_ptr), intent(in) :: model
    real(c_double), intent(in), target, contiguous :: params(:)
    type(c_ptr) :: p
    call clear_local()
    p = c_null_ptr
    if (size(params) > 0) p = c_loc(params)
    status = c_model_set_params_f64(model, p, int(size(params), c_int64_t))
  end function

  ! weight * mean(r**2) of the residual r = a u + sum b_k du_k + c L + sum d_k u du_k - f at the
  ! points x, in float64 for params; its gradient added to grad (accumulate absent or .true.) or
  ! written to it; loss receives the value.
  integer(c_int) function descent_jet_pde_residual_step_f64(jet, params, x, a, c, grad, b, d, &
      source, weight, accumulate, loss) result(status)
    type(c_ptr), intent(in) :: jet
    real(c_double), intent(in), target, contiguous :: params(:), x(:, :)
    real(c_float), intent(in) :: a, c
    real(c_double), intent(inout), target, contiguous :: grad(:)
    real(c_float), intent(in), optional, target, contiguous :: b(:), d(:)
    real(c_double), intent(in), optional, target, contiguous :: source(:, :)
    real(c_double), intent(in), optional :: weight
    logical, intent(in), optional :: accumulate
    real(c_double), intent(out), optional, target :: loss
    type(residual_args) :: r
    type(c_ptr) :: pp, px, pg, ps
    integer(c_int64_t) :: ld
    real(c_double) :: w
    call clear_local()
    status = residual_arguments(jet, b, d, loss=loss, accumulate=accumulate, r=r)
    if (status /= DESCENT_OK) return
    ps = c_null_ptr
    ld = 0
    if (present(source)) then
      if (size(source, 2) /= size(x, 2)) then
        status = x_mismatch("source", size(source, 2), "points", size(x, 2), DESCENT_ERROR_ARGUMENT)
        return
      end if
      if (size(source) > 0) ps = c_loc(source)
      ld = int(size(source, 1), c_int64_t)
    end if
    w = 1.0_c_double
    if (present(weight)) w = weight
    call f64_pointers(params, x, grad, pp, px, pg)
    status = c_jet_pde_residual_step_f64(jet, pp, int(size(params), c_int64_t), px, &
      int(size(x, 2), c_int64_t), int(size(x, 1), c_int64_t), int(size(x, 1), c_int64_t), a, &
      r%b, c, r%d, ps, ld, w, r%accumulate, pg, r%loss)
  end function

  ! weight * mean((u - targets)**2) in float64 for params, its gradient into grad as above
  ! (accumulate absent or .true.: added).
  integer(c_int) function descent_jet_mse_step_f64(jet, params, x, targets, grad, weight, &
      accumulate, loss) result(status)
    type(c_ptr), intent(in) :: jet
    real(c_double), intent(in), target, contiguous :: params(:), x(:, :), targets(:, :)
    real(c_double), intent(inout), target, contiguous :: grad(:)
    real(c_double), intent(in), optional :: weight
    logical, intent(in), optional :: accumulate
    real(c_double), intent(out), optional, target :: loss
    type(c_ptr) :: pp, px, pg, pt, pl
    real(c_double) :: w
    integer(c_int) :: acc
    call clear_local()
    if (size(targets, 2) /= size(x, 2)) then
      status = shape_error("targets", size(targets, 2), size(x, 2))
      return
    end if
    w = 1.0_c_double
    if (present(weight)) w = weight
    acc = 1
    if (present(accumulate)) then
      if (.not. accumulate) acc = 0
    end if
    pl = c_null_ptr
    if (present(loss)) pl = c_loc(loss)
    pt = c_null_ptr
    if (size(targets) > 0) pt = c_loc(targets)
    call f64_pointers(params, x, grad, pp, px, pg)
    status = c_jet_mse_step_f64(jet, pp, int(size(params), c_int64_t), px, &
      int(size(x, 2), c_int64_t), int(size(x, 1), c_int64_t), int(size(x, 1), c_int64_t), pt, &
      int(size(targets, 1), c_int64_t), w, acc, pg, pl)
  end function

  ! The C pointers of the float64 calls' arrays (NULL for an empty one, which C refuses by name).
  subroutine f64_pointers(params, x, grad, pp, px, pg)
    real(c_double), intent(in), target, contiguous :: params(:), x(:, :), grad(:)
    type(c_ptr), intent(out) :: pp, px, pg
    pp = c_null_ptr
    px = c_null_ptr
    pg = c_null_ptr
    if (size(params) > 0) pp = c_loc(params)
    if (size(x) > 0) px = c_loc(x)
    if (size(grad) > 0) pg = c_loc(grad)
  end subroutine

  ! L-BFGS in float64; options as descent_optimizer_create_from's for "lbfgs" (absent: defaults).
  integer(c_int) function descent_lbfgs_f64_create(opt, options) result(status)
    type(c_ptr), intent(out) :: opt
    character(*), intent(in), optional :: options
    character(:), allocatable :: o
    o = ""
    if (present(options)) o = options
    status = c_lbfgs_f64_create(c_string(o), opt)
  end function

  ! One step from x (updated to the last accepted point), calling evaluate once or more:
  !   integer(c_int) function evaluate(user, x, grad, n, loss) bind(c)
  !     type(c_ptr), value :: user
  !     integer(c_int64_t), value :: n
  !     real(c_double), intent(in) :: x(n)
  !     real(c_double), intent(out) :: grad(n)
  !     real(c_double), intent(out) :: loss
  ! returning DESCENT_OK (any other status ends the step, which then changes nothing), passed as
  ! c_funloc(evaluate). first_loss receives the loss of the step's first evaluation.
  integer(c_int) function descent_lbfgs_f64_step(opt, x, evaluate, user, first_loss) &
      result(status)
    type(c_ptr), intent(in) :: opt
    real(c_double), intent(inout), target, contiguous :: x(:)
    type(c_funptr), intent(in), value :: evaluate
    type(c_ptr), intent(in), optional :: user
    real(c_double), intent(out), optional, target :: first_loss
    type(c_ptr) :: pu, pl, px
    call clear_local()
    pu = c_null_ptr
    if (present(user)) pu = user
    pl = c_null_ptr
    if (present(first_loss)) pl = c_loc(first_loss)
    px = c_null_ptr
    if (size(x) > 0) px = c_loc(x)
    status = c_lbfgs_f64_step(opt, px, int(size(x), c_int64_t), evaluate, pu, pl)
  end function

  ! Iterations and evaluations so far, and why the last step stopped.
  integer(c_int) function descent_lbfgs_f64_progress(opt, iterations, evaluations, stop_reason) &
      result(status)
    type(c_ptr), intent(in) :: opt
    integer(c_int64_t), intent(out) :: iterations, evaluations
    character(:), allocatable, intent(out), optional :: stop_reason
    type(c_ptr) :: p
    status = c_lbfgs_f64_progress(opt, iterations, evaluations, p)
    if (present(stop_reason)) then
      stop_reason = ""
      if (status == DESCENT_OK) stop_reason = f_string(p)
    end if
  end function

  ! What the optimizer minimises, as text (trailing blanks dropped): descent_lbfgs_f64_save stores
  ! it and descent_lbfgs_f64_load refuses (DESCENT_DATA) a state saved with another.
  integer(c_int) function descent_lbfgs_f64_set_problem(opt, problem) result(status)
    type(c_ptr), intent(in) :: opt
    character(*), intent(in) :: problem
    call clear_local()
    status = c_lbfgs_f64_set_problem(opt, c_string(problem))
  end function

  ! Writes x and the optimizer's whole float64 state to path (a failure leaves a previous file
  ! intact); descent_lbfgs_f64_load reads them back into x and the optimizer, which then goes on
  ! bit for bit. A load that fails changes neither.
  integer(c_int) function descent_lbfgs_f64_save(opt, path, x) result(status)
    type(c_ptr), intent(in) :: opt
    character(*), intent(in) :: path
    real(c_double), intent(in), target, contiguous :: x(:)
    type(c_ptr) :: px
    call clear_local()
    px = c_null_ptr
    if (size(x) > 0) px = c_loc(x)
    status = c_lbfgs_f64_save(opt, c_string(path), px, int(size(x), c_int64_t))
  end function

  integer(c_int) function descent_lbfgs_f64_load(opt, path, x) result(status)
    type(c_ptr), intent(in) :: opt
    character(*), intent(in) :: path
    real(c_double), intent(inout), target, contiguous :: x(:)
    type(c_ptr) :: px
    call clear_local()
    px = c_null_ptr
    if (size(x) > 0) px = c_loc(x)
    status = c_lbfgs_f64_load(opt, c_string(path), px, int(size(x), c_int64_t))
  end function

end module descent
