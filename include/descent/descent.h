/* descent's C API: opaque handles over the C++ library, status codes, no exceptions.
 *
 * Every function that can fail returns a descent_status. DESCENT_OK (0) means success; any other
 * value names the kind of failure, and descent_last_error() returns a message (per thread) that
 * names the argument, the value found and the value expected. No C++ exception crosses this API.
 * A NULL handle, or NULL where a function must read or write through a pointer, is
 * DESCENT_ERROR_ARGUMENT with a message naming that argument (this holds for every function
 * below, whether or not its comment repeats it).
 *
 * Memory layout: matrices are row-major with one sample per row, as in the C++ API: a batch of
 * inputs x is [rows, cols] with element (r, c) at x[r * ld + c], ld >= cols. (A Fortran array
 * x(features, batch) has exactly this layout with rows = batch, cols = features, ld = the
 * array's first extent: see fortran/descent.f90.)
 *
 * Lifetimes: a context must outlive the models and communicators made on it; a model must
 * outlive its optimizer and trainer; an optimizer must outlive its trainer. Datasets are
 * independent host objects.
 * Destroy functions accept NULL. Handles are not thread-safe: use a handle (and the handles made
 * from it) from one thread at a time.
 *
 * This header is C99 and C++ compatible and includes only <stddef.h>, <stdint.h> and
 * descent/export.h (symbol visibility macros). */
#ifndef DESCENT_DESCENT_H
#define DESCENT_DESCENT_H

#include <stddef.h>
#include <stdint.h>

#include "descent/export.h"

DESCENT_API_BEGIN

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ status and errors */

/* What a call returned. The values are stable (the Fortran module mirrors them). */
typedef enum descent_status {
  DESCENT_OK = 0,
  DESCENT_ERROR_SHAPE = 1,         /* a matrix or vector has the wrong shape */
  DESCENT_ERROR_ARGUMENT = 2,      /* an invalid argument: NULL handle, bad name, bad value */
  DESCENT_ERROR_DATA = 3,          /* malformed data or checkpoint contents */
  DESCENT_ERROR_DEVICE = 4,        /* a missing or unusable device, memory on the wrong device */
  DESCENT_ERROR_OUT_OF_MEMORY = 5, /* a host or device allocation failed */
  DESCENT_ERROR_IO = 6,            /* a file could not be read or written */
  DESCENT_ERROR_NUMERIC = 7,       /* a loss became NaN or infinite */
  DESCENT_ERROR_UNKNOWN = 8,       /* anything else (a bug: please report it) */
  DESCENT_STATUS_INT_ = -0x7fffffff - 1 /* not a status: makes every int a valid value */
} descent_status;

/* Where the memory behind a user pointer lives. HOST: ordinary host memory (pageable or pinned).
 * DEVICE: memory on the context's CUDA device (cudaMalloc or managed); on a cpu context DEVICE is
 * rejected with DESCENT_ERROR_DEVICE. */
typedef enum descent_memory {
  DESCENT_MEMORY_HOST = 0,
  DESCENT_MEMORY_DEVICE = 1,
  DESCENT_MEMORY_INT_ = -0x7fffffff - 1 /* not a memory kind: makes every int a valid value */
} descent_memory;

/* The message of the latest failed call on the calling thread, "" when the latest call
 * succeeded. Every function that returns a descent_status clears it on entry. The pointer stays
 * valid until the next descent call on this thread. Never NULL. */
const char* descent_last_error(void);

/* A constant name of a status ("DESCENT_OK", "DESCENT_ERROR_SHAPE", ...; "unknown status" for
 * a value outside the enum). Never NULL. */
const char* descent_status_string(descent_status status);

/* The library version, "MAJOR.MINOR.PATCH". Never NULL. */
const char* descent_version(void);

/* 1 when descent was built with its CUDA backend, else 0. */
int descent_built_with_cuda(void);

/* Number of usable CUDA devices (0 without CUDA or when the driver reports an error). */
int descent_cuda_device_count(void);

/* 1 when descent was built with MPI (data-parallel training: descent_communicator_create_mpi),
 * else 0. */
int descent_built_with_mpi(void);

/* ------------------------------------------------------------------ context */

/* A device ("cpu" or "cuda:N") with its stream, library handles and CPU thread count. */
typedef struct descent_context descent_context;

/* Creates a context on `device`: "cpu", "cuda" (= "cuda:0") or "cuda:N". threads: CPU threads
 * for the cpu backend, 0 = all available. Errors: ARGUMENT for a NULL `out`, a NULL or unknown
 * device name or threads < 0; DEVICE when the CUDA device cannot be used (or descent was built
 * without CUDA). On failure *out is set to NULL. */
descent_status descent_context_create(const char* device, int threads, descent_context** out);

/* Destroys a context (NULL is ignored). Destroy everything made on it first. */
void descent_context_destroy(descent_context* ctx);

/* The context's device as text ("cpu", "cuda:0"); owned by the context. ARGUMENT for NULL
 * arguments. */
descent_status descent_context_device(const descent_context* ctx, const char** name);

/* Runs all later work on a user cudaStream_t, passed as `void*` (NULL: back to the context's own
 * stream). Work already queued is not moved. ARGUMENT for a NULL ctx, or a non-NULL stream on a
 * cpu context. */
descent_status descent_context_set_stream(descent_context* ctx, void* stream);

/* The cudaStream_t (as void*) work is queued on: the user's stream after set_stream, else the
 * context's own; NULL on a cpu context. ARGUMENT for NULL arguments. */
descent_status descent_context_get_stream(const descent_context* ctx, void** stream);

/* Waits until all work queued on the context's stream is done (a no-op on the cpu). */
descent_status descent_context_synchronize(const descent_context* ctx);

/* ------------------------------------------------------------------ model */

/* A multi-layer perceptron: layer l maps widths[l] inputs to widths[l+1] outputs; hidden layers
 * use one activation, the last layer is the identity (it produces logits). All parameters are in
 * one flat float buffer on the context's device: layer 0's W [out, in] row-major, its b [out],
 * then layer 1's W and b, and so on. */
