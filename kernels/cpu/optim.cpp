// The CPU backend's optimizer updates, SGD and Adam/AdamW, and gradient-norm clipping: one
// OpenMP pass each over the flat buffers, the options fixed at compile time so that each loop
// vectorises, and each loop built for baseline x86-64, AVX2 and AVX-512 (kernels/cpu/isa.hpp).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu.hpp"
#include "kernels/cpu/isa.hpp"
#include "kernels/math/adam.hpp"
#include "kernels/math/sgd.hpp"

namespace descent::cpu {

namespace {

struct SgdArgs {
  float* p;
  float* m;
  const float* g;
  bf16* p16;
  detail::SgdCoeffs c;
};

template <int F>
DESCENT_ALWAYS_INLINE void sgd_body(const SgdArgs& a, std::int64_t begin, std::int64_t end) {
  // A local copy: the compiler then knows the stores to p and m cannot change it.
  const detail::SgdCoeffs k = a.c;
  float* __restrict p = a.p;
  float* __restrict m = a.m;
  const float* __restrict g = a.g;
  for (std::int64_t i = begin; i < end; ++i) {
    float unused = 0.0f;
    detail::sgd_one<F>(p[i], (F & detail::kSgdMomentum) ? m[i] : unused, g[i], k);
  }
  if (a.p16 != nullptr) {
    for (std::int64_t i = begin; i < end; ++i) a.p16[i] = to_bf16(p[i]);
  }
}

DESCENT_ISA_DISPATCH(sgd_range, sgd_body, (const SgdArgs& a, std::int64_t begin, std::int64_t end),
                     (a, begin, end))

}  // namespace

void sgd_update(const Context& ctx, VectorView<float> params, VectorView<const float> grads,
                VectorView<float> momentum, const SgdOptions& o, const SgdStep& step) {
  if (step.found_inf != nullptr && *step.found_inf != 0) return;
  bool first = step.first_step;
  if (step.momentum_started != nullptr) {  // the first update applied (see SgdStep)
    first = step.momentum_started[0] == 0;
    step.momentum_started[0] = 1;
    step.momentum_started[1] = first ? 1 : 0;
  }
  const SgdArgs a{
      params.data,
      momentum.data,
      grads.data,
      step.params_bf16.data,
      {step.lr_device != nullptr ? *step.lr_device : o.lr, o.momentum, o.dampening, o.weight_decay,
       step.grad_scale * (step.grad_scale_device != nullptr ? *step.grad_scale_device : 1.0f),
       o.nesterov, o.maximize, first}};
  const std::int64_t n = params.size;
  const int threads = ctx.threads();
  // The options are fixed for the whole pass: one loop per option set, so each vectorises.
  detail::with_sgd_flags(detail::sgd_flags(a.c), [&](auto flags) {
    constexpr int F = decltype(flags)::value;
#pragma omp parallel num_threads(threads)
    {
      std::int64_t begin = 0, end = 0;
      thread_range(n, omp_get_thread_num(), omp_get_num_threads(), begin, end);
      if (begin < end) sgd_range<F>(a, begin, end);
    }
  });
}

// ---------------------------------------------------------------- Adam, clipping

namespace {

struct AdamArgs {
  float* p;
  const float* g;
  float* m;
  float* v;
  float* vmax;
  bf16* p16;
  detail::AdamCoeffs c;
  detail::AdamScalars s;
};

template <int F>
DESCENT_ALWAYS_INLINE void adam_body(const AdamArgs& a, std::int64_t begin, std::int64_t end) {
  // Local copies: the compiler then knows the stores cannot change them.
  const detail::AdamCoeffs c = a.c;
  const detail::AdamScalars s = a.s;
  float* __restrict p = a.p;
  const float* __restrict g = a.g;
  float* __restrict m = a.m;
  float* __restrict v = a.v;
  float* __restrict vmax = a.vmax;
  for (std::int64_t i = begin; i < end; ++i) {
    float unused = 0.0f;
    detail::adam_one<F>(p[i], m[i], v[i], (F & detail::kAdamAmsgrad) ? vmax[i] : unused, g[i], c,
                        s);
  }
  if (a.p16 != nullptr) {
    for (std::int64_t i = begin; i < end; ++i) a.p16[i] = to_bf16(p[i]);
  }
}

DESCENT_ISA_DISPATCH(adam_range, adam_body,
                     (const AdamArgs& a, std::int64_t begin, std::int64_t end), (a, begin, end))

}  // namespace

void adam_update(const Context& ctx, VectorView<float> params, VectorView<const float> grads,
                 VectorView<float> exp_avg, VectorView<float> exp_avg_sq,
                 VectorView<float> max_exp_avg_sq, const AdamOptions& o, const AdamStep& step) {
  auto& scalars = *reinterpret_cast<detail::AdamScalars*>(step.scalars);
  const bool skipped = step.found_inf != nullptr && *step.found_inf != 0;
  detail::adam_begin_step(scalars, *step.lr_device, o.beta1, o.beta2, skipped);
  if (skipped) return;
  const float scale =
      step.grad_scale * (step.grad_scale_device != nullptr ? *step.grad_scale_device : 1.0f);
  const AdamArgs a{params.data,
                   grads.data,
                   exp_avg.data,
                   exp_avg_sq.data,
                   max_exp_avg_sq.data,
                   step.params_bf16.data,
                   {o.beta1, o.beta2, o.eps, o.weight_decay, scale, o.decoupled_weight_decay,
                    o.amsgrad, o.maximize},
                   scalars};
  const std::int64_t n = params.size;
  const int threads = ctx.threads();
  detail::with_adam_flags(detail::adam_flags(a.c), [&](auto flags) {
    constexpr int F = decltype(flags)::value;
#pragma omp parallel num_threads(threads)
    {
      std::int64_t begin = 0, end = 0;
      thread_range(n, omp_get_thread_num(), omp_get_num_threads(), begin, end);
      if (begin < end) adam_range<F>(a, begin, end);
    }
  });
}

namespace {
// Elements per chunk of the norm's reduction: chunks are summed in index order whatever the
// thread count, so the norm is the same bit for bit on any number of threads.
constexpr std::int64_t kNormChunk = 1 << 14;
constexpr int kLanes = 8;

// Σ g² (F = 0) or max |g| (F = 1, NaN wins) over [begin, end) in double: kLanes independent
// accumulators (element i goes to lane i % kLanes), combined in lane order: a fixed order that
// vectorises.
template <int F>
DESCENT_ALWAYS_INLINE double norm_body(const float* g, std::int64_t begin, std::int64_t end) {
  double lane[kLanes] = {};
  std::int64_t i = begin;
  for (; i + kLanes <= end; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const double x = static_cast<double>(g[i + k]);
      if constexpr (F == 1) {
        const double a = x < 0.0 ? -x : x;
        lane[k] = (a > lane[k] || a != a) ? a : lane[k];
      } else {
        lane[k] += x * x;
      }
    }
  }
  for (int k = 0; i < end; ++i, ++k) {
    const double x = static_cast<double>(g[i]);
    if constexpr (F == 1) {
      const double a = x < 0.0 ? -x : x;
      lane[k] = (a > lane[k] || a != a) ? a : lane[k];
    } else {
      lane[k] += x * x;
    }
  }
  double acc = 0.0;
  for (int k = 0; k < kLanes; ++k) {
    if constexpr (F == 1) {
      acc = (lane[k] > acc || lane[k] != lane[k]) ? lane[k] : acc;
    } else {
      acc += lane[k];
    }
  }
  return acc;
}

DESCENT_ISA_DISPATCH(chunk_norm, norm_body, (const float* g, std::int64_t begin, std::int64_t end),
                     (g, begin, end))
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
    partial[static_cast<std::size_t>(c)] =
        inf_norm ? chunk_norm<1>(g, c * kNormChunk, end) : chunk_norm<0>(g, c * kNormChunk, end);
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
