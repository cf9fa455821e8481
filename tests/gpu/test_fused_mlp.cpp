// The CUDA backend's fused hidden-layer forward pass (Backend::fused_hidden_forward) against the
// float64 oracle, layer by layer, and against the layer-by-layer bf16 path it replaces: every
// supported width, stacks of 1 to 17 layers (two launches), batches that fill no tile, one tile
// or many, every activation; rows past the batch never written; repeat runs bit-identical.
#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "descent/descent.hpp"
#include "kernels/backend.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

struct Stack {
  std::int64_t width = 0, rows = 0;
  int layers = 0;
  std::vector<float> x;               // [rows, width], bf16 values
  std::vector<std::vector<float>> w;  // per layer [width, width], bf16 values
  std::vector<std::vector<float>> b;  // per layer [width]
  std::vector<Activation> act;
};

// Weights scaled by 1/sqrt(width), so that activations neither vanish nor saturate over layers.
Stack make_stack(std::mt19937_64& rng, std::int64_t width, std::int64_t rows, int layers) {
  Stack s{width, rows, layers, round_to_bf16(random_floats(rng, rows * width)), {}, {}, {}};
  const float scale = 1.5f / std::sqrt(static_cast<float>(width));
  for (int l = 0; l < layers; ++l) {
    s.w.push_back(round_to_bf16(random_floats(rng, width * width, -scale, scale)));
    s.b.push_back(random_floats(rng, width, -0.1f, 0.1f));
    s.act.push_back(kAllActivations[static_cast<std::size_t>(l) % std::size(kAllActivations)]);
  }
  return s;
}

struct Outputs {
  std::vector<std::vector<bf16>> y;
  std::vector<std::vector<float>> pre;
};

// The fused kernel over the stack; each layer's output buffer has `extra` rows more than the
// batch, poisoned, which must stay untouched.
Outputs run_fused(const Context& ctx, const Stack& s, std::int64_t extra = 3) {
  const detail::Backend& be = detail::backend_of(ctx);
  Buffer<bf16> x = upload(ctx, to_bf16_vec(s.x));
  std::vector<Buffer<bf16>> w, y;
  std::vector<Buffer<float>> b, pre;
  std::vector<detail::FusedLayer> layers;
  const bf16 poison = to_bf16(-12345.0f);
  for (int l = 0; l < s.layers; ++l) {
    const auto i = static_cast<std::size_t>(l);
    w.push_back(upload(ctx, to_bf16_vec(s.w[i])));
    b.push_back(upload(ctx, s.b[i]));
    y.push_back(upload(
        ctx, std::vector<bf16>(static_cast<std::size_t>((s.rows + extra) * s.width), poison)));
    pre.push_back(upload(
        ctx, std::vector<float>(static_cast<std::size_t>((s.rows + extra) * s.width), -1e30f)));
    layers.push_back(
        {w.back().data(), b.back().data(), s.act[i], y.back().data(), pre.back().data()});
  }
  be.fused_hidden_forward(ctx, MatrixView<const bf16>(x.data(), s.rows, s.width, ctx.device()),
                          layers.data(), s.layers);
  Outputs out;
  for (int l = 0; l < s.layers; ++l) {
    const auto i = static_cast<std::size_t>(l);
    std::vector<bf16> all = y[i].to_host(ctx);
    std::vector<float> all_pre = pre[i].to_host(ctx);
    const auto used = static_cast<std::size_t>(s.rows * s.width);
    std::int64_t touched = 0;
    for (std::size_t k = used; k < all.size(); ++k) {
      touched += all[k].bits != poison.bits || all_pre[k] != -1e30f ? 1 : 0;
    }
    EXPECT_EQ(touched, 0) << "layer " << l << ": written past the batch's " << s.rows << " rows";
    all.resize(used);
    all_pre.resize(used);
    out.y.push_back(std::move(all));
    out.pre.push_back(std::move(all_pre));
  }
  return out;
}

class CudaFusedMlp : public ::testing::Test, protected Seeded {
 protected:
  void SetUp() override {
    DESCENT_REQUIRE_CUDA_OR_SKIP();
    seed_rng();
    ctx_.emplace(Device::cuda(0));
  }
  std::optional<Context> ctx_;
};

TEST_F(CudaFusedMlp, EveryLayerMatchesTheOracleAndTheLayerByLayerPath) {
  const Context& ctx = *ctx_;
  const detail::Backend& be = detail::backend_of(ctx);
  ASSERT_NE(be.fused_hidden_forward, nullptr);
  struct Case {
    std::int64_t width, rows;
    int layers;
  };
  const Case cases[] = {{16, 1, 1},    {16, 1000, 5}, {32, 17, 3},   {32, 64, 2},  {64, 65, 5},
                        {64, 4099, 4}, {128, 63, 3},  {128, 300, 5}, {64, 200, 17}};
  for (const Case& c : cases) {
    SCOPED_TRACE("width " + std::to_string(c.width) + ", " + std::to_string(c.rows) + " rows, " +
                 std::to_string(c.layers) + " layers");
    ASSERT_TRUE(be.fused_width(c.width));
    const Stack s = make_stack(rng_, c.width, c.rows, c.layers);
    const Outputs fused = run_fused(ctx, s);
    // The oracle in double, rounding each layer's output to bf16 as the next layer's input; and
    // the layer-by-layer bf16 op on the same device.
    std::vector<float> in = s.x;
    Buffer<bf16> dev_in = upload(ctx, to_bf16_vec(s.x));
    for (int l = 0; l < c.layers; ++l) {
      SCOPED_TRACE("layer " + std::to_string(l) + " (" +
                   to_string(s.act[static_cast<std::size_t>(l)]) + ")");
      const auto i = static_cast<std::size_t>(l);
      const oracle::DenseResult ref = oracle::dense_forward(
          to_mat(in, c.rows, c.width), to_mat(s.w[i], c.width, c.width), to_vec(s.b[i]), s.act[i]);
      EXPECT_TRUE(close_to(fused.y[i], ref.y.v, kTolBf16)) << "y against the oracle";
      EXPECT_TRUE(close_to(fused.pre[i], ref.pre.v, kTolBf16)) << "pre against the oracle";
      Buffer<bf16> w = upload(ctx, to_bf16_vec(s.w[i]));
      Buffer<float> b = upload(ctx, s.b[i]);
      Buffer<bf16> y(ctx, c.rows * c.width);
      dense_forward(ctx, MatrixView<const bf16>(dev_in.data(), c.rows, c.width, ctx.device()),
                    MatrixView<const bf16>(w.data(), c.width, c.width, ctx.device()),
                    std::as_const(b).view(), s.act[i],
                    MatrixView<bf16>(y.data(), c.rows, c.width, ctx.device()), {});
      EXPECT_TRUE(close_to(fused.y[i], y.to_host(ctx), kTolBf16)) << "y against dense_forward";
      dev_in = std::move(y);
      in = round_to_bf16(to_floats(ref.y.v));
    }
  }
}

