// CPU dense layer: the GEMMs on the configured library, bias, activation and its derivative
// fused into one OpenMP pass each (optionally slice by slice over the batch, see slice_rows).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>

#include "kernels/cpu/cpu.hpp"
#include "kernels/cpu/fast_exp.hpp"
#include "kernels/cpu/gemm.hpp"
#include "kernels/cpu/isa.hpp"
#include "kernels/math/activation.hpp"

namespace descent::cpu {

using detail::Act;

namespace {

// Rows per chunk of the bias-gradient sums: fixed, so db's summation order is fixed.
constexpr std::int64_t kRowChunk = 64;

// The batch can be processed in slices of rows: a GEMM on one slice, then the elementwise pass
// over the slice it wrote while that is still in the cores' L2, instead of a whole-batch GEMM and
// then a pass over an activation larger than L2. Off by default: on the 2-core AMD EPYC (32 MiB
// L3) slices of 256 rows made the fmnist b4096 step slower (1.2–2.0 s against 0.81–0.87 s in
// alternating runs on a busy machine): each GEMM call repacks the whole weight matrix, and the
// whole-batch activation fits in L3 there. DESCENT_CPU_SLICE_ROWS=N (N > 0) turns it on with
// slices of N rows (rounded up to whole chunks of kRowChunk, so db's chunks and bits do not
// depend on the slices) to measure it on other machines.
std::int64_t slice_rows() {
  static const std::int64_t rows = [] {
    const char* s = std::getenv("DESCENT_CPU_SLICE_ROWS");
    const std::int64_t n = s != nullptr ? std::atoll(s) : 0;
    return n > 0 ? (n + kRowChunk - 1) / kRowChunk * kRowChunk
                 : std::numeric_limits<std::int64_t>::max() / 2;
  }();
  return rows;
}

int act_id(Activation a) { return static_cast<int>(a); }

// The elementwise passes work row by row; each row function is compiled for every ISA the
// backend has (kernels/cpu/isa.hpp), as simple loops that vectorise, with the activation id as F.
// Elementwise only, and no multiply-add is fused in any variant: every ISA gives the same bits.

// One row of y: the bias, the copy of the pre-activation (pre non-null) and the activation.
template <int F>
DESCENT_ALWAYS_INLINE void forward_row_body(const float* bias, float* y, float* pre,
                                            std::int64_t n) {
  constexpr Act A = static_cast<Act>(F);
  if (bias != nullptr) {
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) y[j] += bias[j];
  }
  if (pre != nullptr) {
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) pre[j] = y[j];
  }
  if constexpr (A != Act::identity) {
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) y[j] = detail::activate<A, FastMath>(y[j]);
  }
}
DESCENT_ISA_DISPATCH(forward_row, forward_row_body,
                     (const float* bias, float* y, float* pre, std::int64_t n), (bias, y, pre, n))

// Bias, the copy of the pre-activation and the activation over rows [r0, r1) of y.
template <Act A>
void forward_epilogue(VectorView<const float> b, MatrixView<float> y, MatrixView<float> pre,
                      std::int64_t r0, std::int64_t r1, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t r = r0; r < r1; ++r) {
    forward_row<static_cast<int>(A)>(b.empty() ? nullptr : b.data, y.data + r * y.ld,
                                     pre.empty() ? nullptr : pre.data + r * pre.ld, y.cols);
  }
}

}  // namespace

