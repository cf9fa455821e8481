// Mlp on every backend: parameter layout, initialisation, a stale forward pass, partial batches
// and running out of memory (the gradients against the float64 oracle MLP:
// tests/backends/slow/test_model.cpp; a bad architecture: tests/test_model_errors.cpp).
#include <cmath>

#include "descent/model.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

class MlpTest : public BackendTest {};

TEST_P(MlpTest, LayoutIsWeightThenBiasPerLayer) {
  Mlp m(ctx(), {5, 3, 2}, Activation::tanh);
  EXPECT_EQ(m.layers(), 2);
  EXPECT_EQ(m.parameter_count(), 5 * 3 + 3 + 3 * 2 + 2);
  EXPECT_EQ(m.weight_offset(0), 0);
  EXPECT_EQ(m.weight_offset(1), 18);
  EXPECT_EQ(m.weight(1).data, m.params().data + 18);
  EXPECT_EQ(m.weight(1).rows, 2);
  EXPECT_EQ(m.weight(1).cols, 3);
  EXPECT_EQ(m.bias(0).data, m.params().data + 15);
  EXPECT_EQ(m.bias_grad(1).data, m.grads().data + 24);
  EXPECT_EQ(m.activations()[0], Activation::tanh);
  EXPECT_EQ(m.activations()[1], Activation::identity);
  EXPECT_EQ(m.describe(), "5-3-2 (tanh, identity)");
}

TEST_P(MlpTest, TorchInitIsFillUniformAtTheFlatOffset) {
  Mlp m(ctx(), {7, 4, 3}, Activation::relu, {Init::torch_default, 42, 8});
  const std::vector<float> p = m.params_to_host();
  // The expected values come from fill_uniform on a buffer as long as the model, at offset 0.
  Buffer<float> ref(ctx(), m.parameter_count());
  const float a0 = static_cast<float>(1.0 / std::sqrt(7.0)), a1 = 0.5f;
  fill_uniform(ctx(), ref.view().slice(0, 32), -a0, a0, 42, 0);
  fill_uniform(ctx(), ref.view().slice(32, 15), -a1, a1, 42, 32);
  const std::vector<float> want = ref.to_host(ctx());
  for (std::size_t i = 0; i < p.size(); ++i) {
    ASSERT_TRUE(same_bits(p[i], want[i])) << "parameter " << i;
  }
  for (std::size_t i = 0; i < 32; ++i) EXPECT_LE(std::fabs(p[i]), a0);
}

TEST_P(MlpTest, XavierAndHeZeroTheBiasesAndBoundTheWeights) {
  for (Init init : {Init::xavier, Init::he}) {
    Mlp m(ctx(), {6, 10, 4}, Activation::relu, {init, 3, 4});
    const std::vector<float> p = m.params_to_host();
    const double bound0 = init == Init::xavier ? std::sqrt(6.0 / 16) : std::sqrt(1.0);
    bool spread = false;
    for (std::int64_t i = 0; i < 60; ++i) {
      EXPECT_LE(std::fabs(p[static_cast<std::size_t>(i)]), bound0) << to_string(init);
      spread = spread || std::fabs(p[static_cast<std::size_t>(i)]) > 0.5 * bound0;
    }
    EXPECT_TRUE(spread) << to_string(init) << ": weights do not use their range";
    for (std::int64_t i = 60; i < 70; ++i) EXPECT_EQ(p[static_cast<std::size_t>(i)], 0.0f);
  }
}

TEST_P(MlpTest, SameSeedSameWeightsOtherSeedOtherWeights) {
  Mlp a(ctx(), {9, 5, 3}, Activation::relu, {Init::torch_default, 7, 4});
  Mlp b(ctx(), {9, 5, 3}, Activation::relu, {Init::torch_default, 7, 4});
  Mlp c(ctx(), {9, 5, 3}, Activation::relu, {Init::torch_default, 8, 4});
  EXPECT_EQ(a.params_to_host(), b.params_to_host());
  EXPECT_NE(a.params_to_host(), c.params_to_host());
}