typedef struct descent_model descent_model;

/* Creates a model on ctx. widths: n_widths >= 2 positive layer widths (inputs first, outputs
 * last). activation: "identity", "relu", "sigmoid", "tanh" or "gelu" for the hidden layers.
 * Parameters are drawn as torch.nn.Linear does, from a counter-based RNG seeded with `seed`: the
 * same seed gives the same weights on every device. Errors: ARGUMENT for NULL arguments, an
 * unknown activation or n_widths < 2; SHAPE for a width < 1; OUT_OF_MEMORY. */
descent_status descent_model_create(descent_context* ctx, const int64_t* widths, int n_widths,
                                    const char* activation, uint64_t seed, descent_model** out);

/* Creates a model with the architecture and parameters of a checkpoint file (see
 * descent_checkpoint_save). Errors: IO for a missing or unreadable file, DATA for a corrupt one. */
descent_status descent_model_load(descent_context* ctx, const char* path, descent_model** out);

/* Destroys a model (NULL is ignored). Destroy its optimizer and trainer first. */
void descent_model_destroy(descent_model* model);

/* Number of inputs (widths[0]) and outputs (the last width). Either pointer may be NULL;
 * ARGUMENT for a NULL model. */
descent_status descent_model_shape(const descent_model* model, int64_t* inputs, int64_t* outputs);

/* Number of floats in the flat parameter buffer. */
descent_status descent_model_parameter_count(const descent_model* model, int64_t* count);

/* Copies the flat parameters to host memory `params` of `count` floats (count must equal
 * descent_model_parameter_count: else SHAPE). */
descent_status descent_model_get_params(const descent_model* model, float* params, int64_t count);

/* Replaces the parameters with `count` floats of host memory (SHAPE unless count equals
 * descent_model_parameter_count). */
descent_status descent_model_set_params(descent_model* model, const float* params, int64_t count);

/* Scaling kept with the model and in its checkpoints, so that it answers in the caller's units:
 * the network sees (x - input_mean) / input_scale (one value per input) and its output y' means
 * y' * output_scale + output_mean (one per output). Either pair may be NULL (no scaling on that
 * side; all NULL: none). descent_model_predict applies it; training steps work in the network's
 * units: scale the training data with descent_model_scale or descent_dataset_standardize.
 * Errors: ARGUMENT for a NULL model, a mean without its scale, a value that is not finite, a
 * scale that is not > 0. */
descent_status descent_model_set_scaling(descent_model* model, const float* input_mean,
                                        const float* input_scale, const float* output_mean,
                                        const float* output_scale);

/* Applies the model's scaling in place to the caller's x [rows, inputs] (leading dimension ld_x)
 * and, when not NULL, targets [rows, outputs] (ld_targets): the data to train it on. Host
 * memory. Errors: ARGUMENT for NULL model or x, rows < 1, leading dimensions too small. */
descent_status descent_model_scale(const descent_model* model, float* x, int64_t rows,
                                   int64_t ld_x, float* targets, int64_t ld_targets);

/* Forward pass: out[r * ld_out + c] = model(x row r)[c] for r < rows, c < outputs.
 * x: [rows, cols] with leading dimension ld_x (cols must equal the model's inputs); out:
 * [rows, outputs] with leading dimension ld_out. Both pointers live in `memory` (host, or the
 * context's device). Returns when `out` is written. Errors: ARGUMENT for NULL pointers, rows < 1
 * or ld < cols; SHAPE for a width that does not match the model; DEVICE for device memory on a
 * cpu context. */
descent_status descent_model_predict(descent_model* model, const float* x, int64_t rows,
                                     int64_t cols, int64_t ld_x, float* out, int64_t ld_out,
                                     descent_memory memory);

/* ------------------------------------------------------------------ optimizer */

/* An optimizer over a model's parameters: SGD, Adam or AdamW with torch.optim's semantics, with
 * a learning-rate schedule over optimizer steps k = 0, 1, ... (the same for every kind):
 *   "constant": lr
 *   "step":     lr * factor^floor(k / schedule_steps)                    (torch StepLR)
 *   "cosine":   factor + (lr - factor) * (1 + cos(pi * min(k, schedule_steps) / schedule_steps)) /
 * 2 (torch CosineAnnealingLR, T_max = schedule_steps, eta_min = factor) */
typedef struct descent_optimizer descent_optimizer;

/* Creates SGD (torch.optim.SGD) on `model`. lr, momentum and weight_decay must be finite and
 * >= 0; nesterov (0 or 1) needs momentum > 0. schedule: NULL or "constant" (schedule_steps and
 * factor are ignored), "step" or "cosine" (schedule_steps >= 1; factor finite and >= 0).
 * Errors: ARGUMENT naming the bad option. On failure *out is set to NULL. */
descent_status descent_optimizer_create(descent_model* model, float lr, float momentum,
                                        float weight_decay, int nesterov, const char* schedule,
                                        int64_t schedule_steps, float factor,
                                        descent_optimizer** out);

/* Creates Adam or AdamW on `model`. kind: "adam" (torch.optim.Adam: weight decay added to the
 * gradient, L2) or "adamw" (torch.optim.AdamW: decoupled weight decay, p -= lr * weight_decay *
 * p; torch's default weight_decay is 0.01 for AdamW, 0 for Adam). lr, eps and weight_decay must
 * be finite and >= 0; beta1 and beta2 in [0, 1) (torch's defaults: lr 1e-3, betas 0.9 and 0.999,
 * eps 1e-8). amsgrad (0 or 1) keeps the running maximum of the second moment. schedule,
 * schedule_steps and factor: as for descent_optimizer_create. The state (exp_avg, exp_avg_sq,
 * max_exp_avg_sq with amsgrad, the update count) starts at zero and is saved and restored by
 * descent_checkpoint_save / descent_checkpoint_load. Errors: ARGUMENT naming the bad option
 * ("kind" for NULL or another name than "adam" and "adamw"). On failure *out is set to NULL. */