void dense_forward(const Context& ctx, MatrixView<const float> x, MatrixView<const float> w,
                   VectorView<const float> b, Activation act, MatrixView<float> y,
                   MatrixView<float> pre) {
  const int threads = ctx.threads();
  if (b.empty() && pre.empty() && act == Activation::identity) {
    sgemm(false, true, x.rows, w.rows, x.cols, 1.0f, x.data, x.ld, w.data, w.ld, 0.0f, y.data, y.ld,
          threads);
    return;
  }
  const std::int64_t slice = slice_rows();
  detail::dispatch_activation(act_id(act), [&](auto a) {
    for (std::int64_t r0 = 0; r0 < x.rows; r0 += slice) {
      const std::int64_t r1 = std::min(x.rows, r0 + slice);
      sgemm(false, true, r1 - r0, w.rows, x.cols, 1.0f, x.data + r0 * x.ld, x.ld, w.data, w.ld,
            0.0f, y.data + r0 * y.ld, y.ld, threads);
      forward_epilogue<decltype(a)::value>(b, y, pre, r0, r1, threads);
    }
  });
}

namespace {

// db = the chunks' partial rows added in chunk order (or db += them, accumulating).
void sum_partials(const float* partial, std::int64_t chunks, VectorView<float> db, bool accumulate,
                  int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t j = 0; j < db.size; ++j) {
    float sum = 0.0f;
    for (std::int64_t c = 0; c < chunks; ++c) sum += partial[c * db.size + j];
    db.data[j] = accumulate ? db.data[j] + sum : sum;
  }
}

// Floats of scratch the fp32 backward needs: dz [rows, out] (unless the activation is the
// identity, whose dz is dy) and one partial row of db per chunk of kRowChunk rows.
std::int64_t backward_scratch(std::int64_t rows, std::int64_t out, Activation act, bool need_db) {
  const std::int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
  return (act != Activation::identity ? rows * out : 0) + (need_db ? chunks * out : 0);
}

// One row of the backward epilogue: dz = dy ⊙ act'(z) (act_in: the pre-activation for gelu,
// else the output; the identity writes no dz) and, with part non-null, part += dz.
template <int F>
DESCENT_ALWAYS_INLINE void backward_row_body(const float* dy, const float* act_in, float* dz,
                                             float* part, std::int64_t n) {
  constexpr Act A = static_cast<Act>(F);
  if constexpr (A == Act::identity) {
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) part[j] += dy[j];  // only called with a db
  } else {
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) {
      dz[j] = A == Act::gelu ? dy[j] * detail::activate_grad<A, FastMath>(0.0f, act_in[j])
                             : dy[j] * detail::activate_grad<A, FastMath>(act_in[j], 0.0f);
    }
    if (part != nullptr) {
#pragma omp simd
      for (std::int64_t j = 0; j < n; ++j) part[j] += dz[j];
    }
  }
}
DESCENT_ISA_DISPATCH(backward_row, backward_row_body,
                     (const float* dy, const float* act_in, float* dz, float* part, std::int64_t n),
                     (dy, act_in, dz, part, n))

// dz = dy ⊙ act'(z) over rows [r0, r1) (dz_work null: the identity, whose dz is dy) and each
// chunk's column sums of dz into its own partial row of db (partial null: no db).
template <Act A>
void backward_epilogue(MatrixView<const float> y, MatrixView<const float> pre,
                       MatrixView<const float> dy, float* dz_work, float* partial, std::int64_t r0,
                       std::int64_t r1, int threads) {
  const std::int64_t out = dy.cols;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t c = r0 / kRowChunk; c < (r1 + kRowChunk - 1) / kRowChunk; ++c) {
    float* part = partial != nullptr ? partial + c * out : nullptr;
    if (part != nullptr) std::fill(part, part + out, 0.0f);
    const std::int64_t c1 = std::min(r1, (c + 1) * kRowChunk);
    for (std::int64_t r = c * kRowChunk; r < c1; ++r) {
      // gelu's derivative needs the pre-activation, the others only the output.
      const float* act_in = A == Act::gelu ? pre.data + r * pre.ld : y.data + r * y.ld;
      backward_row<static_cast<int>(A)>(
          dy.data + r * dy.ld, act_in, dz_work != nullptr ? dz_work + r * out : nullptr, part, out);
    }
  }
}

