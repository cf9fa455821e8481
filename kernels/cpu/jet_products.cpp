// The weight gradient of a feature-major jet layer (kernels/cpu/jet.cpp): dw [out, in] (+)= dz
// [out, rows] · h [in, rows]ᵀ, dot products along the long dimension. Unlike the elementwise
// passes this file may fuse multiply-adds (-ffp-contract=fast): a product's sums are not
// bit-identical between ISA variants anyway where oneDNN computes them (the forward and input
// products beside this one), and with FMA the products run twice as fast. Per variant the bits
// are fixed: fixed tasks of rows, fixed lane and task order, whatever the thread count.
#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/cpu.hpp"
#include "kernels/cpu/isa.hpp"

#if DESCENT_HAS_ISA_VARIANTS
#define DESCENT_TARGET_AVX2_FMA __attribute__((target("avx2,fma")))
#else
#define DESCENT_TARGET_AVX2_FMA
#endif

namespace descent::cpu {

namespace {

// Stacked rows per task: fixed, so the sums' order (and bits) do not depend on the thread count
// (a multiple of 16).
constexpr std::int64_t kDotChunk = 2048;

using v16 = float __attribute__((vector_size(64)));

// acc[j][i] (16 lanes each, in memory: vacc[(j · ld + i) · 16 ...]) += a_j[r] · b_i[r], lane
// r mod 16, over r in [0, n), for BJ rows of a (stride lda) and BI rows of b (stride ldb); a tail
// shorter than 16 is padded with zeros. Each multiply-add is fused where the variant has FMA
// (this file is compiled with -ffp-contract=fast).
template <int BJ, int BI>
DESCENT_ALWAYS_INLINE void dot_lanes(const float* a, std::int64_t lda, const float* b,
                                     std::int64_t ldb, std::int64_t n, float* vacc,
                                     std::int64_t ld) {
  v16 acc[BJ][BI];
  for (int j = 0; j < BJ; ++j) {
    for (int i = 0; i < BI; ++i) __builtin_memcpy(&acc[j][i], vacc + (j * ld + i) * 16, 64);
  }
  std::int64_t r = 0;
  for (; r + 16 <= n; r += 16) {
    v16 av[BJ], bv[BI];
    for (int j = 0; j < BJ; ++j) __builtin_memcpy(&av[j], a + j * lda + r, sizeof(v16));
    for (int i = 0; i < BI; ++i) __builtin_memcpy(&bv[i], b + i * ldb + r, sizeof(v16));
    for (int j = 0; j < BJ; ++j) {
      for (int i = 0; i < BI; ++i) acc[j][i] += av[j] * bv[i];
    }
  }
  if (r < n) {
    v16 av[BJ] = {}, bv[BI] = {};
    const std::size_t tail = sizeof(float) * static_cast<std::size_t>(n - r);
    for (int j = 0; j < BJ; ++j) __builtin_memcpy(&av[j], a + j * lda + r, tail);
    for (int i = 0; i < BI; ++i) __builtin_memcpy(&bv[i], b + i * ldb + r, tail);
    for (int j = 0; j < BJ; ++j) {
      for (int i = 0; i < BI; ++i) acc[j][i] += av[j] * bv[i];
    }
  }
  for (int j = 0; j < BJ; ++j) {
    for (int i = 0; i < BI; ++i) __builtin_memcpy(vacc + (j * ld + i) * 16, &acc[j][i], 64);
  }
}

// Rows per pass over the blocks inside a task: a block row of a (4 rows) and all of b's rows of
// this many floats stay in L1 while every block of the row runs over them.
constexpr std::int64_t kDotPiece = 256;

// dot[j][i] = Σ_r a_j[r] · b_i[r] over r in [0, n) for every j < na, i < nb: 16 lane sums per
// pair in `vacc` (na · nb · 16 floats), piece by piece, in 4 × 4 blocks (1 × 1 at the edges), then
// each pair's lanes added in order.
template <int F>
DESCENT_ALWAYS_INLINE void dot_task_body(const float* a, std::int64_t lda, std::int64_t na,
                                         const float* b, std::int64_t ldb, std::int64_t nb,
                                         std::int64_t n, float* vacc, float* dot) {
  static_assert(F == 0);
  std::fill(vacc, vacc + na * nb * 16, 0.0f);
  const std::int64_t na4 = na / 4 * 4, nb4 = nb / 4 * 4;
  for (std::int64_t r0 = 0; r0 < n; r0 += kDotPiece) {
    const std::int64_t m = std::min(kDotPiece, n - r0);
    for (std::int64_t j = 0; j < na; j += j < na4 ? 4 : 1) {
      for (std::int64_t i = 0; i < nb; i += j < na4 && i < nb4 ? 4 : 1) {
        const float* aj = a + j * lda + r0;
        const float* bi = b + i * ldb + r0;
        float* v = vacc + (j * nb + i) * 16;
        if (j < na4 && i < nb4) {
          dot_lanes<4, 4>(aj, lda, bi, ldb, m, v, nb);
        } else if (j < na4) {
          for (int jj = 0; jj < 4; ++jj) {
            dot_lanes<1, 1>(aj + jj * lda, lda, bi, ldb, m, v + jj * nb * 16, nb);
          }
        } else {
          dot_lanes<1, 1>(aj, lda, bi, ldb, m, v, nb);
        }
      }
    }
  }
  for (std::int64_t e = 0; e < na * nb; ++e) {
    float sum = 0.0f;
    for (int l = 0; l < 16; ++l) sum += vacc[e * 16 + l];
    dot[e] = sum;
  }
}
#define DOT_TASK_PARAMS                                                                 \
  (const float* a, std::int64_t lda, std::int64_t na, const float* b, std::int64_t ldb, \
   std::int64_t nb, std::int64_t n, float* vacc, float* dot)
#define DOT_TASK_ARGS (a, lda, na, b, ldb, nb, n, vacc, dot)
void dot_task_base DOT_TASK_PARAMS { dot_task_body<0> DOT_TASK_ARGS; }
DESCENT_TARGET_AVX2_FMA void dot_task_avx2 DOT_TASK_PARAMS { dot_task_body<0> DOT_TASK_ARGS; }
DESCENT_TARGET_AVX512 void dot_task_avx512 DOT_TASK_PARAMS { dot_task_body<0> DOT_TASK_ARGS; }

// The widest variant: AVX-512 (whose FMA comes with AVX512F), AVX2 where the CPU also has FMA
// (as every AVX2 CPU in practice does; checked all the same), else the baseline one.
using DotTask = void(*) DOT_TASK_PARAMS;
DotTask dot_task_variant() {
#if DESCENT_HAS_ISA_VARIANTS
  switch (cpu_isa()) {
    case Isa::avx512:
      return &dot_task_avx512;
    case Isa::avx2:
      __builtin_cpu_init();
      if (__builtin_cpu_supports("fma")) return &dot_task_avx2;
      break;
    default:
      break;
  }
#endif
  return &dot_task_base;
}

// dw [out, in] (+)= dz [out, rows] · h [in, rows]ᵀ: per task of kDotChunk rows the dot products
// (dot_task) into `partial`, then the tasks' added in order.
}  // namespace

void jet_weight_gradient_t(const Context& ctx, MatrixView<const float> dz,
                           MatrixView<const float> h, MatrixView<float> dw, bool accumulate) {
  const std::int64_t out = dz.rows, in = h.rows, rows = dz.cols;
  const std::int64_t chunks = (rows + kDotChunk - 1) / kDotChunk, cells = out * in;
  const int threads = ctx.threads();
  static const DotTask dot_task = dot_task_variant();
  // Per task its dot products; per thread its lane sums.
  float* partial = cpu::workspace(
      ctx, static_cast<std::size_t>(chunks * cells + std::int64_t(threads) * cells * 16));
  float* lanes = partial + chunks * cells;
#pragma omp parallel num_threads(threads)
  {
    float* vacc = lanes + std::int64_t(omp_get_thread_num()) * cells * 16;
#pragma omp for schedule(static)
    for (std::int64_t c = 0; c < chunks; ++c) {
      const std::int64_t r0 = c * kDotChunk;
      dot_task(dz.data + r0, dz.ld, out, h.data + r0, h.ld, in, std::min(kDotChunk, rows - r0),
               vacc, partial + c * cells);
    }
  }
#pragma omp parallel for num_threads(ctx.threads()) schedule(static)
  for (std::int64_t e = 0; e < cells; ++e) {
    float sum = 0.0f;
    for (std::int64_t c = 0; c < chunks; ++c) sum += partial[c * cells + e];
    float& d = dw.data[(e / in) * dw.ld + e % in];
    d = accumulate ? d + sum : sum;
  }
}

}  // namespace descent::cpu
