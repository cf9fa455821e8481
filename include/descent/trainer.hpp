// Trainer: one training step per mini-batch (forward, loss, backward, SGD), evaluation, and fit.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "descent/data.hpp"
#include "descent/export.h"
#include "descent/model.hpp"
#include "descent/optimizer.hpp"

DESCENT_API_BEGIN

namespace descent {

// The loss a Trainer minimises (see ops.hpp): mse against float targets, softmax_cross_entropy
// on logits against integer labels, sigmoid_bce on logits against targets in [0, 1].
enum class Loss { mse, softmax_cross_entropy, sigmoid_bce };
// "mse", "softmax_cross_entropy", "sigmoid_bce".
const char* to_string(Loss loss);
// Also accepts the short names "ce", "cross_entropy" and "bce".
Loss parse_loss(const char* text);

// What a step whose loss is NaN or infinite does. Either way its update is skipped (parameters
// and momentum untouched) and the step counts as taken, so the schedule and the position in the
// epoch go on alike on every backend. error: throw NumericError naming the step, once (on the
// CPU from that step; on the GPU, where the host does not wait for a step, from the next call
// that reads results: take_train_loss, evaluate, check_numerics or fit's end of epoch; the steps
// queued after the bad one have run, and their losses stay counted). skip: count the step as
// skipped and go on.
enum class NonFinitePolicy { error, skip };

struct TrainerOptions {
  NonFinitePolicy on_non_finite = NonFinitePolicy::error;
  // How the caller switches to the skip policy, named by the NumericError message (e.g. a
  // command's "--on-nan skip"); empty: "TrainerOptions::on_non_finite = NonFinitePolicy::skip".
  std::string non_finite_hint;
  // GPU: capture the step as a CUDA graph and replay it. Each batch geometry (row count and
  // buffer addresses; a BatchLoader keeps its addresses, so at most two: full and final partial
  // batch) runs eagerly the first time it is seen, is captured the second time and replayed from
  // then on. At most 4 geometries are kept; others run eagerly.
  bool cuda_graphs = true;
  // Gradient clipping by global norm (torch.nn.utils.clip_grad_norm_) before every update:
  // 0 = off, else max_norm > 0; clip_norm_type is 2 or infinity. The norm and the coefficient
  // stay on the device (the update reads the coefficient), so a captured step clips too.
  float clip_grad_norm = 0.0f;
  float clip_norm_type = 2.0f;
};

struct EvalResult {
  double loss = std::numeric_limits<double>::quiet_NaN();  // mean over samples
  // Fraction of samples whose arg-max logit is the label (softmax_cross_entropy), of outputs
  // whose sign matches the 0/1 target (sigmoid_bce); NaN for mse.
  double accuracy = std::numeric_limits<double>::quiet_NaN();
  std::int64_t samples = 0;
};

struct EpochStats {
  std::int64_t epoch = 0;   // 1-based
  std::int64_t epochs = 0;  // of the whole run
  double train_loss = 0.0;  // mean over the epoch's samples (finite steps only)
  bool has_test = false;
  EvalResult test{};
  double samples_per_second = 0.0;  // training samples of this epoch / its training time
  double epoch_seconds = 0.0;       // training and evaluation of this epoch
  double elapsed_seconds = 0.0;     // since fit began
  std::int64_t steps = 0;           // optimizer steps taken so far (all epochs, all runs)
  std::int64_t skipped_steps = 0;   // steps skipped for a non-finite loss so far in this fit
  float lr = 0.0f;                  // the learning rate of the next step
};

struct FitOptions {
  // fit ends when this many epochs are done, counting those a resumed optimizer had already
  // done (its step count / batches per epoch).
  std::int64_t epochs = 1;
  std::function<void(const EpochStats&)> on_epoch;
  // After each step, with the batch index within the epoch and the epoch's batch count (runs on
  // the host and waits for nothing: suitable for a progress bar).
  std::function<void(std::int64_t batch, std::int64_t batches)> on_batch;
  // After each batch of the test set's evaluation, likewise (e.g. to stop on a signal: an
  // exception thrown by either callback ends fit between two batches, with nothing half done).
  std::function<void(std::int64_t batch, std::int64_t batches)> on_eval_batch;
};

// Mean loss and accuracy of `model` over one pass of the loader, as Trainer::evaluate, without
// an optimizer (e.g. a model loaded for inference). on_batch, when given, is called after each
// batch is queued.
EvalResult evaluate(
    Mlp& model, Loss loss, BatchLoader& loader,
    const std::function<void(std::int64_t batch, std::int64_t batches)>& on_batch = {});
// The same over data already in the context's memory (`data.x` and its labels or targets, any
// number of rows), read in place in slices of batch_size rows: nothing is copied.
EvalResult evaluate(Mlp& model, Loss loss, const Batch& data, std::int64_t batch_size = 1024);

// Trains one Mlp with one optimizer (Sgd, Adam, AdamW) on one loss. The model and the optimizer must outlive the
// Trainer. A step allocates no buffers after the first step with a given batch size (which sizes
// the context's workspace and, on the CPU backend with bf16 models, makes one oneDNN matmul
// primitive per layer shape; each bf16 product there still creates oneDNN's small argument
// objects) and never waits for the device; losses accumulate on the device and are read on
// request.
//
//   Mlp model(ctx, {784, 512, 256, 10}, Activation::relu);
//   Sgd sgd(model, {.lr = 0.05f, .momentum = 0.9f}, LrSchedule::cosine(epochs * loader.batches()));
//   Trainer trainer(model, Loss::softmax_cross_entropy, sgd);
//   for (std::int64_t e = 0; e < epochs; ++e) {
//     for (const Batch& b : loader.epoch(e)) trainer.step(b);
//     std::printf("%f %f\n", trainer.take_train_loss(), trainer.evaluate(test_loader).accuracy);
//   }
//
// Data parallel: give every rank's Trainer the same Communicator, the same model (architecture,
// seed) and optimizer, and a BatchLoader sharded over that communicator. Each step then sums
// the ranks' gradients, pre-scaled by 1 / (the global batch's rows), in buckets of layers
// started during the backward pass (CommOptions::bucket_bytes), and the batch losses, whose sum
// also carries a non-finite loss on any rank to every rank: all ranks take or skip each update
// together, their replicas stay bit-identical, and their losses, step counts and reports agree.
// The steps equal one process's on the global batch up to the rounding of the sums' order.
class Trainer {
 public:
  Trainer(Mlp& model, Loss loss, Optimizer& optimizer, TrainerOptions options = {});
  // Data parallel over the ranks of `comm`. Collective: ArgumentError (on every rank) names the
  // ranks whose architecture, parameters, optimizer (options, schedule, step count, state),
  // loss or clipping differ from rank 0's; DeviceError when comm cannot sum the model's device
  // memory (MPI with a CUDA model).
  Trainer(Mlp& model, Loss loss, Optimizer& optimizer, const Communicator& comm,
          TrainerOptions options = {});
  Trainer(Trainer&&) noexcept;
  Trainer& operator=(Trainer&&) noexcept;
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;
  ~Trainer();

