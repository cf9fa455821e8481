// Gradients of a whole 3-layer MLP: the float64 oracle against central finite differences (descent
// against the oracle on every backend: tests/backends/test_gradcheck.cpp).
#include <algorithm>
#include <cmath>

#include "gradcheck_problem.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

// Central differences of the oracle's loss w.r.t. one value, in float64.
double central_difference(Problem& p, double& value) {
  const double h = 1e-6 * std::max(1.0, std::abs(value));
  const double saved = value;
  value = saved + h;
  const double up = oracle::mlp_loss(p.net, p.x, p.loss, p.targets);
  value = saved - h;
  const double down = oracle::mlp_loss(p.net, p.x, p.loss, p.targets);
  value = saved;
  return (up - down) / (2 * h);
}

class GradCheck : public SeededTest {};

TEST_F(GradCheck, OracleBackwardMatchesCentralDifferences) {
  for (LossKind loss : kLosses) {
    for (Activation act : kAllActivations) {
      Problem p = make_problem(rng_, loss, act);
      SCOPED_TRACE(describe(p));
      const oracle::MlpGrads g = oracle::mlp_backward(p.net, p.x, p.loss, p.targets);
      EXPECT_NEAR(g.loss, oracle::mlp_loss(p.net, p.x, p.loss, p.targets), 1e-14);
      for (std::size_t l = 0; l < p.net.w.size(); ++l) {
        SCOPED_TRACE(cat("layer ", l));
        oracle::Vec fd_w, fd_b;
        for (double& w : p.net.w[l].v) fd_w.push_back(central_difference(p, w));
        for (double& b : p.net.b[l]) fd_b.push_back(central_difference(p, b));
        EXPECT_TRUE(close_to(g.dw[l].v, fd_w, 1e-6)) << "dw";
        EXPECT_TRUE(close_to(g.db[l], fd_b, 1e-6)) << "db";
      }
      oracle::Vec fd_x;
      for (double& x : p.x.v) fd_x.push_back(central_difference(p, x));
      EXPECT_TRUE(close_to(g.dx.v, fd_x, 1e-6)) << "dx";
    }
  }
}

// The finite-difference check itself must be able to fail: a wrong derivative is caught.
TEST_F(GradCheck, CentralDifferencesDetectAWrongGradient) {
  Problem p = make_problem(rng_, LossKind::mse, Activation::tanh);
  oracle::MlpGrads g = oracle::mlp_backward(p.net, p.x, p.loss, p.targets);
  oracle::Vec fd;
  for (double& w : p.net.w[1].v) fd.push_back(central_difference(p, w));
  g.dw[1].v[3] *= 1.01;
  EXPECT_FALSE(close_to(g.dw[1].v, fd, 1e-6));
}

}  // namespace
}  // namespace descent::test