// forward + softmax_cross_entropy + backward against the oracle's float64 MLP.
// The data a backward pass reads is handed over as the ForwardPass: a pass whose activations a
// later forward (or a growing reserve) has overwritten is refused, not differentiated wrongly.
TEST_P(MlpTest, BackwardRefusesAStalePass) {
  Mlp m(ctx(), {6, 5, 4}, Activation::tanh);
  const std::vector<float> x = random_floats(rng_, 3 * 6);
  Buffer<float> xd = upload(ctx(), x);
  const ForwardPass first = m.forward(xd.matrix(3, 6));
  const ForwardPass second = m.forward(xd.matrix(2, 6));
  EXPECT_THROW_THAT(m.backward(first), ArgumentError,
                    ::testing::AllOf(::testing::HasSubstr("Mlp::backward: pass"),
                                     ::testing::HasSubstr("later forward")));
  EXPECT_NO_THROW(m.backward(second));
  m.reserve(1000);  // moves the activations
  EXPECT_THROW(m.backward(second), ArgumentError);
  EXPECT_THROW_THAT(m.backward(ForwardPass{}), ArgumentError,
                    ::testing::HasSubstr("not made by Mlp::forward"));
}

TEST_P(MlpTest, PartialBatchUsesTheLeadingRows) {
  Mlp m(ctx(), {4, 8, 3}, Activation::relu, {Init::torch_default, 1, 16});
  const std::vector<float> x = random_floats(rng_, 16 * 4);
  Buffer<float> xd = upload(ctx(), x);
  const std::vector<float> full = [&] {
    MatrixView<const float> out = m.forward(xd.matrix(16, 4));
    std::vector<float> h(static_cast<std::size_t>(out.size()));
    detail::copy_bytes(ctx(), h.data(), Device::cpu(), out.data, out.device,
                       h.size() * sizeof(float));
    return h;
  }();
  MatrixView<const float> out = m.forward(xd.matrix(5, 4));
  ASSERT_EQ(out.rows, 5);
  std::vector<float> part(static_cast<std::size_t>(out.size()));
  detail::copy_bytes(ctx(), part.data(), Device::cpu(), out.data, out.device,
                     part.size() * sizeof(float));
  // The GEMM library may pick another kernel for another row count: equal to rounding only.
  EXPECT_TRUE(close_to(part, std::vector<float>(full.begin(), full.begin() + 15), 1e-6));
  EXPECT_EQ(m.max_batch(), 16);
}

// Growing the activations past what the device holds throws OutOfMemory before anything is
// released: the model keeps its buffers and computes as before (strong guarantee).
TEST_P(MlpTest, OutOfMemoryWhileGrowingLeavesTheModelUsable) {
  Mlp model(ctx(), {5, 7, 3}, Activation::gelu, {Init::torch_default, 3, 4});
  const std::vector<float> x = random_floats(rng_, 4 * 5);
  Buffer<float> xd = upload(ctx(), x);
  auto output = [&] {
    const MatrixView<const float> y = model.forward(xd.matrix(4, 5));
    std::vector<float> h(static_cast<std::size_t>(y.size()));
    detail::copy_bytes(ctx(), h.data(), Device::cpu(), y.data, y.device, h.size() * sizeof(float));
    return h;
  };
  const std::vector<float> first = output();
  EXPECT_THROW_THAT(model.reserve(std::int64_t(1) << 50), OutOfMemory,
                    ::testing::AllOf(::testing::HasSubstr("Mlp::reserve"),
                                     ::testing::HasSubstr("keeps its 4 rows")));
  EXPECT_EQ(model.max_batch(), 4);
  // Rows whose activation sizes overflow 64 bits: an ArgumentError, nothing changed.
  EXPECT_THROW_THAT(model.reserve(std::int64_t(1) << 62), ArgumentError,
                    ::testing::HasSubstr("overflow"));
  EXPECT_EQ(model.max_batch(), 4);
  EXPECT_EQ(output(), first);
  model.reserve(9);  // and it still grows when asked for what fits
  EXPECT_EQ(model.max_batch(), 9);
  EXPECT_EQ(output(), first);
}

DESCENT_INSTANTIATE_BACKENDS(MlpTest);

}  // namespace
}  // namespace descent::test
