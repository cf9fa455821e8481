// The CPU backend's Adam/AdamW step and gradient-norm clipping: one OpenMP pass each over the
// flat buffers, the options fixed at compile time so that each loop vectorises.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/backend.hpp"
#include "math/adam.hpp"

namespace descent::cpu {

void adam_update(const Context& ctx, VectorView<float> params, VectorView<const float> grads,
                 VectorView<float> exp_avg, VectorView<float> exp_avg_sq,
                 VectorView<float> max_exp_avg_sq, const AdamOptions& o, const AdamStep& step) {
  auto& scalars = *reinterpret_cast<detail::AdamScalars*>(step.scalars);
  const bool skipped = step.found_inf != nullptr && *step.found_inf != 0;
  detail::adam_begin_step(scalars, *step.lr_device, o.beta1, o.beta2, skipped);
  if (skipped) return;
  const float scale =
      step.grad_scale * (step.grad_scale_device != nullptr ? *step.grad_scale_device : 1.0f);
  const detail::AdamCoeffs c{o.beta1,   o.beta2,   o.eps, o.weight_decay, scale,
                             o.decoupled_weight_decay, o.amsgrad, o.maximize};
  const detail::AdamScalars s = scalars;
  float* p = params.data;
  const float* g = grads.data;
  float* m = exp_avg.data;
  float* v = exp_avg_sq.data;
  float* vmax = max_exp_avg_sq.data;
  bf16* p16 = step.params_bf16.data;
  const std::int64_t n = params.size;
  const int threads = ctx.threads();
  detail::with_adam_flags(detail::adam_flags(c), [&](auto flags) {
    constexpr int F = decltype(flags)::value;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (std::int64_t i = 0; i < n; ++i) {
      // Local copies: the compiler then knows the stores cannot change them.
      const detail::AdamCoeffs k = c;
      const detail::AdamScalars ks = s;
      float unused = 0.0f;
      detail::adam_one<F>(p[i], m[i], v[i], (F & detail::kAdamAmsgrad) ? vmax[i] : unused, g[i],
                          k, ks);
      if (p16 != nullptr) p16[i] = to_bf16(p[i]);
    }
  });
}

namespace {
// Elements per chunk of the norm's reduction: chunks are summed in index order whatever the
// thread count, so the norm is the same bit for bit on any number of threads.
constexpr std::int64_t kNormChunk = 1 << 14;
}  // namespace

void clip_grad_norm(const Context& ctx, VectorView<const float> grads, float max_norm,
                    float norm_type, float* norm, float* scale) {
  const std::int64_t n = grads.size;
  const std::int64_t chunks = (n + kNormChunk - 1) / kNormChunk;
  const bool inf_norm = std::isinf(norm_type);
  std::vector<double> partial(static_cast<std::size_t>(chunks));
  const float* g = grads.data;
#pragma omp parallel for num_threads(ctx.threads()) schedule(static)
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::int64_t end = std::min(n, (c + 1) * kNormChunk);
    double acc = 0.0;
    if (inf_norm) {
      for (std::int64_t i = c * kNormChunk; i < end; ++i) {
        const double a = std::fabs(static_cast<double>(g[i]));
        acc = (a > acc || a != a) ? a : acc;  // NaN propagates, as torch's max norm
      }
    } else {
      for (std::int64_t i = c * kNormChunk; i < end; ++i) {
        acc += static_cast<double>(g[i]) * static_cast<double>(g[i]);
      }
    }
    partial[static_cast<std::size_t>(c)] = acc;
  }
  double total = 0.0;
  for (double p : partial) total = inf_norm ? ((p > total || p != p) ? p : total) : total + p;
  const float value = static_cast<float>(inf_norm ? total : std::sqrt(total));
  *norm = value;
  // torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1.
  const float coef = max_norm / (value + 1e-6f);
  *scale = (coef < 1.0f || coef != coef) ? coef : 1.0f;  // NaN stays NaN, as torch.clamp
}

}  // namespace descent::cpu
