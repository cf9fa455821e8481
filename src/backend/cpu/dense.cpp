// CPU dense layer: the GEMMs on the configured library, bias, activation and its derivative
// fused into one OpenMP pass each.
#include <algorithm>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cpu/gemm.hpp"
#include "math/activation.hpp"

namespace descent::cpu {

using detail::Act;

namespace {

// Rows per chunk of the bias-gradient sums: fixed, so db's summation order is fixed.
constexpr std::int64_t kRowChunk = 64;

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
  // dz = dy ⊙ act'(z) and db = Σ_rows dz in one pass over dy. Rows are cut into fixed chunks of
  // kRowChunk; each chunk's column sums go to its own partial row, and the partials are added in
  // chunk order, so db does not depend on the thread count.
  const bool need_dz = act != Activation::identity;
  const bool need_db = !g.db.empty();
  const std::int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
  float* work = (need_dz || need_db)
                    ? detail::impl_of(ctx).host_workspace(static_cast<std::size_t>(
                          (need_dz ? rows * out : 0) + (need_db ? chunks * out : 0)))
                    : nullptr;
  float* dz_work = need_dz ? work : nullptr;
  float* partial = need_db ? work + (need_dz ? rows * out : 0) : nullptr;
  const float* dz = need_dz ? dz_work : dy.data;
  const std::int64_t ldz = need_dz ? out : dy.ld;
  if (need_dz || need_db) {
    detail::dispatch_activation(act_id(act), [&](auto a) {
      constexpr Act A = decltype(a)::value;
#pragma omp parallel for num_threads(threads) schedule(static)
      for (std::int64_t c = 0; c < chunks; ++c) {
        float* part = partial != nullptr ? partial + c * out : nullptr;
        if (part != nullptr) std::fill(part, part + out, 0.0f);
        const std::int64_t r1 = std::min(rows, (c + 1) * kRowChunk);
        for (std::int64_t r = c * kRowChunk; r < r1; ++r) {
          const float* dyr = dy.data + r * dy.ld;
          if constexpr (A == Act::identity) {
            for (std::int64_t j = 0; j < out; ++j) part[j] += dyr[j];  // need_db holds here
          } else {
            // gelu's derivative needs the pre-activation, the others only the output.
            const float* act_in = A == Act::gelu ? pre.data + r * pre.ld : y.data + r * y.ld;
            float* dzr = dz_work + r * out;
            for (std::int64_t j = 0; j < out; ++j) {
              dzr[j] = A == Act::gelu ? dyr[j] * detail::activate_grad<A>(0.0f, act_in[j])
                                      : dyr[j] * detail::activate_grad<A>(act_in[j], 0.0f);
            }
            if (part != nullptr) {
              for (std::int64_t j = 0; j < out; ++j) part[j] += dzr[j];
            }
          }
        }
      }
    });
  }
  if (need_db) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (std::int64_t j = 0; j < out; ++j) {
      float sum = 0.0f;
      for (std::int64_t c = 0; c < chunks; ++c) sum += partial[c * out + j];
      g.db.data[j] = g.accumulate ? g.db.data[j] + sum : sum;
    }
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
