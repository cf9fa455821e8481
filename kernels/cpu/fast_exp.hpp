// A vectorisable e^x for the CPU backend's loss loops (libm's expf is a call per element).
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

}  // namespace descent::cpu
