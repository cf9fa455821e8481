// CPU jet activation: one OpenMP pass over the value rows each way, vector loops over the columns
// of each block (contiguous rows a tile of whole vectors at a time) (the math of
// kernels/math/jet.hpp with a vectorisable tanh and sigmoid), and the bias gradient summed in fixed
// chunks of rows.
#include "kernels/math/jet.hpp"

#include <omp.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "kernels/cpu/cpu.hpp"
#include "kernels/cpu/fast_exp.hpp"
#include "kernels/cpu/gemm.hpp"
#include "kernels/cpu/isa.hpp"

namespace descent::cpu {

namespace {

using detail::JetAct;

// Rows per chunk of the bias-gradient sums: fixed, so db's summation order (and its bits) does
// not depend on the thread count.
constexpr std::int64_t kRowChunk = 64;

detail::JetShape shape_of(const JetBlocks& b) { return {b.directions, b.second_order}; }

// tanh, sech² and sigmoid from fast_exp, so that the column loops vectorise.
using CpuJetMath = FastMath;

// Each row is done in pieces of kPiece columns, each loop over the columns of a piece one vector
// loop: σ and its derivatives first, then one pass per direction block. The arithmetic, and its
// order, are those of detail::jet_forward_element / jet_backward_element (the GPU's), written
// with the direction loop outside the column loop. The rows are compiled for each ISA
// (kernels/cpu/isa.hpp) with no fused multiply-add, so every machine gives the same bits.
constexpr std::int64_t kPiece = 64;
template <class T>
constexpr T kZeroPiece[kPiece] = {};

// T: float, or double for the float64 jets (jet64.cpp, through jet_rows_forward_f64 below).
template <class T>
struct JetRowsT {
  int k_count;
  bool second;
  const T* weights;
  std::int64_t cols;
};
using JetRows = JetRowsT<float>;

// One row of the forward pass: z0 (value block; its partners zs floats apart) gets the bias, and
// h0 (partners hs apart) the jet through σ.
template <int F, class T = float, class M = CpuJetMath>
DESCENT_ALWAYS_INLINE void forward_row_body(const JetRowsT<T>& p, const T* bias, T* z0,
                                            std::int64_t zs, T* h0, std::int64_t hs, T* slope0) {
  constexpr JetAct A = static_cast<JetAct>(F);
  for (std::int64_t j0 = 0; j0 < p.cols; j0 += kPiece) {
    const std::int64_t m = std::min(kPiece, p.cols - j0);
    T* z = z0 + j0;
    T* h = h0 + j0;
    const T* bj = bias != nullptr ? bias + j0 : nullptr;
    // The slope goes to the kept buffer where there is one, else to d1 itself (the same stores
    // either way, no copy afterwards).
    T d1[kPiece], d2[kPiece], sq[kPiece];
    T* const s1 = slope0 != nullptr ? slope0 + j0 : d1;
#pragma omp simd
    for (std::int64_t j = 0; j < m; ++j) {
      if (bj != nullptr) z[j] += bj[j];
      const detail::ActDerivativesT<T> d = detail::jet_derivatives<A, M, T>(z[j]);
      h[j] = d.d0;
      s1[j] = d.d1;
      d2[j] = d.d2;
      sq[j] = T(0);
    }
    for (int k = 0; k < p.k_count; ++k) {
      const T* zk = z + (k + 1) * zs;
      T* hk = h + (k + 1) * hs;
      const T w = p.weights[k];
#pragma omp simd
      for (std::int64_t j = 0; j < m; ++j) {
        hk[j] = s1[j] * zk[j];
        sq[j] += w * zk[j] * zk[j];
      }
    }
    if (p.second) {
      const T* zl = z + (p.k_count + 1) * zs;
      T* hl = h + (p.k_count + 1) * hs;
#pragma omp simd
      for (std::int64_t j = 0; j < m; ++j) hl[j] = s1[j] * zl[j] + d2[j] * sq[j];
    }
  }
}
DESCENT_ISA_DISPATCH(forward_row, forward_row_body,
                     (const JetRows& p, const float* bias, float* z0, std::int64_t zs, float* h0,
                      std::int64_t hs, float* slope0),
                     (p, bias, z0, zs, h0, hs, slope0))

// One row of the backward pass: from z0 and dh0 writes dz0 (each with its own partner stride),
// adding z̄ to part (when not null).
template <int F, class T = float, class M = CpuJetMath>
DESCENT_ALWAYS_INLINE void backward_row_body(const JetRowsT<T>& p, const T* z0, std::int64_t zs,
                                             const T* dh0, std::int64_t dhs, T* dz0,
                                             std::int64_t dzs, T* part, const T* h0,
                                             const T* slope0) {
  constexpr JetAct A = static_cast<JetAct>(F);
  for (std::int64_t j0 = 0; j0 < p.cols; j0 += kPiece) {
    const std::int64_t m = std::min(kPiece, p.cols - j0);
    const T* z = z0 + j0;
    const T* dh = dh0 + j0;
    T* dz = dz0 + j0;
    // L̄' where there is a second-order block, else zeros (read in place, not copied).
    const T* const lbar = p.second ? dh + (p.k_count + 1) * dhs : kZeroPiece<T>;
    T d1[kPiece], d2[kPiece], d3[kPiece], sq[kPiece], jz[kPiece];
    if (slope0 != nullptr) {
      // tanh from the forward pass's σ = h and σ' = sech²: jet_derivatives' formulas, no tanh.
      const T* t = h0 + j0;
      const T* q = slope0 + j0;
#pragma omp simd
      for (std::int64_t j = 0; j < m; ++j) {
        const detail::ActDerivativesT<T> d = detail::tanh_derivatives<T>(t[j], q[j]);
        d1[j] = d.d1;
        d2[j] = d.d2;
        d3[j] = d.d3;
        sq[j] = T(0);
        jz[j] = T(0);
      }
    } else {
#pragma omp simd
      for (std::int64_t j = 0; j < m; ++j) {
        const detail::ActDerivativesT<T> d = detail::jet_derivatives<A, M, T>(z[j]);
        d1[j] = d.d1;
        d2[j] = d.d2;
        d3[j] = d.d3;
        sq[j] = T(0);
        jz[j] = T(0);
      }
    }
    for (int k = 0; k < p.k_count; ++k) {
      const T* zk = z + (k + 1) * zs;
      const T* jbar = dh + (k + 1) * dhs;
      T* dzk = dz + (k + 1) * dzs;
      const T w = p.weights[k];
#pragma omp simd
      for (std::int64_t j = 0; j < m; ++j) {
        dzk[j] = d1[j] * jbar[j] + T(2) * w * d2[j] * lbar[j] * zk[j];
        jz[j] += jbar[j] * zk[j];
        sq[j] += w * zk[j] * zk[j];
      }
    }
    const T* zl = z + (p.k_count + 1) * zs;
    T* dzl = dz + (p.k_count + 1) * dzs;
    T* pj = part != nullptr ? part + j0 : nullptr;
#pragma omp simd
    for (std::int64_t j = 0; j < m; ++j) {
      T zbar = d1[j] * dh[j] + d2[j] * jz[j];
      if (p.second) {
        zbar += (d2[j] * zl[j] + d3[j] * sq[j]) * lbar[j];
        dzl[j] = d1[j] * lbar[j];
      }
      dz[j] = zbar;
      if (pj != nullptr) pj[j] += zbar;
    }
  }
}
DESCENT_ISA_DISPATCH(backward_row, backward_row_body,
                     (const JetRows& p, const float* z0, std::int64_t zs, const float* dh0,
                      std::int64_t dhs, float* dz0, std::int64_t dzs, float* part, const float* h0,
                      const float* slope0),
                     (p, z0, zs, dh0, dhs, dz0, dzs, part, h0, slope0))

// The same two rows in float64 (jet_rows_forward_f64, jet_rows_backward_f64).
template <int F>
DESCENT_ALWAYS_INLINE void forward_row64_body(const JetRowsT<double>& p, const double* bias,
                                              double* z0, std::int64_t zs, double* h0,
                                              std::int64_t hs, double* slope0) {
  forward_row_body<F, double, FastMath64>(p, bias, z0, zs, h0, hs, slope0);
}
DESCENT_ISA_DISPATCH(forward_row64, forward_row64_body,
                     (const JetRowsT<double>& p, const double* bias, double* z0, std::int64_t zs,
                      double* h0, std::int64_t hs, double* slope0),
                     (p, bias, z0, zs, h0, hs, slope0))
template <int F>
DESCENT_ALWAYS_INLINE void backward_row64_body(const JetRowsT<double>& p, const double* z0,
                                               std::int64_t zs, const double* dh0, std::int64_t dhs,
                                               double* dz0, std::int64_t dzs, double* part,
                                               const double* h0, const double* slope0) {
  backward_row_body<F, double, FastMath64>(p, z0, zs, dh0, dhs, dz0, dzs, part, h0, slope0);
}
DESCENT_ISA_DISPATCH(backward_row64, backward_row64_body,
                     (const JetRowsT<double>& p, const double* z0, std::int64_t zs,
                      const double* dh0, std::int64_t dhs, double* dz0, std::int64_t dzs,
                      double* part, const double* h0, const double* slope0),
                     (p, z0, zs, dh0, dhs, dz0, dzs, part, h0, slope0))

// Rows per tile: contiguous rows are processed a tile at a time, as one row of tile × cols
// floats, a whole number of 16-float vectors, so that narrow layers (20 columns) run no scalar
// remainder. The arithmetic is elementwise, so the bits are those of row by row.
std::int64_t tile_rows(std::int64_t cols) { return 16 / std::gcd(cols, std::int64_t(16)); }

}  // namespace

void jet_activation_forward(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                            VectorView<const float> b, MatrixView<float> z, MatrixView<float> h,
                            MatrixView<float> slope) {
  const std::int64_t n = z.cols;
  const JetRows p{blocks.directions, blocks.second_order, blocks.weights.data, n};
  const std::int64_t zs = blocks.batch * z.ld, hs = blocks.batch * h.ld;
  const float* bias = b.empty() ? nullptr : b.data;
  float* const sl = slope.empty() ? nullptr : slope.data;
  // Contiguous rows go through in tiles of whole vectors; the bias repeated along a tile.
  const std::int64_t tile =
      z.ld == n && h.ld == n && (sl == nullptr || slope.ld == n) ? tile_rows(n) : 1;
  const JetRows pt{p.k_count, p.second, p.weights, tile * n};
  std::vector<float> tiled_bias;
  if (bias != nullptr && tile > 1) {
    tiled_bias.resize(static_cast<std::size_t>(tile * n));
    for (std::int64_t i = 0; i < tile; ++i) std::copy(bias, bias + n, tiled_bias.data() + i * n);
  }
  const float* tile_bias = tiled_bias.empty() ? bias : tiled_bias.data();
  const std::int64_t tiles = blocks.batch / tile;
  detail::dispatch_jet_activation(static_cast<int>(act), [&](auto a) {
    constexpr int F = static_cast<int>(decltype(a)::value);
#pragma omp parallel for num_threads(ctx.threads()) schedule(static)
    for (std::int64_t t = 0; t < tiles; ++t) {
      const std::int64_t r = t * tile;
      forward_row<F>(pt, tile_bias, z.data + r * z.ld, zs, h.data + r * h.ld, hs,
                     sl != nullptr ? sl + r * slope.ld : nullptr);
    }
    for (std::int64_t r = tiles * tile; r < blocks.batch; ++r) {
      forward_row<F>(p, bias, z.data + r * z.ld, zs, h.data + r * h.ld, hs,
                     sl != nullptr ? sl + r * slope.ld : nullptr);
    }
  });
}

void jet_activation_backward(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                             MatrixView<const float> z, MatrixView<const float> dh,
                             MatrixView<float> dz, VectorView<float> db, bool accumulate,
                             MatrixView<const float> h, MatrixView<const float> slope) {
  const std::int64_t n = z.cols;
  const JetRows p{blocks.directions, blocks.second_order, blocks.weights.data, n};
  const std::int64_t zs = blocks.batch * z.ld, dhs = blocks.batch * dh.ld,
                     dzs = blocks.batch * dz.ld;
  // The saved σ and σ' (tanh only; the ops layer checks): h's value block and slope.
  const bool saved = act == JetActivation::tanh && !slope.empty();
  const float* const hv = saved ? h.data : nullptr;
  const float* const sv = saved ? slope.data : nullptr;
  const std::int64_t tile =
      z.ld == n && dh.ld == n && dz.ld == n && (!saved || (h.ld == n && slope.ld == n))
          ? tile_rows(n)
          : 1;
  const JetRows pt{p.k_count, p.second, p.weights, tile * n};
  const std::int64_t chunks = (blocks.batch + kRowChunk - 1) / kRowChunk;
  // Per chunk of rows, one partial db per row of a tile; each chunk's are added in tile-row
  // order into its first, and the chunks' in chunk order at the end: a fixed order.
  const std::int64_t part_floats = tile * n;
  float* partial =
      db.empty() ? nullptr : cpu::workspace(ctx, static_cast<std::size_t>(chunks * part_floats));
  detail::dispatch_jet_activation(static_cast<int>(act), [&](auto a) {
    constexpr int F = static_cast<int>(decltype(a)::value);
#pragma omp parallel for num_threads(ctx.threads()) schedule(static)
    for (std::int64_t c = 0; c < chunks; ++c) {
      float* part = partial != nullptr ? partial + c * part_floats : nullptr;
      if (part != nullptr) std::fill(part, part + part_floats, 0.0f);
      const std::int64_t r1 = std::min(blocks.batch, (c + 1) * kRowChunk);
      std::int64_t r = c * kRowChunk;
      for (; r + tile <= r1; r += tile) {
        backward_row<F>(pt, z.data + r * z.ld, zs, dh.data + r * dh.ld, dhs, dz.data + r * dz.ld,
                        dzs, part, saved ? hv + r * h.ld : nullptr,
                        saved ? sv + r * slope.ld : nullptr);
      }
      for (; r < r1; ++r) {
        backward_row<F>(p, z.data + r * z.ld, zs, dh.data + r * dh.ld, dhs, dz.data + r * dz.ld,
                        dzs, part, saved ? hv + r * h.ld : nullptr,
                        saved ? sv + r * slope.ld : nullptr);
      }
      if (part != nullptr) {
        for (std::int64_t i = 1; i < tile; ++i) {
          for (std::int64_t j = 0; j < n; ++j) part[j] += part[i * n + j];
        }
      }
    }
  });
  if (partial != nullptr) {
#pragma omp parallel for num_threads(ctx.threads()) schedule(static)
    for (std::int64_t j = 0; j < n; ++j) {
      float sum = 0.0f;
      for (std::int64_t c = 0; c < chunks; ++c) sum += partial[c * part_floats + j];
      db.data[j] = accumulate ? db.data[j] + sum : sum;
    }
  }
}

void jet_rows_forward_f64(JetActivation act, const JetRowsF64& rows, const double* bias, double* z,
                          std::int64_t zs, double* h, std::int64_t hs, double* slope) {
  const JetRowsT<double> p{rows.directions, rows.second_order, rows.weights, rows.cols};
  detail::dispatch_jet_activation(static_cast<int>(act), [&](auto a) {
    forward_row64<static_cast<int>(decltype(a)::value)>(p, bias, z, zs, h, hs, slope);
  });
}

void jet_rows_backward_f64(JetActivation act, const JetRowsF64& rows, const double* z,
                           std::int64_t zs, const double* dh, std::int64_t dhs, double* dz,
                           std::int64_t dzs, double* part, const double* h, const double* slope) {
  const JetRowsT<double> p{rows.directions, rows.second_order, rows.weights, rows.cols};
  detail::dispatch_jet_activation(static_cast<int>(act), [&](auto a) {
    backward_row64<static_cast<int>(decltype(a)::value)>(p, z, zs, dh, dhs, dz, dzs, part, h,
                                                         slope);
  });
}

void jet_activation_forward_plain(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                                  VectorView<const float> b, MatrixView<float> z,
                                  MatrixView<float> h) {
  cpu::jet_activation_forward(ctx, blocks, act, b, z, h, MatrixView<float>());
}

void jet_activation_backward_plain(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                                   MatrixView<const float> z, MatrixView<const float> dh,
                                   MatrixView<float> dz, VectorView<float> db, bool accumulate) {
  cpu::jet_activation_backward(ctx, blocks, act, z, dh, dz, db, accumulate,
                               MatrixView<const float>(), MatrixView<const float>());
}

// ---------------------------------------------------------------- feature-major jet layers
//
// Row j of a feature-major matrix [width, rows] holds feature j of every stacked point, block
// after block (columns [b · batch, (b + 1) · batch) are block b), so a value's partner in block b
// is b · batch floats further along the same row, and the products run along the long dimension
// (z = W h is an [out, in] · [in, rows] product: full vectors, where [rows, in] · [in, out] with
// out = 20 wastes a third of each). The elementwise passes are the row-major ones' bodies on
// pieces of one feature's row, the bias of that feature repeated.

namespace {

// Points per task of the elementwise passes (a feature's row is cut into these): fixed, so the
// bias gradient's summation order, and its bits, do not depend on the thread count.
constexpr std::int64_t kPointChunk = 1024;
// Sum of n floats in a fixed order that vectorises alike on every ISA: 16 lane sums (lane l
// takes elements l, l + 16, ...), then the lanes in order.
DESCENT_ALWAYS_INLINE float lane_sum(const float* x, std::int64_t n) {
  float lane[16] = {};
  std::int64_t r = 0;
  for (; r + 16 <= n; r += 16) {
#pragma omp simd
    for (int l = 0; l < 16; ++l) lane[l] += x[r + l];
  }
  for (int l = 0; r + l < n; ++l) lane[l] += x[r + l];
  float sum = 0.0f;
  for (int l = 0; l < 16; ++l) sum += lane[l];
  return sum;
}

}  // namespace

void jet_layer_forward_t(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                         MatrixView<const float> w, VectorView<const float> b,
                         MatrixView<const float> h, MatrixView<float> z, MatrixView<float> h_next,
                         MatrixView<float> slope) {
  const std::int64_t out = w.rows, in = w.cols, rows = z.cols, batch = blocks.batch;
  sgemm(false, false, out, rows, in, 1.0f, w.data, w.ld, h.data, h.ld, 0.0f, z.data, z.ld,
        ctx.threads());
  const std::int64_t chunks = (batch + kPointChunk - 1) / kPointChunk;
  detail::dispatch_jet_activation(static_cast<int>(act), [&](auto a) {
    constexpr int F = static_cast<int>(decltype(a)::value);
#pragma omp parallel num_threads(ctx.threads())
    {
      float bias[kPointChunk];
      std::int64_t filled = -1;  // the feature `bias` holds
#pragma omp for schedule(static)
      for (std::int64_t t = 0; t < out * chunks; ++t) {
        const std::int64_t j = t / chunks, r0 = (t % chunks) * kPointChunk;
        const std::int64_t m = std::min(kPointChunk, batch - r0);
        if (filled != j && !b.empty()) {
          std::fill(bias, bias + kPointChunk, b.data[j]);
          filled = j;
        }
        const JetRows p{blocks.directions, blocks.second_order, blocks.weights.data, m};
        forward_row<F>(p, b.empty() ? nullptr : bias, z.data + j * z.ld + r0, batch,
                       h_next.data + j * h_next.ld + r0, batch,
                       slope.empty() ? nullptr : slope.data + j * slope.ld + r0);
      }
    }
  });
}

void jet_layer_backward_t(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                          MatrixView<const float> w, MatrixView<const float> h,
                          MatrixView<const float> z, MatrixView<const float> h_next,
                          MatrixView<const float> slope, MatrixView<const float> dh_next,
                          MatrixView<float> dz, MatrixView<float> dw, VectorView<float> db,
                          bool accumulate, MatrixView<float> dh) {
  const std::int64_t out = w.rows, in = w.cols, rows = z.cols, batch = blocks.batch;
  const std::int64_t chunks = (batch + kPointChunk - 1) / kPointChunk;
  const bool saved = act == JetActivation::tanh && !slope.empty();
  // One bias-gradient sum per (feature, chunk), added in chunk order after the pass.
  float* sums = db.empty() ? nullptr : cpu::workspace(ctx, static_cast<std::size_t>(out * chunks));
  detail::dispatch_jet_activation(static_cast<int>(act), [&](auto a) {
    constexpr int F = static_cast<int>(decltype(a)::value);
#pragma omp parallel num_threads(ctx.threads())
    {
      float part[kPointChunk];
#pragma omp for schedule(static)
      for (std::int64_t t = 0; t < out * chunks; ++t) {
        const std::int64_t j = t / chunks, r0 = (t % chunks) * kPointChunk;
        const std::int64_t m = std::min(kPointChunk, batch - r0);
        const JetRows p{blocks.directions, blocks.second_order, blocks.weights.data, m};
        if (sums != nullptr) std::fill(part, part + m, 0.0f);
        backward_row<F>(p, z.data + j * z.ld + r0, batch, dh_next.data + j * dh_next.ld + r0, batch,
                        dz.data + j * dz.ld + r0, batch, sums != nullptr ? part : nullptr,
                        saved ? h_next.data + j * h_next.ld + r0 : nullptr,
                        saved ? slope.data + j * slope.ld + r0 : nullptr);
        if (sums != nullptr) sums[t] = lane_sum(part, m);
      }
    }
  });
  if (sums != nullptr) {
    for (std::int64_t j = 0; j < out; ++j) {
      float sum = 0.0f;
      for (std::int64_t c = 0; c < chunks; ++c) sum += sums[j * chunks + c];
      db.data[j] = accumulate ? db.data[j] + sum : sum;
    }
  }
  jet_weight_gradient_t(ctx, dz, h, dw, accumulate);
  if (!dh.empty()) {
    sgemm(true, false, in, rows, out, 1.0f, w.data, w.ld, dz.data, dz.ld, 0.0f, dh.data, dh.ld,
          ctx.threads());
  }
}

// ---------------------------------------------------------------- the whole-network step
//
// jet_residual_step_t runs the whole network over slices of kSlicePoints points: the slice's
// blocks of every layer ([width, blocks · kSlicePoints], feature-major as above) stay in cache,
// so no layer's blocks go to memory and back, and the products are the slice products of
// jet_products.cpp. The elementwise passes are the rows above on each feature's row of a
// slice, so their bits are those of the layer-by-layer path; the products' sums run in another
// order. Tasks of task_points(batch) points hold their own loss and gradient sums, added in task
// order: the bits do not depend on the thread count.

namespace {

constexpr std::int64_t kSlicePoints = 64;  // a multiple of 32: slice_product's columns

// Points per task: a function of the batch alone (so the bits do not depend on the thread
// count), in whole slices: about an eighth of the batch, so that a small batch still feeds
// several threads; at most 1024 (each task's own sums cost a pass over the gradient) unless
// the batch needs more than 64 tasks (each holds a copy of the gradient until the end).
std::int64_t task_points(std::int64_t batch) {
  const auto slices = [](std::int64_t n) {
    return (n + kSlicePoints - 1) / kSlicePoints * kSlicePoints;
  };
  const std::int64_t most = std::max<std::int64_t>(1024, slices((batch + 63) / 64));
  return std::clamp<std::int64_t>(slices((batch + 7) / 8), kSlicePoints, most);
}

// tanh layers of a slice, every feature in one call, for K = F / 2 directions and the
// second-order block when F is odd: the arithmetic of forward_row / backward_row (the same
// expressions, so the same bits) with the directions unrolled and no scratch arrays; the bias
// added in a register (the value block of z is not needed again: the backward pass takes σ and
// σ' from h and the slope).
template <int F>
DESCENT_ALWAYS_INLINE void tanh_slice_forward_body(std::int64_t width, const float* bias,
                                                   const float* cw, const float* z0, float* h0,
                                                   float* slope0, std::int64_t cols) {
  constexpr int K = F / 2;
  constexpr bool kSecond = F % 2 == 1;
  constexpr std::int64_t P = kSlicePoints;
  for (std::int64_t i = 0; i < width; ++i) {
    const float b = bias != nullptr ? bias[i] : 0.0f;
    const float* z = z0 + i * cols;
    float* h = h0 + i * cols;
    float* slope = slope0 + i * P;
#pragma omp simd
    for (std::int64_t j = 0; j < P; ++j) {
      const float zv = bias != nullptr ? z[j] + b : z[j];
      const detail::ActDerivatives d = detail::jet_derivatives<JetAct::tanh, CpuJetMath>(zv);
      h[j] = d.d0;
      slope[j] = d.d1;
      float sq = 0.0f;
#pragma GCC unroll 4
      for (int k = 0; k < K; ++k) {
        const float zk = z[(k + 1) * P + j];
        h[(k + 1) * P + j] = d.d1 * zk;
        sq += cw[k] * zk * zk;
      }
      if constexpr (kSecond) h[(K + 1) * P + j] = d.d1 * z[(K + 1) * P + j] + d.d2 * sq;
    }
  }
}
DESCENT_ISA_DISPATCH(tanh_slice_forward, tanh_slice_forward_body,
                     (std::int64_t width, const float* bias, const float* cw, const float* z0,
                      float* h0, float* slope0, std::int64_t cols),
                     (width, bias, cw, z0, h0, slope0, cols))

template <int F>
DESCENT_ALWAYS_INLINE void tanh_slice_backward_body(std::int64_t width, const float* cw,
                                                    const float* z0, const float* dh0, float* dz0,
                                                    float* part0, const float* h0,
                                                    const float* slope0, std::int64_t cols) {
  constexpr int K = F / 2;
  constexpr bool kSecond = F % 2 == 1;
  constexpr std::int64_t P = kSlicePoints;
  for (std::int64_t i = 0; i < width; ++i) {
    const float* z = z0 + i * cols;
    const float* dh = dh0 + i * cols;
    float* dz = dz0 + i * cols;
    float* part = part0 != nullptr ? part0 + i * P : nullptr;
    const float* t = h0 + i * cols;
    const float* q = slope0 + i * P;
#pragma omp simd
    for (std::int64_t j = 0; j < P; ++j) {
      const detail::ActDerivatives d = detail::tanh_derivatives(t[j], q[j]);
      const float lbar = kSecond ? dh[(K + 1) * P + j] : 0.0f;
      float sq = 0.0f, jz = 0.0f;
#pragma GCC unroll 4
      for (int k = 0; k < K; ++k) {
        const float zk = z[(k + 1) * P + j];
        const float jbar = dh[(k + 1) * P + j];
        const float w = cw[k];
        dz[(k + 1) * P + j] = d.d1 * jbar + 2.0f * w * d.d2 * lbar * zk;
        jz += jbar * zk;
        sq += w * zk * zk;
      }
      float zbar = d.d1 * dh[j] + d.d2 * jz;
      if constexpr (kSecond) {
        zbar += (d.d2 * z[(K + 1) * P + j] + d.d3 * sq) * lbar;
        dz[(K + 1) * P + j] = d.d1 * lbar;
      }
      dz[j] = zbar;
      if (part != nullptr) part[j] += zbar;
    }
  }
}
DESCENT_ISA_DISPATCH(tanh_slice_backward, tanh_slice_backward_body,
                     (std::int64_t width, const float* cw, const float* z0, const float* dh0,
                      float* dz0, float* part0, const float* h0, const float* slope0,
                      std::int64_t cols),
                     (width, cw, z0, dh0, dz0, part0, h0, slope0, cols))

// Calls f(std::integral_constant<int, 2K + second>) for K in [1, 3], else returns false.
template <class Fn>
bool with_tanh_slice(int k, bool second, Fn&& f) {
  switch (2 * k + (second ? 1 : 0)) {
    case 2:
      f(std::integral_constant<int, 2>{});
      return true;
    case 3:
      f(std::integral_constant<int, 3>{});
      return true;
    case 4:
      f(std::integral_constant<int, 4>{});
      return true;
    case 5:
      f(std::integral_constant<int, 5>{});
      return true;
    case 6:
      f(std::integral_constant<int, 6>{});
      return true;
    case 7:
      f(std::integral_constant<int, 7>{});
      return true;
    default:
      return false;
  }
}

// Where each array of one thread's slice memory starts (floats), for a network of `width`.
struct SliceLayout {
  std::vector<std::int64_t> h, z, slope, part;  // per layer (h: per layer and the output)
  std::int64_t dh[2] = {0, 0}, dz = 0, floats = 0;

