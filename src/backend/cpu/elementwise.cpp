// CPU elementwise ops: SGD over the flat parameter buffer, initialisation, fills, conversions.
#include <cmath>
#include <type_traits>

#include "backend/backend.hpp"
#include "math/philox.hpp"
#include "math/sgd.hpp"

namespace descent::cpu {

void sgd_update(const Context& ctx, VectorView<float> params, VectorView<const float> grads,
                VectorView<float> momentum, const SgdOptions& o, const SgdStep& step) {
  if (step.found_inf != nullptr && *step.found_inf != 0) return;
  const detail::SgdCoeffs c{step.lr_device != nullptr ? *step.lr_device : o.lr,
                            o.momentum,
                            o.dampening,
                            o.weight_decay,
                            step.grad_scale * (step.grad_scale_device != nullptr
                                                   ? *step.grad_scale_device
                                                   : 1.0f),
                            o.nesterov,
                            o.maximize,
                            step.first_step};
  float* p = params.data;
  float* m = momentum.data;
  const float* g = grads.data;
  bf16* p16 = step.params_bf16.data;
  const std::int64_t n = params.size;
  const int threads = ctx.threads();
  // The options are fixed for the whole pass: one loop per option set, so each vectorises.
  detail::with_sgd_flags(detail::sgd_flags(c), [&](auto flags) {
    constexpr int F = decltype(flags)::value;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (std::int64_t i = 0; i < n; ++i) {
      // A local copy: the compiler then knows the stores to p and m cannot change it.
      const detail::SgdCoeffs k = c;
      float unused = 0.0f;
      detail::sgd_one<F>(p[i], (F & detail::kSgdMomentum) ? m[i] : unused, g[i], k);
      if (p16 != nullptr) p16[i] = to_bf16(p[i]);
    }
  });
}

void fill_uniform(const Context& ctx, VectorView<float> out, float lo, float hi,
                  std::uint64_t seed, std::uint64_t offset) {
#pragma omp parallel for num_threads(ctx.threads()) schedule(static)
  for (std::int64_t i = 0; i < out.size; ++i) {
    out.data[i] = detail::uniform_in(lo, hi, detail::uniform01(seed, offset + static_cast<std::uint64_t>(i)));
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
