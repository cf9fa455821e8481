// descent eval: loss and accuracy of a saved model on a dataset.
#include <cmath>
#include <cstdio>
#include <iostream>

#include "common.hpp"

namespace descent::app {

int run_eval(int argc, char** argv) {
  std::vector<OptionSpec> specs{
      {"model", "PATH", "", "checkpoint written by descent train --checkpoint (required)"},
      {"batch", "N", "1000", "evaluation batch size"}};
  const std::vector<OptionSpec> data = data_options(false), dev = device_options();
  specs.insert(specs.end(), data.begin(), data.end());
  specs.insert(specs.end(), dev.begin(), dev.end());
  Options o("eval", "Evaluates a saved model on a test set (default: the Fashion-MNIST test set).",
            specs);
  if (!o.parse(argc, argv, 2)) {
    std::cout << o.help();
    return 0;
  }
  if (!o.given("model")) throw UsageError("--model PATH is required");
  const std::int64_t batch = o.integer("batch");
  if (batch < 1) throw UsageError("--batch: must be >= 1, got " + std::to_string(batch));
  const std::string path = o.str("model");
  const Checkpoint ck = read_checkpoint(path);
  Context ctx = make_context(o);
  const Loss loss = parse_loss(ck.get("loss", "softmax_cross_entropy").c_str());
  const std::int64_t classes = std::stoll(ck.get("classes", "0"));
  Dataset test = load_test(o, loss == Loss::softmax_cross_entropy ? ck.widths.back() : classes);
  if (test.features() != ck.widths.front()) {
    throw DataError("the model '" + path + "' takes " + std::to_string(ck.widths.front()) +
                    " features per sample but the dataset has " + std::to_string(test.features()));
  }
  if (test.is_uint8()) {
    test.set_normalization(std::stof(ck.get("scale", std::to_string(1.0f / 255.0f))),
                           std::stof(ck.get("shift", "0")));
  }
  MlpOptions mo = mlp_options(o);
  mo.max_batch = std::min(batch, test.size());
  Mlp model = make_model(ctx, ck, mo);
  Sgd sgd(model, SgdOptions{});
  Trainer trainer(model, loss, sgd);
  LoaderOptions lo;
  lo.batch_size = batch;
  lo.shuffle = false;
  BatchLoader loader(ctx, test, lo);
  const EvalResult r = trainer.evaluate(loader);
  std::cout << "model " << model.describe() << " (" << path << ", step " << ck.steps << ")\n"
            << "samples " << r.samples << "  loss ";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.4f", r.loss);
  std::cout << buf;
  if (std::isfinite(r.accuracy)) {
    std::snprintf(buf, sizeof buf, "%.2f%%", 100.0 * r.accuracy);
    std::cout << "  accuracy " << buf;
  }
  std::cout << std::endl;
  return 0;
}

}  // namespace descent::app
