// descent train's options: their declaration, their checks, and the TrainConfig they make.
#include "train_config.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sstream>

namespace descent::app {

const char* const kTrainSummary =
    "Trains an MLP on Fashion-MNIST (default) or on your IDX or CSV data.";

OptimizerDefaults optimizer_defaults(OptimizerKind kind) {
  OptimizerDefaults d;  // SGD: the command's own, tuned for Fashion-MNIST
  if (kind == OptimizerKind::sgd) return d;
  for (const OptimizerOption& o : default_options(kind)) {
    if (std::strcmp(o.name, "lr") == 0) d.lr = o.number;
    if (std::strcmp(o.name, "weight_decay") == 0) d.weight_decay = o.number;
  }
  return d;
}

namespace {

const std::vector<std::string> kOptimizers = {"sgd", "adam", "adamw"};

std::string number_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", static_cast<double>(static_cast<float>(v)));
  return buf;
}

// The default --help shows for an option whose default follows --optimizer: the chosen
// optimizer's ("0.001 with --optimizer adam"), or every optimizer's, those with the same value
// together ("0.05 for sgd, 0.001 for adam and adamw").
std::string default_by_optimizer(double OptimizerDefaults::*field, const std::string& chosen) {
  if (std::find(kOptimizers.begin(), kOptimizers.end(), chosen) != kOptimizers.end()) {
    return number_text(optimizer_defaults(parse_optimizer(chosen.c_str())).*field) +
           " with --optimizer " + chosen;
  }
  std::vector<std::pair<std::string, std::vector<std::string>>> values;  // value, optimizers
  for (const std::string& name : kOptimizers) {
    const std::string v = number_text(optimizer_defaults(parse_optimizer(name.c_str())).*field);
    if (values.empty() || values.back().first != v) values.push_back({v, {}});
    values.back().second.push_back(name);
  }
  std::string s;
  for (const auto& [v, names] : values) {
    if (!s.empty()) s += ", ";
    s += v;
    s += " for ";
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (i > 0) s += i + 1 == names.size() ? " and " : ", ";
      s += names[i];
    }
  }
  return s;
}

}  // namespace