TEST_F(CudaFusedMlp, RepeatRunsAreBitIdentical) {
  const Stack s = make_stack(rng_, 64, 1000, 4);
  const Outputs a = run_fused(*ctx_, s), b = run_fused(*ctx_, s);
  for (std::size_t l = 0; l < a.y.size(); ++l) {
    ASSERT_EQ(a.y[l].size(), b.y[l].size());
    for (std::size_t k = 0; k < a.y[l].size(); ++k) {
      ASSERT_EQ(a.y[l][k].bits, b.y[l][k].bits) << "layer " << l << ", element " << k;
    }
    EXPECT_EQ(a.pre[l], b.pre[l]) << "layer " << l;
  }
}

TEST_F(CudaFusedMlp, OtherWidthsAreRefused) {
  const detail::Backend& be = detail::backend_of(*ctx_);
  for (std::int64_t width : {1, 8, 24, 48, 96, 256}) EXPECT_FALSE(be.fused_width(width)) << width;
  Buffer<bf16> x(*ctx_, 4 * 48);
  EXPECT_THROW(detail::fused_hidden_forward(
                   *ctx_, MatrixView<const bf16>(x.data(), 4, 48, ctx_->device()), nullptr, 1),
               ArgumentError);
}

// A view's elements on the host.
std::vector<float> to_host(const Context& ctx, VectorView<const float> v) {
  std::vector<float> out(static_cast<std::size_t>(v.size));
  detail::copy_bytes(ctx, out.data(), Device::cpu(), v.data, v.device, sizeof(float) * out.size());
  return out;
}

// A bf16 model whose three middle layers form a fused run (width 64) against the same model
// layer by layer: logits, gradients (the backward pass reads what the fused kernel wrote: the
// outputs and, for gelu, the pre-activations) and ten SGD steps.
TEST_F(CudaFusedMlp, MlpWithFusedLayersMatchesTheLayerByLayerModel) {
  const Context& ctx = *ctx_;
  const std::int64_t rows = 300;
  const std::vector<std::int64_t> widths{20, 64, 64, 64, 64, 5};
  Buffer<float> x = upload(ctx, random_floats(rng_, rows * 20));
  Buffer<std::int32_t> labels = upload(ctx, random_labels(rng_, rows, 5));
  const Batch batch{std::as_const(x).matrix(rows, 20), std::as_const(labels).view(), {}, 0};
  for (Activation act : {Activation::relu, Activation::gelu, Activation::tanh}) {
    SCOPED_TRACE(to_string(act));
    MlpOptions o{.seed = 5, .max_batch = rows, .precision = Precision::bf16};
    descent::Mlp plain(ctx, widths, act, o);
    o.fused_layers = true;
    descent::Mlp fused(ctx, widths, act, o);
    EXPECT_TRUE(fused.fused_layers());
    std::vector<std::vector<float>> logits, grads;
    for (descent::Mlp* m : {&plain, &fused}) {
      const ForwardPass pass = m->forward(batch.x);
      const MatrixView<const float> out = pass.output;
      logits.push_back(to_host(ctx, VectorView<const float>(out.data, rows * 5, out.device)));
      Buffer<float> loss(ctx, 1);
      softmax_cross_entropy(ctx, out, batch.labels, {loss.view(), pass.output_grad});
      m->backward(pass);
      grads.push_back(to_host(ctx, std::as_const(*m).grads()));
    }
    EXPECT_TRUE(close_to(logits[1], logits[0], kTolBf16)) << "logits";
    EXPECT_TRUE(close_to(grads[1], grads[0], kTolBf16)) << "gradients";

    Sgd sgd_plain(plain, {.lr = 0.05f, .momentum = 0.9f}),
        sgd_fused(fused, {.lr = 0.05f, .momentum = 0.9f});
    Trainer t_plain(plain, Loss::softmax_cross_entropy, sgd_plain);
    Trainer t_fused(fused, Loss::softmax_cross_entropy, sgd_fused);
    for (int step = 0; step < 10; ++step) {
      t_plain.step(batch);
      t_fused.step(batch);
    }
    const double loss_plain = t_plain.take_train_loss(), loss_fused = t_fused.take_train_loss();
    EXPECT_NEAR(loss_fused, loss_plain, 0.03 * loss_plain) << "mean loss of ten steps";
    EXPECT_TRUE(close_to(fused.params_to_host(), plain.params_to_host(), kTolBf16)) << "weights";
  }
}

}  // namespace
}  // namespace descent::test
