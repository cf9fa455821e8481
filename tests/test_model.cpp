// Mlp: parameter layout, initialisation, forward/backward against the float64 oracle MLP on every
// backend, partial batches and the errors of a bad architecture.
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

TEST_P(MlpTest, GradientsMatchTheFloat64Oracle) {
  for (Activation act : {Activation::relu, Activation::tanh, Activation::gelu}) {
    SCOPED_TRACE(to_string(act));
    const std::vector<std::int64_t> widths{6, 17, 5, 4};
    Mlp m(ctx(), widths, act, {Init::torch_default, seed_, 2});
    const std::int64_t rows = 9;  // larger than max_batch: the buffers grow
    const std::vector<float> x = random_floats(rng_, rows * 6);
    const std::vector<std::int32_t> labels = random_labels(rng_, rows, 4);
    Buffer<float> xd = upload(ctx(), x);
    Buffer<std::int32_t> ld = upload(ctx(), labels);
    Buffer<float> loss(ctx(), 1);
    MatrixView<const float> xv = xd.matrix(rows, 6);
    const ForwardPass pass = m.forward(xv);
    const MatrixView<const float> out = pass.output;
    softmax_cross_entropy(ctx(), out, ld.view(), {loss.view(), pass.output_grad});
    m.backward(pass);

    oracle::Mlp net;
    net.hidden = act;
    const std::vector<float> p = m.params_to_host();
    for (int l = 0; l < m.layers(); ++l) {
      const std::int64_t in = widths[static_cast<std::size_t>(l)],
                         o = widths[static_cast<std::size_t>(l) + 1];
      const auto at = static_cast<std::size_t>(m.weight_offset(l));
      net.w.push_back(to_mat(std::vector<float>(p.begin() + at, p.begin() + at + in * o), o, in));
      net.b.emplace_back(p.begin() + at + in * o, p.begin() + at + in * o + o);
    }
    oracle::MlpTargets t;
    t.labels = labels;
    const oracle::MlpGrads ref =
        oracle::mlp_backward(net, to_mat(x, rows, 6), oracle::LossKind::softmax_cross_entropy, t);
    EXPECT_TRUE(close_to(double(loss.to_host(ctx())[0]), ref.loss, 1e-5));
    std::vector<double> want;
    for (int l = 0; l < m.layers(); ++l) {
      want.insert(want.end(), ref.dw[static_cast<std::size_t>(l)].v.begin(),
                  ref.dw[static_cast<std::size_t>(l)].v.end());
      want.insert(want.end(), ref.db[static_cast<std::size_t>(l)].begin(),
                  ref.db[static_cast<std::size_t>(l)].end());
    }
    Buffer<float> g(ctx(), m.parameter_count());
    detail::copy_bytes(ctx(), g.data(), g.device(), m.grads().data, m.grads().device,
                       sizeof(float) * static_cast<std::size_t>(m.parameter_count()));
    EXPECT_TRUE(close_to(g.to_host(ctx()), want, 1e-4));
  }
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

TEST(MlpErrors, HiddenWidthZeroNamesTheWidth) {
  Context ctx;
  EXPECT_THROW_THAT(
      Mlp(ctx, {784, 0, 10}), ArgumentError,
      ::testing::AllOf(::testing::HasSubstr("widths[1]"), ::testing::HasSubstr("hidden width"),
                       ::testing::HasSubstr("got 0")));
  EXPECT_THROW_THAT(Mlp(ctx, {784}), ArgumentError, ::testing::HasSubstr("at least 2"));
  EXPECT_THROW_THAT(Mlp(ctx, {4, 3, 2}, std::vector<Activation>{Activation::relu}), ArgumentError,
                    ::testing::HasSubstr("one per layer"));
  EXPECT_THROW_THAT(Mlp(ctx, {4, 2}, Activation::relu, {Init::torch_default, 0, 0}), ArgumentError,
                    NamesArgument("max_batch"));
}

TEST(MlpErrors, TooLargeIsOutOfMemoryNotAnAbort) {
  Context ctx;
  // 2^40 hidden units: petabytes of parameters, refused before any allocation.
  EXPECT_THROW_THAT(Mlp(ctx, {784, std::int64_t(1) << 40, 10}), OutOfMemory,
                    ::testing::AllOf(::testing::HasSubstr("784-1099511627776-10"),
                                     ::testing::HasSubstr("bytes of memory")));
  // A parameter count that overflows 64 bits cannot be represented: an ArgumentError.
  EXPECT_THROW_THAT(Mlp(ctx, {std::int64_t(1) << 40, std::int64_t(1) << 40}), ArgumentError,
                    ::testing::AllOf(NamesArgument("widths"), ::testing::HasSubstr("overflow")));
}

TEST(MlpErrors, WrongInputWidthIsAShapeError) {
  Context ctx;
  Mlp m(ctx, {4, 3, 2});
  Buffer<float> x(ctx, 12);
  EXPECT_THROW_THAT(
      m.forward(x.matrix(4, 3)), ShapeError,
      ::testing::AllOf(::testing::HasSubstr("4-3-2"), ::testing::HasSubstr("[4, 3]")));
  std::vector<float> wrong(5);
  EXPECT_THROW(m.params_from_host(wrong), ShapeError);
}

TEST(MlpErrors, ParseInit) {
  EXPECT_EQ(parse_init("he"), Init::he);
  EXPECT_EQ(parse_init("torch"), Init::torch_default);
  EXPECT_THROW_THAT(parse_init("glorot"), ArgumentError, ::testing::HasSubstr("glorot"));
}

}  // namespace
}  // namespace descent::test
