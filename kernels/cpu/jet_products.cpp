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

// Vectors of L floats (isa.hpp).
template <int L>
using Lanes = FloatLanes<L>;
// The same in float64 (the float64 jets' products): L doubles.
using d2 = double __attribute__((vector_size(16)));
using d4 = double __attribute__((vector_size(32)));
using d8 = double __attribute__((vector_size(64)));
template <int L>
using Lanes64 = std::conditional_t<L == 2, d2, std::conditional_t<L == 4, d4, d8>>;
// L lanes of T.
template <class T, int L>
using VectorOf = std::conditional_t<std::is_same_v<T, float>, Lanes<L>, Lanes64<L>>;

// acc[j][i] += a_j · b_i over 16 floats, each as P vectors (the loops unrolled, so that acc stays
// in registers).
template <class V, int P, int BJ, int BI>
DESCENT_ALWAYS_INLINE void add_lanes(V (&acc)[BJ][BI][P], const float* a, std::int64_t lda,
                                     const float* b, std::int64_t ldb) {
  constexpr int L = 16 / P;
  V av[BJ][P];
#pragma GCC unroll 16
  for (int j = 0; j < BJ; ++j) {
#pragma GCC unroll 16
    for (int q = 0; q < P; ++q) __builtin_memcpy(&av[j][q], a + j * lda + q * L, sizeof(V));
  }
#pragma GCC unroll 16
  for (int i = 0; i < BI; ++i) {
    V bv[P];
#pragma GCC unroll 16
    for (int q = 0; q < P; ++q) __builtin_memcpy(&bv[q], b + i * ldb + q * L, sizeof(V));
#pragma GCC unroll 16
    for (int j = 0; j < BJ; ++j) {
#pragma GCC unroll 16
      for (int q = 0; q < P; ++q) acc[j][i][q] += av[j][q] * bv[q];
    }
  }
}

// acc[j][i] (16 lanes each, in memory: vacc[(j · ld + i) · 16 ...]) += a_j[r] · b_i[r], lane
// r mod 16, over r in [0, n), for BJ rows of a (stride lda) and BI rows of b (stride ldb); a tail
// shorter than 16 is padded with zeros. The 16 lanes are held as 16 / L vectors of the variant's
// L lanes (a 16-lane vector type on a narrower ISA compiles to stack traffic): each lane's chain of
// multiply-adds is the same whatever L is. Each multiply-add is fused where the variant has FMA
// (this file is compiled with -ffp-contract=fast).
template <int L, int BJ, int BI>
DESCENT_ALWAYS_INLINE void dot_lanes(const float* a, std::int64_t lda, const float* b,
                                     std::int64_t ldb, std::int64_t n, float* vacc,
                                     std::int64_t ld) {
  using V = Lanes<L>;
  static_assert(sizeof(V) == L * sizeof(float));
  constexpr int P = 16 / L;
  V acc[BJ][BI][P];
#pragma GCC unroll 16
  for (int j = 0; j < BJ; ++j) {
#pragma GCC unroll 16
    for (int i = 0; i < BI; ++i) {
#pragma GCC unroll 16
      for (int q = 0; q < P; ++q) {
        __builtin_memcpy(&acc[j][i][q], vacc + (j * ld + i) * 16 + q * L, sizeof(V));
      }
    }
  }
  std::int64_t r = 0;
  for (; r + 16 <= n; r += 16) add_lanes<V, P>(acc, a + r, lda, b + r, ldb);
  if (r < n) {
    float at[BJ][16] = {}, bt[BI][16] = {};
    const std::size_t tail = sizeof(float) * static_cast<std::size_t>(n - r);
    for (int j = 0; j < BJ; ++j) __builtin_memcpy(at[j], a + j * lda + r, tail);
    for (int i = 0; i < BI; ++i) __builtin_memcpy(bt[i], b + i * ldb + r, tail);
    add_lanes<V, P>(acc, &at[0][0], 16, &bt[0][0], 16);
  }
#pragma GCC unroll 16
  for (int j = 0; j < BJ; ++j) {
#pragma GCC unroll 16
    for (int i = 0; i < BI; ++i) {
#pragma GCC unroll 16
      for (int q = 0; q < P; ++q) {
        __builtin_memcpy(vacc + (j * ld + i) * 16 + q * L, &acc[j][i][q], sizeof(V));
      }
    }
  }
}

