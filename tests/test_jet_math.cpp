// The jets' shared math (kernels/math/jet.hpp): each activation's derivatives against the float64
// Taylor-series oracle, and the CPU's fast tanh and sech² against double precision.
#include <algorithm>
#include <cmath>

#include "descent/jet.hpp"
#include "kernels/cpu/fast_exp.hpp"
#include "kernels/math/jet.hpp"
#include "oracle/jet_oracle.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

TEST(JetMath, DerivativesMatchTheTaylorOracle) {
  constexpr JetActivation kAll[] = {
      JetActivation::identity, JetActivation::relu,     JetActivation::tanh, JetActivation::sigmoid,
      JetActivation::gelu,     JetActivation::softplus, JetActivation::silu};
  for (JetActivation act : kAll) {
    for (double z = -6.05; z < 6.1; z += 0.1) {
      const auto ref = oracle::jet_derivatives(act, z);
      const detail::ActDerivatives d = detail::dispatch_jet_activation(
          static_cast<int>(act),
          [&](auto a) { return detail::jet_derivatives<decltype(a)::value>(float(z)); });
      const float got[4] = {d.d0, d.d1, d.d2, d.d3};
      for (int n = 0; n < 4; ++n) {
        EXPECT_NEAR(got[n], ref[n], 2e-6 * (1.0 + std::abs(ref[n])))
            << to_string(act) << ": derivative " << n << " at z = " << z;
      }
    }
  }
}

// The CPU's vectorisable tanh and sech² (kernels/cpu/fast_exp.hpp) against double precision:
// within 4 ulps for tanh and 8 for sech² on both sides of each change of the exponent k
// (2|u| = k ln 2 + r), out to where sech² underflows; NaN stays NaN.
TEST(JetMath, FastTanhAndSech2AreWithinAFewUlps) {
  double worst_t = 0.0, worst_q = 0.0;
  for (double x = -40.0; x <= 40.0; x += 7.3e-4) {
    const float u = float(x);
    const cpu::TanhSech2 r = cpu::fast_tanh_sech2(u);
    const double t = std::tanh(double(u)), c = std::cosh(double(u)), q = 1.0 / (c * c);
    const double ulp = 5.960464477539063e-08;
    worst_t = std::max(worst_t, std::abs(r.t - t) / std::max(std::abs(t), 1e-30) / ulp);
    if (q > 1e-30) worst_q = std::max(worst_q, std::abs(r.q - q) / q / ulp);
  }
  EXPECT_LT(worst_t, 4.0);
  EXPECT_LT(worst_q, 8.0);
  for (float u : {0.0f, 0.17328f, 0.17329f, -0.17329f, 0.5199f, 0.52f, 1e-30f, -3e-8f}) {
    EXPECT_NEAR(cpu::fast_tanh_sech2(u).t, std::tanh(u), 4 * 6e-8 * std::abs(std::tanh(u))) << u;
  }
  const cpu::TanhSech2 nan = cpu::fast_tanh_sech2(std::nanf(""));
  EXPECT_TRUE(std::isnan(nan.t) && std::isnan(nan.q));
}

}  // namespace
}  // namespace descent::test
