// A vectorisable e^x and tanh for the CPU backend's loss and jet loops (libm's expf and tanhf are
// a call per element).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace descent::cpu {

// x = k ln 2 + r with k = round(x / ln 2) (a float holding an integer) and |r| <= ln2/2; ln 2
// in two parts, so that r is exact. For |x| below about 2^15 ln 2.
struct Reduced {
  float k, r;
};
inline __attribute__((always_inline)) Reduced reduce_ln2(float x) {
  constexpr float kRound = 12582912.0f;  // 1.5 · 2^23: adding it rounds to an integer
  const float k = (x * 1.44269504088896341f + kRound) - kRound;
  return {k, (x - k * 0.693359375f) - k * -2.12194440e-4f};
}
// 2^k for an integer k in [-126, 127], from its exponent bits.
inline __attribute__((always_inline)) float pow2(float k) {
  return std::bit_cast<float>((static_cast<std::int32_t>(k) + 127) << 23);
}

// e^x = 2^k · e^r with k = round(x / ln 2) and |r| <= ln2/2; e^r by its degree-7 Taylor
// polynomial (truncation error < 1e-8 relative), ln 2 split in two so r is exact. Relative error
// within a few float ulps; x is clamped to [-87.3, 88.7], so e^x never overflows or becomes
// subnormal (tiny results come out near 1e-38 rather than 0). NaN stays NaN. Only operations
// that SSE2 vectorises.
// Always inlined, also into the ISA variants of a loop (kernels/cpu/isa.hpp).
inline __attribute__((always_inline)) float fast_exp(float x) {
  x = x < -87.33654f ? -87.33654f : x;
  x = x > 88.72283f ? 88.72283f : x;
  const auto [k, r] = reduce_ln2(x);
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * pow2(k);
}

struct TanhSech2 {
  float t;  // tanh(u)
  float q;  // sech²(u) = 1 - tanh²(u), without the cancellation of 1 - t² for large |u|
};

// tanh(u) and sech²(u) from one e^{2|u|} − 1 = 2^k (expm1(r) + 1) − 1, k = round(2|u| / ln 2),
// |r| <= ln2/2, expm1(r) by its degree-8 Taylor polynomial (truncation < 1e-9 relative): with
// E = e^{2|u|} − 1, tanh = ±E / (E + 2) and sech² = 4 (E + 1) / (E + 2)², neither of which
// cancels (for k = 0, E is expm1(r) itself; for k >= 1, 2^k − 1 is exact and E >= 0.4). One
// branch-free formula for every u, no series beside it. |u| is clamped at 40 (tanh is 1 in
// float from 9 on; sech² comes out 7e-35 rather than smaller). Within a few float ulps of the
// exact values; NaN stays NaN. Only operations that SSE2 vectorises.
inline __attribute__((always_inline)) TanhSech2 fast_tanh_sech2(float u) {
  float a = u < 0.0f ? -u : u;
  a = a > 40.0f ? 40.0f : a;
  const auto [k, r] = reduce_ln2(a + a);
  float p = 1.0f / 40320.0f;
  p = p * r + 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  const float em = p * r;  // expm1(r)
  const float s = pow2(k);
  const float e = s * em + (s - 1.0f);
  const float d = 1.0f / (e + 2.0f);
  const float t = e * d;
  TanhSech2 out;
  out.t = u < 0.0f ? -t : t;
  out.q = 4.0f * ((e + 1.0f) * d) * d;
  if (u != u) out.t = out.q = u;  // NaN in, NaN out
  return out;
}

// The transcendental functions of the shared activation and jet math (kernels/math/
// activation.hpp, jet.hpp), vectorisable: the CPU backend's choice.
struct FastMath {
  static inline __attribute__((always_inline)) TanhSech2 tanh_sech2(float u) {
    return fast_tanh_sech2(u);
  }
  static inline __attribute__((always_inline)) float tanh(float u) { return fast_tanh_sech2(u).t; }
  static inline __attribute__((always_inline)) float sigmoid(float z) {
    return 1.0f / (1.0f + fast_exp(-z));
  }
};

// fast_tanh_sech2 in float64, for the float64 jets (kernels/cpu/jet64.cpp): the same formula,
// E = e^{2|u|} − 1 = 2^k (expm1(r) + 1) − 1 with k = round(2|u| / ln 2), |r| <= ln2/2, ln 2 in
// two parts (r exact), expm1(r) by its degree-13 Taylor polynomial (truncation below 2e-17
// relative). |u| is clamped at 350, where e^{2|u|} still fits a float64 (sech² comes out 4e-304
// rather than smaller). Within a few float64 ulps of the exact values; NaN stays NaN. Only
// operations that SSE2 vectorises.
struct TanhSech2F64 {
  double t, q;
};
inline __attribute__((always_inline)) TanhSech2F64 fast_tanh_sech2_f64(double u) {
  double a = u < 0.0 ? -u : u;
  a = a > 350.0 ? 350.0 : a;
  const double x = a + a;
  constexpr double kRound = 6755399441055744.0;  // 1.5 · 2^52: adding it rounds to an integer
  const double kr = x * 1.4426950408889634 + kRound;
  const double k = kr - kRound;
  const double r = (x - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10;
  // k as an integer from the bits of k + kRound (whose last mantissa bits count k): AVX2 has no
  // vector conversion of doubles to 64-bit integers, and this keeps the loop a vector loop.
  const std::int64_t ki = std::bit_cast<std::int64_t>(kr) - std::bit_cast<std::int64_t>(kRound);
  constexpr double c[] = {1.0 / 6227020800.0,
                          1.0 / 479001600.0,
                          1.0 / 39916800.0,
                          1.0 / 3628800.0,
                          1.0 / 362880.0,
                          1.0 / 40320.0,
                          1.0 / 5040.0,
                          1.0 / 720.0,
                          1.0 / 120.0,
                          1.0 / 24.0,
                          1.0 / 6.0,
                          0.5,
                          1.0};
  double p = c[0];
#pragma GCC unroll 12
  for (int i = 1; i < 13; ++i) p = p * r + c[i];
  const double em = p * r;                                                              // expm1(r)
  const double s = std::bit_cast<double>((ki + 1023) << 52);  // 2^k
  const double e = s * em + (s - 1.0);
  const double d = 1.0 / (e + 2.0);
  const double t = e * d;
  TanhSech2F64 out;
  out.t = u < 0.0 ? -t : t;
  out.q = 4.0 * ((e + 1.0) * d) * d;
  if (u != u) out.t = out.q = u;  // NaN in, NaN out
  return out;
}

// The float64 jets' math policy (kernels/math/jet.hpp): the tanh above, sigmoid from libm.
struct FastMath64 {
  using scalar = double;
  static inline __attribute__((always_inline)) TanhSech2F64 tanh_sech2(double u) {
    return fast_tanh_sech2_f64(u);
  }
  static inline double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }
};

}  // namespace descent::cpu
