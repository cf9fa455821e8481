// Trainer: the training step (one path for every backend: queued eagerly, then captured and
// replayed where the backend can capture), device-side loss bookkeeping, evaluation and fit.
#include "descent/trainer.hpp"

#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <span>
#include <sstream>
#include <string>

#include "comm/comm_impl.hpp"
#include "descent/error.hpp"
#include "enum_names.hpp"
#include "graph_cache.hpp"
#include "kernels/backend.hpp"

namespace descent {

namespace {
// A value's first name is its name; the others are accepted aliases.
constexpr detail::EnumName<Loss> kLossNames[] = {
    {Loss::mse, "mse"},
    {Loss::softmax_cross_entropy, "softmax_cross_entropy"},
    {Loss::softmax_cross_entropy, "ce"},
    {Loss::softmax_cross_entropy, "cross_entropy"},
    {Loss::sigmoid_bce, "sigmoid_bce"},
    {Loss::sigmoid_bce, "bce"}};
}  // namespace

const char* to_string(Loss loss) { return detail::name_of(kLossNames, loss); }
Loss parse_loss(const char* text) { return detail::parse_enum(kLossNames, text, "loss"); }

namespace {

using detail::GraphPlan;
using detail::StepStats;

// A loss the model can be trained or evaluated with.
void check_loss(const Mlp& model, Loss loss, const char* op) {
  const int id = static_cast<int>(loss);
  if (id < 0 || id > static_cast<int>(Loss::sigmoid_bce)) {
    throw ArgumentError(std::string(op) + ": loss: unknown loss id " + std::to_string(id));
  }
  if (loss == Loss::softmax_cross_entropy && model.outputs() < 2) {
    throw ArgumentError(
        std::string(op) +
        ": softmax_cross_entropy needs at least 2 outputs (classes), the model has " +
        std::to_string(model.outputs()));
  }
}

void check_clipping(float max_norm, float norm_type, const char* op) {
  if (max_norm == 0.0f) return;
  if (!(max_norm > 0.0f) || !std::isfinite(max_norm)) {
    throw ArgumentError(std::string(op) +
                        ": clip_grad_norm: must be 0 (off) or a finite number > 0, got " +
                        std::to_string(max_norm));
  }
  if (norm_type != 2.0f && !(std::isinf(norm_type) && norm_type > 0.0f)) {
    throw ArgumentError(std::string(op) + ": clip_norm_type: must be 2 or inf, got " +
                        std::to_string(norm_type));
  }
}

// A range of the flat gradient buffer holding whole layers [first, last], summed over the ranks
// as one collective once the backward pass has written layer `first` (it goes last to first).
struct Bucket {
  int first = 0, last = 0;
  std::int64_t offset = 0, count = 0;
};

// Buckets of at least `bytes` bytes (the last one, holding layer 0, may be smaller), from the
// last layer back: the order the backward pass finishes them in.
std::vector<Bucket> make_buckets(const Mlp& model, std::size_t bytes) {
  std::vector<Bucket> out;
  const int layers = model.layers();
  const auto end_of = [&](int l) {
    return l + 1 < layers ? model.weight_offset(l + 1) : model.parameter_count();
  };
  int last = layers - 1;
  for (int l = layers - 1; l >= 0; --l) {
    const std::int64_t count = end_of(last) - model.weight_offset(l);
    if (static_cast<std::size_t>(count) * sizeof(float) >= bytes || l == 0) {
      out.push_back(Bucket{l, last, model.weight_offset(l), count});
      last = l - 1;
    }
  }
  return out;
}

// What every rank of a data-parallel Trainer must agree on, fingerprinted separately so that a
// mismatch is named.
void check_replicas(const Communicator& comm, const Mlp& model, Loss loss, const Optimizer& opt,
                    const TrainerOptions& o) {
  if (comm.size() == 1) return;
  std::uint64_t arch = fingerprint(model.widths().data(), model.widths().size() * 8);
  for (Activation a : model.activations()) arch = fingerprint_of(a, arch);
  arch = fingerprint_of(model.precision(), arch);
  check_same_on_every_rank(comm, arch, "Trainer",
                           "the model's architecture (widths, activations, precision)");
  const std::vector<float> params = model.params_to_host();
  check_same_on_every_rank(comm, fingerprint(params.data(), params.size() * sizeof(float)),
                           "Trainer",
                           "the model's parameters (a different initialisation seed, or a "
                           "checkpoint loaded on some ranks only?)");
  std::uint64_t h = fingerprint_of(opt.kind());
  for (const OptimizerOption& o : opt.options_list()) {
    h = fingerprint(o.name, std::strlen(o.name), h);
    h = o.type == OptimizerOption::Type::flag ? fingerprint_of(o.flag, h)
                                              : fingerprint_of(o.number, h);
  }
  const LrSchedule& sc = opt.schedule();
  h = fingerprint_of(sc.kind, h);
  h = fingerprint_of(sc.every, h);
  h = fingerprint_of(sc.gamma, h);
  h = fingerprint_of(sc.total, h);
  h = fingerprint_of(sc.min_lr, h);
  h = fingerprint_of(opt.steps(), h);
  for (const std::string& name : opt.state_names()) {
    h = fingerprint(name.data(), name.size(), h);
    const std::vector<float> state = opt.state_to_host(name);
    h = fingerprint(state.data(), state.size() * sizeof(float), h);
  }
  check_same_on_every_rank(comm, h, "Trainer",
                           "the optimizer (kind, options, schedule, step count or state)");
  std::uint64_t t = fingerprint_of(loss);
  t = fingerprint_of(o.clip_grad_norm, t);
  t = fingerprint_of(o.clip_norm_type, t);
  t = fingerprint_of(o.on_non_finite, t);
  t = fingerprint_of(o.cuda_graphs, t);  // whether a step's sums are captured: the same everywhere
  check_same_on_every_rank(comm, t, "Trainer",
                           "the loss, the gradient clipping, the non-finite policy or cuda_graphs");
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

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
    if (data_parallel()) buckets = make_buckets(m, comm.options().bucket_bytes);
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

  void check_batch(const Batch& b) const {
    const bool shard = comm.size() > 1;
    if (b.x.rows < (shard ? 0 : 1)) {
      throw ArgumentError("Trainer::step: batch: expected at least " +
                          std::string(shard ? "0 rows (a shard)" : "1 row") + ", got " +
                          std::to_string(b.x.rows));
    }
    if (b.global_rows != 0 &&
        (b.global_rows < b.x.rows || b.global_rows < 1 || (!shard && b.global_rows != b.x.rows))) {
      throw ArgumentError(
          "Trainer::step: batch.global_rows: expected 0 or " +
          (shard ? "at least the batch's rows (" + std::to_string(b.x.rows) + ") and at least 1"
                 : "the batch's rows (" + std::to_string(b.x.rows) + ") on one process") +
          ", got " + std::to_string(b.global_rows));
    }
    if (shard && b.global_rows == 0 && b.x.rows == 0) {
      throw ArgumentError(
          "Trainer::step: batch: an empty shard must say how many rows its global batch has "
          "(batch.global_rows)");
    }
    if (loss == Loss::softmax_cross_entropy) {
      if (b.labels.empty()) {
        throw ArgumentError(
            "Trainer::step: batch.labels: softmax_cross_entropy needs integer labels, the batch "
            "has none");
      }
    } else if (b.targets.empty()) {
      throw ArgumentError(std::string("Trainer::step: batch.targets: ") + to_string(loss) +
                          " needs float targets, the batch has none");
    }
  }

  // The loss value of the model's output goes to batch_loss, its gradient to the model; both are
  // the mean over mean_rows rows (0: the batch's own), so that a shard writes its share.
  void queue_loss(MatrixView<const float> out, const Batch& b, std::int64_t mean_rows = 0) {
    LossOutput o;
    o.loss = batch_loss.view();
    o.grad = model->output_grad(out.rows);
    o.mean_rows = mean_rows;
    switch (loss) {
      case Loss::mse:
        mse_loss(ctx, out, b.targets, o);
        break;
      case Loss::softmax_cross_entropy:
        softmax_cross_entropy(ctx, out, b.labels, o);
        break;
      case Loss::sigmoid_bce:
        sigmoid_bce(ctx, out, b.targets, o);
        break;
    }
  }

  [[noreturn]] void throw_non_finite(std::int64_t step, float value, long long bad) const {
    std::ostringstream s;
    s << "Trainer: step " << step << " (1-based): the " << to_string(loss) << " loss is " << value;
    if (bad > 1) s << " (and " << bad - 1 << " later step" << (bad > 2 ? "s" : "") << " too)";
    const std::string skip =
        options.non_finite_hint.empty()
            ? std::string("TrainerOptions::on_non_finite = NonFinitePolicy::skip")
            : options.non_finite_hint;
    if (const std::string cause = non_finite_parameters_cause(); !cause.empty()) {
      s << "; " << cause;
    } else {
      s << "; the parameters are left as they were before "
        << (bad > 1 ? "those steps" : "that step")
        << ", which count as taken. Lower the learning rate (now " << opt->base_lr()
        << "), check the data for NaN or infinite values, or skip such steps: " << skip;
    }
    throw NumericError(s.str());
  }

  // When an earlier update already made a parameter non-finite (the loss then only shows it),
  // the cause that can be seen from here; empty when every parameter is finite. Only on the
  // error path: it copies the parameters to the host.
  std::string non_finite_parameters_cause() const {
    const std::vector<float> params = model->params_to_host();
    std::size_t i = 0;
    while (i < params.size() && std::isfinite(params[i])) ++i;
    if (i == params.size()) return {};
    const std::string where = "an earlier update made the parameters non-finite (first " +
                              parameter_name(model->widths(), static_cast<std::int64_t>(i)) +
                              " = " + std::to_string(params[i]) + ")";
    if (const std::string cause = opt->non_finite_cause(); !cause.empty()) {
      return where + ": " + cause;
    }
    std::ostringstream s;
    s << where << ": the updates diverged; lower the learning rate (now " << opt->base_lr()
      << ") or clip the gradient norm, and train again from a good checkpoint";
    return s.str();
  }

  // Data parallel: starts summing the buckets whose first layer is `layer` or above.
  void start_buckets(int layer) {
    Communicator::Impl& c = comm.impl();
    for (; next_bucket < buckets.size() && buckets[next_bucket].first >= layer; ++next_bucket) {
      const Bucket& k = buckets[next_bucket];
      c.start_sum(ctx, model->grads().data + k.offset, static_cast<std::size_t>(k.count));
    }
    c.poll();
  }

  // The work of one step after the learning rate is written: what a graph captures. A batch
  // with a non-finite loss sets found_inf, and the update skips it on the device.
  //
  // Data parallel, each rank queues: its shard's loss and gradients as its share of the global
  // batch's mean (LossOutput::mean_rows); the sum of the batch losses (a non-finite loss on any
  // rank makes the sum non-finite on every rank) and of each bucket of gradients, started as the
  // backward pass finishes it; then, with every sum done, the bookkeeping and the update, which
  // see the same values on every rank.
  void queue_step(const Batch& b) {
    const std::int64_t global = global_rows(b);
    const bool shared = data_parallel();
    if (b.x.rows > 0) {
      queue_loss(model->forward(b.x), b, global);
    } else {
      fill(ctx, batch_loss.view(), 0.0f);  // an empty shard adds nothing
    }
    if (shared) {
      comm.impl().start_sum(ctx, batch_loss.data(), 1);
      next_bucket = 0;
    }
    if (b.x.rows > 0) {
      if (shared) {
        model->backward(b.x, [this](int layer) { start_buckets(layer); });
      } else {
        model->backward(b.x);
      }
    } else {
      fill(ctx, model->grads(), 0.0f);
      start_buckets(0);
    }
    if (shared) comm.impl().finish_sums(ctx);
    backend.record_batch(ctx, train_stats.data(), batch_loss.data(), static_cast<double>(global));
    const float* scale = nullptr;
    if (options.clip_grad_norm > 0.0f) {
      clip_grad_norm(ctx, model->grads(), options.clip_grad_norm, options.clip_norm_type,
                     clip.data(), clip.data() + 1);
      scale = clip.data() + 1;
    }
    opt->update(&train_stats.data()->found_inf, scale);
  }

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
  detail::Graph* graph_for(const Batch& b) {
    if (backend.begin_capture == nullptr || !options.cuda_graphs || graphs_disabled ||
        opt->steps() == 0 || (data_parallel() && !comm.impl().capturable())) {
      return nullptr;
    }
    const detail::GraphKey key{b.x.data, b.labels.data, b.targets.data, b.x.rows,
                               b.x.ld,   b.targets.ld,  global_rows(b)};
    const GraphPlan plan = graphs.plan(key, backend.scratch_generation(ctx), model->max_batch());
    const bool agree = comm.size() > 1;
    std::int64_t votes[2] = {plan == GraphPlan::eager ? 1 : 0, plan == GraphPlan::capture ? 1 : 0};
    if (agree) comm.impl().sum_i64(votes, 2);
    if (votes[0] > 0) return nullptr;  // some rank runs this step eagerly: every rank does
    if (votes[1] > 0) {
      std::int64_t failed = plan == GraphPlan::capture && !capture(b) ? 1 : 0;
      if (agree) comm.impl().sum_i64(&failed, 1);
      if (failed > 0) {
        // Capture is an optimisation: when the step cannot be captured, run it eagerly from now
        // on (a real error in the step is thrown again by the eager run).
        graphs_disabled = true;
        graphs.clear();
        return nullptr;
      }
    }
    return graphs.current().get();
  }

  // Captures the step into the planned entry; false when it cannot be captured. Every way out
  // of a failed capture ends it (abort_capture), so that the eager run after it starts clean.
  bool capture(const Batch& b) {
    try {
      backend.begin_capture(ctx);
      try {
        queue_step(b);
        graphs.current() = detail::GraphPtr(backend.end_capture(ctx), backend.destroy_graph);
      } catch (...) {
        backend.abort_capture(ctx);
        throw;
      }
      return true;
    } catch (const Error&) {
      return false;
    }
  }

  void step(const Batch& b) {
    model->reserve(std::max<std::int64_t>(b.x.rows, 1));
    opt->prepare();
    if (detail::Graph* graph = graph_for(b)) {
      backend.launch(ctx, *graph);
    } else {
      queue_step(b);
    }
    opt->advance();
    // Where the host reads the stats for free (the CPU), a bad step is reported at once, not at
    // the next take_train_loss/check_numerics.
    if (backend.host_memory && train_stats.data()->found_inf != 0) check_pending();
  }

  void write(Buffer<StepStats>& s, const StepStats& v) {
    s.copy_from_host(ctx, std::span<const StepStats>(&v, 1));
  }

  // Reads train_stats; under the error policy throws for the non-finite steps not reported yet.
  // They are then marked as reported (counted as skipped) while the loss sums of the finite steps
  // around them stay: each bad step is reported once, and no good step's loss is dropped.
  StepStats check_pending() {
    StepStats s = read(train_stats);
    if (s.bad > 0 && options.on_non_finite == NonFinitePolicy::error) {
      const std::int64_t step = stats_base_step + s.first_bad + 1;
      const long long bad = s.bad;
      const float value = s.first_bad_loss;
      skipped_before += bad;
      s.bad = 0;
      s.first_bad = -1;
      s.first_bad_loss = 0.0f;
      write(train_stats, s);  // the device is idle: read waited for it
      throw_non_finite(step, value, bad);
    }
    return s;
  }

  void count_correct(MatrixView<const float> out, const Batch& b) {
    if (loss == Loss::softmax_cross_entropy) {
      backend.count_correct(ctx, out, b.labels, eval_stats.data());
    } else if (loss == Loss::sigmoid_bce) {
      backend.count_correct_binary(ctx, out, b.targets, eval_stats.data());
    }
  }
  // Mean loss and accuracy over one pass of the loader (see Trainer::evaluate).
  EvalResult evaluate(BatchLoader& loader,
                      const std::function<void(std::int64_t, std::int64_t)>& on_batch,
                      const char* op) {
    if (!loader.context().shares_state_with(ctx) && loader.context().device() != ctx.device()) {
      throw DeviceError(std::string(op) + ": the loader runs on " +
                        loader.context().device().str() + ", the model on " + ctx.device().str());
    }
    loader.communicator().impl().check_context(ctx, op);
    loader.start_epoch(0);
    return evaluate_batches([&](Batch& b) { return loader.next(b); }, loader.batches(), on_batch,
                            &loader.communicator());
  }

  // The same over data in the context's memory, in slices of batch_size rows.
  EvalResult evaluate(const Batch& data, std::int64_t batch_size, const char* op) {
    if (batch_size < 1) {
      throw ArgumentError(std::string(op) + ": batch_size: must be >= 1, got " +
                          std::to_string(batch_size));
    }
    check_batch(data);
    if (data.x.device != ctx.device()) {
      throw DeviceError(std::string(op) + ": data.x is on " + data.x.device.str() +
                        ", the model on " + ctx.device().str());
    }
    const std::int64_t total = data.x.rows;
    const std::int64_t batches = (total + batch_size - 1) / batch_size;
    std::int64_t start = 0;
    return evaluate_batches(
        [&](Batch& b) {
          if (start >= total) return false;
          const std::int64_t rows = std::min(batch_size, total - start);
          b = Batch{};
          b.x = MatrixView<const float>(data.x.data + start * data.x.ld, rows, data.x.cols,
                                        data.x.device, data.x.ld);
          if (!data.labels.empty()) {
            b.labels =
                VectorView<const std::int32_t>(data.labels.data + start, rows, data.labels.device);
          }
          if (!data.targets.empty()) {
            b.targets =
                MatrixView<const float>(data.targets.data + start * data.targets.ld, rows,
                                        data.targets.cols, data.targets.device, data.targets.ld);
          }
          start += rows;
          return true;
        },
        batches, {}, nullptr);
  }

  // Queues every batch next(b) yields, then reads the counts once. `shards` (when not null):
  // the batches are this rank's shards, and the counts are summed over its ranks.
  template <class Next>
  EvalResult evaluate_batches(Next next, std::int64_t batches,
                              const std::function<void(std::int64_t, std::int64_t)>& on_batch,
                              const Communicator* shards) {
    check_pending();
    reset(eval_stats);
    std::int64_t rows = 0, index = 0;
    Batch b;
    while (next(b)) {
      if (b.x.rows > 0) {     // a shard may be empty
        Batch rows_only = b;  // evaluation takes each shard's own mean: no global batch
        rows_only.global_rows = 0;
        check_batch(rows_only);
        MatrixView<const float> out = model->forward(b.x);
        queue_loss(out, b);
        backend.record_batch(ctx, eval_stats.data(), batch_loss.data(),
                             static_cast<double>(b.x.rows));
        count_correct(out, b);
        rows += b.x.rows;
      }
      if (on_batch) on_batch(++index, batches);
    }
    StepStats s = read(eval_stats);
    if (shards != nullptr && shards->size() > 1) {
      double sums[2] = {s.loss_sum, s.samples};
      std::int64_t counts[3] = {rows, s.bad, static_cast<std::int64_t>(s.correct)};
      shards->sum(sums);
      shards->sum(counts);
      s.loss_sum = sums[0];
      s.samples = sums[1];
      rows = counts[0];
      s.bad = counts[1];
      s.correct = static_cast<unsigned long long>(counts[2]);
    }
    EvalResult r;
    r.samples = rows;
    r.loss = s.bad > 0 || s.samples == 0 ? std::numeric_limits<double>::quiet_NaN()
                                         : s.loss_sum / s.samples;
    if (loss == Loss::softmax_cross_entropy) {
      r.accuracy = static_cast<double>(s.correct) / static_cast<double>(rows);
    } else if (loss == Loss::sigmoid_bce) {
      r.accuracy = static_cast<double>(s.correct) /
                   (static_cast<double>(rows) * static_cast<double>(model->outputs()));
    }
    return r;
  }
};

Trainer::Trainer(Mlp& model, Loss loss, Optimizer& optimizer, TrainerOptions options)
    : Trainer(model, loss, optimizer, Communicator(), std::move(options)) {}

Trainer::Trainer(Mlp& model, Loss loss, Optimizer& optimizer, const Communicator& comm,
                 TrainerOptions options) {
  if (&optimizer.model() != &model) {
    throw ArgumentError("Trainer: optimizer: it was built for another Mlp");
  }
  check_clipping(options.clip_grad_norm, options.clip_norm_type, "Trainer");
  check_loss(model, loss, "Trainer");
  comm.impl().check_context(model.context(), "Trainer");
  check_replicas(comm, model, loss, optimizer, options);
  impl_ = std::make_unique<Impl>(model, loss, &optimizer, options, comm);
}

Trainer::Trainer(Trainer&&) noexcept = default;
Trainer& Trainer::operator=(Trainer&&) noexcept = default;
Trainer::~Trainer() = default;

Mlp& Trainer::model() const { return *impl_->model; }
Optimizer& Trainer::optimizer() const { return *impl_->opt; }
const Communicator& Trainer::communicator() const { return impl_->comm; }

void Trainer::set_clip_grad_norm(float max_norm, float norm_type) {
  check_clipping(max_norm, norm_type, "Trainer::set_clip_grad_norm");
  Impl& m = *impl_;
  if (max_norm != m.options.clip_grad_norm || norm_type != m.options.clip_norm_type) {
    m.graphs.clear();  // the captured steps clip (or not) as they were captured
  }
  m.options.clip_grad_norm = max_norm;
  m.options.clip_norm_type = norm_type;
}

float Trainer::last_grad_norm() const {
  const Impl& m = *impl_;
  if (m.options.clip_grad_norm <= 0.0f) {
    return std::numeric_limits<float>::quiet_NaN();
  }
  if (m.data_parallel()) m.comm.impl().wait(m.ctx);
  return m.clip.to_host(m.ctx)[0];
}
Loss Trainer::loss() const { return impl_->loss; }
int Trainer::graphs() const { return impl_->graphs.graphs(); }

void Trainer::step(const Batch& batch) {
  impl_->check_batch(batch);
  impl_->step(batch);
}

double Trainer::take_train_loss() {
  Impl& m = *impl_;
  const StepStats s = m.check_pending();
  m.skipped_before += s.bad;
  m.stats_base_step = m.opt->steps();
  m.reset(m.train_stats);
  return s.samples > 0 ? s.loss_sum / s.samples : std::numeric_limits<double>::quiet_NaN();
}

void Trainer::check_numerics() { impl_->check_pending(); }

void Trainer::set_non_finite_policy(NonFinitePolicy policy, std::string hint) {
  if (policy != NonFinitePolicy::error && policy != NonFinitePolicy::skip) {
    throw ArgumentError("Trainer::set_non_finite_policy: policy: unknown id " +
                        std::to_string(static_cast<int>(policy)));
  }
  impl_->options.on_non_finite = policy;
  impl_->options.non_finite_hint = std::move(hint);
}

std::int64_t Trainer::skipped_steps() {
  const StepStats s = impl_->read(impl_->train_stats);
  return impl_->skipped_before + s.bad;
}

EvalResult Trainer::evaluate(BatchLoader& loader) { return evaluate(loader, {}); }

EvalResult Trainer::evaluate(BatchLoader& loader,
                             const std::function<void(std::int64_t, std::int64_t)>& on_batch) {
  return impl_->evaluate(loader, on_batch, "Trainer::evaluate");
}

EvalResult Trainer::evaluate(const Batch& data, std::int64_t batch_size) {
  return impl_->evaluate(data, batch_size, "Trainer::evaluate");
}

EvalResult evaluate(Mlp& model, Loss loss, BatchLoader& loader,
                    const std::function<void(std::int64_t, std::int64_t)>& on_batch) {
  check_loss(model, loss, "evaluate");
  Trainer::Impl impl(model, loss, nullptr, {});
  return impl.evaluate(loader, on_batch, "evaluate");
}

EvalResult evaluate(Mlp& model, Loss loss, const Batch& data, std::int64_t batch_size) {
  check_loss(model, loss, "evaluate");
  Trainer::Impl impl(model, loss, nullptr, {});
  return impl.evaluate(data, batch_size, "evaluate");
}

std::vector<EpochStats> Trainer::fit(BatchLoader& train, BatchLoader* test, std::int64_t epochs,
                                     std::function<void(const EpochStats&)> on_epoch) {
  FitOptions o;
  o.epochs = epochs;
  o.on_epoch = std::move(on_epoch);
  return fit(train, test, o);
}

std::vector<EpochStats> Trainer::fit(BatchLoader& train, BatchLoader* test,
                                     const FitOptions& options) {
  Impl& m = *impl_;
  if (options.epochs < 1) {
    throw ArgumentError("Trainer::fit: epochs: must be >= 1, got " +
                        std::to_string(options.epochs));
  }
  if (train.communicator().size() != m.comm.size() ||
      train.communicator().rank() != m.comm.rank() ||
      (test != nullptr && test->communicator().size() != train.communicator().size())) {
    throw ArgumentError(
        "Trainer::fit: the loaders must be sharded over the trainer's communicator (" +
        m.comm.describe() + "); the training loader's is " + train.communicator().describe() +
        (test != nullptr ? ", the test loader's " + test->communicator().describe() : ""));
  }
  const std::int64_t batches = train.batches();
  std::int64_t epoch = m.opt->steps() / batches;
  std::int64_t first_batch = m.opt->steps() % batches;
  take_train_loss();  // start the bookkeeping afresh (and report what is pending)
  const std::int64_t skipped_at_start = m.skipped_before;
  std::vector<EpochStats> history;
  const auto t0 = std::chrono::steady_clock::now();
  for (; epoch < options.epochs; ++epoch) {
    const auto te = std::chrono::steady_clock::now();
    train.start_epoch(epoch, first_batch);
    std::int64_t index = first_batch, rows = 0;
    first_batch = 0;
    Batch b;
    while (train.next(b)) {
      step(b);
      rows += m.global_rows(b);  // samples per second of the whole job
      ++index;
      if (options.on_batch) options.on_batch(index, batches);
    }
    EpochStats st;
    st.epoch = epoch + 1;
    st.epochs = options.epochs;
    st.train_loss = take_train_loss();
    const double train_seconds = seconds_since(te);
    st.samples_per_second = train_seconds > 0 ? static_cast<double>(rows) / train_seconds : 0.0;
    if (test != nullptr) {
      st.has_test = true;
      st.test = evaluate(*test, options.on_eval_batch);
    }
    st.epoch_seconds = seconds_since(te);
    st.elapsed_seconds = seconds_since(t0);
    st.steps = m.opt->steps();
    st.skipped_steps = m.skipped_before - skipped_at_start;
    st.lr = m.opt->lr();
    history.push_back(st);
    if (options.on_epoch) options.on_epoch(st);
  }
  return history;
}

}  // namespace descent
