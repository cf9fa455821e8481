// Function multiversioning for the CPU backend's memory-bound loops (optimizer updates, the
// gradient norm): each loop is written once as an always-inline template and instantiated for
// baseline x86-64, AVX2 and AVX-512; the widest the running CPU supports is picked once. These
// files are compiled with -ffp-contract=off, so no variant fuses a multiply-add: every variant
// rounds exactly as the baseline one, and results are the same bits on every machine.
#pragma once

#include <cstdint>
#include <type_traits>

namespace descent::cpu {

// Vectors of L floats (GCC's vector extension), for loops written once for every variant's width.
// Spelled out per L: GCC drops a vector_size attribute whose size depends on a template
// parameter, leaving a plain float.
using f32x4 = float __attribute__((vector_size(16)));
using f32x8 = float __attribute__((vector_size(32)));
using f32x16 = float __attribute__((vector_size(64)));
template <int L>
using FloatLanes = std::conditional_t<L == 4, f32x4, std::conditional_t<L == 8, f32x8, f32x16>>;

enum class Isa { base, avx2, avx512 };

// The widest variant this CPU runs (cached after the first call).
Isa cpu_isa() noexcept;
// "x86-64", "avx2", "avx512": for benchmark reports.
const char* isa_name(Isa isa) noexcept;

// True with DESCENT_CPU_ISA=avx512-blocks on a CPU that runs the AVX2 variants (with FMA): the
// loops that pick register blocks per variant (kernels/cpu/jet_products.cpp, dense_slices.cpp)
// then run their AVX-512 variant's vector widths and blocks, compiled for AVX2 (each 16-lane
// vector two ymm, each lane the same chain of multiply-adds), so that a machine without AVX-512
// tests that code; every other loop runs its AVX2 variant. Slower than either: for tests only.
bool avx512_blocks_on_avx2() noexcept;

// [begin, end) of thread t of `threads` over n floats, in pieces of whole 64-byte lines.
inline void thread_range(std::int64_t n, int t, int threads, std::int64_t& begin,
                         std::int64_t& end) {
  const std::int64_t per = ((n + threads - 1) / threads + 15) / 16 * 16;
  begin = per * t < n ? per * t : n;
  end = begin + per < n ? begin + per : n;
}

}  // namespace descent::cpu

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DESCENT_HAS_ISA_VARIANTS 1
#define DESCENT_TARGET_AVX2 __attribute__((target("avx2")))
#define DESCENT_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq")))
#else
#define DESCENT_HAS_ISA_VARIANTS 0
#define DESCENT_TARGET_AVX2
#define DESCENT_TARGET_AVX512
#endif
#define DESCENT_ALWAYS_INLINE inline __attribute__((always_inline))

// The AVX-512 register blocks compiled for AVX2 (avx512_blocks_on_avx2) are built by GCC only:
// clang spends many minutes on their spilled registers (as in the fuzzers' build).
#if DESCENT_HAS_ISA_VARIANTS && !defined(__clang__)
#define DESCENT_HAS_AVX512_BLOCKS 1
#else
#define DESCENT_HAS_AVX512_BLOCKS 0
#endif

// Defines `template <int F> name params`, which calls the always-inline `body<F> args` compiled
// for the widest ISA this CPU has (one copy of the body per ISA).
#define DESCENT_ISA_DISPATCH(name, body, params, args) \
  template <int F>                                     \
  auto name##_base params {                            \
    return body<F> args;                               \
  }                                                    \
  template <int F>                                     \
  DESCENT_TARGET_AVX2 auto name##_avx2 params {        \
    return body<F> args;                               \
  }                                                    \
  template <int F>                                     \
  DESCENT_TARGET_AVX512 auto name##_avx512 params {    \
    return body<F> args;                               \
  }                                                    \
  template <int F>                                     \
  auto name params {                                   \
    switch (::descent::cpu::cpu_isa()) {               \
      case ::descent::cpu::Isa::avx512:                \
        return name##_avx512<F> args;                  \
      case ::descent::cpu::Isa::avx2:                  \
        return name##_avx2<F> args;                    \
      default:                                         \
        return name##_base<F> args;                    \
    }                                                  \
  }