// The defaults reach >= 89% Fashion-MNIST test accuracy in well under 150 s on 2 CPU cores.
void add_train_options(Parser& p, TrainArgs& a, const std::string& chosen_optimizer) {
  add_data_options(p, a.data, true);
  p.choice("normalize", a.normalize, {"standard", "unit", "none"},
           "standard: zero mean, unit variance (IDX bytes over all pixels; each CSV column, and "
           "--regression targets for --loss mse), kept in the model so eval, predict and "
           "exports use it; unit: IDX bytes to [0,1]; none: the values as they are");
  p.group("model");
  p.text("hidden", a.hidden, "W1,W2,...",
         "hidden layer widths, each W >= 1 (\"none\": a linear model)");
  p.choice("activation", a.activation, {"relu", "gelu", "tanh", "sigmoid", "identity"},
           "hidden activation");
  p.choice("init", a.init, {"torch", "xavier", "he"},
           "parameter init: torch (nn.Linear default), xavier, he");
  p.choice("loss", a.loss, {"ce", "mse", "bce"},
           "ce (softmax cross-entropy), mse or bce (mse and bce need --regression targets)");
  p.group("training");
  p.integer("epochs", a.epochs, 1, 1000000,
            "epochs to train (counting those a resumed checkpoint already did)");
  p.integer("batch", a.batch, 1, 1 << 30,
            "mini-batch size (under mpirun: the global batch, split across the ranks)");
  p.integer("seed", a.seed, 0, std::numeric_limits<std::int64_t>::max(),
            "seed of the initial weights and of the shuffling");
  p.input("resume", a.resume, "PATH",
          "continue from this checkpoint (written by --checkpoint with the same data, --limit and "
          "--batch; it is never overwritten: give --checkpoint another path)");
  p.choice("on-nan", a.on_nan, {"error", "skip"},
           "a step with a NaN/Inf loss stops training (error) or is skipped");
  p.group("optimizer");
  p.choice("optimizer", a.optimizer, kOptimizers,
           "sgd (torch.optim.SGD), adam (torch.optim.Adam) or adamw (torch.optim.AdamW)");
  p.number("lr", a.lr, {0, true}, "learning rate",
           default_by_optimizer(&OptimizerDefaults::lr, chosen_optimizer));
  p.number("momentum", a.momentum, {0, false, 1, true}, "sgd: momentum");
  p.number("weight-decay", a.weight_decay, {0, false},
           "weight decay (sgd and adam: L2; adamw: decoupled)",
           default_by_optimizer(&OptimizerDefaults::weight_decay, chosen_optimizer));
  p.flag("nesterov", a.nesterov, "sgd: Nesterov momentum (needs --momentum > 0)");
  p.text("betas", a.betas, "B1,B2", "adam, adamw: moment decay rates, each in [0, 1)");
  p.number("eps", a.eps, {0, false}, "adam, adamw: term added to the denominator");
  p.flag("amsgrad", a.amsgrad, "adam, adamw: use the running maximum of the second moment");
  p.number("clip-grad-norm", a.clip_grad_norm, {0, false},
           "clip the gradient's global norm to this before each update (0: off)");
  p.choice("clip-norm-type", a.clip_norm_type, {"2", "inf"},
           "the norm --clip-grad-norm measures: 2 (Euclidean) or inf (largest magnitude)");
  p.group("schedule");
  p.choice("schedule", a.schedule, {"constant", "step", "cosine"},
           "learning-rate schedule (cosine: over all epochs)");
  p.integer("step-epochs", a.step_epochs, 1, 1000000, "step schedule: epochs between decays");
  p.number("gamma", a.gamma, {0, true, 1, false}, "step schedule: decay factor");
  p.number("min-lr", a.min_lr, {0, false}, "cosine schedule: final learning rate");
  p.group("output");
  p.output("checkpoint", a.checkpoint,
           "save model and optimizer state here after every epoch (a FIFO or character device "
           "gets it once, at the end)");
  p.output("metrics", a.metrics,
           "write per-epoch metrics as CSV after every epoch, and the curves as PATH with .svg; "
           "a FIFO or character device (/dev/stdout) gets the CSV once, at the end, and no curves");
  p.output("plot", a.plot, "write loss/accuracy curves as an SVG picture here");
  p.flag("no-progress", a.no_progress, "no progress bar, even on a terminal");
  add_device_options(p, a.dev);
}

namespace {

// "B1,B2,...": exactly `count` finite numbers in `range` as floats (checked_float), or a
// UsageError naming the option.
std::vector<double> parse_number_list(const std::string& option, const std::string& text,
                                      std::size_t count, const NumberRange& range) {
  std::vector<double> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    double v = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size() ||
        !std::isfinite(v)) {
      throw UsageError("--" + option + ": expected " + std::to_string(count) +
                       " comma-separated numbers, got '" + text + "'");
    }
    out.push_back(checked_float("--" + option + " (value " + std::to_string(out.size() + 1) + ")",
                                item, v, range));
    start = comma + 1;
  }
  if (out.size() != count) {
    throw UsageError("--" + option + ": expected " + std::to_string(count) +
                     " comma-separated numbers, got '" + text + "'");
  }
  return out;
}

// The command's options that set one optimizer option of the library (--betas: two), refused
// with the kinds that have it when the chosen optimizer has not.
void check_optimizer_options(const Parser& p, OptimizerKind kind) {
  const std::pair<const char*, const char*> owned[] = {{"momentum", "momentum"},
                                                       {"nesterov", "nesterov"},
                                                       {"betas", "beta1"},
                                                       {"eps", "eps"},
                                                       {"amsgrad", "amsgrad"}};
  const auto has = [](OptimizerKind k, const char* name) {
    for (const OptimizerOption& o : default_options(k)) {
      if (std::strcmp(o.name, name) == 0) return true;
    }
    return false;
  };
  for (const auto& [option, name] : owned) {
    if (!p.given(option) || has(kind, name)) continue;
    std::string kinds;
    for (OptimizerKind k : {OptimizerKind::sgd, OptimizerKind::adam, OptimizerKind::adamw}) {
      if (has(k, name)) kinds += std::string(kinds.empty() ? "" : " or ") + to_string(k);
    }
    throw UsageError(std::string("--") + option + " applies to --optimizer " + kinds +
                     ", but the optimizer is " + to_string(kind) + "; drop --" + option +
                     " or choose --optimizer " + kinds);
  }
}

}  // namespace