descent_status descent_optimizer_create_adam(descent_model* model, const char* kind, float lr,
                                             float beta1, float beta2, float eps,
                                             float weight_decay, int amsgrad, const char* schedule,
                                             int64_t schedule_steps, float factor,
                                             descent_optimizer** out);

/* Any optimizer by name, with its options written as text: kind "sgd", "adam", "adamw" or
 * "lbfgs" (stepped by descent_optimizer_lbfgs_step); options "name=value" pairs separated by
 * commas, e.g. "lr=0.05, momentum=0.9, nesterov=1" (flags: 0, 1, true or false; NULL or "": the
 * defaults, which are torch.optim's). The options of each kind: sgd lr, momentum, dampening,
 * weight_decay, nesterov, maximize; adam and adamw lr, beta1, beta2, eps, weight_decay, amsgrad,
 * maximize; lbfgs lr, max_iter, max_eval, tolerance_grad, tolerance_change, history_size (whole
 * numbers), strong_wolfe (torch.optim.LBFGS's options; strong_wolfe=1 is its
 * line_search_fn="strong_wolfe"). An unknown name, a number that is not finite or that overflows
 * or underflows to 0 as a float, or options torch would refuse are DESCENT_ERROR_ARGUMENT naming
 * the option. schedule, schedule_steps and factor: as for descent_optimizer_create. */
descent_status descent_optimizer_create_from(descent_model* model, const char* kind,
                                             const char* options, const char* schedule,
                                             int64_t schedule_steps, float factor,
                                             descent_optimizer** out);

/* Destroys an optimizer (NULL is ignored). Destroy its trainer first. */
void descent_optimizer_destroy(descent_optimizer* opt);

/* The optimizer's kind as a constant string: "sgd", "adam", "adamw" or "lbfgs". ARGUMENT for NULL
 * arguments. */
descent_status descent_optimizer_kind(const descent_optimizer* opt, const char** kind);

/* The learning rate the next step uses. */
descent_status descent_optimizer_lr(const descent_optimizer* opt, float* lr);

/* Optimizer steps taken so far (restored by descent_checkpoint_load). */
descent_status descent_optimizer_steps(const descent_optimizer* opt, int64_t* steps);

/* ------------------------------------------------------------------ datasets */

/* Samples in host memory (copied from the caller's, or read from files). */
typedef struct descent_dataset descent_dataset;

/* A classification dataset copied from host memory: features [rows, cols] with leading
 * dimension ld (>= cols), labels [rows] in [0, classes). Errors: ARGUMENT for NULL pointers,
 * rows or cols < 1, ld < cols or classes < 1; DATA for a label out of range or a non-finite
 * feature. */
descent_status descent_dataset_create_labels(const float* features, int64_t rows, int64_t cols,
                                             int64_t ld, const int32_t* labels, int64_t classes,
                                             descent_dataset** out);

/* A regression dataset copied from host memory: features [rows, cols] (leading dimension ld),
 * targets [rows, target_cols] (leading dimension ld_targets >= target_cols). Errors as above,
 * DATA for a non-finite target. */
descent_status descent_dataset_create_targets(const float* features, int64_t rows, int64_t cols,
                                              int64_t ld, const float* targets, int64_t target_cols,
                                              int64_t ld_targets, descent_dataset** out);

/* Loads an IDX image file and its label file (MNIST / Fashion-MNIST; raw or gzip). Pixels map to
 * [0, 1]. limit > 0 keeps the first `limit` samples; 0 keeps all. Errors: IO for a missing or
 * unreadable file; DATA for a corrupt one; ARGUMENT for limit < 0. */
descent_status descent_dataset_load_idx(const char* images_path, const char* labels_path,
                                        int64_t limit, descent_dataset** out);

/* Destroys a dataset (NULL is ignored). */
void descent_dataset_destroy(descent_dataset* data);

/* Standardises a float dataset for the model: every feature's mean and standard deviation (and,
 * for a regression dataset, every target's) become the model's scaling
 * (descent_model_set_scaling), and the dataset's values are scaled by it in place, ready to
 * train on. Errors: ARGUMENT for NULL arguments, an IDX (byte) dataset, or feature or target
 * counts that are not the model's; DATA when a scaled value would not be finite. Nothing changes
 * on an error. */
descent_status descent_dataset_standardize(descent_dataset* data, descent_model* model);

/* Samples, features per sample, and classes (0 for a regression dataset). Any output pointer
 * may be NULL. */
descent_status descent_dataset_shape(const descent_dataset* data, int64_t* rows, int64_t* features,
                                     int64_t* classes);

/* Copies samples [first, first + count) to host memory: their features, as a model sees them,
 * to features[i * ld + c] (ld >= the feature count), and their labels to labels[i]. Either
 * output may be NULL. Errors: ARGUMENT for a range outside the dataset, ld too small, or labels
 * requested from a regression dataset. */
descent_status descent_dataset_copy(const descent_dataset* data, int64_t first, int64_t count,
                                    float* features, int64_t ld, int32_t* labels);

/* ------------------------------------------------------------------ data parallel */

/* The ranks one model trains across, data parallel: each rank (an MPI process) holds a replica
 * of the model and its optimizer and trains on its shard of every global batch; the gradients
 * are summed over the ranks before each update. Made from an MPI communicator's Fortran handle
 * (an int), so this header needs no mpi.h.
 *
 * With a trainer made by descent_trainer_create_parallel:
 *  - descent_trainer_fit and descent_trainer_evaluate_dataset are collective (every rank calls
 *    them together, with the whole dataset): batch_size is the global batch, each rank trains
 *    and evaluates its shard of it (consecutive rows, sizes differing by at most one), and the
 *    losses, accuracies and epoch statistics are those of the whole job, the same on every rank;
 *  - descent_trainer_step is collective too: each rank passes its own rows (their numbers may
 *    differ from rank to rank, as in a domain decomposition), and the update is that of one
 *    batch of all the ranks' rows (the mean over their total, which the step sums);
 *  - descent_trainer_evaluate reads this rank's data only (not collective).
 * A collective call that fails on one rank alone (a bad argument, a missing file) leaves the
 * others waiting for it: end the job with descent_communicator_abort instead of returning.
 *
 * Destroy order: trainers, then the communicator (any order between them), then the context,
 * and all of them before MPI_Finalize (descent frees its duplicate of the MPI communicator). */
