// Trainer: the training step (one path for every backend: queued eagerly, then captured and
// replayed where the backend can capture), its device-side loss bookkeeping and the losses'
// table. Evaluation and fit: src/trainer_eval.cpp; data parallel: src/trainer_parallel.cpp.
#include "descent/trainer.hpp"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <span>
#include <sstream>
#include <string>
#include <string_view>

#include "descent/error.hpp"
#include "enum_names.hpp"
#include "trainer_impl.hpp"

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

// The whole-network slice step (Backend::dense_slice_step) keeps every layer's rows of a slice
// and the weights in cache, and each task of rows its own copy of the gradient: for narrow
// networks (measured: 64-64-64-64-64-64-16), where the passes between the layer-by-layer
// products cost as much as the products.
// Below kSliceStepMinRows rows the activations fit in cache anyway, and a batch of few slices
// leaves threads idle: measured on 2 cores, 64-wide networks gain from 4096 rows on (1.1–1.3×;
// 1.3–1.4× at 16384), level at 1024, a 128-wide one at 64 rows runs twice as long.
constexpr std::int64_t kSliceStepMaxParameters = std::int64_t(1) << 17;
constexpr std::int64_t kSliceStepMinRows = 2048;
}  // namespace

const char* to_string(Loss loss) { return detail::name_of(kLossNames, loss); }
Loss parse_loss(const char* text) { return detail::parse_enum(kLossNames, text, "loss"); }

namespace detail {

namespace {

void queue_mse(const Context& ctx, MatrixView<const float> out, const Batch& b,
               const LossOutput& o) {
  mse_loss(ctx, out, b.targets, o);
}
void queue_cross_entropy(const Context& ctx, MatrixView<const float> out, const Batch& b,
                         const LossOutput& o) {
  detail::softmax_cross_entropy_in_range(ctx, out, b.labels, o);  // Trainer::Impl::check_batch
}
void queue_bce(const Context& ctx, MatrixView<const float> out, const Batch& b,
               const LossOutput& o) {
  detail::sigmoid_bce_in_range(ctx, out, b.targets, o);  // Trainer::Impl::check_batch
}

// One row per loss, in the order of the enum.
constexpr LossInfo kLosses[] = {
    {Loss::mse, false, 1, LossInfo::Accuracy::none, &queue_mse},
    {Loss::softmax_cross_entropy, true, 2, LossInfo::Accuracy::argmax, &queue_cross_entropy},
    {Loss::sigmoid_bce, false, 1, LossInfo::Accuracy::per_output, &queue_bce},
};

}  // namespace

const LossInfo& loss_info(Loss loss, const char* op) {
  for (const LossInfo& row : kLosses) {
    if (row.loss == loss) return row;
  }
  throw ArgumentError(std::string(op) + ": loss: unknown loss id " +
                      std::to_string(static_cast<int>(loss)));
}

void check_loss(const Mlp& model, Loss loss, const char* op) {
  const LossInfo& row = loss_info(loss, op);
  if (model.outputs() < row.min_outputs) {
    throw ArgumentError(std::string(op) + ": " + to_string(loss) + " needs at least " +
                        std::to_string(row.min_outputs) + " outputs (classes), the model has " +
                        std::to_string(model.outputs()));
  }
}

}  // namespace detail

namespace {

using detail::GraphPlan;

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

}  // namespace