// The fp32 backward on `work`, which holds backward_scratch(...) floats (null when that is 0).
// Slice by slice: dz and db's partial sums of the slice, then the slice's dx = dz · w while dz is
// still in cache; dw = dzᵀ · x once over the whole batch (per slice it would read and write all
// of dw again for each slice).
void backward(const Context& ctx, MatrixView<const float> x, MatrixView<const float> w,
              MatrixView<const float> y, MatrixView<const float> pre, MatrixView<const float> dy,
              Activation act, const DenseGrads& g, float* work) {
  const int threads = ctx.threads();
  const std::int64_t rows = x.rows, out = w.rows;
  // db = Σ_rows dz: rows are cut into fixed chunks of kRowChunk; each chunk's column sums go to
  // its own partial row, and the partials are added in chunk order, so db depends neither on the
  // thread count nor on the slices.
  const bool need_dz = act != Activation::identity;
  const bool need_db = !g.db.empty();
  const std::int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
  float* dz_work = need_dz ? work : nullptr;
  float* partial = need_db ? work + (need_dz ? rows * out : 0) : nullptr;
  const float* dz = need_dz ? dz_work : dy.data;
  const std::int64_t ldz = need_dz ? out : dy.ld;
  const std::int64_t slice = slice_rows();
  detail::dispatch_activation(act_id(act), [&](auto a) {
    for (std::int64_t r0 = 0; r0 < rows; r0 += slice) {
      const std::int64_t r1 = std::min(rows, r0 + slice);
      if (need_dz || need_db) {
        backward_epilogue<decltype(a)::value>(y, pre, dy, dz_work, partial, r0, r1, threads);
      }
      if (!g.dx.empty()) {
        sgemm(false, false, r1 - r0, x.cols, out, 1.0f, dz + r0 * ldz, ldz, w.data, w.ld, 0.0f,
              g.dx.data + r0 * g.dx.ld, g.dx.ld, threads);
      }
    }
  });
  if (need_db) sum_partials(partial, chunks, g.db, g.accumulate, threads);
  sgemm(true, false, out, x.cols, rows, 1.0f, dz, ldz, x.data, x.ld, g.accumulate ? 1.0f : 0.0f,
        g.dw.data, g.dw.ld, threads);
}

}  // namespace

void dense_backward(const Context& ctx, MatrixView<const float> x, MatrixView<const float> w,
                    MatrixView<const float> y, MatrixView<const float> pre,
                    MatrixView<const float> dy, Activation act, const DenseGrads& g) {
  const std::int64_t scratch = backward_scratch(x.rows, w.rows, act, !g.db.empty());
  float* work = scratch > 0 ? cpu::workspace(ctx, static_cast<std::size_t>(scratch)) : nullptr;
  backward(ctx, x, w, y, pre, dy, act, g, work);
}

// ---------------------------------------------------------------- bf16
//
// bf16 operands, fp32 products and sums (gemm_bf16: on the bf16 units where the CPU has them),
// as on the GPU: the forward pass's product goes to fp32 scratch, gets the fp32 epilogue and is
// rounded into y; the backward pass rounds dz to bf16 for its two products and sums db from dz
// before the rounding. Each call takes all of its scratch from one workspace request made before
// anything is written to it (a larger request replaces the block).

namespace {

// Successive pieces of one workspace block, in floats.
class Carve {
 public:
  explicit Carve(float* base) : next_(base) {}
  float* take(std::int64_t floats) {
    float* p = next_;
    next_ += floats;
    return p;
  }

 private:
  float* next_;
};

template <int F>
DESCENT_ALWAYS_INLINE void narrow_row_body(const float* f, bf16* m, std::int64_t n) {
#pragma omp simd
  for (std::int64_t j = 0; j < n; ++j) m[j] = to_bf16(f[j]);
}
DESCENT_ISA_DISPATCH(narrow_row, narrow_row_body, (const float* f, bf16* m, std::int64_t n),
                     (f, m, n))

// Rounds rows x cols of the contiguous fp32 matrix f into m.
void narrow(const float* f, MatrixView<bf16> m, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t r = 0; r < m.rows; ++r) {
    narrow_row<0>(f + r * m.cols, m.data + r * m.ld, m.cols);
  }
}

