// A vectorisable e^x and tanh for the CPU backend's loss and jet loops (libm's expf and tanhf are
// a call per element).
#pragma once

#include <bit>
#include <cstdint>

namespace descent::cpu {

// e^x = 2^k · e^r with k = round(x / ln 2) and |r| <= ln2/2; e^r by its degree-7 Taylor
// polynomial (truncation error < 1e-8 relative), ln 2 split in two so r is exact. Relative error
// within a few float ulps; x is clamped to [-87.3, 88.7], so e^x never overflows or becomes
// subnormal (tiny results come out near 1e-38 rather than 0). NaN stays NaN. Only operations
// that SSE2 vectorises.
// Always inlined, also into the ISA variants of a loop (kernels/cpu/isa.hpp).
inline __attribute__((always_inline)) float fast_exp(float x) {
  x = x < -87.33654f ? -87.33654f : x;
  x = x > 88.72283f ? 88.72283f : x;
  constexpr float kRound = 12582912.0f;  // 1.5 · 2^23: adding it rounds to an integer
  const float k = (x * 1.44269504088896341f + kRound) - kRound;
  const float r = (x - k * 0.693359375f) - k * -2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const std::int32_t e = (static_cast<std::int32_t>(k) + 127) << 23;
  return p * std::bit_cast<float>(e);
}

struct TanhSech2 {
  float t;  // tanh(u)
  float q;  // sech²(u) = 1 - tanh²(u), without the cancellation of 1 - t² for large |u|
};

// tanh(u) and sech²(u) from one fast_exp. For |u| < 0.625 tanh's odd Maclaurin series to u^21
// (its terms shrink by about (2u/π)² each: truncation < 1e-8 relative) and sech² = 1 - t², which
// cancels little there (t² < 0.31); beyond, with e = e^{-2|u|} (no cancellation: e < 0.29),
// tanh = ±(1 - e) / (1 + e) and sech² = 4e / (1 + e)². Within a few float ulps of the exact
// values; NaN stays NaN. Only operations that SSE2 vectorises.
inline __attribute__((always_inline)) TanhSech2 fast_tanh_sech2(float u) {
  const float a = u < 0.0f ? -u : u;
  const float u2 = u * u;
  float p = 9.691537956929451e-05f;
  p = p * u2 - 0.00023912911424355248f;
  p = p * u2 + 0.000590027440945586f;
  p = p * u2 - 0.0014558343870513183f;
  p = p * u2 + 0.003592128036572481f;
  p = p * u2 - 0.008863235529902197f;
  p = p * u2 + 0.021869488536155203f;
  p = p * u2 - 0.05396825396825397f;
  p = p * u2 + 0.13333333333333333f;
  p = p * u2 - 0.3333333333333333f;
  const float small_t = u + u * u2 * p;
  const float e = fast_exp(-2.0f * a);
  const float inv = 1.0f / (1.0f + e);
  const float large_t = (1.0f - e) * inv;
  const bool small = a < 0.625f;
  TanhSech2 r;
  r.t = small ? small_t : (u < 0.0f ? -large_t : large_t);
  r.q = small ? 1.0f - small_t * small_t : 4.0f * e * inv * inv;
  if (u != u) r.t = r.q = u;  // NaN in, NaN out
  return r;
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

}  // namespace descent::cpu