typedef struct descent_communicator descent_communicator;

/* The ranks of an MPI communicator, given by its Fortran handle: MPI_Comm_c2f(comm) in C, the
 * integer handle in Fortran (comm%MPI_VAL for a type(MPI_Comm)). Collective: every rank of the
 * communicator calls it, with a context of the same kind. descent duplicates the communicator,
 * so its messages never mix with the caller's. On a CUDA context the gradients are summed with
 * NCCL (one GPU per rank). MPI must be initialised by the caller. Errors: ARGUMENT for NULL
 * arguments or MPI_COMM_NULL; DEVICE when MPI is not initialised, when descent was built without
 * MPI (descent_built_with_mpi() == 0), or without NCCL for a CUDA context. On failure *out is set
 * to NULL. */
descent_status descent_communicator_create_mpi(descent_context* ctx, int fortran_comm,
                                               descent_communicator** out);

/* A context for this rank of an MPI job, placed among the ranks that share its node (collective
 * over the communicator, given as for descent_communicator_create_mpi): kind "cuda" a GPU per
 * rank, in turn over the node's GPUs; "cpu" the rank's share of the node's cores (the
 * OMP_NUM_THREADS setting when there is one, else the cores the launcher bound the rank to, else
 * the node's cores divided among its ranks); "auto" (or NULL) "cuda" where the node has a GPU,
 * else "cpu". *local_rank, when local_rank is not NULL, receives the rank's index on its node.
 * Errors: ARGUMENT for another kind or MPI_COMM_NULL; DEVICE when MPI is not initialised, when
 * descent was built without MPI, or for "cuda" on a node without a GPU. On failure *out is set
 * to NULL. */
descent_status descent_context_create_for_rank(int fortran_comm, const char* kind,
                                               int* local_rank, descent_context** out);

/* One process alone: rank 0 of 1, no MPI needed. A trainer made with it is an ordinary one, so
 * code written for several ranks also runs without MPI. */
descent_status descent_communicator_create_single(descent_communicator** out);

/* Destroys a communicator (NULL is ignored). */
void descent_communicator_destroy(descent_communicator* comm);

/* This process's rank (0-based) and the number of ranks. */
descent_status descent_communicator_rank(const descent_communicator* comm, int* rank);
descent_status descent_communicator_size(const descent_communicator* comm, int* size);

/* Sums the model's gradient buffer over the ranks in place (collective), for a step built term
 * by term (descent_model_mse_gradient, descent_jet_pde_residual) before descent_optimizer_step.
 * For each rank's share of a global batch of G points, give each term weight * rows / G: the
 * sums are then the gradients of the whole batch's mean. Errors: ARGUMENT for NULL handles;
 * DEVICE when the model's context is not one this communicator sums. */
descent_status descent_communicator_sum_gradients(const descent_communicator* comm,
                                                  descent_model* model);

/* Ends the whole job from this rank: writes "descent: rank R of N: message" (or "descent:
 * message" on one process) to standard error, then ends every rank with exit code `code`
 * (MPI_Abort). For an error one rank meets alone, so the other ranks are not left waiting in a
 * collective. message may be NULL (no message). Does not return, except for a NULL comm
 * (ARGUMENT). */
descent_status descent_communicator_abort(const descent_communicator* comm, const char* message,
                                          int code);

/* ------------------------------------------------------------------ trainer */

/* Trains one model with one optimizer on one loss: forward, loss, backward, update. */
typedef struct descent_trainer descent_trainer;

/* loss: "softmax_cross_entropy" (or "ce", "cross_entropy"; integer labels), "mse" or
 * "sigmoid_bce" ("bce") (float targets). The optimizer must have been made on `model`.
 * Errors: ARGUMENT for NULL arguments, an unknown loss or an optimizer of another model. */
descent_status descent_trainer_create(descent_model* model, descent_optimizer* opt,
                                      const char* loss, descent_trainer** out);

/* A data-parallel trainer over the ranks of `comm` (see "data parallel" below): every rank
 * calls it together, with a model of the same architecture and seed, the same optimizer options
 * and the same loss. Each step then sums the ranks' gradients, so the replicas stay identical.
 * The trainer keeps its own reference to the communicator: `comm` may be destroyed before it.
 * Errors: as descent_trainer_create, and ARGUMENT (on every rank) naming the ranks whose model,
 * optimizer or loss differ from rank 0's; DEVICE when comm cannot sum the model's memory (an MPI
 * communicator with a CUDA model). A single-process communicator gives an ordinary trainer. */
descent_status descent_trainer_create_parallel(descent_model* model, descent_optimizer* opt,
                                               const char* loss, const descent_communicator* comm,
                                               descent_trainer** out);

/* Destroys a trainer (NULL is ignored). */
void descent_trainer_destroy(descent_trainer* trainer);

/* One training step on a mini-batch of user memory: x [rows, cols] (leading dimension ld_x,
 * cols = the model's inputs) and either labels [rows] (softmax_cross_entropy; targets NULL) or
 * targets [rows, outputs] with leading dimension ld_targets (mse, sigmoid_bce; labels NULL).
 *
 * memory says where x, labels and targets live. HOST on a cpu context: used in place, no copy.
 * HOST on a CUDA context: copied to a staging buffer the trainer owns; the call returns once
 * the copy is done, so the caller may then reuse its memory. DEVICE (CUDA context only): used in
 * place; the memory must stay unchanged until the step has run on the context's stream (e.g.
 * until descent_context_synchronize or a call that reads results).
 *
 * On the GPU the step does not wait for the device; its loss accumulates on the device (see
 * descent_trainer_take_loss). Errors: ARGUMENT for NULL pointers, rows < 1, ld < cols, or
 * labels/targets that do not match the loss; SHAPE for cols or target widths that do not match
 * the model; DEVICE for device memory on a cpu context; NUMERIC for a non-finite loss (on the GPU
 * reported by the next call that reads results). With a data-parallel trainer, collective: this
 * rank's rows of the batch (any number >= 1 on each rank). */
