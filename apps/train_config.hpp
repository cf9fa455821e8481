// descent train's options: the variables they set (TrainArgs), their declaration, and what they
// mean for the library (TrainConfig: widths, optimizer and its options, schedule, activation,
// loss), checked before any file is read. Running them is apps/train.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common.hpp"
#include "descent/descent.hpp"
#include "options.hpp"

namespace descent::app {

struct TrainArgs {
  DataArgs data;
  DeviceArgs dev;
  std::string hidden = "512,256", activation = "relu", init = "torch", loss = "ce";
  std::int64_t epochs = 25, batch = 128;
  std::string optimizer = "sgd";
  double lr = 0.05, momentum = 0.9, weight_decay = 0.0005;
  bool nesterov = false;
  std::string betas = "0.9,0.999";
  double eps = 1e-8;
  bool amsgrad = false;
  double clip_grad_norm = 0;
  std::string clip_norm_type = "2";
  std::string schedule = "cosine";
  std::int64_t step_epochs = 5;
  double gamma = 0.1, min_lr = 0;
  std::string normalize = "standard";
  std::int64_t seed = 1;
  std::string checkpoint, resume, metrics, plot, on_nan = "error";
  bool no_progress = false;
};

extern const char* const kTrainSummary;

// The learning rate and weight decay of a run that gives neither: SGD's are the command's own
// (TrainArgs'), the other optimizers' the library's.
struct OptimizerDefaults {
  double lr = TrainArgs{}.lr, weight_decay = TrainArgs{}.weight_decay;
};
OptimizerDefaults optimizer_defaults(OptimizerKind kind);

// The defaults reach >= 89% Fashion-MNIST test accuracy in well under 150 s on 2 CPU cores.
// --help shows the defaults of `chosen_optimizer` (the --optimizer on the command line), or
// every optimizer's when it names none.
void add_train_options(Parser& p, TrainArgs& a, const std::string& chosen_optimizer = "");

// The options as the library's values.
struct TrainConfig {
  std::vector<std::int64_t> hidden;
  OptimizerKind optimizer = OptimizerKind::sgd;
  std::vector<OptimizerOption> optimizer_options;
  Activation activation = Activation::relu;
  Init init = Init::torch_default;
  Loss loss = Loss::softmax_cross_entropy;
  std::uint64_t seed = 1;
};

// Checks the parsed options (a UsageError naming the option for every mistake a command line
// can make, before any data is read), fills in the defaults that follow the chosen optimizer,
// and turns them into the library's values through the library's parsers.
TrainConfig make_train_config(const Parser& p, TrainArgs& a);

// The schedule the options ask for, over `batches` batches per epoch.
LrSchedule make_schedule(const TrainArgs& a, std::int64_t batches);

// The optimizer line of the start-up summary.
std::string describe_optimizer(const TrainArgs& a, const Optimizer& opt);

// Data parallel: the options that decide the sequence of collective calls, the same on every
// rank (collective; a UsageError on every rank naming the option otherwise).
void check_same_options_on_every_rank(const Communicator& comm, const TrainArgs& a);

}  // namespace descent::app
