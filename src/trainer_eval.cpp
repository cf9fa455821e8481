// Trainer: evaluation (mean loss and accuracy over a loader or over data in device memory,
// queued, then read once) and fit (epochs of steps, each followed by an evaluation).
#include <algorithm>
#include <chrono>
#include <limits>

#include "trainer_impl.hpp"

namespace descent {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

void Trainer::Impl::count_correct(MatrixView<const float> out, const Batch& b) {
  switch (detail::loss_info(loss, "Trainer").accuracy) {
    case detail::LossInfo::Accuracy::argmax:
      backend.count_correct(ctx, out, b.labels, eval_stats.data());
      break;
    case detail::LossInfo::Accuracy::per_output:
      backend.count_correct_binary(ctx, out, b.targets, eval_stats.data());
      break;
    case detail::LossInfo::Accuracy::none:
      break;
  }
}

EvalResult Trainer::Impl::evaluate(BatchLoader& loader,
                                   const std::function<void(std::int64_t, std::int64_t)>& on_batch,
                                   const char* op) {
  if (!loader.context().shares_state_with(ctx) && loader.context().device() != ctx.device()) {
    throw DeviceError(std::string(op) + ": the loader runs on " + loader.context().device().str() +
                      ", the model on " + ctx.device().str());
  }
  loader.communicator().impl().check_context(ctx, op);
  loader.start_epoch(0);
  return evaluate_batches([&](Batch& b) { return loader.next(b); }, loader.batches(), on_batch,
                          &loader.communicator());
}

EvalResult Trainer::Impl::evaluate(const Batch& data, std::int64_t batch_size, const char* op) {
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

template <class Next>
EvalResult Trainer::Impl::evaluate_batches(
    Next next, std::int64_t batches,
    const std::function<void(std::int64_t, std::int64_t)>& on_batch, const Communicator* shards) {
  check_pending();
  reset(eval_stats);
  std::int64_t rows = 0, index = 0;
  Batch b;
  while (next(b)) {
    if (b.x.rows > 0) {     // a shard may be empty
      Batch rows_only = b;  // evaluation takes each shard's own mean: no global batch
      rows_only.global_rows = 0;
      check_batch(rows_only);
      const ForwardPass pass = model->forward(b.x);
      queue_loss(pass, b);
      backend.record_batch(ctx, eval_stats.data(), batch_loss.data(),
                           static_cast<double>(b.x.rows));
      count_correct(pass.output, b);
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
  switch (detail::loss_info(loss, "Trainer").accuracy) {
    case detail::LossInfo::Accuracy::argmax:
      r.accuracy = static_cast<double>(s.correct) / static_cast<double>(rows);
      break;
    case detail::LossInfo::Accuracy::per_output:
      r.accuracy = static_cast<double>(s.correct) /
                   (static_cast<double>(rows) * static_cast<double>(model->outputs()));
      break;
    case detail::LossInfo::Accuracy::none:
      break;
  }
  return r;
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
  detail::check_loss(model, loss, "evaluate");
  Trainer::Impl impl(model, loss, nullptr, {});
  return impl.evaluate(loader, on_batch, "evaluate");
}

EvalResult evaluate(Mlp& model, Loss loss, const Batch& data, std::int64_t batch_size) {
  detail::check_loss(model, loss, "evaluate");
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
  if (m.comm.size() > 1) {
    // Every rank must run the same epochs and evaluations, or one waits for ever in a sum the
    // others never start.
    std::uint64_t h = fingerprint_of(options.epochs);
    h = fingerprint_of(train.batches(), h);
    h = fingerprint_of(test != nullptr, h);
    if (test != nullptr) h = fingerprint_of(test->batches(), h);
    check_same_on_every_rank(m.comm, h, "Trainer::fit",
                             "the epochs, the training batches per epoch or the test loader");
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