descent_status descent_trainer_step(descent_trainer* trainer, const float* x, int64_t rows,
                                    int64_t cols, int64_t ld_x, const int32_t* labels,
                                    const float* targets, int64_t ld_targets,
                                    descent_memory memory);

/* Mean training loss over the samples of the steps since the previous call (NaN when there were
 * none); waits for the device. NUMERIC when a pending step's loss was not finite. */
descent_status descent_trainer_take_loss(descent_trainer* trainer, double* loss);

/* What a step whose loss is NaN or infinite does; its update is skipped either way and the step
 * counts as taken. policy "error" (the default): that step (on the GPU, the next call that reads
 * results) returns NUMERIC, once; "skip": it is counted and training goes on. Applies to the steps
 * from now on. Errors: ARGUMENT for a NULL trainer or another policy. */
descent_status descent_trainer_set_non_finite(descent_trainer* trainer, const char* policy);

/* Gradient clipping by global norm (torch.nn.utils.clip_grad_norm_) before every update, for the
 * steps from now on: max_norm 0 turns it off (the default), max_norm > 0 scales the gradients by
 * min(1, max_norm / (norm + 1e-6)), where norm is the 2-norm (norm_type 2) or the largest
 * magnitude (norm_type INFINITY, from <math.h>) of all the model's gradients together. norm_type
 * is ignored when max_norm is 0. The norm and the scale stay on the device (a captured CUDA
 * graph clips too). Errors: ARGUMENT for a NULL trainer, a negative, NaN or infinite max_norm
 * ("max_norm"), or another norm_type ("norm_type"). */
descent_status descent_trainer_set_clip_grad_norm(descent_trainer* trainer, float max_norm,
                                                  float norm_type);

/* The gradient norm (of descent_trainer_set_clip_grad_norm's norm_type, before clipping) of the
 * latest step taken with clipping on; NaN when clipping is off or no step has been clipped yet.
 * Waits for the device. ARGUMENT for NULL arguments. */
descent_status descent_trainer_last_grad_norm(descent_trainer* trainer, float* norm);

/* Steps skipped so far for a non-finite loss (under either policy); waits for the device. */
descent_status descent_trainer_skipped_steps(descent_trainer* trainer, int64_t* skipped);

/* Mean loss and accuracy of the model on user memory laid out as for descent_trainer_step (any
 * number of rows; evaluated in batches of up to 1024). accuracy: the fraction of rows whose
 * arg-max logit is the label (softmax_cross_entropy), of outputs whose sign matches the 0/1
 * target (sigmoid_bce), NaN for mse. The data is first copied into a temporary dataset (from the
 * device when it lives there), so evaluation is not meant for the inner loop. Either output may
 * be NULL. Errors as for descent_trainer_step, and DATA for a label out of
 * range. */
descent_status descent_trainer_evaluate(descent_trainer* trainer, const float* x, int64_t rows,
                                        int64_t cols, int64_t ld_x, const int32_t* labels,
                                        const float* targets, int64_t ld_targets,
                                        descent_memory memory, double* loss, double* accuracy);

/* Mean loss and accuracy on a dataset, in batches of batch_size, as descent_trainer_evaluate.
 * Errors: ARGUMENT for a NULL trainer or data or batch_size < 1; SHAPE when the dataset's feature
 * count is not the model's inputs; ARGUMENT when its labels or targets do not fit the loss. With
 * a data-parallel trainer, collective: each rank evaluates its shards, and every rank gets the
 * result over the whole dataset. */
descent_status descent_trainer_evaluate_dataset(descent_trainer* trainer,
                                                const descent_dataset* data, int64_t batch_size,
                                                double* loss, double* accuracy);

/* What descent_trainer_fit reports after each epoch. test_loss and test_accuracy are NaN when
 * there is no test set (and test_accuracy for mse). */
typedef struct descent_epoch_stats {
  int64_t epoch;  /* 1-based */
  int64_t epochs; /* of the whole run */
  double train_loss;
  double test_loss;
  double test_accuracy;
  double samples_per_second;
  double seconds; /* this epoch's training and evaluation */
  float lr;       /* the learning rate of the next step */
} descent_epoch_stats;

/* Called after each epoch with the epoch's statistics and the caller's `user` pointer. */
typedef void (*descent_epoch_callback)(const descent_epoch_stats* stats, void* user);

/* Trains until `epochs` epochs are done (counting those a restored optimizer had done), in
 * shuffled mini-batches of batch_size (order seeded by `seed`, the final partial batch kept),
 * evaluating on `test` (may be NULL) after each epoch. callback may be NULL. Errors: ARGUMENT
 * for NULL trainer/train, batch_size < 1 or epochs < 1; SHAPE or ARGUMENT for a dataset that does
 * not fit the model or loss; NUMERIC for a non-finite loss. With a data-parallel trainer,
 * collective: batch_size is the global batch, of which each rank trains on its shard, and every
 * rank's callback sees the statistics of the whole job (samples_per_second counts every rank's
 * samples). */
descent_status descent_trainer_fit(descent_trainer* trainer, const descent_dataset* train,
                                   const descent_dataset* test, int64_t batch_size, int64_t epochs,
                                   uint64_t seed, descent_epoch_callback callback, void* user);

/* ------------------------------------------------------------------ checkpoints */

/* Writes the model's architecture and parameters, and when opt is not NULL the optimizer's kind,
 * options, state (SGD: momentum; Adam, AdamW: both moments, the amsgrad maximum and the update
 * count) and step count, to `path`, through a temporary file renamed over it (never
 * half-written). Errors: ARGUMENT for NULL path/model or an optimizer of another model; IO when
 * the file cannot be written. */
