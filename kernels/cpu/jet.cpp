// CPU jet activation: one OpenMP pass over the value rows each way, each element reading and
// writing its partners in the other blocks (kernels/math/jet.hpp), and the bias gradient summed
// in fixed chunks of rows.
#include "kernels/math/jet.hpp"

#include <algorithm>
#include <vector>

#include "kernels/cpu/cpu.hpp"

namespace descent::cpu {

namespace {

using detail::JetAct;

// Rows per chunk of the bias-gradient sums: fixed, so db's summation order (and its bits) does
// not depend on the thread count.
constexpr std::int64_t kRowChunk = 64;

detail::JetShape shape_of(const JetBlocks& b) { return {b.directions, b.second_order}; }

}  // namespace

void jet_activation_forward(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                            VectorView<const float> b, MatrixView<float> z, MatrixView<float> h) {
  const detail::JetShape shape = shape_of(blocks);
  const std::int64_t zs = blocks.batch * z.ld, hs = blocks.batch * h.ld;
  const float* weights = blocks.weights.data;
  detail::dispatch_jet_activation(static_cast<int>(act), [&](auto a) {
    constexpr JetAct A = decltype(a)::value;
#pragma omp parallel for num_threads(ctx.threads()) schedule(static)
    for (std::int64_t r = 0; r < blocks.batch; ++r) {
      float* zr = z.data + r * z.ld;
      float* hr = h.data + r * h.ld;
      if (!b.empty()) {
        for (std::int64_t j = 0; j < z.cols; ++j) zr[j] += b.data[j];
      }
      for (std::int64_t j = 0; j < z.cols; ++j) {
        detail::jet_forward_element<A>(shape, weights, zr + j, zs, hr + j, hs);
      }
    }
  });
}

void jet_activation_backward(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                             MatrixView<const float> z, MatrixView<const float> dh,
                             MatrixView<float> dz, VectorView<float> db, bool accumulate) {
  const detail::JetShape shape = shape_of(blocks);
  const std::int64_t zs = blocks.batch * z.ld, dhs = blocks.batch * dh.ld,
                     dzs = blocks.batch * dz.ld;
  const float* weights = blocks.weights.data;
  const std::int64_t n = z.cols;
  const std::int64_t chunks = (blocks.batch + kRowChunk - 1) / kRowChunk;
  // One partial row of db per chunk of rows, added in chunk order at the end.
  float* partial = db.empty() ? nullptr : cpu::workspace(ctx, static_cast<std::size_t>(chunks * n));
  detail::dispatch_jet_activation(static_cast<int>(act), [&](auto a) {
    constexpr JetAct A = decltype(a)::value;
#pragma omp parallel for num_threads(ctx.threads()) schedule(static)
    for (std::int64_t c = 0; c < chunks; ++c) {
      float* part = partial != nullptr ? partial + c * n : nullptr;
      if (part != nullptr) std::fill(part, part + n, 0.0f);
      const std::int64_t r1 = std::min(blocks.batch, (c + 1) * kRowChunk);
      for (std::int64_t r = c * kRowChunk; r < r1; ++r) {
        const float* zr = z.data + r * z.ld;
        const float* dhr = dh.data + r * dh.ld;
        float* dzr = dz.data + r * dz.ld;
        for (std::int64_t j = 0; j < n; ++j) {
          const float zbar = detail::jet_backward_element<A>(shape, weights, zr + j, zs, dhr + j,
                                                             dhs, dzr + j, dzs);
          if (part != nullptr) part[j] += zbar;
        }
      }
    }
  });
  if (partial != nullptr) {
#pragma omp parallel for num_threads(ctx.threads()) schedule(static)
    for (std::int64_t j = 0; j < n; ++j) {
      float sum = 0.0f;
      for (std::int64_t c = 0; c < chunks; ++c) sum += partial[c * n + j];
      db.data[j] = accumulate ? db.data[j] + sum : sum;
    }
  }
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
