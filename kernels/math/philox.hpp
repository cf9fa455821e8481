// Philox-4x32-10 counter-based generator, written once so that the CPU and the GPU backend draw
// bit-identical numbers for the same (seed, index).
#pragma once

#include <cstdint>

#include "descent/detail/host_device.hpp"

namespace descent::detail {

struct Philox4 {
  std::uint32_t v[4];
};

DESCENT_HD inline void mulhilo(std::uint32_t a, std::uint32_t b, std::uint32_t& hi,
                               std::uint32_t& lo) {
  const std::uint64_t p = static_cast<std::uint64_t>(a) * b;
  hi = static_cast<std::uint32_t>(p >> 32);
  lo = static_cast<std::uint32_t>(p);
}

// Ten rounds of Philox-4x32 on counter (c0..c3) with key (k0, k1).
DESCENT_HD inline Philox4 philox4x32_10(std::uint32_t c0, std::uint32_t c1, std::uint32_t c2,
                                        std::uint32_t c3, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    std::uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kM0, c0, hi0, lo0);
    mulhilo(kM1, c2, hi1, lo1);
    const std::uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += kW0;
    k1 += kW1;
  }
  return {{c0, c1, c2, c3}};
}

// Uniform float in [0, 1) for element `index` of the stream `seed`: block index/4 of the
// counter, lane index%4; 24 random bits so every value is exact in float.
DESCENT_HD inline float uniform01(std::uint64_t seed, std::uint64_t index) {
  const std::uint64_t block = index >> 2;
  const Philox4 r = philox4x32_10(static_cast<std::uint32_t>(block),
                                  static_cast<std::uint32_t>(block >> 32), 0u, 0u,
                                  static_cast<std::uint32_t>(seed),
                                  static_cast<std::uint32_t>(seed >> 32));
  return static_cast<float>(r.v[index & 3] >> 8) * (1.0f / 16777216.0f);
}

// lo + (hi - lo) * u with one explicit rounding order (no compiler-chosen fused multiply-add),
// so both backends round identically.
DESCENT_HD inline float uniform_in(float lo, float hi, float u) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(lo, __fmul_rn(__fsub_rn(hi, lo), u));
#else
  volatile float span = hi - lo;
  volatile float scaled = span * u;
  return lo + scaled;
#endif
}

}  // namespace descent::detail
