// The CPU and the GPU backend train the same model the same way: bit-identical initial weights,
// 20 SGD steps that agree within fp32 tolerance, and runs that repeat bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "descent/descent.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

constexpr std::int64_t kSamples = 160, kFeatures = 37, kClasses = 10, kBatch = 16;

Dataset make_dataset(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const auto x = random_floats(rng, kSamples * kFeatures, -2.0f, 2.0f);
  const auto y = random_labels(rng, kSamples, kClasses);
  return Dataset::from_floats(x, kFeatures, y, kClasses);
}

// Trains a 37-64-33-10 MLP for `steps` steps from seed 5 and returns its parameters.
std::vector<float> train(Device device, Activation act, int steps, const Dataset& data) {
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

TEST(CrossBackend, InitialWeightsAreBitIdentical) {
  DESCENT_REQUIRE_CUDA_OR_SKIP();
  const Dataset data = make_dataset(1);
  const auto cpu = train(Device::cpu(), Activation::relu, 0, data);
  const auto gpu = train(Device::cuda(0), Activation::relu, 0, data);
  ASSERT_EQ(cpu.size(), gpu.size());
  EXPECT_EQ(std::memcmp(cpu.data(), gpu.data(), cpu.size() * sizeof(float)), 0);
}

TEST(CrossBackend, TwentyStepsAgreeWithinFp32Tolerance) {
  DESCENT_REQUIRE_CUDA_OR_SKIP();
  const Dataset data = make_dataset(2);
  for (Activation act : {Activation::relu, Activation::tanh, Activation::gelu}) {
    SCOPED_TRACE(to_string(act));
    const auto start = train(Device::cpu(), act, 0, data);
    const auto cpu = train(Device::cpu(), act, 20, data);
    const auto gpu = train(Device::cuda(0), act, 20, data);
    // The weights moved, and both backends moved them the same way.
    EXPECT_GT(rel_error(cpu, start), 1e-3);
    EXPECT_TRUE(close_to(gpu, cpu, 2e-5));
  }
}

class RepeatTest : public BackendTest {};

TEST_P(RepeatTest, SameSeedSameBitsAfterTwentySteps) {
  const Dataset data = make_dataset(3);
  const auto first = train(GetParam(), Activation::gelu, 20, data);
  const auto second = train(GetParam(), Activation::gelu, 20, data);
  ASSERT_EQ(first.size(), second.size());
  EXPECT_EQ(std::memcmp(first.data(), second.data(), first.size() * sizeof(float)), 0);
}

DESCENT_INSTANTIATE_BACKENDS(RepeatTest);

}  // namespace
}  // namespace descent::test