// The optimizer line of the start-up summary.
std::string describe_optimizer(const TrainArgs& a, const Optimizer& opt) {
  std::ostringstream s;
  s << to_string(opt.kind()) << " " << describe_options(opt.options_list());
  if (a.clip_grad_norm > 0) {
    s << ", clip grad norm " << static_cast<float>(a.clip_grad_norm) << " (" << a.clip_norm_type
      << ")";
  }
  return s.str();
}

// Data parallel: the options that decide how many collective calls each rank makes (epochs,
// batches, evaluation, schedule, resume, the optimizer's work) must be the same on every rank,
// or one rank waits for ever in a call the others never make. Checked before any data is read;
// every rank sees the same answer and throws the same UsageError.
void check_same_options_on_every_rank(const Communicator& comm, const TrainArgs& a) {
  if (comm.size() == 1) return;
  const auto num = [](double v) { return std::to_string(static_cast<float>(v)); };
  const std::pair<const char*, std::string> fields[] = {
      {"--epochs", std::to_string(a.epochs)},
      {"--batch", std::to_string(a.batch)},
      {"--limit", std::to_string(a.data.limit)},
      {"--test-limit", std::to_string(a.data.test_limit)},
      {"the test set (given or not)", has_test_data(a.data) ? "yes" : "no"},
      {"--classes", std::to_string(a.data.classes)},
      {"--regression", a.data.regression ? "yes" : "no"},
      {"--hidden", a.hidden},
      {"--activation", a.activation},
      {"--loss", a.loss},
      {"--precision", a.dev.precision},
      {"--optimizer", a.optimizer},
      {"--lr", num(a.lr)},
      {"--momentum", num(a.momentum)},
      {"--weight-decay", num(a.weight_decay)},
      {"--betas", a.betas},
      {"--eps", num(a.eps)},
      {"--amsgrad", a.amsgrad ? "yes" : "no"},
      {"--nesterov", a.nesterov ? "yes" : "no"},
      {"--clip-grad-norm", num(a.clip_grad_norm)},
      {"--clip-norm-type", a.clip_norm_type},
      {"--schedule", a.schedule},
      {"--step-epochs", std::to_string(a.step_epochs)},
      {"--gamma", num(a.gamma)},
      {"--min-lr", num(a.min_lr)},
      {"--normalize", a.normalize},
      {"--seed", std::to_string(a.seed)},
      {"--resume (given or not)", a.resume.empty() ? "no" : "yes"},
      {"--on-nan", a.on_nan},
  };
  // FNV-1a of the text: the same on every machine.
  const auto hash_of = [](const std::string& text, std::uint64_t h) {
    for (unsigned char c : text) h = (h ^ c) * 0x100000001b3ull;
    return (h ^ 0xffu) * 0x100000001b3ull;  // a separator, so "1","23" differs from "12","3"
  };
  std::uint64_t all = 0xcbf29ce484222325ull;
  for (const auto& [name, value] : fields) all = hash_of(value, hash_of(name, all));
  const std::vector<std::uint64_t> every = comm.all_gather(all);
  if (std::all_of(every.begin(), every.end(), [&](std::uint64_t h) { return h == every[0]; })) {
    return;
  }
  // Which option: one more gather per option until the first that differs (only on this error).
  for (const auto& [name, value] : fields) {
    const std::vector<std::uint64_t> per_rank =
        comm.all_gather(hash_of(value, 0xcbf29ce484222325ull));
    std::string ranks;
    for (std::size_t r = 1; r < per_rank.size(); ++r) {
      if (per_rank[r] != per_rank[0]) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
    }
    if (!ranks.empty()) {
      throw UsageError(std::string(name) + " differs between the ranks (rank " + ranks +
                       " from rank 0; this rank has " + value +
                       "): every rank of a data-parallel run must be given the same training "
                       "options, or the ranks would wait for each other for ever");
    }
  }
}

