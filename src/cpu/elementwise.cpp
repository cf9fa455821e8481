// CPU elementwise ops: SGD over the flat parameter buffer, initialisation, fills, conversions.
#include <cmath>

#include "backend.hpp"
#include "descent/detail/philox.hpp"
#include "descent/detail/sgd.hpp"

namespace descent::cpu {

void sgd_update(const Context& ctx, VectorView<float> params, VectorView<const float> grads,
                VectorView<float> momentum, const SgdOptions& o, const SgdStep& step) {
  if (step.found_inf != nullptr && *step.found_inf != 0) return;
  const detail::SgdCoeffs c{step.lr_device != nullptr ? *step.lr_device : o.lr,
                            o.momentum,
                            o.dampening,
                            o.weight_decay,
                            step.grad_scale,
                            o.nesterov,
                            o.maximize,
                            step.first_step};
  float* p = params.data;
  float* m = momentum.data;
  const float* g = grads.data;
  bf16* p16 = step.params_bf16.data;
#pragma omp parallel for num_threads(ctx.threads()) schedule(static)
  for (std::int64_t i = 0; i < params.size; ++i) {
    float unused = 0.0f;
    detail::sgd_one(p[i], m != nullptr ? m[i] : unused, g[i], c);
    if (p16 != nullptr) p16[i] = to_bf16(p[i]);
  }
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
