// The Trainer's state and the pieces of its work, shared by src/trainer.cpp (the step: loss,
// backward, update; the graph cache), src/trainer_eval.cpp (evaluation and fit) and
// src/trainer_parallel.cpp (data parallel: the gradient buckets and the replica checks).
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "comm/comm_impl.hpp"
#include "descent/error.hpp"
#include "descent/trainer.hpp"
#include "graph_cache.hpp"
#include "kernels/backend.hpp"

namespace descent {

namespace detail {

// What the trainer needs to know of a loss, in one row per loss instead of a branch at each use.
struct LossInfo {
  Loss loss;
  bool labels;      // integer class labels (else float targets)
  int min_outputs;  // the model's outputs at least
  enum class Accuracy { none, argmax, per_output } accuracy;
  // Queues the loss value and its gradient (LossOutput) of the model's output.
  void (*queue)(const Context& ctx, MatrixView<const float> out, const Batch& b,
                const LossOutput& o);
};
// The row of `loss`; ArgumentError naming `op` for an unknown id.
const LossInfo& loss_info(Loss loss, const char* op);

// A loss the model can be trained or evaluated with (an ArgumentError naming `op` otherwise).
void check_loss(const Mlp& model, Loss loss, const char* op);

// A range of the flat gradient buffer holding whole layers [first, last], summed over the ranks
// as one collective once the backward pass has written layer `first` (it goes last to first).
struct Bucket {
  int first = 0, last = 0;
  std::int64_t offset = 0, count = 0;
};

// Buckets of at least `bytes` bytes (the last one, holding layer 0, may be smaller), from the
// last layer back: the order the backward pass finishes them in.
std::vector<Bucket> make_buckets(const Mlp& model, std::size_t bytes);

// What every rank of a data-parallel Trainer must agree on, fingerprinted separately so that a
// mismatch is named (collective; nothing on one process).
void check_replicas(const Communicator& comm, const Mlp& model, Loss loss, const Optimizer& opt,
                    const TrainerOptions& o);

}  // namespace detail

using detail::Bucket;
using detail::StepStats;

struct Trainer::Impl {
  Mlp* model;
  Optimizer* opt;  // the optimizer; null when only evaluating
  Loss loss;
  TrainerOptions options;
  Context ctx;                  // a handle: the trainer keeps its device state alive
  Communicator comm;            // data parallel: the ranks the gradients are summed over
  std::vector<Bucket> buckets;  // data parallel: in the order the backward pass finishes them
  std::size_t next_bucket = 0;  // during a step: the next bucket to start
  const detail::Backend& backend;
  Buffer<float> batch_loss;  // the latest batch's mean loss
  Buffer<float> clip;        // clipping: the latest gradient norm and the coefficient applied
  Buffer<StepStats> train_stats, eval_stats;
  std::int64_t stats_base_step = 0;  // optimizer step of the first batch in train_stats
  std::int64_t skipped_before = 0;   // bad steps counted out of train_stats already
  detail::GraphCache graphs;
  bool graphs_disabled = false;  // a capture failed (on any rank): every step runs eagerly
  bool slice_steps =
      false;  // steps of slice_rows_min rows or more run as Backend::dense_slice_step
  std::int64_t slice_rows_min = 0;  // (see slice_steps_fit)
  std::vector<detail::DenseNetworkLayer>
      slice_layers;  // its layers, made each step (no allocation)

  // `s` is null for evaluation alone (descent::evaluate): no step is ever taken then.
  Impl(Mlp& m, Loss l, Optimizer* s, TrainerOptions o, Communicator c = {})
      : model(&m),
        opt(s),
        loss(l),
        options(o),
        ctx(m.context()),
        comm(std::move(c)),
        backend(detail::backend_of(m.context())),
        batch_loss(m.context(), 1),
        clip(m.context(), 2),
        train_stats(m.context(), 1),
        eval_stats(m.context(), 1) {
    if (data_parallel()) buckets = detail::make_buckets(m, comm.options().bucket_bytes);
    slice_steps = slice_steps_fit();
    if (slice_steps) slice_layers.reserve(static_cast<std::size_t>(m.layers()));
    fill(ctx, clip.view(), std::numeric_limits<float>::quiet_NaN());  // no norm measured yet
    reset(train_stats);
    reset(eval_stats);
  }

  void reset(Buffer<StepStats>& s) { backend.reset_stats(ctx, s.data()); }

  // Waits for the queued work that writes the stats. Data parallel, the communicator waits
  // first: a plain synchronisation would never return if a peer's sums never come.
  StepStats read(const Buffer<StepStats>& s) const {
    if (data_parallel()) comm.impl().wait(ctx);
    return s.to_host(ctx)[0];
  }

