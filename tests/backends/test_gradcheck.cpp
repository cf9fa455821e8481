// Gradients of a whole 3-layer MLP: descent's fp32 forward/backward on every backend against the
// float64 oracle (the oracle itself against central differences: tests/test_gradcheck.cpp).
#include "gradcheck_problem.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

class MlpGradientTest : public BackendTest {};
DESCENT_INSTANTIATE_BACKENDS(MlpGradientTest);

// Runs forward, loss and backward of the network with descent's ops, all parameters and
// gradients living in one flat buffer each (as the model keeps them), and compares with the
// oracle.
void check_descent_gradients(Context& ctx, const Problem& p, double tol) {
  SCOPED_TRACE(describe(p));
  const std::size_t layers = p.net.w.size();
  // Flat layout: w0 b0 w1 b1 w2 b2.
  std::vector<std::int64_t> w_off, b_off;
  std::vector<float> flat;
  for (std::size_t l = 0; l < layers; ++l) {
    w_off.push_back(std::int64_t(flat.size()));
    flat.insert(flat.end(), p.net.w[l].v.begin(), p.net.w[l].v.end());
    b_off.push_back(std::int64_t(flat.size()));
    flat.insert(flat.end(), p.net.b[l].begin(), p.net.b[l].end());
  }
  const std::int64_t n_params = std::int64_t(flat.size());
  Buffer<float> params = upload(ctx, flat);
  Buffer<float> grads = poisoned<float>(ctx, n_params);
  const std::vector<float> xf = to_floats(p.x.v);
  Buffer<float> x = upload(ctx, xf);
  Buffer<float> dx = poisoned<float>(ctx, kBatch * p.widths[0]);
  std::vector<Buffer<float>> y, pre, dy;
  for (std::size_t l = 0; l < layers; ++l) {
    y.push_back(poisoned<float>(ctx, kBatch * p.widths[l + 1]));
    pre.push_back(poisoned<float>(ctx, kBatch * p.widths[l + 1]));
    dy.push_back(poisoned<float>(ctx, kBatch * p.widths[l + 1]));
  }
  auto w_view = [&](std::size_t l) {
    return std::as_const(params)
        .view()
        .slice(w_off[l], p.widths[l + 1] * p.widths[l])
        .as_matrix(p.widths[l + 1], p.widths[l]);
  };
  auto b_view = [&](std::size_t l) {
    return std::as_const(params).view().slice(b_off[l], p.widths[l + 1]);
  };
  auto act = [&](std::size_t l) { return l + 1 == layers ? Activation::identity : p.net.hidden; };
  auto input = [&](std::size_t l) {
    return l == 0 ? std::as_const(x).matrix(kBatch, p.widths[0])
                  : std::as_const(y[l - 1]).matrix(kBatch, p.widths[l]);
  };

  for (std::size_t l = 0; l < layers; ++l) {
    dense_forward(ctx, input(l), w_view(l), b_view(l), act(l), y[l].matrix(kBatch, p.widths[l + 1]),
                  pre[l].matrix(kBatch, p.widths[l + 1]));
  }
  const std::int64_t k = p.widths[layers];
  Buffer<float> loss = poisoned<float>(ctx, 1);
  const LossOutput out{loss.view(), dy[layers - 1].matrix(kBatch, k)};
  const MatrixView<const float> logits = std::as_const(y[layers - 1]).matrix(kBatch, k);
  Buffer<float> target;
  Buffer<std::int32_t> labels;
  switch (p.loss) {
    case LossKind::mse:
      target = upload(ctx, to_floats(p.targets.target.v));
      mse_loss(ctx, logits, std::as_const(target).matrix(kBatch, k), out);
      break;
    case LossKind::softmax_cross_entropy:
      labels = upload(ctx, p.targets.labels);
      softmax_cross_entropy(ctx, logits, std::as_const(labels).view(), out);
      break;
    case LossKind::sigmoid_bce:
      target = upload(ctx, to_floats(p.targets.target.v));
      sigmoid_bce(ctx, logits, std::as_const(target).matrix(kBatch, k), out);
      break;
  }
  for (std::size_t l = layers; l-- > 0;) {
    DenseGrads g;
    g.dw = grads.view()
               .slice(w_off[l], p.widths[l + 1] * p.widths[l])
               .as_matrix(p.widths[l + 1], p.widths[l]);
    g.db = grads.view().slice(b_off[l], p.widths[l + 1]);
    g.dx = l == 0 ? dx.matrix(kBatch, p.widths[0]) : dy[l - 1].matrix(kBatch, p.widths[l]);
    dense_backward(ctx, input(l), w_view(l), std::as_const(y[l]).matrix(kBatch, p.widths[l + 1]),
                   std::as_const(pre[l]).matrix(kBatch, p.widths[l + 1]),
                   std::as_const(dy[l]).matrix(kBatch, p.widths[l + 1]), act(l), g);
  }

  const oracle::MlpGrads ref = oracle::mlp_backward(p.net, p.x, p.loss, p.targets);
  oracle::Vec ref_flat;
  for (std::size_t l = 0; l < layers; ++l) {
    ref_flat.insert(ref_flat.end(), ref.dw[l].v.begin(), ref.dw[l].v.end());
    ref_flat.insert(ref_flat.end(), ref.db[l].begin(), ref.db[l].end());
  }
  EXPECT_TRUE(close_to(double(loss.to_host(ctx)[0]), ref.loss, tol)) << "loss";
  const std::vector<float> got = grads.to_host(ctx);
  EXPECT_TRUE(close_to(got, ref_flat, tol)) << "all parameter gradients";
  for (std::size_t l = 0; l < layers; ++l) {
    const std::vector<float> gw(got.begin() + w_off[l],
                                got.begin() + w_off[l] + std::int64_t(ref.dw[l].v.size()));
    const std::vector<float> gb(got.begin() + b_off[l],
                                got.begin() + b_off[l] + std::int64_t(ref.db[l].size()));
    EXPECT_TRUE(close_to(gw, ref.dw[l].v, tol)) << "dw of layer " << l;
    EXPECT_TRUE(close_to(gb, ref.db[l], tol)) << "db of layer " << l;
  }
  EXPECT_TRUE(close_to(dx.to_host(ctx), ref.dx.v, tol)) << "dx of the input";
}

// fp32 through three layers and a loss: a few roundings more than one op, hence 2e-5.
constexpr double kTolMlp = 2e-5;

TEST_P(MlpGradientTest, Fp32BackwardMatchesOracleForEveryLossAndActivation) {
  for (LossKind loss : kLosses) {
    for (Activation act : kAllActivations) {
      check_descent_gradients(ctx(), make_problem(rng_, loss, act), kTolMlp);
    }
  }
}

}  // namespace
}  // namespace descent::test
