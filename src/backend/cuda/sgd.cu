// The fused SGD step over the flat parameter buffer: one pass reads params, grads and momentum,
// writes params, momentum and (in mixed precision) the bf16 weight copy.
#include "backend/cuda/elementwise.cuh"
#include "math/sgd.hpp"

namespace descent::cuda {

namespace {

struct SgdPointers {
  float* params;
  const float* grads;
  float* momentum;  // null when momentum == 0
  bf16* params_bf16;
  const std::int32_t* found_inf;
  const float* lr_device;
  const float* grad_scale_device;  // null: grad_scale alone
  const std::int32_t* first;       // null: c.first_step; else *first (sgd_begin_kernel's)
};

__device__ inline void sgd_element(const SgdPointers& p, const detail::SgdCoeffs& c,
                                   std::int64_t i) {
  float param = p.params[i];
  float m = p.momentum ? p.momentum[i] : 0.0f;
  detail::sgd_one(param, m, p.grads[i], c);
  p.params[i] = param;
  if (p.momentum) p.momentum[i] = m;
  if (p.params_bf16) p.params_bf16[i] = to_bf16(param);
}

// Vec: every pointer is 16-byte aligned (8 for the bf16 copy), so four elements move per load.
// The n % 4 tail is done element-wise by the first threads.
template <bool Vec>
__global__ void __launch_bounds__(kThreads)
    sgd_update_kernel(SgdPointers p, detail::SgdCoeffs c, std::int64_t n) {
  // A skipped step (inf/NaN gradients under loss scaling) must leave every buffer untouched.
  if (p.found_inf && *p.found_inf != 0) return;
  if (p.lr_device) c.lr = *p.lr_device;
  if (p.first) c.first_step = *p.first != 0;
  if (p.grad_scale_device) c.grad_scale = c.grad_scale * *p.grad_scale_device;
  if constexpr (Vec) {
    const std::int64_t n4 = n / 4;
    auto* params4 = reinterpret_cast<float4*>(p.params);
    const auto* grads4 = reinterpret_cast<const float4*>(p.grads);
    auto* mom4 = reinterpret_cast<float4*>(p.momentum);
    for (std::int64_t i = global_thread(); i < n4; i += grid_stride()) {
      float4 w = params4[i];
      const float4 g = grads4[i];
      float4 m = mom4 ? mom4[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      detail::sgd_one(w.x, m.x, g.x, c);
      detail::sgd_one(w.y, m.y, g.y, c);
      detail::sgd_one(w.z, m.z, g.z, c);
      detail::sgd_one(w.w, m.w, g.w, c);
      params4[i] = w;
      if (mom4) mom4[i] = m;
      if (p.params_bf16) store_bf16x4(p.params_bf16 + 4 * i, w);
    }
    const std::int64_t t = global_thread();
    if (t < n - n4 * 4) sgd_element(p, c, n4 * 4 + t);
  } else {
    for (std::int64_t i = global_thread(); i < n; i += grid_stride()) sgd_element(p, c, i);
  }
}

// One thread, before the update: every block of the update must read the same first-step flag,
// so it is decided here (the first update applied, see SgdStep) and not by the update itself.
__global__ void sgd_begin_kernel(std::int32_t* started, const std::int32_t* found_inf) {
  if (found_inf && *found_inf != 0) return;
  started[1] = started[0] == 0 ? 1 : 0;
  started[0] = 1;
}

}  // namespace

void sgd_update(const Context& ctx, VectorView<float> params, VectorView<const float> grads,
                VectorView<float> momentum, const SgdOptions& options, const SgdStep& step) {
  const std::int64_t n = params.size;
  if (n == 0) return;
  const detail::SgdCoeffs c{options.lr,           options.momentum, options.dampening,
                            options.weight_decay, step.grad_scale,  options.nesterov,
                            options.maximize,     step.first_step};
  const SgdPointers p{params.data,
                      grads.data,
                      options.momentum != 0.0f ? momentum.data : nullptr,
                      step.params_bf16.empty() ? nullptr : step.params_bf16.data,
                      step.found_inf,
                      step.lr_device,
                      step.grad_scale_device,
                      step.momentum_started ? step.momentum_started + 1 : nullptr};
  const bool vec = alignment_of(p.params) >= 16 && alignment_of(p.grads) >= 16 &&
                   (!p.momentum || alignment_of(p.momentum) >= 16) &&
                   (!p.params_bf16 || alignment_of(p.params_bf16) >= 8);
  cudaStream_t stream = stream_of(ctx);
  if (step.momentum_started) {
    sgd_begin_kernel<<<1, 1, 0, stream>>>(step.momentum_started, step.found_inf);
    DESCENT_LAUNCH_CHECK(sgd_begin_kernel);
  }
  if (vec) {
    sgd_update_kernel<true><<<grid_for((n + 3) / 4), kThreads, 0, stream>>>(p, c, n);
  } else {
    sgd_update_kernel<false><<<grid_for(n), kThreads, 0, stream>>>(p, c, n);
  }
  DESCENT_LAUNCH_CHECK(sgd_update_kernel);
}

}  // namespace descent::cuda