  // Whether steps sum over a communicator (MPI or NCCL, even of one rank; not the single one).
  bool data_parallel() const { return comm.backend() != CommBackend::single; }

  // The rows of the global batch b is a shard of (b itself on one process).
  std::int64_t global_rows(const Batch& b) const {
    return b.global_rows > 0 ? b.global_rows : b.x.rows * comm.size();
  }

  void check_batch(const Batch& b) const;
  void check_labels(const Batch& b) const;

  // The loss value of the model's output goes to batch_loss, its gradient to the model; both are
  // the mean over mean_rows rows (0: the batch's own), so that a shard writes its share.
  void queue_loss(const ForwardPass& pass, const Batch& b, std::int64_t mean_rows = 0);

  [[noreturn]] void throw_non_finite(std::int64_t step, float value, long long bad) const;

  // When an earlier update already made a parameter non-finite (the loss then only shows it),
  // the cause that can be seen from here; empty when every parameter is finite. Only on the
  // error path: it copies the parameters to the host.
  std::string non_finite_parameters_cause() const;

  // Data parallel: starts summing the buckets whose first layer is `layer` or above.
  void start_buckets(int layer);

  // The work of one step after the learning rate is written: what a graph captures. A batch
  // with a non-finite loss sets found_inf, and the update skips it on the device.
  //
  // Data parallel, each rank queues: its shard's loss and gradients as its share of the global
  // batch's mean (LossOutput::mean_rows); the sum of the batch losses (a non-finite loss on any
  // rank makes the sum non-finite on every rank) and of each bucket of gradients, started as the
  // backward pass finishes it; then, with every sum done, the bookkeeping and the update, which
  // see the same values on every rank.
  void queue_step(const Batch& b);

  // Whether this trainer's steps can run as one Backend::dense_slice_step (the CPU's whole
  // network over slices of rows held in cache): a backend that has it, an fp32 model no wider
  // than detail::kMaxSliceStepWidth, any activation, any of the three losses; for batches (shards)
  // of kSliceStepMinRows rows or more. DESCENT_CPU_STEP=layers turns it off, =slices on for any
  // batch (to compare and test the two). Data parallel, its gradient is summed when the whole of
  // it is done (a narrow network's gradient is small).
  // Sets slice_rows_min.
  bool slice_steps_fit();
  // The end of a step, its loss and gradients queued: the bookkeeping, clipping, the update.
  void finish_step(std::int64_t global);

  // Graph policy: the captured step to launch for this batch (captured now if need be), or
  // null: run the step eagerly. See GraphCache for when a graph is captured and dropped.
  //
  // Data parallel over several ranks, whether a step's sums run inside a graph must be the same
  // on every rank (NCCL may choose other algorithms for captured collectives, and a rank that
  // captures must not wait on one that does not). A graph's key holds this rank's addresses, so
  // the plans can differ: every step the ranks agree on one with a host collective (no device
  // wait): eager when any rank runs eagerly; else, when any rank captures, a second one tells
  // whether every capture worked, and one failure makes every rank drop its graphs and run
  // eagerly from then on.
  detail::Graph* graph_for(const Batch& b);

  // Captures the step into the planned entry; false when it cannot be captured. Every way out
  // of a failed capture ends it (abort_capture), so that the eager run after it starts clean.
  bool capture(const Batch& b);

  void step(const Batch& b);

  void write(Buffer<StepStats>& s, const StepStats& v) {
    s.copy_from_host(ctx, std::span<const StepStats>(&v, 1));
  }

  // Reads train_stats; under the error policy throws for the non-finite steps not reported yet.
  // They are then marked as reported (counted as skipped) while the loss sums of the finite steps
  // around them stay: each bad step is reported once, and no good step's loss is dropped.
  StepStats check_pending();

  void count_correct(MatrixView<const float> out, const Batch& b);

  // Mean loss and accuracy over one pass of the loader (see Trainer::evaluate).
  EvalResult evaluate(BatchLoader& loader,
                      const std::function<void(std::int64_t, std::int64_t)>& on_batch,
                      const char* op);

  // The same over data in the context's memory, in slices of batch_size rows.
  EvalResult evaluate(const Batch& data, std::int64_t batch_size, const char* op);

  // Queues every batch next(b) yields, then reads the counts once. `shards` (when not null):
  // the batches are this rank's shards, and the counts are summed over its ranks.
  template <class Next>
  EvalResult evaluate_batches(Next next, std::int64_t batches,
                              const std::function<void(std::int64_t, std::int64_t)>& on_batch,
                              const Communicator* shards);
};

}  // namespace descent
