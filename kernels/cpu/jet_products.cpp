// The weight gradient of a feature-major jet layer (kernels/cpu/jet.cpp): dw [out, in] (+)= dz
// [out, rows] · h [in, rows]ᵀ, dot products along the long dimension. Unlike the elementwise
// passes this file may fuse multiply-adds (-ffp-contract=fast): a product's sums are not
// bit-identical between ISA variants anyway where oneDNN computes them (the forward and input
// products beside this one), and with FMA the products run twice as fast. Per variant the bits
// are fixed: fixed tasks of rows, fixed lane and task order, whatever the thread count.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

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
template <class Fn>
Fn widest(Fn base, Fn avx2, Fn avx512) {
#if DESCENT_HAS_ISA_VARIANTS
  switch (cpu_isa()) {
    case Isa::avx512:
      return avx512;
    case Isa::avx2:
      __builtin_cpu_init();
      if (__builtin_cpu_supports("fma")) return avx2;
      break;
    default:
      break;
  }
#endif
  (void)avx2;
  (void)avx512;
  return base;
}
using DotTask = void(*) DOT_TASK_PARAMS;

// ---------------------------------------------------------------- slice products
// The matrix products of the whole-network jet pass (cpu::jet_residual_step_t): matrices of a
// few hundred columns that stay in cache, so no library call per product.

// z rows [i0, i0 + OB) over columns [c, c + 32): Σ_j w(i, j) h_j, two vectors per row so that
// each broadcast weight feeds two multiply-adds.
template <int OB>
DESCENT_ALWAYS_INLINE void product_tile(const float* w, std::int64_t rs, std::int64_t cs,
                                        std::int64_t i0, std::int64_t in, const float* h,
                                        std::int64_t ld, float* z, std::int64_t c) {
  v16 a[OB], b[OB];
  for (int i = 0; i < OB; ++i) a[i] = b[i] = v16{};
  for (std::int64_t j = 0; j < in; ++j) {
    v16 h0, h1;
    __builtin_memcpy(&h0, h + j * ld + c, sizeof(v16));
    __builtin_memcpy(&h1, h + j * ld + c + 16, sizeof(v16));
#pragma GCC unroll 10
    for (int i = 0; i < OB; ++i) {
      const float wij = w[(i0 + i) * rs + j * cs];
      a[i] += wij * h0;
      b[i] += wij * h1;
    }
  }
#pragma GCC unroll 10
  for (int i = 0; i < OB; ++i) {
    __builtin_memcpy(z + (i0 + i) * ld + c, &a[i], sizeof(v16));
    __builtin_memcpy(z + (i0 + i) * ld + c + 16, &b[i], sizeof(v16));
  }
}

// Calls f(std::integral_constant<int, n>{}) for n in [1, 10].
template <class F>
DESCENT_ALWAYS_INLINE void with_rows(std::int64_t n, F&& f) {
  switch (n) {
    case 1:
      return f(std::integral_constant<int, 1>{});
    case 2:
      return f(std::integral_constant<int, 2>{});
    case 3:
      return f(std::integral_constant<int, 3>{});
    case 4:
      return f(std::integral_constant<int, 4>{});
    case 5:
      return f(std::integral_constant<int, 5>{});
    case 6:
      return f(std::integral_constant<int, 6>{});
    case 7:
      return f(std::integral_constant<int, 7>{});
    case 8:
      return f(std::integral_constant<int, 8>{});
    case 9:
      return f(std::integral_constant<int, 9>{});
    default:
      return f(std::integral_constant<int, 10>{});
  }
}

template <int F>
DESCENT_ALWAYS_INLINE void slice_product_body(const float* w, std::int64_t rs, std::int64_t cs,
                                              std::int64_t out, std::int64_t in, const float* h,
                                              std::int64_t ld, float* z, std::int64_t cols) {
  static_assert(F == 0);
  for (std::int64_t c = 0; c < cols; c += 32) {
    for (std::int64_t i0 = 0; i0 < out; i0 += 10) {
      with_rows(std::min<std::int64_t>(10, out - i0), [&](auto rows) {
        product_tile<decltype(rows)::value>(w, rs, cs, i0, in, h, ld, z, c);
      });
    }
  }
}

