// A short training run on any device: a 37-64-33-10 MLP, SGD with momentum and a cosine schedule,
// on random data. The cross-backend tests (tests/gpu) and the repeat test (tests/backends/slow)
// compare its parameters.
#pragma once

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "descent/descent.hpp"
#include "test_support.hpp"

namespace descent::test::short_run {

inline constexpr std::int64_t kSamples = 160, kFeatures = 37, kClasses = 10, kBatch = 16;

inline Dataset dataset(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const auto x = random_floats(rng, kSamples * kFeatures, -2.0f, 2.0f);
  const auto y = random_labels(rng, kSamples, kClasses);
  return Dataset::from_floats(x, kFeatures, y, kClasses);
}

// Trains a 37-64-33-10 MLP for `steps` steps from seed 5 and returns its parameters.
inline std::vector<float> train(Device device, Activation act, int steps, const Dataset& data) {
  Context ctx(device);
  Mlp model(ctx, {kFeatures, 64, 33, kClasses}, act, MlpOptions{.seed = 5, .max_batch = kBatch});
  SgdOptions o;
  o.lr = 0.05f;
  o.momentum = 0.9f;
  o.weight_decay = 1e-3f;
  Sgd sgd(model, o, LrSchedule::cosine(std::max(steps, 1)));
  Trainer trainer(model, Loss::softmax_cross_entropy, sgd);
  BatchLoader loader(ctx, data, {.batch_size = kBatch, .shuffle = true, .seed = 3});
  int done = 0;
  for (std::int64_t epoch = 0; done < steps; ++epoch) {  // steps may end mid-epoch
    for (const Batch& b : loader.epoch(epoch)) {
      if (done++ == steps) break;
      trainer.step(b);
    }
  }
  if (steps > 0) {
    EXPECT_TRUE(std::isfinite(trainer.take_train_loss()));
  }
  return model.params_to_host();
}

}  // namespace descent::test::short_run