TrainConfig make_train_config(const Parser& p, TrainArgs& a) {
  // Cheap checks first, so a mistake costs no data loading.
  check_data_options(p, a.data, true);
  check_device_options(a.dev);
  if (a.normalize == "unit" && !a.data.train_csv.empty()) {
    throw UsageError(
        "--normalize unit maps IDX byte features to [0,1], but --train-csv gives float "
        "features; use --normalize standard (the default: each column to zero mean and unit "
        "variance) or none (the values as they are)");
  }
  TrainConfig c;
  c.hidden =
      parse_integer_list("hidden", a.hidden, 1, std::numeric_limits<std::int64_t>::max(), "width");
  if (a.nesterov && a.momentum == 0) {
    throw UsageError("--nesterov needs --momentum > 0, got --momentum 0");
  }
  const OptimizerKind kind = parse_optimizer(a.optimizer.c_str());
  c.optimizer = kind;
  check_optimizer_options(p, kind);
  if (p.given("clip-norm-type") && a.clip_grad_norm == 0) {
    throw UsageError("--clip-norm-type applies with --clip-grad-norm > 0; add --clip-grad-norm");
  }
  const std::vector<double> betas = parse_number_list("betas", a.betas, 2, {0, false, 1, true});
  if (!p.given("lr")) a.lr = optimizer_defaults(kind).lr;
  if (!p.given("weight-decay")) a.weight_decay = optimizer_defaults(kind).weight_decay;
  if (p.given("step-epochs") && a.schedule != "step") {
    throw UsageError("--step-epochs applies to --schedule step, but the schedule is " + a.schedule +
                     "; add --schedule step or drop --step-epochs");
  }
  if (p.given("gamma") && a.schedule != "step") {
    throw UsageError("--gamma applies to --schedule step, but the schedule is " + a.schedule +
                     "; add --schedule step or drop --gamma");
  }
  if (p.given("min-lr") && a.schedule != "cosine") {
    throw UsageError("--min-lr applies to --schedule cosine, but the schedule is " + a.schedule +
                     "; add --schedule cosine or drop --min-lr");
  }
  // The optimizer's options through the library's list: the names it has, checked by it.
  std::vector<OptimizerOption> changes;
  const auto number = [&](const char* name, double value) {
    OptimizerOption o;
    o.name = name;
    o.number = static_cast<float>(value);
    changes.push_back(o);
  };
  const auto flag = [&](const char* name, bool value) {
    OptimizerOption o;
    o.name = name;
    o.type = OptimizerOption::Type::flag;
    o.flag = value;
    changes.push_back(o);
  };
  number("lr", a.lr);
  number("weight_decay", a.weight_decay);
  if (kind == OptimizerKind::sgd) {
    number("momentum", a.momentum);
    flag("nesterov", a.nesterov);
  } else {
    number("beta1", betas[0]);
    number("beta2", betas[1]);
    number("eps", a.eps);
    flag("amsgrad", a.amsgrad);
  }
  c.optimizer_options = with_options(kind, changes);
  c.activation = parse_activation(a.activation.c_str());
  c.init = parse_init(a.init.c_str());
  c.loss = parse_loss(a.loss.c_str());
  c.seed = static_cast<std::uint64_t>(a.seed);
  return c;
}

LrSchedule make_schedule(const TrainArgs& a, std::int64_t batches) {
  if (a.schedule == "step") {
    return LrSchedule::step(a.step_epochs * batches, static_cast<float>(a.gamma));
  }
  if (a.schedule == "cosine") {
    return LrSchedule::cosine(a.epochs * batches, static_cast<float>(a.min_lr));
  }
  return LrSchedule::constant();
}

}  // namespace descent::app