descent_status descent_checkpoint_save(const char* path, const descent_model* model,
                                       const descent_optimizer* opt);

/* Restores parameters (and, when opt is not NULL, the optimizer's state and step count) from
 * `path` into a model of the same architecture. Nothing changes on failure. Errors: IO for a
 * missing file; DATA for a corrupt file, a different architecture, or (with opt) a file saved
 * without an optimizer or with another kind of optimizer or state (SGD momentum or Adam's amsgrad
 * on one side only); ARGUMENT for an optimizer of another model. */
descent_status descent_checkpoint_load(const char* path, descent_model* model,
                                       descent_optimizer* opt);

/* ------------------------------------------------------------------ exchange formats */

/* Writes the model as safetensors, named as torch.nn.Sequential names its tensors ("0.weight"
 * [out, in], "0.bias" [out], then the next Linear module's; an activation other than identity
 * is a module of its own and takes an index), with metadata (widths, activations, descent's
 * version) from which descent_model_load_safetensors rebuilds the model; in Python,
 * model.load_state_dict(safetensors.torch.load_file(path)) loads it into that Sequential. dtype:
 * "fp32" (or NULL) stores the values exactly, "bf16" rounds them to nearest even. The file is
 * written through a temporary file renamed over `path` (never half-written). Errors: ARGUMENT for
 * another dtype; NUMERIC for a NaN or infinite parameter (nothing is written); IO when the file
 * cannot be written. */
descent_status descent_model_save_safetensors(const descent_model* model, const char* path,
                                              const char* dtype);

/* Creates a model with the architecture and parameters of a safetensors file: one written by
 * descent_model_save_safetensors, or by PyTorch or NumPy with the same names, whose activations
 * the metadata "descent.activations" gives ("relu,relu,identity") unless no activation module
 * sits between its Linear modules. F32 and BF16 values are read. Errors: IO for a missing or
 * unreadable file or one that is not a regular file; DATA for a malformed, truncated or
 * inconsistent file, shapes that do not form an MLP, or a NaN or infinite value. On failure *out
 * is set to NULL. */
descent_status descent_model_load_safetensors(descent_context* ctx, const char* path,
                                              descent_model** out);

/* Replaces the parameters of `model` with those of a safetensors file of the same architecture
 * (the model's activations stand in for a file that does not name its own). Nothing changes on
 * failure. Errors: as descent_model_load_safetensors, and DATA for another architecture. */
descent_status descent_model_load_safetensors_into(descent_model* model, const char* path);

/* Writes the model as ONNX (opset 17) for ONNX Runtime: input "input" [batch, inputs], output
 * "output" [batch, outputs], float, batch dynamic. head: "none" (or NULL) for the last layer's
 * outputs, "softmax" for class probabilities, "sigmoid" for each output's probability. Written
 * like descent_model_save_safetensors. Errors: ARGUMENT for another head; NUMERIC for a NaN or
 * infinite parameter; IO when the file cannot be written. */
descent_status descent_model_save_onnx(const descent_model* model, const char* path,
                                       const char* head);

/* ------------------------------------------------------------------ losses on derivatives */

/* Physics-informed training from C: the gradients of a loss, built term by term into the model's
 * gradient buffer, then one optimizer step. A step over boundary points xb and interior points
 * xi of a PDE:
 *   descent_model_mse_gradient(model, xb, ..., ub, ..., 1.0f, &boundary_loss);   (overwrites)
 *   descent_jet_forward(jet, xi, ...);
 *   descent_jet_pde_residual(jet, a, b, c, d, f, ..., 1.0f, 1, &residual_loss);  (adds)
 *   descent_optimizer_step(opt);
 * (descent_jet_pde_residual_step does the middle two in one call, faster on the CPU.)
 * A loss pointer left NULL is not read back, so the step never waits for the GPU. */

/* Gradients of weight * mean((model(x) - targets)^2) over x [rows, cols] (leading dimension
 * ld_x) and targets [rows, outputs] (ld_targets), both in `memory`, written into the model's
 * gradient buffer (replacing what it held). *loss, when loss is not NULL, receives the weighted
 * value (and the call waits for it). Errors: ARGUMENT for NULL pointers, rows < 1, a leading
 * dimension too small, a weight that is not finite and >= 0; SHAPE for cols that are not the
 * model's inputs; DEVICE for device memory on a cpu context. */
descent_status descent_model_mse_gradient(descent_model* model, const float* x, int64_t rows,
                                          int64_t cols, int64_t ld_x, const float* targets,
                                          int64_t ld_targets, descent_memory memory, float weight,
                                          double* loss);

/* Applies the model's gradient buffer: one step of the optimizer (its schedule advances). */
descent_status descent_optimizer_step(descent_optimizer* opt);

/* The loss at the model's current parameters, for descent_optimizer_lbfgs_step: computes it,
 * leaves its gradient in the model (descent_model_mse_gradient, descent_jet_pde_residual, and on
 * several ranks descent_communicator_sum_gradients, the loss summed over the ranks with MPI),
 * writes it to *loss and returns DESCENT_OK; any other status ends the step. */
typedef descent_status (*descent_loss_callback)(void* user, float* loss);

/* One L-BFGS step (torch.optim.LBFGS's algorithm, full batch) of an optimizer of kind "lbfgs":
 * up to max_iter iterations, each calling evaluate(user, &loss) once, or more in the line search.
 * *loss (when not NULL) receives the loss of the first evaluation. A step that fails changes
 * neither the parameters nor the optimizer's state. Errors: ARGUMENT for a NULL opt or evaluate,
 * or an optimizer of another kind; NUMERIC for a non-finite loss or gradient; the callback's own
 * status (with its message) when it returns one. */
descent_status descent_optimizer_lbfgs_step(descent_optimizer* opt, descent_loss_callback evaluate,
                                            void* user, float* loss);