void Trainer::Impl::check_batch(const Batch& b) const {
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
  if (detail::loss_info(loss, "Trainer::step").labels) {
    if (b.labels.empty()) {
      throw ArgumentError(std::string("Trainer::step: batch.labels: ") + to_string(loss) +
                          " needs integer labels, the batch has none");
    }
    check_labels(b);
  } else if (b.targets.empty()) {
    throw ArgumentError(std::string("Trainer::step: batch.targets: ") + to_string(loss) +
                        " needs float targets, the batch has none");
  } else if (loss == Loss::sigmoid_bce && !b.targets_in_unit && b.x.rows > 0) {
    const detail::ValueCheck bad = backend.find_target_outside_unit(ctx, b.targets);
    if (bad.index >= 0) {
      throw ArgumentError(
          "Trainer::step: batch.targets[" + std::to_string(bad.index / b.targets.cols) + ", " +
          std::to_string(bad.index % b.targets.cols) + "] = " + std::to_string(bad.value) +
          " is outside [0, 1] (a probability: binary cross-entropy)");
    }
  }
}

// The same range check on every device: by what the batch says it knows (one comparison), or
// else by a scan of the labels.
void Trainer::Impl::check_labels(const Batch& b) const {
  const std::int64_t classes = model->outputs();
  if (b.labels_below > classes) {
    throw ArgumentError("Trainer::step: batch.labels: they lie in [0, " +
                        std::to_string(b.labels_below) +
                        ") (the dataset's classes), the model has " + std::to_string(classes) +
                        " outputs; give it one output per class");
  }
  if (b.labels_below >= 1 || b.labels.size == 0) return;
  const detail::ValueCheck bad = backend.find_label_outside(ctx, b.labels, classes);
  if (bad.index >= 0) {
    throw ArgumentError("Trainer::step: batch.labels[" + std::to_string(bad.index) + "] = " +
                        std::to_string(static_cast<std::int64_t>(bad.value)) + " is outside [0, " +
                        std::to_string(classes) + ") (classes = the model's outputs)");
  }
}

void Trainer::Impl::queue_loss(const ForwardPass& pass, const Batch& b, std::int64_t mean_rows) {
  LossOutput o;
  o.loss = batch_loss.view();
  o.grad = pass.output_grad;
  o.mean_rows = mean_rows;
  detail::loss_info(loss, "Trainer").queue(ctx, pass.output, b, o);
}

[[noreturn]] void Trainer::Impl::throw_non_finite(std::int64_t step, float value,
                                                  long long bad) const {
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
    s << "; the parameters are left as they were before " << (bad > 1 ? "those steps" : "that step")
      << ", which count as taken. Lower the learning rate (now " << opt->base_lr()
      << "), check the data for NaN or infinite values, or skip such steps: " << skip;
  }
  throw NumericError(s.str());
}

std::string Trainer::Impl::non_finite_parameters_cause() const {
  const std::vector<float> params = model->params_to_host();
  std::size_t i = 0;
  while (i < params.size() && std::isfinite(params[i])) ++i;
  if (i == params.size()) return {};
  const std::string where = "an earlier update made the parameters non-finite (first " +
                            parameter_name(model->widths(), static_cast<std::int64_t>(i)) + " = " +
                            std::to_string(params[i]) + ")";
  if (const std::string cause = opt->non_finite_cause(); !cause.empty()) {
    return where + ": " + cause;
  }
  std::ostringstream s;
  s << where << ": the updates diverged; lower the learning rate (now " << opt->base_lr()
    << ") or clip the gradient norm, and train again from a good checkpoint";
  return s.str();
}

bool Trainer::Impl::slice_steps_fit() {
  slice_rows_min = kSliceStepMinRows;
  if (backend.dense_slice_step == nullptr || model->precision() != Precision::fp32 ||
      model->parameter_count() > kSliceStepMaxParameters ||
      model->layers() > detail::kMaxSliceStepLayers) {
    return false;
  }
  if (const char* env = std::getenv("DESCENT_CPU_STEP"); env != nullptr) {
    if (std::string_view(env) == "layers") return false;
    if (std::string_view(env) == "slices") slice_rows_min = 1;  // any batch (to test it)
  }
  for (std::int64_t w : model->widths()) {
    if (w > detail::kMaxSliceStepWidth) return false;
  }
  return true;
}