// One row of the bf16 backward epilogue, in pieces of kColumns columns through an fp32 buffer:
// g = dy ⊙ act'(z) (pre: the pre-activation, for gelu; y: the output, for the others), dz = g
// rounded to bf16 (not for the identity, whose dz is dy) and, with part non-null, part += g.
constexpr std::int64_t kColumns = 256;

template <int F>
DESCENT_ALWAYS_INLINE void backward_row_bf16_body(const bf16* dy, const bf16* y, const float* pre,
                                                  bf16* dz, float* part, std::int64_t n) {
  constexpr Act A = static_cast<Act>(F);
  float g[kColumns];
  for (std::int64_t j0 = 0; j0 < n; j0 += kColumns) {
    const std::int64_t m = std::min(kColumns, n - j0);
#pragma omp simd
    for (std::int64_t j = 0; j < m; ++j) g[j] = to_float(dy[j0 + j]);
    if constexpr (A == Act::gelu) {
#pragma omp simd
      for (std::int64_t j = 0; j < m; ++j) {
        g[j] *= detail::activate_grad<A, FastMath>(0.0f, pre[j0 + j]);
      }
    } else if constexpr (A != Act::identity) {
#pragma omp simd
      for (std::int64_t j = 0; j < m; ++j) {
        g[j] *= detail::activate_grad<A, FastMath>(to_float(y[j0 + j]), 0.0f);
      }
    }
    if constexpr (A != Act::identity) {
#pragma omp simd
      for (std::int64_t j = 0; j < m; ++j) dz[j0 + j] = to_bf16(g[j]);
    }
    if (part != nullptr) {
#pragma omp simd
      for (std::int64_t j = 0; j < m; ++j) part[j0 + j] += g[j];
    }
  }
}
DESCENT_ISA_DISPATCH(backward_row_bf16, backward_row_bf16_body,
                     (const bf16* dy, const bf16* y, const float* pre, bf16* dz, float* part,
                      std::int64_t n),
                     (dy, y, pre, dz, part, n))

// dz = dy ⊙ act'(z) rounded to bf16 (dz null: the identity, whose dz is dy) and each chunk's
// column sums of the unrounded dz into its own partial row of db (partial null: no db).
template <Act A>
void backward_epilogue_bf16(MatrixView<const bf16> y, MatrixView<const float> pre,
                            MatrixView<const bf16> dy, bf16* dz, float* partial, int threads) {
  const std::int64_t rows = dy.rows, out = dy.cols;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t c = 0; c < (rows + kRowChunk - 1) / kRowChunk; ++c) {
    float* part = partial != nullptr ? partial + c * out : nullptr;
    if (part != nullptr) std::fill(part, part + out, 0.0f);
    const std::int64_t c1 = std::min(rows, (c + 1) * kRowChunk);
    for (std::int64_t r = c * kRowChunk; r < c1; ++r) {
      backward_row_bf16<static_cast<int>(A)>(dy.data + r * dy.ld,
                                             A == Act::gelu ? nullptr : y.data + r * y.ld,
                                             A == Act::gelu ? pre.data + r * pre.ld : nullptr,
                                             dz != nullptr ? dz + r * out : nullptr, part, out);
    }
  }
}

}  // namespace

