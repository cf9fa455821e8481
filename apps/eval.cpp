// descent eval: loss and accuracy of a saved model on a dataset.
#include <cmath>
#include <cstdio>
#include <iostream>

#include "commands.hpp"
#include "common.hpp"
#include "job.hpp"

namespace descent::app {

namespace {

struct EvalArgs {
  std::string path;
  std::int64_t batch = 1000;
  DataArgs data;
  DeviceArgs dev;
};

const char* kEvalSummary =
    "Evaluates a saved model on a test set (default: the Fashion-MNIST test set).";

void add_eval_options(Parser& p, EvalArgs& a) {
  p.group("model");
  p.input("model", a.path, "PATH", "checkpoint written by descent train --checkpoint (required)");
  p.integer("batch", a.batch, 1, 1 << 30, "evaluation batch size");
  // The task (classes or regression targets) and the loss come from the checkpoint.
  add_data_options(p, a.data, false);
  add_device_options(p, a.dev);
}

}  // namespace

std::vector<OptionSpec> eval_option_table() {
  EvalArgs a;
  Parser p("eval", kEvalSummary);
  add_eval_options(p, a);
  return p.table();
}

int run_eval(int argc, char** argv) {
  EvalArgs a;
  Parser p("eval", kEvalSummary);
  add_eval_options(p, a);
  const std::string& path = a.path;
  const std::int64_t& batch = a.batch;
  DataArgs& data = a.data;
  DeviceArgs& dev = a.dev;
  if (!p.parse(argc, argv)) return 0;
  if (path.empty()) throw UsageError("--model PATH is required");
  check_data_options(p, data, false);
  check_device_options(dev);
  const Checkpoint ck = [&] {
    try {
      return read_checkpoint(path);
    } catch (const Error&) {
      rethrow_naming_option({{"--model", path}});
    }
  }();
  Loss loss = Loss::softmax_cross_entropy;
  try {
    loss = parse_loss(ck.get("loss", "softmax_cross_entropy").c_str());
  } catch (const ArgumentError& e) {
    throw DataError("the model '" + path + "': metadata " + e.what());
  }
  // The task comes from the checkpoint: a model trained on regression targets (mse, bce) is
  // evaluated on the float targets of a CSV, one trained on classes on class labels.
  const bool regression = loss != Loss::softmax_cross_entropy;
  if (data.regression && !regression) {
    throw UsageError("--regression contradicts the model '" + path +
                     "', which was trained for classification (loss " + to_string(loss) + ", " +
                     counted(ck.widths.back(), "class", "classes") +
                     "); drop --regression to evaluate it on class labels");
  }
  if (regression && data.test_csv.empty()) {
    throw UsageError("the model '" + path + "' was trained for regression (loss " +
                     to_string(loss) + ", " + counted(ck.widths.back(), "target") +
                     "), but the test data is IDX (class labels); give --test-csv PATH with its "
                     "targets");
  }
  data.regression = regression;
  const Job& j = job();
  Context ctx = make_context(dev, j.local_rank(), j.local_size());
  // Under mpirun the ranks evaluate their shards of the dataset and sum the counts. Collective.
  const Communicator comm = j.communicator(ctx);
  const auto classes = metadata_number<std::int64_t>(ck, path, "classes", "0");
  if (classes < 0) {
    throw DataError("the model '" + path + "': metadata 'classes' is " + std::to_string(classes) +
                    ", expected >= 0");
  }
  Dataset test = load_test(data, loss == Loss::softmax_cross_entropy ? ck.widths.back() : classes);
  if (test.features() != ck.widths.front()) {
    throw DataError("the model '" + path + "' takes " + std::to_string(ck.widths.front()) +
                    " features per sample but the dataset has " + std::to_string(test.features()));
  }
  if (test.is_uint8()) {
    test.set_normalization(metadata_number<float>(ck, path, "scale", "0.00392156863"),
                           metadata_number<float>(ck, path, "shift", "0"));
  }
  // The scaling the model was trained with (descent train --normalize standard on float data):
  // the test set is scaled as the training set was.
  const Scaling& scaling = ck.scaling;
  if (!scaling.empty()) {
    if (test.is_uint8()) {
      throw DataError("the model '" + path + "' scales float features (" +
                      describe_scaling(scaling) +
                      "), but the test data is IDX bytes; give --test-csv PATH");
    }
    test.apply(scaling);
  }
  MlpOptions mo = mlp_options(dev);
  mo.max_batch = std::min(batch, test.size());
  Mlp model = make_model(ctx, ck, mo);
  LoaderOptions lo;
  lo.batch_size = batch;
  lo.shuffle = false;
  BatchLoader loader(ctx, test, lo, comm);
  const EvalResult r = evaluate(model, loss, loader);
  std::cout << "model " << model.describe() << " (" << path << ", step " << ck.steps << ")\n"
            << "samples " << r.samples << "  loss ";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.4f", r.loss);
  std::cout << buf;
  if (std::isfinite(r.accuracy)) {
    std::snprintf(buf, sizeof buf, "%.2f%%", 100.0 * r.accuracy);
    std::cout << "  accuracy " << buf;
  }
  if (loss == Loss::mse && scaling.output_scale.size() == 1) {
    // The loss is on the standardised target; its root in the target's own units as well.
    std::snprintf(buf, sizeof buf, "%.4g", std::sqrt(r.loss) * scaling.output_scale[0]);
    std::cout << " (on the standardised target; rmse " << buf << " in the target's units)";
  }
  std::cout << std::endl;
  return 0;
}

}  // namespace descent::app