// Rows per pass over the blocks inside a task: a block row of a (BJ rows) and all of b's rows of
// this many floats stay in L1 while every block of the row runs over them.
constexpr std::int64_t kDotPiece = 256;

// The 16 lane sums in `vacc` (na · nb · 16 floats) of every pair a_j, b_i over r in [0, n), added
// to, in BJ × BI blocks (1 × 1 at the edges).
template <int L, int BJ, int BI>
DESCENT_ALWAYS_INLINE void dot_blocks(const float* a, std::int64_t lda, std::int64_t na,
                                      const float* b, std::int64_t ldb, std::int64_t nb,
                                      std::int64_t n, float* vacc) {
  const std::int64_t naB = na / BJ * BJ, nbB = nb / BI * BI;
  for (std::int64_t j = 0; j < na; j += j < naB ? BJ : 1) {
    for (std::int64_t i = 0; i < nb; i += j < naB && i < nbB ? BI : 1) {
      const float* aj = a + j * lda;
      const float* bi = b + i * ldb;
      float* v = vacc + (j * nb + i) * 16;
      if (j < naB && i < nbB) {
        dot_lanes<L, BJ, BI>(aj, lda, bi, ldb, n, v, nb);
      } else if (j < naB) {
        for (int jj = 0; jj < BJ; ++jj) {
          dot_lanes<L, 1, 1>(aj + jj * lda, lda, bi, ldb, n, v + jj * nb * 16, nb);
        }
      } else {
        dot_lanes<L, 1, 1>(aj, lda, bi, ldb, n, v, nb);
      }
    }
  }
}