void dense_forward(const Context& ctx, MatrixView<const bf16> x, MatrixView<const bf16> w,
                   VectorView<const float> b, Activation act, MatrixView<bf16> y,
                   MatrixView<float> pre) {
  const int threads = ctx.threads();
  const std::int64_t rows = x.rows, out = w.rows;
  if ((act == Activation::identity || act == Activation::relu) && pre.empty()) {
    // Bias, relu and the rounding to bf16 in the product's own epilogue: no pass over y.
    const std::int64_t gemm_scratch = gemm_bf16_scratch(rows, out, x.cols, true);
    float* scratch =
        gemm_scratch > 0 ? cpu::workspace(ctx, static_cast<std::size_t>(gemm_scratch)) : nullptr;
    Bf16GemmOut to_y;
    to_y.b16 = y.data;
    to_y.ld = y.ld;
    to_y.bias = b.empty() ? nullptr : b.data;
    to_y.relu = act == Activation::relu;
    gemm_bf16(false, true, rows, out, x.cols, x.data, x.ld, w.data, w.ld, to_y, scratch, threads);
    return;
  }
  const std::int64_t gemm_scratch = gemm_bf16_scratch(rows, out, x.cols, false);
  Carve block(cpu::workspace(ctx, static_cast<std::size_t>(rows * out + gemm_scratch)));
  float* yf = block.take(rows * out);
  Bf16GemmOut to_yf;
  to_yf.f32 = yf;
  to_yf.ld = out;
  gemm_bf16(false, true, rows, out, x.cols, x.data, x.ld, w.data, w.ld, to_yf,
            gemm_scratch > 0 ? block.take(gemm_scratch) : nullptr, threads);
  const MatrixView<float> yv(yf, rows, out, Device::cpu());
  detail::dispatch_activation(act_id(act), [&](auto a) {
    forward_epilogue<decltype(a)::value>(b, yv, pre, 0, rows, threads);
  });
  narrow(yf, y, threads);
}

void dense_backward(const Context& ctx, MatrixView<const bf16> x, MatrixView<const bf16> w,
                    MatrixView<const bf16> y, MatrixView<const float> pre,
                    MatrixView<const bf16> dy, Activation act, const DenseGradsBf16& g) {
  const int threads = ctx.threads();
  const std::int64_t rows = x.rows, in = x.cols, out = w.rows;
  const bool need_dz = act != Activation::identity;
  const bool need_db = !g.db.empty();
  const std::int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
  const std::int64_t dz_floats = need_dz ? (rows * out + 1) / 2 : 0;
  const std::int64_t gemm_scratch =
      std::max(gemm_bf16_scratch(rows, in, out, true), gemm_bf16_scratch(out, in, rows, false));
  const std::int64_t floats = dz_floats + (need_db ? chunks * out : 0) + gemm_scratch;
  Carve block(floats > 0 ? cpu::workspace(ctx, static_cast<std::size_t>(floats)) : nullptr);
  bf16* dz_work = need_dz ? reinterpret_cast<bf16*>(block.take(dz_floats)) : nullptr;
  float* partial = need_db ? block.take(chunks * out) : nullptr;
  float* scratch = gemm_scratch > 0 ? block.take(gemm_scratch) : nullptr;
  if (need_dz || need_db) {
    detail::dispatch_activation(act_id(act), [&](auto a) {
      backward_epilogue_bf16<decltype(a)::value>(y, pre, dy, dz_work, partial, threads);
    });
  }
  const bf16* dz = need_dz ? dz_work : dy.data;
  const std::int64_t ldz = need_dz ? out : dy.ld;
  if (need_db) sum_partials(partial, chunks, g.db, g.accumulate, threads);
  if (!g.dx.empty()) {
    Bf16GemmOut to_dx;
    to_dx.b16 = g.dx.data;
    to_dx.ld = g.dx.ld;
    gemm_bf16(false, false, rows, in, out, dz, ldz, w.data, w.ld, to_dx, scratch, threads);
  }
  Bf16GemmOut to_dw;
  to_dw.f32 = g.dw.data;
  to_dw.ld = g.dw.ld;
  to_dw.accumulate = g.accumulate;
  gemm_bf16(true, false, out, in, rows, dz, ldz, x.data, x.ld, to_dw, scratch, threads);
}

}  // namespace descent::cpu