template <int F>
DESCENT_ALWAYS_INLINE void slice_weight_gradient_body(const float* dz, std::int64_t out,
                                                      const float* h, std::int64_t in,
                                                      std::int64_t ld, std::int64_t cols,
                                                      float* vacc) {
  static_assert(F == 0);
  const std::int64_t out4 = out / 4 * 4, in4 = in / 4 * 4;
  for (std::int64_t j = 0; j < out; j += j < out4 ? 4 : 1) {
    for (std::int64_t i = 0; i < in; i += j < out4 && i < in4 ? 4 : 1) {
      float* v = vacc + (j * in + i) * 16;
      if (j < out4 && i < in4) {
        dot_lanes<4, 4>(dz + j * ld, ld, h + i * ld, ld, cols, v, in);
      } else if (j < out4) {
        for (int jj = 0; jj < 4; ++jj) {
          dot_lanes<1, 1>(dz + (j + jj) * ld, ld, h + i * ld, ld, cols, v + jj * in * 16, in);
        }
      } else {
        dot_lanes<1, 1>(dz + j * ld, ld, h + i * ld, ld, cols, v, in);
      }
    }
  }
}

#define SLICE_PRODUCT_PARAMS                                                            \
  (const float* w, std::int64_t rs, std::int64_t cs, std::int64_t out, std::int64_t in, \
   const float* h, std::int64_t ld, float* z, std::int64_t cols)
#define SLICE_PRODUCT_ARGS (w, rs, cs, out, in, h, ld, z, cols)
#define SLICE_GRADIENT_PARAMS                                                           \
  (const float* dz, std::int64_t out, const float* h, std::int64_t in, std::int64_t ld, \
   std::int64_t cols, float* vacc)
#define SLICE_GRADIENT_ARGS (dz, out, h, in, ld, cols, vacc)
void slice_product_base SLICE_PRODUCT_PARAMS { slice_product_body<0> SLICE_PRODUCT_ARGS; }
DESCENT_TARGET_AVX2_FMA void slice_product_avx2 SLICE_PRODUCT_PARAMS {
  slice_product_body<0> SLICE_PRODUCT_ARGS;
}
DESCENT_TARGET_AVX512 void slice_product_avx512 SLICE_PRODUCT_PARAMS {
  slice_product_body<0> SLICE_PRODUCT_ARGS;
}
void slice_gradient_base SLICE_GRADIENT_PARAMS {
  slice_weight_gradient_body<0> SLICE_GRADIENT_ARGS;
}
DESCENT_TARGET_AVX2_FMA void slice_gradient_avx2 SLICE_GRADIENT_PARAMS {
  slice_weight_gradient_body<0> SLICE_GRADIENT_ARGS;
}
DESCENT_TARGET_AVX512 void slice_gradient_avx512 SLICE_GRADIENT_PARAMS {
  slice_weight_gradient_body<0> SLICE_GRADIENT_ARGS;
}

// dw [out, in] (+)= dz [out, rows] · h [in, rows]ᵀ: per task of kDotChunk rows the dot products
// (dot_task) into `partial`, then the tasks' added in order.
}  // namespace

void jet_weight_gradient_t(const Context& ctx, MatrixView<const float> dz,
                           MatrixView<const float> h, MatrixView<float> dw, bool accumulate) {
  const std::int64_t out = dz.rows, in = h.rows, rows = dz.cols;
  const std::int64_t chunks = (rows + kDotChunk - 1) / kDotChunk, cells = out * in;
  const int threads = ctx.threads();
  static const DotTask dot_task = widest<DotTask>(&dot_task_base, &dot_task_avx2, &dot_task_avx512);
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

void slice_product(const float* w, std::int64_t rs, std::int64_t cs, std::int64_t out,
                   std::int64_t in, const float* h, std::int64_t ld, float* z, std::int64_t cols) {
  using Fn = void(*) SLICE_PRODUCT_PARAMS;
  static const Fn f = widest<Fn>(&slice_product_base, &slice_product_avx2, &slice_product_avx512);
  f(w, rs, cs, out, in, h, ld, z, cols);
}

void slice_weight_gradient(const float* dz, std::int64_t out, const float* h, std::int64_t in,
                           std::int64_t ld, std::int64_t cols, float* vacc) {
  using Fn = void(*) SLICE_GRADIENT_PARAMS;
  static const Fn f =
      widest<Fn>(&slice_gradient_base, &slice_gradient_avx2, &slice_gradient_avx512);
  f(dz, out, h, in, ld, cols, vacc);
}

}  // namespace descent::cpu
