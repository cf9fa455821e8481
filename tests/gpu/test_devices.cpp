// CUDA devices by index: an index past the last one is refused, and two contexts on two devices
// each train on their own.
#include <cmath>
#include <string>

#include "descent/descent.hpp"
#include "test_support.hpp"
#include "train_support.hpp"

namespace descent::test {
namespace {

using ::testing::HasSubstr;

TEST(Context, CudaIndexOutOfRangeThrowsDeviceError) {
  DESCENT_REQUIRE_CUDA_OR_SKIP();
  EXPECT_THROW_THAT(Context ctx(Device::cuda(cuda_device_count() + 7)), DeviceError,
                    HasSubstr(std::to_string(cuda_device_count() + 7)));
}

// Two Contexts on two GPUs, used in turn from one thread: every launch makes its context's
// device current, so each model trains on its own device and both take the same steps.
TEST(MultiGpu, TwoCudaContextsOnTwoDevicesEachTrainOnTheirOwn) {
  DESCENT_REQUIRE_CUDA_OR_SKIP();
  if (cuda_device_count() < 2) {
    GTEST_SKIP() << "needs two CUDA devices, " << cuda_device_count() << " visible";
  }
  const Dataset data = blobs(64, 4, 3, 11);
  struct Run {
    Context ctx;
    Mlp model;
    Sgd sgd;
    Trainer trainer;
    BatchLoader loader;
    explicit Run(const Context& c, const Dataset& d)
        : ctx(c),
          model(c, {4, 16, 3}, Activation::relu, {Init::torch_default, 5, 16}),
          sgd(model, {0.1f, 0.9f}),
          trainer(model, Loss::softmax_cross_entropy, sgd),
          loader(c, d, {16, true, 3}) {}
  };
  Run a(Context(Device::cuda(0)), data), b(Context(Device::cuda(1)), data);
  for (int epoch = 0; epoch < 3; ++epoch) {
    a.loader.start_epoch(epoch);
    b.loader.start_epoch(epoch);
    Batch ba, bb;
    while (a.loader.next(ba) && b.loader.next(bb)) {
      a.trainer.step(ba);  // device 1 is current after the other run's last call
      b.trainer.step(bb);
    }
  }
  EXPECT_EQ(a.model.params().device, Device::cuda(0));
  EXPECT_EQ(b.model.params().device, Device::cuda(1));
  EXPECT_TRUE(std::isfinite(a.trainer.take_train_loss()));
  EXPECT_TRUE(std::isfinite(b.trainer.take_train_loss()));
  EXPECT_TRUE(bit_identical(a.model.params_to_host(), b.model.params_to_host()));
  EXPECT_EQ(a.trainer.evaluate(a.loader).accuracy, b.trainer.evaluate(b.loader).accuracy);
}

}  // namespace
}  // namespace descent::test
