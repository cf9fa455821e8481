// Mlp on every backend: forward, softmax_cross_entropy and backward against the float64 oracle
// MLP, for three activations, with buffers that grow.
#include "descent/model.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

class MlpTest : public BackendTest {};
DESCENT_INSTANTIATE_BACKENDS(MlpTest);

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

}  // namespace
}  // namespace descent::test