void Trainer::Impl::queue_step(const Batch& b) {
  const std::int64_t global = global_rows(b);
  const bool shared = data_parallel();
  if (slice_steps && b.x.rows >= slice_rows_min) {  // slice_rows_min >= 1 where slice_steps
    slice_layers.clear();  // the model's views, in the capacity reserved at construction
    for (int l = 0; l < model->layers(); ++l) {
      slice_layers.push_back({model->activations()[static_cast<std::size_t>(l)], model->weight(l),
                              model->bias(l), model->weight_grad(l), model->bias_grad(l)});
    }
    detail::SliceStepLoss objective;
    objective.kind = loss == Loss::mse ? detail::SliceLoss::mse
                     : loss == Loss::softmax_cross_entropy
                         ? detail::SliceLoss::softmax_cross_entropy
                         : detail::SliceLoss::sigmoid_bce;
    objective.targets = b.targets;  // checked by check_batch (BCE: in [0, 1]; labels: in range)
    objective.labels = b.labels;
    backend.dense_slice_step(ctx, slice_layers.data(), model->layers(), b.x, objective, global,
                             batch_loss.view());
    if (shared) {
      comm.impl().start_sum(ctx, batch_loss.data(), 1);
      next_bucket = 0;
      start_buckets(0);
      comm.impl().finish_sums(ctx);
    }
    finish_step(global);
    return;
  }
  ForwardPass pass;
  if (b.x.rows > 0) {
    pass = model->forward(b.x);
    queue_loss(pass, b, global);
  } else {
    fill(ctx, batch_loss.view(), 0.0f);  // an empty shard adds nothing
  }
  if (shared) {
    comm.impl().start_sum(ctx, batch_loss.data(), 1);
    next_bucket = 0;
  }
  if (b.x.rows > 0) {
    if (shared) {
      model->backward(pass, [this](int layer) { start_buckets(layer); });
    } else {
      model->backward(pass);
    }
  } else {
    fill(ctx, model->grads(), 0.0f);
    start_buckets(0);
  }
  if (shared) comm.impl().finish_sums(ctx);
  finish_step(global);
}

void Trainer::Impl::finish_step(std::int64_t global) {
  backend.record_batch(ctx, train_stats.data(), batch_loss.data(), static_cast<double>(global));
  const float* scale = nullptr;
  if (options.clip_grad_norm > 0.0f) {
    clip_grad_norm(ctx, model->grads(), options.clip_grad_norm, options.clip_norm_type, clip.data(),
                   clip.data() + 1);
    scale = clip.data() + 1;
  }
  opt->update(UpdateInputs{&train_stats.data()->found_inf, scale});
}

detail::Graph* Trainer::Impl::graph_for(const Batch& b) {
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

bool Trainer::Impl::capture(const Batch& b) {
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

void Trainer::Impl::step(const Batch& b) {
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

StepStats Trainer::Impl::check_pending() {
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

Trainer::Trainer(Mlp& model, Loss loss, Optimizer& optimizer, TrainerOptions options)
    : Trainer(model, loss, optimizer, Communicator(), std::move(options)) {}

Trainer::Trainer(Mlp& model, Loss loss, Optimizer& optimizer, const Communicator& comm,
                 TrainerOptions options) {
  if (&optimizer.model() != &model) {
    throw ArgumentError("Trainer: optimizer: it was built for another Mlp");
  }
  if (optimizer.kind() == OptimizerKind::lbfgs) {
    throw ArgumentError(
        "Trainer: optimizer: L-BFGS evaluates the loss several times per step, a Trainer once; "
        "drive it with LBfgs::step(closure) (the closure runs forward, loss and backward)");
  }
  check_clipping(options.clip_grad_norm, options.clip_norm_type, "Trainer");
  detail::check_loss(model, loss, "Trainer");
  comm.impl().check_context(model.context(), "Trainer");
  detail::check_replicas(comm, model, loss, optimizer, options);
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

}  // namespace descent