/* The gradient of a loss with respect to the model's inputs, given its gradient at the outputs:
 * dx = dy . du/dx, i.e. dx[r, c] = sum_o dy[r, o] du_o/dx_c at x row r, by one forward and one
 * reverse pass (no jet). x [rows, cols] (leading dimension ld_x; cols must be the model's
 * inputs), dy [rows, outputs] (ld_dy) and dx [rows, cols] (ld_dx) all live in `memory`; dx may be
 * the memory of x or dy. In the caller's units when the model has a scaling, as
 * descent_model_predict answers: dy is the gradient with respect to predict's outputs, dx with
 * respect to the caller's x. The model's parameters and gradient buffer are left alone. With one
 * output and dy all ones, dx is the gradient of u itself: forces are -dx of a predicted energy.
 * Returns when dx is written. Errors: as descent_model_predict, and ARGUMENT for ld_dy < outputs
 * or ld_dx < cols. */
descent_status descent_model_input_gradient(descent_model* model, const float* x, int64_t rows,
                                            int64_t cols, int64_t ld_x, const float* dy,
                                            int64_t ld_dy, float* dx, int64_t ld_dx,
                                            descent_memory memory);

/* A forward jet of a model (include/descent/jet.hpp): with the value u of every output at a
 * point, its directional derivatives du_k = (du/dx) v_k along K input directions v_k and the
 * weighted second-order sum L = sum_k w_k v_k^T (d2u/dx2) v_k, in one pass through the layers.
 * vectors: [directions, inputs] row-major on the host, or NULL for the unit vectors (then
 * directions must be 0 or the model's inputs: du_k are the partial derivatives and, with all
 * weights 1, L is the Laplacian). weights: `directions` floats on the host, or NULL for all 1.
 * second_order 0: u and du_k only (no L). The jet uses the model's own activations (relu only
 * with second_order 0). Errors: ARGUMENT for a bad count, a non-finite vector or weight, or an
 * activation without the derivatives asked for. */
typedef struct descent_jet descent_jet;
descent_status descent_jet_create(descent_model* model, int64_t directions, const float* vectors,
                                  const float* weights, int second_order, descent_jet** out);
void descent_jet_destroy(descent_jet* jet);
descent_status descent_jet_directions(const descent_jet* jet, int64_t* directions);

/* Queues the jet forward pass of x [rows, cols] (leading dimension ld_x, in `memory`; cols must
 * be the model's inputs). Errors: as descent_model_predict. */
descent_status descent_jet_forward(descent_jet* jet, const float* x, int64_t rows, int64_t cols,
                                   int64_t ld_x, descent_memory memory);

/* Copies one output block of the last forward pass into out [rows, outputs] (leading dimension
 * ld_out, in `memory`): which = 0 the value u, 1 .. K the derivative along direction which - 1,
 * K + 1 the second-order sum L. rows must be the last forward pass's. Returns when `out` is
 * written. Errors: ARGUMENT for a `which` out of range (K + 1 without second order), rows that
 * are not the last pass's (or no pass yet), ld_out < outputs. */
descent_status descent_jet_read(const descent_jet* jet, int64_t which, float* out, int64_t rows,
                                int64_t ld_out, descent_memory memory);

/* The residual r = a u + sum_k b_k du_k + c L + sum_k d_k u du_k - f of a PDE at the points of
 * the last forward pass, per output, and the gradients of weight * mean(r^2) with respect to the
 * model's parameters: added to the model's gradient buffer when accumulate is not 0, written
 * into it otherwise. b and d: K floats on the host, or NULL for 0. source: f [rows, outputs]
 * (leading dimension ld_source, in `memory`; rows must be the last forward pass's), or NULL for
 * 0 (rows and ld_source are then not read). *loss, when loss is not NULL, receives
 * weight * mean(r^2) (and the call waits for it). Nothing changes on failure. Errors: ARGUMENT
 * for no forward pass yet, a non-finite coefficient or weight, c != 0 on a jet without second
 * order, rows that are not the last pass's, ld_source < outputs. */
descent_status descent_jet_pde_residual(descent_jet* jet, float a, const float* b, float c,
                                        const float* d, const float* source, int64_t rows,
                                        int64_t ld_source, descent_memory memory, float weight,
                                        int accumulate, double* loss);

/* descent_jet_forward of x [rows, cols] (leading dimension ld_x) and descent_jet_pde_residual of
 * its points in one call (source: f [rows, outputs], leading dimension ld_source, or NULL for 0;
 * x and source both in `memory`), the same results to rounding. On the CPU it takes the whole
 * network over slices of points held in cache, forward and back, several times faster than the
 * two calls; the jet's outputs can then be read (descent_jet_read), but a
 * descent_jet_pde_residual needs a descent_jet_forward first. Nothing changes on failure.
 * Errors: as descent_jet_forward and descent_jet_pde_residual. */
descent_status descent_jet_pde_residual_step(descent_jet* jet, const float* x, int64_t rows,
                                             int64_t cols, int64_t ld_x, float a, const float* b,
                                             float c, const float* d, const float* source,
                                             int64_t ld_source, descent_memory memory,
                                             float weight, int accumulate, double* loss);

/* ------------------------------------------------------------------ float64 on the CPU */

/* float32 resolves a PDE residual to about 1e-7 of its largest term, and an L-BFGS run on a stiff
 * problem stalls where its loss moves by less than that (Burgers' shock: docs/pinn.md). These
 * calls evaluate a jet's losses in float64 throughout on the host CPU, for float64 parameters the
 * caller holds (count doubles in the model's flat layout: per layer W [out, in] row-major, then
 * b [out]), and minimise over them with L-BFGS in float64. All their arrays are the caller's host
 * memory, whatever the model's device. A step over boundary points xb and interior points xi:
 *   descent_jet_mse_step_f64(jet, params, n, xb, ..., ub, ..., 1.0, 0, grad, &lb);  (writes grad)
 *   descent_jet_pde_residual_step_f64(jet, params, n, xi, ..., 1.0, 1, grad, &lr);  (adds)
 * inside the callback of descent_lbfgs_f64_step; descent_model_set_params_f64 then rounds the
 * result into the model (to checkpoint, export or predict with it). */

