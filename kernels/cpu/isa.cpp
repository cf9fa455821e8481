// Which vector variant of the CPU backend's loops this machine runs.
#include "kernels/cpu/isa.hpp"

#include <cstdlib>
#include <cstring>

namespace descent::cpu {

namespace {
Isa detect() noexcept {
#if DESCENT_HAS_ISA_VARIANTS
  // DESCENT_CPU_ISA=x86-64|avx2 caps the choice (to compare the variants on one machine);
  // avx512-blocks caps it at AVX2 too (see avx512_blocks_on_avx2).
  const char* cap = std::getenv("DESCENT_CPU_ISA");
  __builtin_cpu_init();
  Isa isa = Isa::base;
  if (__builtin_cpu_supports("avx2")) isa = Isa::avx2;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")) {
    isa = Isa::avx512;
  }
  if (cap != nullptr && std::strcmp(cap, "x86-64") == 0) isa = Isa::base;
  if (cap != nullptr && (std::strcmp(cap, "avx2") == 0 || std::strcmp(cap, "avx512-blocks") == 0) &&
      isa == Isa::avx512) {
    isa = Isa::avx2;
  }
  return isa;
#else
  return Isa::base;
#endif
}
}  // namespace

Isa cpu_isa() noexcept {
  static const Isa isa = detect();
  return isa;
}

bool avx512_blocks_on_avx2() noexcept {
#if DESCENT_HAS_AVX512_BLOCKS
  static const bool on = [] {
    const char* cap = std::getenv("DESCENT_CPU_ISA");
    __builtin_cpu_init();
    return cap != nullptr && std::strcmp(cap, "avx512-blocks") == 0 && cpu_isa() == Isa::avx2 &&
           __builtin_cpu_supports("fma");
  }();
  return on;
#else
  return false;
#endif
}

const char* isa_name(Isa isa) noexcept {
  switch (isa) {
    case Isa::avx512:
      return "avx512";
    case Isa::avx2:
      return "avx2";
    case Isa::base:
      break;
  }
  return "x86-64";
}

}  // namespace descent::cpu
