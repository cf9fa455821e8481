// descent train: loads a dataset, builds an MLP and trains it with SGD, reporting each epoch.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>

#include "common.hpp"
#include "report.hpp"

namespace descent::app {

namespace {

// The defaults reach >= 89% Fashion-MNIST test accuracy in well under 150 s on 2 CPU cores.
std::vector<OptionSpec> train_options() {
  std::vector<OptionSpec> v = data_options(true);
  const std::vector<OptionSpec> rest = {
      {"hidden", "W1,W2,...", "512,256", "hidden layer widths (\"none\": a linear model)"},
      {"activation", "NAME", "relu", "hidden activation: relu, gelu, tanh, sigmoid, identity"},
      {"init", "NAME", "torch", "parameter init: torch (nn.Linear default), xavier, he"},
      {"loss", "NAME", "ce",
       "ce (softmax cross-entropy), mse or bce (mse and bce need --regression targets)"},
      {"epochs", "N", "25", "epochs to train (counting those a resumed checkpoint already did)"},
      {"batch", "N", "128", "mini-batch size"},
      {"lr", "X", "0.05", "learning rate"},
      {"momentum", "X", "0.9", "SGD momentum"},
      {"weight-decay", "X", "0.0005", "L2 weight decay"},
      {"nesterov", "", "", "Nesterov momentum"},
      {"schedule", "NAME", "cosine",
       "learning-rate schedule: constant, step or cosine (over all epochs)"},
      {"step-epochs", "N", "5", "step schedule: epochs between decays"},
      {"gamma", "X", "0.1", "step schedule: decay factor"},
      {"min-lr", "X", "0", "cosine schedule: final learning rate"},
      {"normalize", "unit|standard", "standard",
       "byte features: map to [0,1] (unit) or to zero mean, unit variance (standard)"},
      {"seed", "N", "1", "seed of the initial weights and of the shuffling"},
      {"checkpoint", "PATH", "", "save model and optimizer state here after every epoch"},
      {"resume", "PATH", "", "continue from this checkpoint"},
      {"metrics", "PATH", "", "write per-epoch metrics as CSV (and the curves as PATH with .svg)"},
      {"plot", "PATH", "", "write loss/accuracy curves as an SVG picture here"},
      {"on-nan", "error|skip", "error",
       "a step with a NaN/Inf loss stops training (error) or is skipped"},
      {"no-progress", "", "", "no progress bar, even on a terminal"},
  };
  v.insert(v.end(), rest.begin(), rest.end());
  const std::vector<OptionSpec> dev = device_options();
  v.insert(v.end(), dev.begin(), dev.end());
  return v;
}

std::string svg_path_for(const Options& o) {
  if (o.given("plot")) return o.str("plot");
  if (!o.given("metrics")) return "";
  std::string p = o.str("metrics");
  if (p.size() > 4 && p.compare(p.size() - 4, 4, ".csv") == 0) p.resize(p.size() - 4);
  return p + ".svg";
}

// The folder of an output file must exist and be writable before any work starts.
void check_writable(const std::string& option, const std::string& path) {
  if (path.empty()) return;
  const std::size_t slash = path.find_last_of('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  if (::access(dir.c_str(), W_OK) != 0) {
    throw IoError("--" + option + " " + path + ": the folder '" + dir +
                  "' does not exist or is not writable");
  }
}

std::string fmt_float(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

}  // namespace

int run_train(int argc, char** argv) {
  Options o("train", "Trains an MLP with SGD on Fashion-MNIST (default) or your IDX/CSV data.",
            train_options());
  if (!o.parse(argc, argv, 2)) {
    std::cout << o.help();
    return 0;
  }
  // Cheap checks first, so a mistake costs no data loading.
  const std::int64_t epochs = o.integer("epochs"), batch = o.integer("batch");
  if (epochs < 1) throw UsageError("--epochs: must be >= 1, got " + std::to_string(epochs));
  if (batch < 1) throw UsageError("--batch: must be >= 1, got " + std::to_string(batch));
  const std::vector<std::int64_t> hidden = o.integers("hidden");
  for (std::size_t i = 0; i < hidden.size(); ++i) {
    if (hidden[i] < 1) {
      throw UsageError("--hidden: width " + std::to_string(i + 1) + " must be >= 1, got " +
                       std::to_string(hidden[i]));
    }
  }
  SgdOptions sgd_options;
  sgd_options.lr = static_cast<float>(o.number("lr"));
  sgd_options.momentum = static_cast<float>(o.number("momentum"));
  sgd_options.weight_decay = static_cast<float>(o.number("weight-decay"));
  sgd_options.nesterov = o.flag("nesterov");
  validate(sgd_options);
  const Activation act = parse_activation(o.str("activation").c_str());
  const Init init = parse_init(o.str("init").c_str());
  const Loss loss = parse_loss(o.str("loss").c_str());
  const std::string on_nan = o.str("on-nan");
  if (on_nan != "error" && on_nan != "skip")
    throw UsageError("--on-nan: expected error or skip, got '" + on_nan + "'");
  const std::string normalize = o.str("normalize");
  if (normalize != "unit" && normalize != "standard") {
    throw UsageError("--normalize: expected unit or standard, got '" + normalize + "'");
  }
  const std::string schedule_name = o.str("schedule");
  if (schedule_name != "constant" && schedule_name != "step" && schedule_name != "cosine") {
    throw UsageError("--schedule: expected constant, step or cosine, got '" + schedule_name + "'");
  }
  const std::string checkpoint_path = o.str("checkpoint"), metrics_path = o.str("metrics");
  const std::string svg_path = svg_path_for(o);
  check_writable("checkpoint", checkpoint_path);
  check_writable("metrics", metrics_path);
  check_writable("plot", svg_path);
  const auto seed = static_cast<std::uint64_t>(o.integer("seed"));

  Context ctx = make_context(o);

  // Data.
  Dataset train = load_train(o);
  if (loss == Loss::softmax_cross_entropy && !train.has_labels()) {
    throw UsageError(
        "--loss ce needs class labels, but the training set has regression targets; use --loss "
        "mse");
  }
  if (loss != Loss::softmax_cross_entropy && train.has_labels()) {
    throw UsageError(std::string("--loss ") + o.str("loss") +
                     " needs float targets, but the training set has class labels; use --loss ce, "
                     "or a CSV with --regression");
  }
  if (train.is_uint8() && normalize == "standard") {
    const auto [mean, sd] = train.feature_stats();
    const double s = sd > 0 ? sd : 1.0;
    train.set_normalization(static_cast<float>(train.scale() / s),
                            static_cast<float>((train.shift() - mean) / s));
  }
  const bool with_test = has_test_data(o);
  Dataset test;
  if (with_test) {
    test = load_test(o, train.classes());
    if (test.features() != train.features()) {
      throw DataError("the test set has " + std::to_string(test.features()) +
                      " features per sample but the training set has " +
                      std::to_string(train.features()));
    }
    if (test.is_uint8()) test.set_normalization(train.scale(), train.shift());
  }

  // Model, optimizer, trainer.
  std::vector<std::int64_t> widths{train.features()};
  widths.insert(widths.end(), hidden.begin(), hidden.end());
  widths.push_back(train.has_labels() ? train.classes() : train.target_count());
  MlpOptions mo = mlp_options(o);
  mo.init = init;
  mo.seed = seed;
  // Evaluation runs in larger batches; size the activations for both once, up front.
  const std::int64_t eval_batch =
      with_test ? std::min<std::int64_t>(std::max<std::int64_t>(batch, 1000), test.size()) : 1;
  mo.max_batch = std::max(std::min(batch, train.size()), eval_batch);
  Mlp model(ctx, widths, act, mo);
  LoaderOptions lo;
  lo.batch_size = batch;
  lo.seed = seed;
  BatchLoader train_loader(ctx, train, lo);
  LrSchedule schedule;
  if (schedule_name == "step") {
    const std::int64_t every = o.integer("step-epochs");
    if (every < 1) throw UsageError("--step-epochs: must be >= 1, got " + std::to_string(every));
    schedule =
        LrSchedule::step(every * train_loader.batches(), static_cast<float>(o.number("gamma")));
  } else if (schedule_name == "cosine") {
    schedule =
        LrSchedule::cosine(epochs * train_loader.batches(), static_cast<float>(o.number("min-lr")));
  }
  Sgd sgd(model, sgd_options, schedule);
  if (o.given("resume")) {
    const std::string path = o.str("resume");
    restore(read_checkpoint(path), model, &sgd, "--resume checkpoint '" + path + "'");
  }
  TrainerOptions to;
  to.on_non_finite = on_nan == "skip" ? NonFinitePolicy::skip : NonFinitePolicy::error;
  Trainer trainer(model, loss, sgd, to);
  std::optional<BatchLoader> test_loader;
  if (with_test) {
    LoaderOptions test_lo;
    test_lo.batch_size = eval_batch;
    test_lo.shuffle = false;
    test_loader.emplace(ctx, test, test_lo);
  }

  std::cout << "descent train: " << train.size() << " training"
            << (with_test ? " / " + std::to_string(test.size()) + " test" : std::string())
            << " samples, " << train.features() << " features, "
            << (train.has_labels() ? std::to_string(train.classes()) + " classes"
                                   : std::to_string(train.target_count()) + " targets")
            << "\n  model " << model.describe() << ", " << model.parameter_count()
            << " parameters, " << to_string(loss) << "\n  sgd lr " << sgd_options.lr << " momentum "
            << sgd_options.momentum << " weight decay " << sgd_options.weight_decay
            << (sgd_options.nesterov ? " nesterov" : "") << ", schedule " << schedule.describe()
            << ", batch " << train_loader.batch_size() << ", " << epochs << " epochs\n  device "
            << describe_device(ctx) << ", batches " << train_loader.mode()
            << (sgd.steps() > 0 ? ", resumed at step " + std::to_string(sgd.steps())
                                : std::string())
            << std::endl;

  CheckpointMetadata meta{{"loss", to_string(loss)},
                          {"scale", fmt_float(train.scale())},
                          {"shift", fmt_float(train.shift())},
                          {"classes", std::to_string(train.classes())},
                          {"seed", std::to_string(seed)}};
  ProgressBar bar(!o.flag("no-progress"));
  std::vector<EpochStats> history;
  FitOptions fo;
  fo.epochs = epochs;
  std::int64_t current_epoch = sgd.steps() / train_loader.batches() + 1;
  fo.on_batch = [&](std::int64_t b, std::int64_t n) { bar.update(current_epoch, epochs, b, n); };
  fo.on_epoch = [&](const EpochStats& s) {
    bar.clear();
    history.push_back(s);
    std::cout << epoch_line(s) << std::endl;
    if (!checkpoint_path.empty()) save_checkpoint(checkpoint_path, model, &sgd, meta);
    if (!metrics_path.empty()) write_file_atomic(metrics_path, metrics_csv(history));
    if (!svg_path.empty())
      write_file_atomic(svg_path, curves_svg(history, "descent train: " + model.describe()));
    current_epoch = s.epoch + 1;
  };
  if (sgd.steps() >= epochs * train_loader.batches()) {
    std::cout << "nothing to do: the checkpoint already holds "
              << sgd.steps() / train_loader.batches() << " epochs (--epochs " << epochs << ")"
              << std::endl;
    return 0;
  }
  trainer.fit(train_loader, test_loader ? &*test_loader : nullptr, fo);
  if (!history.empty()) {
    const EpochStats& last = history.back();
    std::cout << "done: " << last.epoch << " epochs in "
              << fmt_float(std::round(last.elapsed_seconds * 10) / 10) << " s";
    if (last.has_test && std::isfinite(last.test.accuracy)) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.2f%%", 100.0 * last.test.accuracy);
      std::cout << ", test accuracy " << buf;
    }
    std::cout << std::endl;
  }
  return 0;
}

}  // namespace descent::app