  SliceLayout(const std::vector<std::int64_t>& width, std::int64_t cols) {
    const std::size_t count = width.size() - 1;
    const std::int64_t widest = *std::max_element(width.begin(), width.end());
    const auto take = [&](std::int64_t n) {
      const std::int64_t at = floats;
      floats += (n + 15) / 16 * 16;  // every array on its own 64-byte lines
      return at;
    };
    for (std::size_t l = 0; l <= count; ++l) h.push_back(take(width[l] * cols));
    for (std::size_t l = 0; l < count; ++l) {
      z.push_back(take(width[l + 1] * cols));
      slope.push_back(take(width[l + 1] * kSlicePoints));
      part.push_back(take(width[l + 1] * kSlicePoints));
    }
    dh[0] = take(widest * cols);
    dh[1] = take(widest * cols);
    dz = take(widest * cols);
  }
};

}  // namespace

void jet_residual_step_t(const Context& ctx, const JetBlocks& blocks,
                         const detail::JetNetworkLayer* layers, int count,
                         MatrixView<const float> x, const float* directions,
                         VectorView<const float> coefficients, MatrixView<const float> source,
                         float weight, VectorView<float> loss, bool accumulate,
                         MatrixView<float> y) {
  constexpr std::int64_t P = kSlicePoints;
  const std::int64_t batch = blocks.batch, nb = blocks.blocks(), cols = nb * P;
  const int k_count = blocks.directions;
  const detail::JetShape shape = shape_of(blocks);
  std::vector<std::int64_t> width{layers[0].w.cols};
  for (int l = 0; l < count; ++l) width.push_back(layers[l].w.rows);
  const std::int64_t in = width.front(), out = width.back();
  const SliceLayout at(width, cols);
  // The gradients one task sums: per layer dw [out, in] then db [out].
  std::vector<std::int64_t> dw_at, db_at;
  std::int64_t params = 0;
  for (int l = 0; l < count; ++l) {
    dw_at.push_back(params);
    params += width[l + 1] * width[l];
    db_at.push_back(params);
    params += width[l + 1];
  }
  const std::int64_t per_task = task_points(batch);
  const std::int64_t tasks = (batch + per_task - 1) / per_task;
  const int threads = static_cast<int>(std::min<std::int64_t>(ctx.threads(), tasks));
  // Each layer's bias repeated over a slice's points (forward_row adds it elementwise).
  std::int64_t bias_floats = 0;
  for (int l = 0; l < count; ++l) bias_floats += width[l + 1] * P;
  float* const memory = cpu::workspace(
      ctx, static_cast<std::size_t>(bias_floats + threads * at.floats + tasks * params));
  float* const sums = memory + bias_floats + threads * at.floats;
  std::vector<const float*> bias(static_cast<std::size_t>(count), nullptr);
  {
    float* b = memory;
    for (int l = 0; l < count; ++l) {
      if (layers[l].b.empty()) continue;
      bias[static_cast<std::size_t>(l)] = b;
      for (std::int64_t i = 0; i < width[l + 1]; ++i)
        std::fill_n(b + i * P, P, layers[l].b.data[i]);
      b += width[l + 1] * P;
    }
  }
  const double rows_out = static_cast<double>(batch) * static_cast<double>(out);
  const float scale = static_cast<float>(2.0 * weight / rows_out);
  std::vector<double> task_loss(static_cast<std::size_t>(tasks), 0.0);
  const JetRows rows{k_count, blocks.second_order, blocks.weights.data, P};

#pragma omp parallel num_threads(threads)
  {
    float* const m0 = memory + bias_floats + std::int64_t(omp_get_thread_num()) * at.floats;
#pragma omp for schedule(static)
    for (std::int64_t t = 0; t < tasks; ++t) {
      // This task's sums: the weight gradients straight into its row, the biases' per point.
      float* const mine = sums + t * params;
      std::fill_n(mine, params, 0.0f);
      for (int l = 0; l < count; ++l) std::fill_n(m0 + at.part[l], width[l + 1] * P, 0.0f);
      double task_sum = 0.0;
      const std::int64_t end = std::min(batch, (t + 1) * per_task);
      for (std::int64_t s0 = t * per_task; s0 < end; s0 += P) {
        const std::int64_t m = std::min(P, batch - s0);
        // The input's jet: x (zeros past the batch), v_k's component in block k, zero curvature.
        float* const h0 = m0 + at.h[0];
        for (std::int64_t i = 0; i < in; ++i) {
          float* row = h0 + i * cols;
          for (std::int64_t p = 0; p < P; ++p) row[p] = p < m ? x.data[(s0 + p) * x.ld + i] : 0.0f;
          for (int k = 0; k < k_count; ++k)
            std::fill_n(row + (1 + k) * P, P, directions[k * in + i]);
          if (blocks.second_order) std::fill_n(row + (1 + k_count) * P, P, 0.0f);
        }
        for (int l = 0; l < count; ++l) {
          const detail::JetNetworkLayer& layer = layers[l];
          const float* h = m0 + at.h[l];
          float* const z = m0 + at.z[l];
          float* const h_next = m0 + at.h[l + 1];
          const bool save = layer.act == JetActivation::tanh;
          slice_product(layer.w.data, layer.w.ld, 1, width[l + 1], width[l], h, cols, z, cols);
          if (save && with_tanh_slice(k_count, blocks.second_order, [&](auto f) {
                tanh_slice_forward<decltype(f)::value>(
                    width[l + 1], layer.b.empty() ? nullptr : layer.b.data, blocks.weights.data, z,
                    h_next, m0 + at.slope[l], cols);
              })) {
            continue;
          }
          detail::dispatch_jet_activation(static_cast<int>(layer.act), [&](auto a) {
            constexpr int F = static_cast<int>(decltype(a)::value);
            for (std::int64_t i = 0; i < width[l + 1]; ++i) {
              const float* b = bias[static_cast<std::size_t>(l)];
              forward_row<F>(rows, b != nullptr ? b + i * P : nullptr, z + i * cols, P,
                             h_next + i * cols, P, save ? m0 + at.slope[l] + i * P : nullptr);
            }
          });
        }
        // The residual at the outputs, its adjoints into dh[0] (zeros past the batch).
        const float* const yv = m0 + at.h[count];
        float* dh = m0 + at.dh[0];
        float* other = m0 + at.dh[1];
        for (std::int64_t o = 0; o < out; ++o) {
          for (std::int64_t p = 0; p < P; ++p) {
            float* g = dh + o * cols + p;
            if (p >= m) {
              for (std::int64_t b = 0; b < nb; ++b) g[b * P] = 0.0f;
              continue;
            }
            const float f = source.empty() ? 0.0f : source.data[(s0 + p) * source.ld + o];
            task_sum += detail::pde_residual_element(shape, coefficients.data, yv + o * cols + p, P,
                                                     f, scale, g, P);
          }
        }
        if (!y.empty()) {
          for (std::int64_t b = 0; b < nb; ++b) {
            for (std::int64_t p = 0; p < m; ++p) {
              float* dst = y.data + (b * batch + s0 + p) * y.ld;
              for (std::int64_t o = 0; o < out; ++o) dst[o] = yv[o * cols + b * P + p];
            }
          }
        }
        float* const dz = m0 + at.dz;
        for (int l = count - 1; l >= 0; --l) {
          const detail::JetNetworkLayer& layer = layers[l];
          const float* z = m0 + at.z[l];
          const float* h_next = m0 + at.h[l + 1];
          const bool save = layer.act == JetActivation::tanh;
          float* const part = layer.db.empty() ? nullptr : m0 + at.part[l];
          const bool sliced =
              save && with_tanh_slice(k_count, blocks.second_order, [&](auto f) {
                tanh_slice_backward<decltype(f)::value>(width[l + 1], blocks.weights.data, z, dh,
                                                        dz, part, h_next, m0 + at.slope[l], cols);
              });
          if (!sliced)
            detail::dispatch_jet_activation(static_cast<int>(layer.act), [&](auto a) {
              constexpr int F = static_cast<int>(decltype(a)::value);
              for (std::int64_t i = 0; i < width[l + 1]; ++i) {
                backward_row<F>(rows, z + i * cols, P, dh + i * cols, P, dz + i * cols, P,
                                layer.db.empty() ? nullptr : m0 + at.part[l] + i * P,
                                save ? h_next + i * cols : nullptr,
                                save ? m0 + at.slope[l] + i * P : nullptr);
              }
            });
          slice_weight_gradient(dz, width[l + 1], m0 + at.h[l], width[l], cols, cols,
                                mine + dw_at[l]);
          if (l > 0) {
            slice_product(layer.w.data, 1, layer.w.ld, width[l], width[l + 1], dz, cols, other,
                          cols);
            std::swap(dh, other);
          }
        }
      }
      // Each bias's points by lane_sum.
      for (int l = 0; l < count; ++l) {
        for (std::int64_t i = 0; i < width[l + 1]; ++i) {
          mine[db_at[l] + i] = lane_sum(m0 + at.part[l] + i * P, P);
        }
      }
      task_loss[static_cast<std::size_t>(t)] = task_sum;
    }
  }
  // The tasks' sums in task order (row by row, so that the adds run along contiguous memory).
  std::vector<float> total(static_cast<std::size_t>(params), 0.0f);
  for (std::int64_t t = 0; t < tasks; ++t) {
    const float* row = sums + t * params;
#pragma omp simd
    for (std::int64_t e = 0; e < params; ++e) total[static_cast<std::size_t>(e)] += row[e];
  }
  for (int l = 0; l < count; ++l) {
    const detail::JetNetworkLayer& layer = layers[l];
    const float* sum = total.data() + dw_at[l];
    for (std::int64_t i = 0; i < width[l + 1]; ++i) {
      float* d = layer.dw.data + i * layer.dw.ld;
      for (std::int64_t j = 0; j < width[l]; ++j) {
        d[j] = accumulate ? d[j] + sum[i * width[l] + j] : sum[i * width[l] + j];
      }
    }
    if (layer.db.empty()) continue;
    for (std::int64_t i = 0; i < width[l + 1]; ++i) {
      const float b = total[static_cast<std::size_t>(db_at[l] + i)];
      layer.db.data[i] = accumulate ? layer.db.data[i] + b : b;
    }
  }
  double loss_sum = 0.0;
  for (double s : task_loss) loss_sum += s;
  loss.data[0] = static_cast<float>(weight * loss_sum / rows_out);
}

void pde_residual_loss(const Context& ctx, const JetBlocks& blocks, MatrixView<const float> y,
                       VectorView<const float> coefficients, MatrixView<const float> source,
                       float weight, VectorView<float> loss, bool accumulate,
                       MatrixView<float> grad) {
  const detail::JetShape shape = shape_of(blocks);
  const std::int64_t ys = blocks.batch * y.ld, gs = blocks.batch * grad.ld, n = y.cols;
  const double count = static_cast<double>(blocks.batch) * static_cast<double>(n);
  const float scale = static_cast<float>(2.0 * weight / count);
  // One sum per row, added in row order: the same bits for any thread count.
  std::vector<double> row_sums(static_cast<std::size_t>(blocks.batch));
#pragma omp parallel for num_threads(ctx.threads()) schedule(static)
  for (std::int64_t r = 0; r < blocks.batch; ++r) {
    double sum = 0.0;
    for (std::int64_t j = 0; j < n; ++j) {
      const float f = source.empty() ? 0.0f : source.data[r * source.ld + j];
      sum += detail::pde_residual_element(shape, coefficients.data, y.data + r * y.ld + j, ys, f,
                                          scale, grad.data + r * grad.ld + j, gs);
    }
    row_sums[static_cast<std::size_t>(r)] = sum;
  }
  double total = 0.0;
  for (double s : row_sums) total += s;
  const float value = static_cast<float>(weight * total / count);
  loss.data[0] = accumulate ? loss.data[0] + value : value;
}

}  // namespace descent::cpu
