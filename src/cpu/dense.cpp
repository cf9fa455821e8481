// CPU dense layer: the GEMMs on the configured library, bias, activation and its derivative
// fused into one OpenMP pass each.
#include <algorithm>
#include <vector>

#include "backend.hpp"
#include "cpu/gemm.hpp"
#include "descent/detail/activation.hpp"

namespace descent::cpu {

using detail::Act;

namespace {

// Columns per OpenMP task of the column-parallel passes: a whole cache line of each row.
constexpr std::int64_t kColumnBlock = 64;

int act_id(Activation a) { return static_cast<int>(a); }

}  // namespace

void dense_forward(const Context& ctx, MatrixView<const float> x, MatrixView<const float> w,
                   VectorView<const float> b, Activation act, MatrixView<float> y,
                   MatrixView<float> pre) {
  const int threads = ctx.threads();
  sgemm(false, true, x.rows, w.rows, x.cols, 1.0f, x.data, x.ld, w.data, w.ld, 0.0f, y.data, y.ld,
        threads);
  if (b.empty() && pre.empty() && act == Activation::identity) return;
  detail::dispatch_activation(act_id(act), [&](auto a) {
    constexpr Act A = decltype(a)::value;
    // Three simple loops per row rather than one with branches: each vectorises.
#pragma omp parallel for num_threads(threads) schedule(static)
    for (std::int64_t r = 0; r < y.rows; ++r) {
      float* yr = y.data + r * y.ld;
      if (!b.empty()) {
        for (std::int64_t j = 0; j < y.cols; ++j) yr[j] += b.data[j];
      }
      if (!pre.empty()) {
        float* pr = pre.data + r * pre.ld;
        for (std::int64_t j = 0; j < y.cols; ++j) pr[j] = yr[j];
      }
      if constexpr (A != Act::identity) {
        for (std::int64_t j = 0; j < y.cols; ++j) yr[j] = detail::activate<A>(yr[j]);
      }
    }
  });
}

void dense_backward(const Context& ctx, MatrixView<const float> x, MatrixView<const float> w,
                    MatrixView<const float> y, MatrixView<const float> pre,
                    MatrixView<const float> dy, Activation act, const DenseGrads& g) {
  const int threads = ctx.threads();
  const std::int64_t rows = x.rows, out = w.rows;
  // dz = dy ⊙ act'(z) and db = Σ_rows dz in one pass; each task owns a block of columns and
  // walks all rows in order, so db is summed in the same order whatever the thread count.
  const float* dz = dy.data;
  std::int64_t ldz = dy.ld;
  float* dz_work = nullptr;
  if (act != Activation::identity) {
    dz_work = ctx.impl().host_workspace(static_cast<std::size_t>(rows * out));
    dz = dz_work;
    ldz = out;
  }
  if (dz_work != nullptr || !g.db.empty()) {
    detail::dispatch_activation(act_id(act), [&](auto a) {
      constexpr Act A = decltype(a)::value;
      const std::int64_t blocks = (out + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for num_threads(threads) schedule(static)
      for (std::int64_t blk = 0; blk < blocks; ++blk) {
        const std::int64_t j0 = blk * kColumnBlock, j1 = std::min(out, j0 + kColumnBlock);
        float sums[kColumnBlock] = {};
        for (std::int64_t r = 0; r < rows; ++r) {
          const float* dyr = dy.data + r * dy.ld;
          // gelu's derivative needs the pre-activation, the others only the output.
          const float* act_in = A == Act::gelu ? pre.data + r * pre.ld : y.data + r * y.ld;
          float* dzr = A == Act::identity ? nullptr : dz_work + r * out;
          for (std::int64_t j = j0; j < j1; ++j) {
            float d = dyr[j];
            if constexpr (A == Act::gelu) {
              d *= detail::activate_grad<A>(0.0f, act_in[j]);
            } else if constexpr (A != Act::identity) {
              d *= detail::activate_grad<A>(act_in[j], 0.0f);
            }
            if constexpr (A != Act::identity) dzr[j] = d;
            sums[j - j0] += d;
          }
        }
        if (!g.db.empty()) {
          for (std::int64_t j = j0; j < j1; ++j) {
            g.db.data[j] = g.accumulate ? g.db.data[j] + sums[j - j0] : sums[j - j0];
          }
        }
      }
    });
  }
  // dw = dzᵀ · x, dx = dz · w
  sgemm(true, false, out, x.cols, rows, 1.0f, dz, ldz, x.data, x.ld, g.accumulate ? 1.0f : 0.0f,
        g.dw.data, g.dw.ld, threads);
  if (!g.dx.empty()) {
    sgemm(false, false, rows, x.cols, out, 1.0f, dz, ldz, w.data, w.ld, 0.0f, g.dx.data, g.dx.ld,
          threads);
  }
}

// ---------------------------------------------------------------- bf16: computed in fp32

namespace {

std::vector<float> widen(MatrixView<const bf16> m) {
  std::vector<float> out(static_cast<std::size_t>(m.rows * m.cols));
  for (std::int64_t r = 0; r < m.rows; ++r) {
    for (std::int64_t j = 0; j < m.cols; ++j) out[r * m.cols + j] = to_float(m.data[r * m.ld + j]);
  }
  return out;
}

MatrixView<const float> view_of(const std::vector<float>& v, std::int64_t rows, std::int64_t cols) {
  return MatrixView<const float>(v.data(), rows, cols, Device::cpu());
}

void narrow(const std::vector<float>& v, MatrixView<bf16> m) {
  for (std::int64_t r = 0; r < m.rows; ++r) {
    for (std::int64_t j = 0; j < m.cols; ++j) m.data[r * m.ld + j] = to_bf16(v[r * m.cols + j]);
  }
}

}  // namespace

void dense_forward(const Context& ctx, MatrixView<const bf16> x, MatrixView<const bf16> w,
                   VectorView<const float> b, Activation act, MatrixView<bf16> y,
                   MatrixView<float> pre) {
  const auto xf = widen(x), wf = widen(w);
  std::vector<float> yf(static_cast<std::size_t>(y.rows * y.cols));
  cpu::dense_forward(ctx, view_of(xf, x.rows, x.cols), view_of(wf, w.rows, w.cols), b, act,
                MatrixView<float>(yf.data(), y.rows, y.cols, Device::cpu()), pre);
  narrow(yf, y);
}

void dense_backward(const Context& ctx, MatrixView<const bf16> x, MatrixView<const bf16> w,
                    MatrixView<const bf16> y, MatrixView<const float> pre,
                    MatrixView<const bf16> dy, Activation act, const DenseGradsBf16& g) {
  const auto xf = widen(x), wf = widen(w), yf = widen(y), dyf = widen(dy);
  std::vector<float> dxf(g.dx.empty() ? 0 : static_cast<std::size_t>(x.rows * x.cols));
  DenseGrads gf{};
  if (!g.dx.empty()) gf.dx = MatrixView<float>(dxf.data(), x.rows, x.cols, Device::cpu());
  gf.dw = g.dw;
  gf.db = g.db;
  gf.accumulate = g.accumulate;
  cpu::dense_backward(ctx, view_of(xf, x.rows, x.cols), view_of(wf, w.rows, w.cols),
                 view_of(yf, y.rows, y.cols), pre, view_of(dyf, dy.rows, dy.cols), act, gf);
  if (!g.dx.empty()) narrow(dxf, g.dx);
}

}  // namespace descent::cpu
