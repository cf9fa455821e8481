// The C API with the caller's device memory and the caller's stream (a CUDA context): training
// steps, evaluation, prediction, a jet's forward pass and its blocks read back give the bits of
// the same calls on host memory and the context's own stream. On a cpu context DEVICE memory is
// refused (tests/c_api_contract_*.cpp); these cases run on cuda:0 only.
#include <cstdint>
#include <vector>

#include "descent/descent.h"
#include "descent/descent.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

class CApiMemoryTest : public BackendTest {};

#define C_OK(call) ASSERT_EQ((call), DESCENT_OK) << descent_last_error()

constexpr std::int64_t kInputs = 6, kOutputs = 3, kRows = 40, kLd = 8;  // ld > inputs: strided

// A C model (tanh, seed 11), SGD with momentum, an MSE trainer and a jet, on `device`.
struct CTrainer {
  descent_context* ctx = nullptr;
  descent_model* model = nullptr;
  descent_optimizer* opt = nullptr;
  descent_trainer* trainer = nullptr;
  descent_jet* jet = nullptr;

  explicit CTrainer(const Device& device) {
    const std::string name = device.str();
    const std::int64_t widths[] = {kInputs, 16, 16, kOutputs};
    EXPECT_EQ(descent_context_create(name.c_str(), 1, &ctx), DESCENT_OK);
    EXPECT_EQ(descent_model_create(ctx, widths, 4, "tanh", 11, &model), DESCENT_OK);
    EXPECT_EQ(descent_optimizer_create(model, 0.05f, 0.9f, 0.0f, 0, "constant", 0, 0.0f, &opt),
              DESCENT_OK)
        << descent_last_error();
    EXPECT_EQ(descent_trainer_create(model, opt, "mse", &trainer), DESCENT_OK);
    EXPECT_EQ(descent_jet_create(model, 0, nullptr, nullptr, 1, &jet), DESCENT_OK);
  }
  ~CTrainer() {
    descent_jet_destroy(jet);
    descent_trainer_destroy(trainer);
    descent_optimizer_destroy(opt);
    descent_model_destroy(model);
    descent_context_destroy(ctx);
  }
  CTrainer(const CTrainer&) = delete;
  CTrainer& operator=(const CTrainer&) = delete;

  std::vector<float> params() const {
    std::int64_t count = 0;
    EXPECT_EQ(descent_model_parameter_count(model, &count), DESCENT_OK);
    std::vector<float> p(static_cast<std::size_t>(count));
    EXPECT_EQ(descent_model_get_params(model, p.data(), count), DESCENT_OK);
    return p;
  }
};

TEST_P(CApiMemoryTest, DeviceMemoryAndAUserStreamGiveTheHostMemoryBits) {
  if (!on_gpu()) GTEST_SKIP() << "device memory is a CUDA context's (refused on the cpu)";
  const std::vector<float> x = random_floats(rng_, kRows * kLd);
  const std::vector<float> y = random_floats(rng_, kRows * kOutputs);

  // The device copies live on another context of the same device, whose stream is also the
  // user stream the second C context runs on.
  Context owner(GetParam());
  const Buffer<float> xd = upload(owner, x), yd = upload(owner, y);
  Buffer<float> predicted(owner, kRows * kOutputs), block(owner, kRows * kOutputs);
  owner.synchronize();

  CTrainer host(GetParam()), dev(GetParam());
  C_OK(descent_context_set_stream(dev.ctx, owner.stream()));
  void* stream = nullptr;
  C_OK(descent_context_get_stream(dev.ctx, &stream));
  EXPECT_EQ(stream, owner.stream());

  for (int step = 0; step < 5; ++step) {
    C_OK(descent_trainer_step(host.trainer, x.data(), kRows, kInputs, kLd, nullptr, y.data(),
                              kOutputs, DESCENT_MEMORY_HOST));
    C_OK(descent_trainer_step(dev.trainer, xd.data(), kRows, kInputs, kLd, nullptr, yd.data(),
                              kOutputs, DESCENT_MEMORY_DEVICE));
  }
  double host_loss = 0, dev_loss = 0, host_eval = 0, dev_eval = 0, accuracy = 0;
  C_OK(descent_trainer_take_loss(host.trainer, &host_loss));
  C_OK(descent_trainer_take_loss(dev.trainer, &dev_loss));
  EXPECT_EQ(host_loss, dev_loss);
  EXPECT_TRUE(bit_identical(host.params(), dev.params()));
  C_OK(descent_trainer_evaluate(host.trainer, x.data(), kRows, kInputs, kLd, nullptr, y.data(),
                                kOutputs, DESCENT_MEMORY_HOST, &host_eval, &accuracy));
  C_OK(descent_trainer_evaluate(dev.trainer, xd.data(), kRows, kInputs, kLd, nullptr, yd.data(),
                                kOutputs, DESCENT_MEMORY_DEVICE, &dev_eval, &accuracy));
  EXPECT_EQ(host_eval, dev_eval);
  EXPECT_GT(host_eval, 0.0);

  // Prediction into device memory (returns once it is written).
  std::vector<float> host_out(kRows * kOutputs);
  C_OK(descent_model_predict(host.model, x.data(), kRows, kInputs, kLd, host_out.data(), kOutputs,
                             DESCENT_MEMORY_HOST));
  C_OK(descent_model_predict(dev.model, xd.data(), kRows, kInputs, kLd, predicted.data(),
                             kOutputs, DESCENT_MEMORY_DEVICE));
  EXPECT_TRUE(bit_identical(host_out, predicted.to_host(owner)));

  // A jet's forward pass from device memory, its blocks read into device memory.
  C_OK(descent_jet_forward(host.jet, x.data(), kRows, kInputs, kLd, DESCENT_MEMORY_HOST));
  C_OK(descent_jet_forward(dev.jet, xd.data(), kRows, kInputs, kLd, DESCENT_MEMORY_DEVICE));
  for (std::int64_t which : {std::int64_t{0}, std::int64_t{1}, kInputs + 1}) {
    SCOPED_TRACE(cat("jet block ", which));
    std::vector<float> host_block(kRows * kOutputs);
    C_OK(descent_jet_read(host.jet, which, host_block.data(), kRows, kOutputs,
                          DESCENT_MEMORY_HOST));
    C_OK(descent_jet_read(dev.jet, which, block.data(), kRows, kOutputs, DESCENT_MEMORY_DEVICE));
    EXPECT_TRUE(bit_identical(host_block, block.to_host(owner)));
  }
  C_OK(descent_context_set_stream(dev.ctx, nullptr));  // before `owner` and its stream go
}

DESCENT_INSTANTIATE_BACKENDS(CApiMemoryTest);

}  // namespace
}  // namespace descent::test
