// descent train: loads a dataset, builds an MLP and trains it, reporting each epoch (its options:
// apps/train_config.cpp).
// Every output is checked before the first epoch; SIGINT and SIGTERM stop training between two
// steps, never in the middle of a write.
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>

#include "commands.hpp"
#include "common.hpp"
#include "job.hpp"
#include "report.hpp"
#include "train_config.hpp"

namespace descent::app {

namespace {

std::string fmt_float(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// A failed write to stdout (a full disk, /dev/full, a closed pipe) ends the run with an error
// rather than training on with nobody seeing the results.
void check_stdout() {
  if (std::cout) return;
  const int e = errno != 0 ? errno : EIO;
  throw IoError(std::string("writing to standard output failed: ") + std::strerror(e));
}

// ---------------------------------------------------------------- stopping on a signal

volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

extern "C" void on_end_signal(int sig) {
  descent::remove_temporary_files();  // async-signal-safe: a save cut short leaves no file
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

// While it lives, SIGINT and SIGTERM go to `handler`:
//  - on_stop_signal (one process) only sets g_stop_signal; the training loop looks at it after
//    every step, and a second signal of the same kind gets the default action (SA_RESETHAND),
//    so a stuck run can still be killed;
//  - on_end_signal (several MPI ranks, where stopping cleanly would need the ranks to agree on
//    a step) ends the process at once, after removing the temporary file of a save in progress:
//    the previous checkpoint stays, and nothing else is left behind.
// A signal ignored when the command started stays ignored.
class OnStopSignals {
 public:
  explicit OnStopSignals(void (*handler)(int)) {
    g_stop_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    for (int i = 0; i < 2; ++i) {
      installed_[i] = sigaction(kSignals[i], nullptr, &old_[i]) == 0 &&
                      old_[i].sa_handler != SIG_IGN && sigaction(kSignals[i], &sa, nullptr) == 0;
    }
  }
  ~OnStopSignals() {
    for (int i = 0; i < 2; ++i) {
      if (installed_[i]) sigaction(kSignals[i], &old_[i], nullptr);
    }
  }
  OnStopSignals(const OnStopSignals&) = delete;
  OnStopSignals& operator=(const OnStopSignals&) = delete;

 private:
  static constexpr int kSignals[2] = {SIGINT, SIGTERM};
  struct sigaction old_[2]{};
  bool installed_[2] = {false, false};
};

// Thrown from the per-step callback to leave Trainer::fit between two steps.
struct Interrupted {};

const char* signal_name(int sig) { return sig == SIGINT ? "SIGINT" : "SIGTERM"; }

// ---------------------------------------------------------------- resume accounting

// The metadata that says what one epoch was, so a resumed run counts epochs the same way.
void add_epoch_metadata(CheckpointMetadata& meta, std::int64_t samples, std::int64_t batch,
                        std::int64_t batches, std::int64_t limit) {
  meta.emplace_back("samples", std::to_string(samples));
  meta.emplace_back("batch", std::to_string(batch));
  meta.emplace_back("batches_per_epoch", std::to_string(batches));
  meta.emplace_back("limit", std::to_string(limit));
}

// The step count of a resumed checkpoint means a number of epochs only with the same epoch: the
// same samples in batches of the same size. Anything else is refused, saying why and what to do.
void check_resume_epochs(const Checkpoint& ck, const std::string& path, std::int64_t samples,
                         std::int64_t batch, std::int64_t batches) {
  const std::string was_samples = ck.get("samples"), was_batch = ck.get("batch");
  const std::string where = "--resume " + path + ": ";
  if (!was_samples.empty() && !was_batch.empty()) {
    if (was_samples == std::to_string(samples) && was_batch == std::to_string(batch)) return;
    const std::string was_limit = ck.get("limit", "0");
    throw UsageError(
        where + "its epochs were " + ck.get("batches_per_epoch", "?") + " batches of " + was_batch +
        " from " + was_samples + " training samples, but this run's are " +
        std::to_string(batches) + " batches of " + std::to_string(batch) + " from " +
        std::to_string(samples) + " samples, so its step count (" + std::to_string(ck.steps) +
        ") says nothing about how many epochs are done; resume with --batch " + was_batch +
        " and the same training data" +
        (was_limit != "0" ? " and --limit " + was_limit : std::string(" (no --limit)")) +
        ", or train afresh without --resume");
  }
  // A checkpoint from before this metadata: only its step count can be checked.
  if (ck.steps % batches != 0) {
    throw UsageError(where + "its " + std::to_string(ck.steps) + " steps are not a whole number " +
                     "of this run's epochs (" + std::to_string(batches) + " batches of " +
                     std::to_string(batch) +
                     "), so it was written with another --batch or other data; resume with "
                     "the --batch and data it was trained with");
  }
}

// How batches reach the model, in words (BatchLoader::mode).
std::string describe_batches(const std::string& mode) {
  if (mode == "resident") return "training data held on the GPU";
  if (mode == "streaming") return "training data streamed to the GPU";
  return "training data read in host memory";
}

}  // namespace

std::vector<OptionSpec> train_option_table() {
  TrainArgs a;
  Parser p("train", kTrainSummary);
  add_train_options(p, a);
  return p.table();
}

int run_train(int argc, char** argv) {
  TrainArgs a;
  Parser p("train", kTrainSummary);
  add_train_options(p, a, Parser::peek(argc, argv, "optimizer"));
  if (!p.parse(argc, argv)) return 0;
  // Cheap checks first, so a mistake costs no data loading.
  const TrainConfig config = make_train_config(p, a);
  const std::vector<std::int64_t>& hidden = config.hidden;
  const Activation act = config.activation;
  const Init init = config.init;
  const Loss loss = config.loss;
  const std::uint64_t seed = config.seed;

  // Outputs: never an input, never each other, and each location proven writable now rather
  // than after the first epoch.
  Output checkpoint_out{"--checkpoint", a.checkpoint}, metrics_out{"--metrics", a.metrics},
      plot_out{"--plot", a.plot};
  if (a.plot.empty() && !a.metrics.empty() &&
      check_output_location(a.metrics, "--metrics") == OutputKind::file) {
    std::string svg = a.metrics;
    if (svg.size() > 4 && svg.compare(svg.size() - 4, 4, ".csv") == 0) svg.resize(svg.size() - 4);
    plot_out = {"--metrics (its .svg curves)", svg + ".svg"};
  }
  std::vector<std::pair<std::string, std::string>> inputs = input_files(a.data, true);
  if (!a.resume.empty()) inputs.emplace_back("--resume", a.resume);
  check_outputs({&checkpoint_out, &metrics_out, &plot_out}, inputs);

  // From here on a SIGINT/SIGTERM stops the run cleanly. On several MPI ranks a signal ends
  // the job at once instead, leaving no temporary file: stopping between two steps would need
  // every rank to agree on the step (the checkpoint of the last finished epoch is whole either
  // way).
  const Job& j = job();
  const OnStopSignals on_signals(j.size() == 1 ? on_stop_signal : on_end_signal);
  Context ctx = make_context(a.dev, j.local_rank(), j.local_size());
  // Every rank's data-parallel communicator (one process: a single one). Collective.
  const Communicator comm = j.communicator(ctx);
  check_same_options_on_every_rank(comm, a);

  // Data.
  Dataset train = load_train(a.data);
  if (loss == Loss::softmax_cross_entropy && !train.has_labels()) {
    throw UsageError(
        "--loss ce needs class labels, but the training set has regression targets; use --loss "
        "mse");
  }
  if (loss != Loss::softmax_cross_entropy && train.has_labels()) {
    throw UsageError("--loss " + a.loss +
                     " needs float targets, but the training set has class labels; use --loss ce, "
                     "or a CSV with --regression");
  }
  // --normalize: bytes through the dataset's byte-to-float map; float features (and mse's
  // targets) through a Scaling that the model keeps, so that eval, predict and the exports
  // answer in the data's own units.
  Scaling scaling;
  if (train.is_uint8() && a.normalize == "standard") {
    const auto [mean, sd] = train.feature_stats();
    const double s = sd > 0 ? sd : 1.0;
    train.set_normalization(static_cast<float>(train.scale() / s),
                            static_cast<float>((train.shift() - mean) / s));
  } else if (train.is_uint8() && a.normalize == "none") {
    train.set_normalization(1.0f, 0.0f);
  } else if (!train.is_uint8() && a.normalize == "standard") {
    scaling = standardization(train);
    // Binary cross-entropy's targets are probabilities: they stay in [0, 1].
    if (loss != Loss::mse) scaling.output_mean.clear(), scaling.output_scale.clear();
  }
  const bool with_test = has_test_data(a.data);
  Dataset test;
  if (with_test) {
    test = load_test(a.data, train.classes());
    if (test.features() != train.features()) {
      throw DataError("the test set has " + std::to_string(test.features()) +
                      " features per sample but the training set has " +
                      std::to_string(train.features()));
    }
    if (test.is_uint8()) test.set_normalization(train.scale(), train.shift());
  }
  if (loss == Loss::sigmoid_bce) {
    // Binary cross-entropy's targets are probabilities: say so before training, naming the row.
    for (const auto& [set, name] :
         {std::pair<const Dataset*, const char*>{&train, "training"}, {&test, "test"}}) {
      const std::span<const float> t = set->targets();
      for (std::size_t i = 0; i < t.size(); ++i) {
        if (!(t[i] >= 0.0f && t[i] <= 1.0f)) {
          throw DataError(std::string("--loss bce: the ") + name + " set's target of sample " +
                          std::to_string(i / static_cast<std::size_t>(
                                                 std::max<std::int64_t>(1, set->target_count()))) +
                          " is " + std::to_string(t[i]) +
                          ", outside [0, 1]: binary cross-entropy needs probabilities; use "
                          "--loss mse for other targets");
        }
      }
    }
  }

  if (!scaling.empty()) {
    train.apply(scaling);
    if (with_test) test.apply(scaling);
  }

  // Model, optimizer, trainer.
  const std::int64_t batch = a.batch, epochs = a.epochs;
  std::vector<std::int64_t> widths{train.features()};
  widths.insert(widths.end(), hidden.begin(), hidden.end());
  widths.push_back(train.has_labels() ? train.classes() : train.target_count());
  MlpOptions mo = mlp_options(a.dev);
  mo.init = init;
  mo.seed = seed;
  // Evaluation runs in larger batches; size the activations for both once, up front.
  const std::int64_t eval_batch =
      with_test ? std::min<std::int64_t>(std::max<std::int64_t>(batch, 1000), test.size()) : 1;
  mo.max_batch = std::max(std::min(batch, train.size()), eval_batch);
  Mlp model(ctx, widths, act, mo);
  model.set_scaling(scaling);
  LoaderOptions lo;
  lo.batch_size = batch;
  lo.seed = seed;
  BatchLoader train_loader(ctx, train, lo, comm);
  const std::int64_t batches = train_loader.batches();
  const std::unique_ptr<Optimizer> optimizer =
      make_optimizer(model, config.optimizer, config.optimizer_options, make_schedule(a, batches));
  Optimizer& opt = *optimizer;
  if (!a.resume.empty()) {
    const Checkpoint ck = [&] {
      try {
        return read_checkpoint(a.resume);
      } catch (const Error&) {
        rethrow_naming_option({{"--resume", a.resume}});
      }
    }();
    check_resume_epochs(ck, a.resume, train.size(), train_loader.batch_size(), batches);
    restore(ck, model, &opt, "--resume checkpoint '" + a.resume + "'");
    if (!same_scaling(model.scaling(), scaling)) {
      throw DataError(
          "--resume: the checkpoint '" + a.resume + "' was trained on data scaled otherwise (" +
          describe_scaling(model.scaling()) + ") than --normalize " + a.normalize +
          " gives for this training set (" + describe_scaling(scaling) +
          "): resume with the options and data it was trained with" +
          (model.scaling().empty() ? " (--normalize none: the values as they are)" : ""));
    }
  }
  TrainerOptions to;
  to.on_non_finite = a.on_nan == "skip" ? NonFinitePolicy::skip : NonFinitePolicy::error;
  to.non_finite_hint = "use --on-nan skip (or a lower --lr than " + fmt_float(a.lr) + ")";
  if (a.normalize == "none") to.non_finite_hint += ", or scale the inputs: --normalize standard";
  to.clip_grad_norm = static_cast<float>(a.clip_grad_norm);
  to.clip_norm_type = a.clip_norm_type == "inf" ? std::numeric_limits<float>::infinity() : 2.0f;
  Trainer trainer(model, loss, opt, comm, to);
  std::optional<BatchLoader> test_loader;
  if (with_test) {
    LoaderOptions test_lo;
    test_lo.batch_size = eval_batch;
    test_lo.shuffle = false;
    test_loader.emplace(ctx, test, test_lo, comm);
  }

  std::cout
      << "descent train: "
      << (with_test
              ? std::to_string(train.size()) + " training / " + counted(test.size(), "test sample")
              : counted(train.size(), "training sample"))
      << ", " << counted(train.features(), "feature") << ", "
      << (train.has_labels() ? counted(train.classes(), "class", "classes")
                             : counted(train.target_count(), "target"))
      << "\n  model " << model.describe() << ", " << counted(model.parameter_count(), "parameter")
      << ", loss " << to_string(loss)
      << (scaling.empty()
              ? std::string()
              : "\n  scaling " + describe_scaling(scaling) +
                    (scaling.scales_outputs() ? " (the loss is on the standardised targets)" : ""))
      << "\n  optimizer " << describe_optimizer(a, opt) << ", schedule "
      << opt.schedule().describe() << ", batch " << train_loader.batch_size() << ", "
      << counted(epochs, "epoch") << "\n  device "
      << describe_device(ctx, a.dev.precision == "bf16") << ", "
      << describe_batches(train_loader.mode())
      << (j.under_mpi()
              ? ", " + counted(comm.size(), "MPI rank") + " (" + to_string(comm.backend()) + ")"
              : std::string())
      << (opt.steps() > 0 ? ", resumed at step " + std::to_string(opt.steps()) : std::string())
      << "\n  " << throughput_note() << std::endl;
  check_stdout();

  CheckpointMetadata meta{{"loss", to_string(loss)},
                          {"scale", fmt_float(train.scale())},
                          {"shift", fmt_float(train.shift())},
                          {"classes", std::to_string(train.classes())},
                          {"seed", std::to_string(seed)}};
  add_epoch_metadata(meta, train.size(), train_loader.batch_size(), batches, a.data.limit);
  const std::int64_t done_before = opt.steps() / batches;
  if (done_before >= epochs) {
    std::cout << "nothing to do: the checkpoint '" << a.resume << "' already holds "
              << counted(done_before, "epoch") << " and --epochs is " << epochs
              << "; give --epochs " << done_before + 1 << " or more to train further" << std::endl;
    check_stdout();
    return 0;
  }

  // Only rank 0 draws progress and writes files; the others train alongside.
  const bool root = j.is_root();
  ProgressBar bar(!a.no_progress && root);
  std::vector<EpochStats> history;
  std::int64_t current_epoch = done_before + 1, batch_in_epoch = 0, saved_epoch = 0;
  const std::string title = "descent train: " + model.describe();
  // Streams (a FIFO, /dev/stdout) get each output once, when training ends; the checkpoint
  // only when it holds a whole epoch (not after an interruption).
  const auto write_streams = [&](bool interrupted) {
    if (history.empty() || !root) return;
    std::cout.flush();
    if (checkpoint_out.kind == OutputKind::stream && !interrupted)
      save_checkpoint(checkpoint_out.path, model, &opt, meta);
    if (metrics_out.kind == OutputKind::stream)
      write_file_atomic(metrics_out.path, metrics_csv(history), "--metrics");
    if (!plot_out.path.empty() && plot_out.kind == OutputKind::stream)
      write_file_atomic(plot_out.path, curves_svg(history, title), plot_out.option);
  };
  FitOptions fo;
  fo.epochs = epochs;
  Throughput throughput(train_loader.samples_per_epoch(), train_loader.batch_size(), batches);
  fo.on_batch = [&](std::int64_t b, std::int64_t n) {
    batch_in_epoch = b;
    throughput.step_done(b);
    if (g_stop_signal != 0) throw Interrupted{};
    bar.update(current_epoch, epochs, b, n);
  };
  fo.on_eval_batch = [&](std::int64_t, std::int64_t) {
    if (g_stop_signal != 0) throw Interrupted{};
  };
  fo.on_epoch = [&](const EpochStats& whole) {
    bar.clear();
    EpochStats s = whole;
    s.samples_per_second = throughput.samples_per_second(whole);
    history.push_back(s);
    std::cout << epoch_line(s) << std::endl;
    check_stdout();
    if (!root) return;
    if (checkpoint_out.kind == OutputKind::file && !a.checkpoint.empty()) {
      save_checkpoint(a.checkpoint, model, &opt, meta);
      saved_epoch = s.epoch;
    }
    if (metrics_out.kind == OutputKind::file && !a.metrics.empty())
      write_file_atomic(a.metrics, metrics_csv(history), "--metrics");
    if (!plot_out.path.empty() && plot_out.kind == OutputKind::file)
      write_file_atomic(plot_out.path, curves_svg(history, title), plot_out.option);
    current_epoch = s.epoch + 1;
    batch_in_epoch = 0;
  };
  const auto report_interrupted = [&](int sig) {
    bar.clear();
    std::cout.flush();
    std::string where;
    if (current_epoch > epochs) {
      where = "after the last epoch (" + std::to_string(epochs) + ")";
    } else if (batch_in_epoch == 0) {
      where = "at the start of epoch " + std::to_string(current_epoch);
    } else {
      where = "in epoch " + std::to_string(current_epoch) + " at batch " +
              std::to_string(batch_in_epoch) + "/" + std::to_string(batches);
    }
    std::string kept;
    if (a.checkpoint.empty()) {
      kept = "no checkpoint was asked for (--checkpoint PATH keeps the progress)";
    } else if (saved_epoch > 0) {
      kept = "the checkpoint '" + a.checkpoint + "' holds epoch " + std::to_string(saved_epoch);
    } else if (checkpoint_out.kind == OutputKind::stream) {
      kept = "'" + a.checkpoint + "' was not written (a stream gets the checkpoint at the end)";
    } else {
      kept = "no epoch was completed, so '" + a.checkpoint + "' was not written";
    }
    std::cerr << "descent train: interrupted (" << signal_name(sig) << ") " << where << "; " << kept
              << std::endl;
    return 128 + sig;
  };

  if (g_stop_signal != 0) return report_interrupted(g_stop_signal);
  try {
    throughput.fit_begins();
    trainer.fit(train_loader, test_loader ? &*test_loader : nullptr, fo);
  } catch (const Interrupted&) {
    const int sig = g_stop_signal;
    write_streams(true);
    return report_interrupted(sig);
  } catch (const NumericError&) {
    bar.clear();  // the message names --on-nan skip (TrainerOptions::non_finite_hint)
    throw;
  }
  write_streams(false);
  if (g_stop_signal != 0) return report_interrupted(g_stop_signal);
  if (!history.empty()) {
    const EpochStats& last = history.back();
    // Tenths of a second; two significant digits below one (a short run is not "0 s").
    const double s = last.elapsed_seconds;
    char took[32];
    std::snprintf(took, sizeof took, "%.2g", s);
    std::cout << "done: " << counted(last.epoch, "epoch") << " in "
              << (s < 1.0 ? std::string(took) : fmt_float(std::round(s * 10) / 10)) << " s";
    if (last.has_test && std::isfinite(last.test.accuracy)) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.2f%%", 100.0 * last.test.accuracy);
      std::cout << ", test accuracy " << buf;
    }
    std::cout << std::endl;
    check_stdout();
  }
  return 0;
}

}  // namespace descent::app
