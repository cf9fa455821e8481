// CPU elementwise ops: SGD over the flat parameter buffer, initialisation, fills, conversions.
#include <omp.h>

#include <cmath>
#include <type_traits>

#include "backend/backend.hpp"
#include "backend/cpu/isa.hpp"
#include "math/philox.hpp"
#include "math/sgd.hpp"

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

void fill_uniform(const Context& ctx, VectorView<float> out, float lo, float hi, std::uint64_t seed,
                  std::uint64_t offset) {
#pragma omp parallel for num_threads(ctx.threads()) schedule(static)
  for (std::int64_t i = 0; i < out.size; ++i) {
    out.data[i] =
        detail::uniform_in(lo, hi, detail::uniform01(seed, offset + static_cast<std::uint64_t>(i)));
  }
}

void fill(const Context& ctx, VectorView<float> out, float value) {
#pragma omp parallel for num_threads(ctx.threads()) schedule(static)
  for (std::int64_t i = 0; i < out.size; ++i) out.data[i] = value;
}

void check_finite(const Context& ctx, VectorView<const float> x, std::int32_t* flag) {
  bool bad = false;
#pragma omp parallel for num_threads(ctx.threads()) schedule(static) reduction(|| : bad)
  for (std::int64_t i = 0; i < x.size; ++i) bad = bad || !std::isfinite(x.data[i]);
  if (bad) *flag = 1;
}

void convert(const Context& ctx, VectorView<const float> in, VectorView<bf16> out) {
#pragma omp parallel for num_threads(ctx.threads()) schedule(static)
  for (std::int64_t i = 0; i < in.size; ++i) out.data[i] = to_bf16(in.data[i]);
}

void convert(const Context& ctx, VectorView<const bf16> in, VectorView<float> out) {
#pragma omp parallel for num_threads(ctx.threads()) schedule(static)
  for (std::int64_t i = 0; i < in.size; ++i) out.data[i] = to_float(in.data[i]);
}

}  // namespace descent::cpu
