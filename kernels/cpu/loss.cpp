// CPU losses: each writes its mean value and its gradient in one pass over the input.
// Per-row partial sums are added in row order, so the value does not depend on thread count.
#include "kernels/math/loss.hpp"

#include <algorithm>

#include "kernels/cpu/cpu.hpp"
#include "kernels/cpu/fast_exp.hpp"
#include "kernels/cpu/isa.hpp"

namespace descent::cpu {

namespace {

// The rows the mean is over: the whole batch's for a shard (LossOutput::mean_rows).
std::int64_t mean_rows(std::int64_t rows, const LossOutput& out) {
  return out.mean_rows > 0 ? out.mean_rows : rows;
}

// Runs row_fn(r) -> double for every row in parallel, then adds the partials in row order and
// stores the mean (sum / count) into out.loss[0].
template <class RowFn>
void reduce_rows(const Context& ctx, std::int64_t rows, double count, const LossOutput& out,
                 RowFn row_fn) {
  // The float workspace, seen as doubles, holds one partial per row.
  auto* partial =
      reinterpret_cast<double*>(cpu::workspace(ctx, static_cast<std::size_t>(rows) * 2));
#pragma omp parallel for num_threads(ctx.threads()) schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) partial[r] = row_fn(r);
  double total = 0.0;
  for (std::int64_t r = 0; r < rows; ++r) total += partial[r];
  const float mean = static_cast<float>(total / count);
  out.loss.data[0] = out.accumulate ? out.loss.data[0] + mean : mean;
}

// Softmax cross-entropy of one row: writes the gradient row and returns the row's loss. The sum
// of the exponentials goes to kLanes partial sums (element j to lane j % kLanes) added in a
// fixed order, so every ISA variant gives the same bits.
constexpr int kLanes = 16;

template <int F>
DESCENT_ALWAYS_INLINE double ce_row_body(const float* z, float* g, std::int64_t classes,
                                         std::int32_t label, float g_scale) {
  float m = z[0];
#pragma omp simd reduction(max : m)
  for (std::int64_t j = 1; j < classes; ++j) m = z[j] > m ? z[j] : m;
    // The gradient row holds exp(z - max) until the sum is known. A NaN logit is skipped by the
    // max but poisons the sum, so the loss comes out NaN, as it should.
    // Two simple loops (the exponentials, then their sum from the row just written, still in L1)
    // vectorise where one fused loop does not.
#pragma omp simd
  for (std::int64_t c = 0; c < classes; ++c) g[c] = fast_exp(z[c] - m);
  float lane[kLanes] = {};
  std::int64_t j = 0;
  for (; j + kLanes <= classes; j += kLanes) {
    for (int k = 0; k < kLanes; ++k) lane[k] += g[j + k];
  }
  for (int k = 0; j < classes; ++j, ++k) lane[k] += g[j];
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int k = 0; k < width; ++k) lane[k] += lane[k + width];
  }
  const float s = lane[0];
  const float inv = 1.0f / s;
  const float p_scale = inv * g_scale;
  for (std::int64_t c = 0; c < classes; ++c) g[c] *= p_scale;
  g[label] -= g_scale;  // (softmax - onehot) · scale
  return detail::softmax_ce_row_loss<double>(s, z[label], m);
}

DESCENT_ISA_DISPATCH(ce_row, ce_row_body,
                     (const float* z, float* g, std::int64_t classes, std::int32_t label,
                      float g_scale),
                     (z, g, classes, label, g_scale))

}  // namespace

double mse_row(const float* z, const float* t, float* g, std::int64_t cols, float g_scale) {
  double sum = 0.0;
  for (std::int64_t j = 0; j < cols; ++j) {
    const float d = detail::mse_residual(z[j], t[j]);
    sum += detail::mse_value<double>(d);
    g[j] = d * g_scale;  // 2/N folded into one coefficient: see math/loss.hpp
  }
  return sum;
}

double sigmoid_bce_row(const float* z, const float* t, float* g, std::int64_t cols, float g_scale) {
  double sum = 0.0;
  for (std::int64_t j = 0; j < cols; ++j) {
    const float zj = z[j];
    const float e = detail::bce_exp(zj);
    // sigmoid from the e already at hand, without a second exp
    const float sig = zj >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    sum += static_cast<double>(detail::bce_value(std::max(zj, 0.0f), zj, t[j], e));
    g[j] = detail::bce_grad(sig, t[j], g_scale);
  }
  return sum;
}

double softmax_ce_row(const float* z, float* g, std::int64_t cols, std::int32_t label,
                      float g_scale) {
  return ce_row<0>(z, g, cols, label, g_scale);
}

void mse_loss(const Context& ctx, MatrixView<const float> pred, MatrixView<const float> target,
              const LossOutput& out) {
  const double n = static_cast<double>(mean_rows(pred.rows, out)) * static_cast<double>(pred.cols);
  const float g_scale = static_cast<float>(2.0 / n) * out.grad_scale;
  reduce_rows(ctx, pred.rows, n, out, [&](std::int64_t r) {
    return mse_row(pred.data + r * pred.ld, target.data + r * target.ld,
                   out.grad.data + r * out.grad.ld, pred.cols, g_scale);
  });
}

void softmax_cross_entropy(const Context& ctx, MatrixView<const float> logits,
                           VectorView<const std::int32_t> labels, const LossOutput& out) {
  const std::int64_t classes = logits.cols;
  const std::int64_t n = mean_rows(logits.rows, out);
  const float g_scale = out.grad_scale / static_cast<float>(n);
  reduce_rows(ctx, logits.rows, static_cast<double>(n), out, [&](std::int64_t r) {
    return softmax_ce_row(logits.data + r * logits.ld, out.grad.data + r * out.grad.ld, classes,
                          labels.data[r], g_scale);
  });
}

void sigmoid_bce(const Context& ctx, MatrixView<const float> logits,
                 MatrixView<const float> targets, const LossOutput& out) {
  const double n =
      static_cast<double>(mean_rows(logits.rows, out)) * static_cast<double>(logits.cols);
  const float g_scale = static_cast<float>(1.0 / n) * out.grad_scale;
  reduce_rows(ctx, logits.rows, n, out, [&](std::int64_t r) {
    return sigmoid_bce_row(logits.data + r * logits.ld, targets.data + r * targets.ld,
                           out.grad.data + r * out.grad.ld, logits.cols, g_scale);
  });
}

// The range checks run in index order and stop at the first failure (one thread: they are a
// pass over a batch's labels, not a hot loop).
detail::ValueCheck find_label_outside(const Context&, VectorView<const std::int32_t> labels,
                                      std::int64_t classes) {
  for (std::int64_t i = 0; i < labels.size; ++i) {
    if (labels.data[i] < 0 || labels.data[i] >= classes) return {i, double(labels.data[i])};
  }
  return {};
}

detail::ValueCheck find_target_outside_unit(const Context&, MatrixView<const float> targets) {
  for (std::int64_t r = 0; r < targets.rows; ++r) {
    for (std::int64_t c = 0; c < targets.cols; ++c) {
      const float t = targets.data[r * targets.ld + c];
      if (!(t >= 0.0f && t <= 1.0f)) return {r * targets.cols + c, double(t)};
    }
  }
  return {};
}

}  // namespace descent::cpu