// dot[j][i] = Σ_r a_j[r] · b_i[r] over r in [0, n) for every j < na, i < nb: 16 lane sums per
// pair in `vacc` (na · nb · 16 floats), piece by piece, in BJ × BI blocks (1 × 1 at the edges),
// then each pair's lanes added in order. L (vector lanes) and the blocks are the variant's: the
// block's 16-lane sums must stay in registers (4 × 4 of 16 lanes in AVX-512's 32 zmm; 1 × 4 of
// two ymm each in AVX2's 16, b read by the multiply-adds from memory: 10 loads for 8 of them,
// about 10 % faster on the Burgers step than 2 × 2's 12). The bits depend on neither: each
// pair's lanes are summed alike whatever block and vectors hold them.
template <int L, int BJ, int BI>
DESCENT_ALWAYS_INLINE void dot_task_body(const float* a, std::int64_t lda, std::int64_t na,
                                         const float* b, std::int64_t ldb, std::int64_t nb,
                                         std::int64_t n, float* vacc, float* dot) {
  std::fill(vacc, vacc + na * nb * 16, 0.0f);
  for (std::int64_t r0 = 0; r0 < n; r0 += kDotPiece) {
    dot_blocks<L, BJ, BI>(a + r0, lda, na, b + r0, ldb, nb, std::min(kDotPiece, n - r0), vacc);
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
void dot_task_base DOT_TASK_PARAMS { dot_task_body<4, 1, 1> DOT_TASK_ARGS; }
DESCENT_TARGET_AVX2_FMA void dot_task_avx2 DOT_TASK_PARAMS { dot_task_body<8, 1, 4> DOT_TASK_ARGS; }
DESCENT_TARGET_AVX512 void dot_task_avx512 DOT_TASK_PARAMS {
  dot_task_body<16, 4, 4> DOT_TASK_ARGS;
}
#if DESCENT_HAS_AVX512_BLOCKS
DESCENT_TARGET_AVX2_FMA void dot_task_avx512_blocks DOT_TASK_PARAMS {
  dot_task_body<16, 4, 4> DOT_TASK_ARGS;
}
#else
#define dot_task_avx512_blocks dot_task_avx2  // never chosen
#endif

// The widest variant: AVX-512 (whose FMA comes with AVX512F), AVX2 where the CPU also has FMA
// (as every AVX2 CPU in practice does; checked all the same), else the baseline one; with
// DESCENT_CPU_ISA=avx512-blocks on such an AVX2 CPU, the AVX-512 blocks compiled for AVX2.
template <class Fn>
Fn widest(Fn base, Fn avx2, Fn avx512, Fn avx512_blocks) {
#if DESCENT_HAS_ISA_VARIANTS
  switch (cpu_isa()) {
    case Isa::avx512:
      return avx512;
    case Isa::avx2:
      if (avx512_blocks_on_avx2()) return avx512_blocks;
      __builtin_cpu_init();
      if (__builtin_cpu_supports("fma")) return avx2;
      break;
    default:
      break;
  }
#endif
  (void)avx2;
  (void)avx512;
  (void)avx512_blocks;
  return base;
}
using DotTask = void(*) DOT_TASK_PARAMS;

// ---------------------------------------------------------------- slice products
// The matrix products of the whole-network jet pass (cpu::jet_residual_step_t): matrices of a
// few hundred columns that stay in cache, so no library call per product.

// z rows [i0, i0 + OB) over columns [c, c + 2L): Σ_j w(i, j) h_j, two vectors of L lanes per
// row so that each broadcast weight feeds two multiply-adds. Every z element is the same chain
// of multiply-adds over j whatever L is, so the variants' bits differ only where one fuses the
// multiply-adds and another cannot (the baseline x86-64 one).
template <class T, int L, int OB>
DESCENT_ALWAYS_INLINE void product_tile(const T* w, std::int64_t rs, std::int64_t cs,
                                        std::int64_t i0, std::int64_t in, const T* h,
                                        std::int64_t ld, T* z, std::int64_t c) {
  using V = VectorOf<T, L>;
  static_assert(sizeof(V) == L * sizeof(T));
  V a[OB], b[OB];
  for (int i = 0; i < OB; ++i) a[i] = b[i] = V{};
  for (std::int64_t j = 0; j < in; ++j) {
    V h0, h1;
    __builtin_memcpy(&h0, h + j * ld + c, sizeof(V));
    __builtin_memcpy(&h1, h + j * ld + c + L, sizeof(V));
#pragma GCC unroll 12
    for (int i = 0; i < OB; ++i) {
      const T wij = w[(i0 + i) * rs + j * cs];
      a[i] += wij * h0;
      b[i] += wij * h1;
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < OB; ++i) {
    __builtin_memcpy(z + (i0 + i) * ld + c, &a[i], sizeof(V));
    __builtin_memcpy(z + (i0 + i) * ld + c + L, &b[i], sizeof(V));
  }
}

// product_tile of n rows, for the n in [1, Max] given: a chain of ifs, not a generic lambda, whose
// body would not be compiled for the calling variant's ISA where GCC leaves it out of line (as it
// did under UBSan's object-size checks: unfused multiply-adds, other bits).
template <class T, int L, int Max>
DESCENT_ALWAYS_INLINE void product_tile_rows(std::int64_t n, const T* w, std::int64_t rs,
                                             std::int64_t cs, std::int64_t i0, std::int64_t in,
                                             const T* h, std::int64_t ld, T* z, std::int64_t c) {
  if constexpr (Max == 1) {
    product_tile<T, L, 1>(w, rs, cs, i0, in, h, ld, z, c);
  } else if (n >= Max) {
    product_tile<T, L, Max>(w, rs, cs, i0, in, h, ld, z, c);
  } else {
    product_tile_rows<T, L, Max - 1>(n, w, rs, cs, i0, in, h, ld, z, c);
  }
}

// z [out, cols] = W h in tiles of OB rows × 2L columns: 2·OB accumulators of L lanes and the two
// h vectors in registers (AVX-512: L = 16, OB = 10 in 32 zmm; AVX2: L = 8, OB = 6 in 16 ymm;
// baseline: L = 4, OB = 6 in 16 xmm; in float64 L is halved, and OB = 12 on AVX-512). cols is a
// multiple of 2L.
template <int L, class T = float>
DESCENT_ALWAYS_INLINE void slice_product_body(const T* w, std::int64_t rs, std::int64_t cs,
                                              std::int64_t out, std::int64_t in, const T* h,
                                              std::int64_t ld, T* z, std::int64_t cols) {
  constexpr int OB = std::is_same_v<T, float> ? (L == 16 ? 10 : 6) : (L == 8 ? 12 : 6);
  // The fewest tiles of at most OB rows, as even as they go (20 rows: 5 + 5 + 5 + 5, not
  // 6 + 6 + 6 + 2, whose last tile has too few independent sums to keep the FMA units busy).
  const std::int64_t tiles = std::max<std::int64_t>(1, (out + OB - 1) / OB);
  const std::int64_t tile = (out + tiles - 1) / tiles;
  for (std::int64_t c = 0; c < cols; c += 2 * L) {
    for (std::int64_t i0 = 0; i0 < out; i0 += tile) {
      product_tile_rows<T, L, OB>(std::min<std::int64_t>(tile, out - i0), w, rs, cs, i0, in, h, ld,
                                  z, c);
    }
  }
}

// acc[i][j] += a_i[c, c + L) · b_j[c, c + L), lane by lane, for c = begin, begin + step, … < n:
// the BI vectors of a in registers, one of b at a time feeding BI multiply-adds.
template <class T, class V, int BI, int BJ>
DESCENT_ALWAYS_INLINE void block_lanes(const T* a, const T* b, std::int64_t ld, std::int64_t begin,
                                       std::int64_t n, std::int64_t step, V (&acc)[BI][BJ]) {
  for (std::int64_t c = begin; c < n; c += step) {
    V av[BI];
#pragma GCC unroll 8
    for (int i = 0; i < BI; ++i) __builtin_memcpy(&av[i], a + i * ld + c, sizeof(V));
#pragma GCC unroll 4
    for (int j = 0; j < BJ; ++j) {
      V bv;
      __builtin_memcpy(&bv, b + j * ld + c, sizeof(V));
#pragma GCC unroll 8
      for (int i = 0; i < BI; ++i) acc[i][j] += av[i] * bv;
    }
  }
}

// The float64 weight gradient of a slice: dw [out, in] += dz [out, cols] · h [in, cols]ᵀ, per
// (i, j) L lane sums over the columns, then the lanes in order. Blocks of BI rows of dz × 4 rows
// of h: BI · 4 sums in registers (AVX2: 3 × 4 of 16 ymm, dz's vectors in 3 and h's in one, 7
// loads for 12 multiply-adds and 12 independent chains), edges in smaller blocks. Each pair's
// lanes run the same chain whatever the block, so the block does not change the bits.
template <int L, int BI, int BJ>
DESCENT_ALWAYS_INLINE void gradient64_block(const double* dz, const double* h, std::int64_t ld,
                                            std::int64_t cols, double* dw, std::int64_t in) {
  using V = Lanes64<L>;
  V acc[BI][BJ] = {};
  block_lanes<double>(dz, h, ld, 0, cols, L, acc);
#pragma GCC unroll 8
  for (int i = 0; i < BI; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < BJ; ++j) {
      double s = 0.0;
      for (int l = 0; l < L; ++l) s += acc[i][j][l];
      dw[i * in + j] += s;
    }
  }
}

// BI rows of dz against every row of h: 4 at a time, then the rest.
template <int L, int BI>
DESCENT_ALWAYS_INLINE void gradient64_rows(const double* dz, const double* h, std::int64_t in,
                                           std::int64_t ld, std::int64_t cols, double* dw) {
  std::int64_t j = 0;
  for (; j + 4 <= in; j += 4) gradient64_block<L, BI, 4>(dz, h + j * ld, ld, cols, dw + j, in);
  for (; j < in; ++j) gradient64_block<L, BI, 1>(dz, h + j * ld, ld, cols, dw + j, in);
}

template <int L>
DESCENT_ALWAYS_INLINE void slice_gradient64_body(const double* dz, std::int64_t out,
                                                 const double* h, std::int64_t in, std::int64_t ld,
                                                 std::int64_t cols, double* dw) {
  constexpr int BI = L == 8 ? 6 : 3;  // sums, dz's vectors and one of h's in the registers
  std::int64_t i = 0;
  for (; i + BI <= out; i += BI) gradient64_rows<L, BI>(dz + i * ld, h, in, ld, cols, dw + i * in);
  for (; i < out; ++i) gradient64_rows<L, 1>(dz + i * ld, h, in, ld, cols, dw + i * in);
}

// A pair's 16 lane sums, held as P = 16 / L vectors of L lanes, folded to 4:
// d[l] = (v[l] + v[l + 8]) + (v[l + 4] + v[l + 12]). Every variant folds in this order.
template <int P, class V>
DESCENT_ALWAYS_INLINE f32x4 fold_lanes(const V (&v)[P]) {
  if constexpr (P == 1) {
    const f32x8 c = __builtin_shufflevector(v[0], v[0], 0, 1, 2, 3, 4, 5, 6, 7) +
                    __builtin_shufflevector(v[0], v[0], 8, 9, 10, 11, 12, 13, 14, 15);
    return __builtin_shufflevector(c, c, 0, 1, 2, 3) + __builtin_shufflevector(c, c, 4, 5, 6, 7);
  } else if constexpr (P == 2) {
    const V c = v[0] + v[1];
    return __builtin_shufflevector(c, c, 0, 1, 2, 3) + __builtin_shufflevector(c, c, 4, 5, 6, 7);
  } else {
    static_assert(P == 4);
    return (v[0] + v[2]) + (v[1] + v[3]);
  }
}

// [s(d0), s(d1), s(d2), s(d3)] with s(d) = (d[0] + d[1]) + (d[2] + d[3]): four pairs' sums.
DESCENT_ALWAYS_INLINE f32x4 four_sums(f32x4 d0, f32x4 d1, f32x4 d2, f32x4 d3) {
  const f32x4 e =
      __builtin_shufflevector(d0, d1, 0, 2, 4, 6) + __builtin_shufflevector(d0, d1, 1, 3, 5, 7);
  const f32x4 f =
      __builtin_shufflevector(d2, d3, 0, 2, 4, 6) + __builtin_shufflevector(d2, d3, 1, 3, 5, 7);
  return __builtin_shufflevector(e, f, 0, 2, 4, 6) + __builtin_shufflevector(e, f, 1, 3, 5, 7);
}

// dw [BJ rows, BI columns] (row stride ldw) += a_j · b_i over r in [0, n) (n a multiple of 16):
// per pair 16 lane sums of r mod 16 in registers, then folded (fold_lanes, four_sums) and added.
template <int L, int BJ, int BI>
DESCENT_ALWAYS_INLINE void slice_dot(const float* a, const float* b, std::int64_t ld,
                                     std::int64_t n, float* dw, std::int64_t ldw) {
  using V = Lanes<L>;
  constexpr int P = 16 / L;
  V acc[BJ][BI][P] = {};
  for (std::int64_t r = 0; r < n; r += 16) add_lanes<V, P>(acc, a + r, ld, b + r, ld);
#pragma GCC unroll 4
  for (int j = 0; j < BJ; ++j) {
    float* row = dw + j * ldw;
    int i = 0;
    if constexpr (BI >= 4) {
      f32x4 sum;
      __builtin_memcpy(&sum, row, sizeof sum);
      sum += four_sums(fold_lanes<P>(acc[j][0]), fold_lanes<P>(acc[j][1]), fold_lanes<P>(acc[j][2]),
                       fold_lanes<P>(acc[j][3]));
      __builtin_memcpy(row, &sum, sizeof sum);
      i = 4;
    }
    {
#pragma GCC unroll 4
      for (; i < BI; ++i) {
        const f32x4 d = fold_lanes<P>(acc[j][i]);
        row[i] += (d[0] + d[1]) + (d[2] + d[3]);
      }
    }
  }
}

// The weight gradient of a slice: dw [out, in] += dz [out, cols] · h [in, cols]ᵀ, in BJ × BI
// blocks of pairs (1 × 1 at the edges; AVX-512: 4 × 4 of one zmm each; AVX2 runs
// slice_weight_gradient_halves below), each pair's lanes folded into dw per slice:
// the bits depend on neither the blocks nor the variant's L where the variants fuse alike.
template <int L, int BJ, int BI>
DESCENT_ALWAYS_INLINE void slice_weight_gradient_body(const float* dz, std::int64_t out,
                                                      const float* h, std::int64_t in,
                                                      std::int64_t ld, std::int64_t cols,
                                                      float* dw) {
  const std::int64_t outB = out / BJ * BJ, inB = in / BI * BI;
  for (std::int64_t j = 0; j < out; j += j < outB ? BJ : 1) {
    for (std::int64_t i = 0; i < in; i += j < outB && i < inB ? BI : 1) {
      const float* a = dz + j * ld;
      const float* b = h + i * ld;
      float* d = dw + j * in + i;
      if (j < outB && i < inB) {
        slice_dot<L, BJ, BI>(a, b, ld, cols, d, in);
      } else if (j < outB) {
        for (int jj = 0; jj < BJ; ++jj)
          slice_dot<L, 1, 1>(a + jj * ld, b, ld, cols, d + jj * in, in);
      } else {
        slice_dot<L, 1, 1>(a, b, ld, cols, d, in);
      }
    }
  }
}

// AVX2's weight gradient of a slice: each pair's 16 lanes as two passes of one ymm (the columns
// c mod 16 < 8, then the others), so that a BJ × BI block of pairs takes one accumulator per
// pair — 3 × 4 in 12 ymm, a_j's vectors in 3 and b_i's in one: 7 loads for 12 multiply-adds,
// where two ymm per pair allow 1 × 4 blocks and 10 loads for 8. Each lane runs the chain it runs in
// slice_dot, and the two halves fold as its two vectors do, so the bits are slice_dot's.
template <int BJ, int BI>
DESCENT_ALWAYS_INLINE void slice_dot_halves(const float* a, const float* b, std::int64_t ld,
                                            std::int64_t n, float* dw, std::int64_t ldw) {
  using V = Lanes<8>;
  V half[2][BJ][BI];
  for (int h = 0; h < 2; ++h) {
    V acc[BJ][BI] = {};
    block_lanes<float>(a, b, ld, 8 * h, n, 16, acc);
#pragma GCC unroll 4
    for (int j = 0; j < BJ; ++j) {
#pragma GCC unroll 4
      for (int i = 0; i < BI; ++i) half[h][j][i] = acc[j][i];
    }
  }
#pragma GCC unroll 4
  for (int j = 0; j < BJ; ++j) {
    float* row = dw + j * ldw;
    f32x4 d[BI];
#pragma GCC unroll 4
    for (int i = 0; i < BI; ++i) {
      const V v[2] = {half[0][j][i], half[1][j][i]};
      d[i] = fold_lanes<2>(v);
    }
    if constexpr (BI == 4) {
      f32x4 sum;
      __builtin_memcpy(&sum, row, sizeof sum);
      sum += four_sums(d[0], d[1], d[2], d[3]);
      __builtin_memcpy(row, &sum, sizeof sum);
    } else {
#pragma GCC unroll 4
      for (int i = 0; i < BI; ++i) row[i] += (d[i][0] + d[i][1]) + (d[i][2] + d[i][3]);
    }
  }
}

// One block row (BJ rows of dz) against every row of h: blocks of 4, then the rest.
template <int BJ>
DESCENT_ALWAYS_INLINE void halves_block_row(const float* a, const float* h, std::int64_t in,
                                            std::int64_t ld, std::int64_t cols, float* dw) {
  std::int64_t i = 0;
  for (; i + 4 <= in; i += 4) slice_dot_halves<BJ, 4>(a, h + i * ld, ld, cols, dw + i, in);
  switch (in - i) {
    case 3:
      slice_dot_halves<BJ, 3>(a, h + i * ld, ld, cols, dw + i, in);
      break;
    case 2:
      slice_dot_halves<BJ, 2>(a, h + i * ld, ld, cols, dw + i, in);
      break;
    case 1:
      slice_dot_halves<BJ, 1>(a, h + i * ld, ld, cols, dw + i, in);
      break;
    default:
      break;
  }
}

DESCENT_ALWAYS_INLINE void slice_weight_gradient_halves(const float* dz, std::int64_t out,
                                                        const float* h, std::int64_t in,
                                                        std::int64_t ld, std::int64_t cols,
                                                        float* dw) {
  std::int64_t j = 0;
  for (; j + 3 <= out; j += 3) halves_block_row<3>(dz + j * ld, h, in, ld, cols, dw + j * in);
  if (out - j == 2) halves_block_row<2>(dz + j * ld, h, in, ld, cols, dw + j * in);
  if (out - j == 1) halves_block_row<1>(dz + j * ld, h, in, ld, cols, dw + j * in);
}

#define SLICE_PRODUCT_PARAMS                                                            \
  (const float* w, std::int64_t rs, std::int64_t cs, std::int64_t out, std::int64_t in, \
   const float* h, std::int64_t ld, float* z, std::int64_t cols)
#define SLICE_PRODUCT_ARGS (w, rs, cs, out, in, h, ld, z, cols)
#define SLICE_GRADIENT_PARAMS                                                           \
  (const float* dz, std::int64_t out, const float* h, std::int64_t in, std::int64_t ld, \
   std::int64_t cols, float* dw)
#define SLICE_GRADIENT_ARGS (dz, out, h, in, ld, cols, dw)
void slice_product_base SLICE_PRODUCT_PARAMS { slice_product_body<4> SLICE_PRODUCT_ARGS; }
DESCENT_TARGET_AVX2_FMA void slice_product_avx2 SLICE_PRODUCT_PARAMS {
  slice_product_body<8> SLICE_PRODUCT_ARGS;
}
DESCENT_TARGET_AVX512 void slice_product_avx512 SLICE_PRODUCT_PARAMS {
  slice_product_body<16> SLICE_PRODUCT_ARGS;
}
#if DESCENT_HAS_AVX512_BLOCKS
DESCENT_TARGET_AVX2_FMA void slice_product_avx512_blocks SLICE_PRODUCT_PARAMS {
  slice_product_body<16> SLICE_PRODUCT_ARGS;
}
#else
#define slice_product_avx512_blocks slice_product_avx2  // never chosen
#endif
void slice_gradient_base SLICE_GRADIENT_PARAMS {
  slice_weight_gradient_body<4, 1, 1> SLICE_GRADIENT_ARGS;
}
DESCENT_TARGET_AVX2_FMA void slice_gradient_avx2 SLICE_GRADIENT_PARAMS {
  slice_weight_gradient_halves SLICE_GRADIENT_ARGS;
}
DESCENT_TARGET_AVX512 void slice_gradient_avx512 SLICE_GRADIENT_PARAMS {
  slice_weight_gradient_body<16, 4, 4> SLICE_GRADIENT_ARGS;
}
#if DESCENT_HAS_AVX512_BLOCKS
DESCENT_TARGET_AVX2_FMA void slice_gradient_avx512_blocks SLICE_GRADIENT_PARAMS {
  slice_weight_gradient_body<16, 4, 4> SLICE_GRADIENT_ARGS;
}
#else
#define slice_gradient_avx512_blocks slice_gradient_avx2  // never chosen
#endif

#define PRODUCT64_PARAMS                                                                 \
  (const double* w, std::int64_t rs, std::int64_t cs, std::int64_t out, std::int64_t in, \
   const double* h, std::int64_t ld, double* z, std::int64_t cols)
#define GRADIENT64_PARAMS                                                                 \
  (const double* dz, std::int64_t out, const double* h, std::int64_t in, std::int64_t ld, \
   std::int64_t cols, double* dw)
#define GRADIENT64_ARGS (dz, out, h, in, ld, cols, dw)
void slice_product64_base PRODUCT64_PARAMS { slice_product_body<2, double> SLICE_PRODUCT_ARGS; }
DESCENT_TARGET_AVX2_FMA void slice_product64_avx2 PRODUCT64_PARAMS {
  slice_product_body<4, double> SLICE_PRODUCT_ARGS;
}
DESCENT_TARGET_AVX512 void slice_product64_avx512 PRODUCT64_PARAMS {
  slice_product_body<8, double> SLICE_PRODUCT_ARGS;
}
#if DESCENT_HAS_AVX512_BLOCKS
DESCENT_TARGET_AVX2_FMA void slice_product64_avx512_blocks PRODUCT64_PARAMS {
  slice_product_body<8, double> SLICE_PRODUCT_ARGS;
}
#else
#define slice_product64_avx512_blocks slice_product64_avx2  // never chosen
#endif
void slice_gradient64_base GRADIENT64_PARAMS { slice_gradient64_body<2> GRADIENT64_ARGS; }
DESCENT_TARGET_AVX2_FMA void slice_gradient64_avx2 GRADIENT64_PARAMS {
  slice_gradient64_body<4> GRADIENT64_ARGS;
}
DESCENT_TARGET_AVX512 void slice_gradient64_avx512 GRADIENT64_PARAMS {
  slice_gradient64_body<8> GRADIENT64_ARGS;
}
#if DESCENT_HAS_AVX512_BLOCKS
DESCENT_TARGET_AVX2_FMA void slice_gradient64_avx512_blocks GRADIENT64_PARAMS {
  slice_gradient64_body<8> GRADIENT64_ARGS;
}
#else
#define slice_gradient64_avx512_blocks slice_gradient64_avx2  // never chosen
#endif

// dw [out, in] (+)= dz [out, rows] · h [in, rows]ᵀ: per task of kDotChunk rows the dot products
// (dot_task) into `partial`, then the tasks' added in order.
}  // namespace

void jet_weight_gradient_t(const Context& ctx, MatrixView<const float> dz,
                           MatrixView<const float> h, MatrixView<float> dw, bool accumulate) {
  const std::int64_t out = dz.rows, in = h.rows, rows = dz.cols;
  const std::int64_t chunks = (rows + kDotChunk - 1) / kDotChunk, cells = out * in;
  const int threads = ctx.threads();
  static const DotTask dot_task =
      widest<DotTask>(&dot_task_base, &dot_task_avx2, &dot_task_avx512, &dot_task_avx512_blocks);
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
  static const Fn f = widest<Fn>(&slice_product_base, &slice_product_avx2, &slice_product_avx512,
                                 &slice_product_avx512_blocks);
  f(w, rs, cs, out, in, h, ld, z, cols);
}

void slice_weight_gradient(const float* dz, std::int64_t out, const float* h, std::int64_t in,
                           std::int64_t ld, std::int64_t cols, float* dw) {
  using Fn = void(*) SLICE_GRADIENT_PARAMS;
  static const Fn f = widest<Fn>(&slice_gradient_base, &slice_gradient_avx2, &slice_gradient_avx512,
                                 &slice_gradient_avx512_blocks);
  f(dz, out, h, in, ld, cols, dw);
}

void slice_product_f64(const double* w, std::int64_t rs, std::int64_t cs, std::int64_t out,
                       std::int64_t in, const double* h, std::int64_t ld, double* z,
                       std::int64_t cols) {
  using Fn = void(*) PRODUCT64_PARAMS;
  static const Fn f = widest<Fn>(&slice_product64_base, &slice_product64_avx2,
                                 &slice_product64_avx512, &slice_product64_avx512_blocks);
  f(w, rs, cs, out, in, h, ld, z, cols);
}

void slice_weight_gradient_f64(const double* dz, std::int64_t out, const double* h, std::int64_t in,
                               std::int64_t ld, std::int64_t cols, double* dw) {
  using Fn = void(*) GRADIENT64_PARAMS;
  static const Fn f = widest<Fn>(&slice_gradient64_base, &slice_gradient64_avx2,
                                 &slice_gradient64_avx512, &slice_gradient64_avx512_blocks);
  f(dz, out, h, in, ld, cols, dw);
}

}  // namespace descent::cpu