/* The model's parameters as float64 into params (count: the model's parameter count), and back
 * from params, each rounded to the nearest float. Errors: ARGUMENT for NULL pointers or (set) a
 * value that is not a finite float; SHAPE for another count; nothing changes on failure. */
descent_status descent_model_get_params_f64(const descent_model* model, double* params,
                                        int64_t count);
descent_status descent_model_set_params_f64(descent_model* model, const double* params,
                                            int64_t count);

/* weight * mean(r^2) of descent_jet_pde_residual's residual (the jet's directions, weights and
 * activations; b and d: K floats or NULL) at x [rows, cols] (leading dimension ld_x) with source
 * f [rows, outputs] (ld_source, or NULL for 0), evaluated in float64 for params (count doubles).
 * Its gradient with respect to them goes to grad (count doubles): added when accumulate is not 0,
 * written otherwise; *loss (when not NULL) receives the value. No forward pass is needed, and
 * the model's own parameters and gradients are left alone. Nothing changes on failure. Errors:
 * ARGUMENT for NULL pointers, rows < 1, a leading dimension too small, a value of params, x or
 * source that is not finite, a non-finite coefficient, a weight that is not finite and >= 0,
 * c != 0 on a jet without second order; SHAPE for cols that are not the model's inputs or another
 * count. */
descent_status descent_jet_pde_residual_step_f64(descent_jet* jet, const double* params,
                                                 int64_t count, const double* x, int64_t rows,
                                                 int64_t cols, int64_t ld_x, float a,
                                                 const float* b, float c, const float* d,
                                                 const double* source, int64_t ld_source,
                                                 double weight, int accumulate, double* grad,
                                                 double* loss);

/* weight * mean((u - targets)^2) over x [rows, cols] (ld_x) and targets [rows, outputs]
 * (ld_targets), in float64 for params, its gradient into grad as above. Errors: as
 * descent_jet_pde_residual_step_f64. */
descent_status descent_jet_mse_step_f64(descent_jet* jet, const double* params, int64_t count,
                                        const double* x, int64_t rows, int64_t cols, int64_t ld_x,
                                        const double* targets, int64_t ld_targets, double weight,
                                        int accumulate, double* grad, double* loss);

/* The loss at x (count doubles) for descent_lbfgs_f64_step: writes its gradient to grad (count
 * doubles, zeroed before the call) and the loss to *loss, and returns DESCENT_OK; any other
 * status ends the step. */
typedef descent_status (*descent_f64_callback)(void* user, const double* x, double* grad,
                                               int64_t count, double* loss);

/* L-BFGS in float64 (the algorithm of an optimizer of kind "lbfgs", its directions, history and
 * line search in float64) over the caller's parameters. options: as descent_optimizer_create_from's
 * for "lbfgs" (e.g. "history_size=50, strong_wolfe=1"; NULL or "": the defaults). Its state
 * lives in memory; descent_lbfgs_f64_save and _load keep it in a file. Errors: ARGUMENT naming a
 * bad option. On failure *out is set to NULL. */
typedef struct descent_lbfgs_f64 descent_lbfgs_f64;
descent_status descent_lbfgs_f64_create(const char* options, descent_lbfgs_f64** out);
void descent_lbfgs_f64_destroy(descent_lbfgs_f64* opt);

/* One step: up to max_iter iterations from x (count doubles), which ends at the last accepted
 * point; evaluate is called once per iteration, or more in the line search. *loss (when not
 * NULL) receives the loss of the first evaluation. A step that fails changes neither x nor the
 * optimizer's state. Errors: ARGUMENT for NULL pointers, count < 1, another count than the
 * history's, a non-finite x; NUMERIC for a non-finite loss or gradient; the callback's own
 * status (with its message) when it returns one. */
descent_status descent_lbfgs_f64_step(descent_lbfgs_f64* opt, double* x, int64_t count,
                                      descent_f64_callback evaluate, void* user, double* loss);

/* Iterations and evaluations over all steps so far, and why the last step stopped ("max_iter",
 * "max_eval", "tolerance_grad", "tolerance_change (step)", "tolerance_change (loss)", "not a
 * descent direction"; "" before the first): a string owned by the optimizer, valid until its next
 * step. Any output pointer may be NULL. */
descent_status descent_lbfgs_f64_progress(const descent_lbfgs_f64* opt, int64_t* iterations,
                                          int64_t* evaluations, const char** stop_reason);

/* What the optimizer minimises, as text of the caller's (the loss, its points, the network's
 * widths, a seed; "" by default, at most 65536 bytes): descent_lbfgs_f64_save stores it and
 * descent_lbfgs_f64_load refuses (DATA) a state saved with another, which would otherwise go on
 * from the wrong point without a word. Errors: ARGUMENT for NULL pointers or a longer text. */
descent_status descent_lbfgs_f64_set_problem(descent_lbfgs_f64* opt, const char* problem);

/* Writes x (count doubles) and the optimizer's whole state in float64 (its history, direction,
 * counts; not its options) to `path`, through a temporary file renamed over it (a failure leaves
 * a previous file intact); _load reads them back into x and the optimizer, which then continues
 * as the one that saved would have, bit for bit (given the same options). Errors: ARGUMENT for
 * NULL pointers, count < 1, a non-finite x or another count than the history's (save); IO for a
 * missing, unreadable or special file, or one that cannot be written; DATA for another kind of
 * file, a corrupt one, another parameter count than count, more stored pairs than history_size,
 * a value that is not finite, another problem than the optimizer's (descent_lbfgs_f64_set_problem
 * above). A load that fails changes neither x nor the optimizer. */
descent_status descent_lbfgs_f64_save(const descent_lbfgs_f64* opt, const char* path,
                                      const double* x, int64_t count);
descent_status descent_lbfgs_f64_load(descent_lbfgs_f64* opt, const char* path, double* x,
                                      int64_t count);

#ifdef __cplusplus
} /* extern "C" */
#endif

DESCENT_API_END

#endif /* DESCENT_DESCENT_H */
