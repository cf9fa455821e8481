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

// The float64 tanh and sech² of the float64 jets against long double: within a few float64
// ulps across the exponent changes, out to |u| = 30; tiny arguments keep their relative
// accuracy; past the clamp (350) tanh is ±1 and sech² below 1e-300; NaN stays NaN.
TEST(JetMath, Float64TanhAndSech2AreWithinAFewUlps) {
  double worst_t = 0.0, worst_q = 0.0;
  for (double u = -30.0; u <= 30.0; u += 7.3e-4) {
    const cpu::TanhSech2F64 r = cpu::fast_tanh_sech2_f64(u);
    const long double t = std::tanh(static_cast<long double>(u));
    const long double c = std::cosh(static_cast<long double>(u)), q = 1.0L / (c * c);
    const double ulp = 1.1102230246251565e-16;
    worst_t = std::max(worst_t, double(std::abs(r.t - t) / std::max(std::abs(t), 1e-300L)) / ulp);
    worst_q = std::max(worst_q, double(std::abs(r.q - q) / q) / ulp);
  }
  EXPECT_LT(worst_t, 4.0);
  EXPECT_LT(worst_q, 8.0);
  for (double u : {1e-300, -3e-17, 2e-9, 0.17328679513998632, 0.5199}) {
    const long double t = std::tanh(static_cast<long double>(u));
    EXPECT_LT(double(std::abs(cpu::fast_tanh_sech2_f64(u).t - t) / std::abs(t)), 4 * 1.12e-16)
        << u;
  }
  for (double u : {-400.0, 1e10, double(INFINITY)}) {
    const cpu::TanhSech2F64 r = cpu::fast_tanh_sech2_f64(u);
    EXPECT_EQ(r.t, u < 0 ? -1.0 : 1.0);
    EXPECT_TRUE(r.q >= 0.0 && r.q < 1e-300) << r.q;
  }
  const cpu::TanhSech2F64 nan = cpu::fast_tanh_sech2_f64(std::nan(""));
  EXPECT_TRUE(std::isnan(nan.t) && std::isnan(nan.q));
}

}  // namespace
}  // namespace descent::test