  Mlp& model() const;
  Optimizer& optimizer() const;
  const Communicator& communicator() const;
  // Turns gradient clipping on (max_norm > 0; norm_type 2 or infinity) or off (max_norm 0) for
  // the next steps, as TrainerOptions::clip_grad_norm / clip_norm_type.
  void set_clip_grad_norm(float max_norm, float norm_type = 2.0f);
  // The gradient norm of the latest step before clipping (NaN when clipping is off or no step
  // was taken); waits for the device.
  float last_grad_norm() const;
  Loss loss() const;

  // One step on a batch of any row count >= 1 (labels for softmax_cross_entropy, targets of the
  // model's output width otherwise). Data parallel: this rank's shard of a global batch of
  // batch.global_rows rows (a shard may be empty); every rank calls step together.
  void step(const Batch& batch);
  // Mean loss over the samples of the steps since the last call (NaN when there were none);
  // waits for the device. Throws NumericError for a pending non-finite step (error policy).
  double take_train_loss();
  // Mean loss and accuracy over one pass of the loader (its epoch 0 order; shuffling does not
  // change the result). Waits for the device. A loader sharded over N ranks evaluates this
  // rank's shards, and the counts and loss sums are summed over the ranks (collective): every
  // rank gets the result over the whole dataset.
  EvalResult evaluate(BatchLoader& loader);
  // The same, calling on_batch(batch, batches) on the host after each batch is queued.
  EvalResult evaluate(
      BatchLoader& loader,
      const std::function<void(std::int64_t batch, std::int64_t batches)>& on_batch);
  // Mean loss and accuracy over data already in the context's memory, read in place in slices
  // of batch_size rows (see descent::evaluate); this rank's data only. Waits for the device.
  EvalResult evaluate(const Batch& data, std::int64_t batch_size = 1024);
  // Waits for the device; throws NumericError naming the first step whose loss was not finite
  // (error policy).
  void check_numerics();
  // Steps skipped so far for a non-finite loss (either policy); waits for the device.
  std::int64_t skipped_steps();
  // Changes the policy for the steps from now on (a pending report under the error policy is
  // still made by the next call that reads results).
  void set_non_finite_policy(NonFinitePolicy policy, std::string hint = {});
  // Captured CUDA graphs held (0 on the CPU).
  int graphs() const;

  // Trains until `epochs` epochs are done, evaluating on `test` (may be null) after each one.
  std::vector<EpochStats> fit(BatchLoader& train, BatchLoader* test, std::int64_t epochs,
                              std::function<void(const EpochStats&)> on_epoch = {});
  std::vector<EpochStats> fit(BatchLoader& train, BatchLoader* test, const FitOptions& options);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace descent

DESCENT_API_END
