// The fused optimizer updates on the GPU, SGD and Adam/AdamW, and gradient-norm clipping. Both
// updates are one pass over the flat buffers through the same tile split (for_each_tile). SGD
// reads params, grads and momentum and writes them with the bf16 weight copy. Adam: a one-thread
// kernel counts the update and computes its bias corrections on the device (so a replayed graph
// follows the count), then one pass reads params, grads and both moments with 16-byte loads and
// writes params, moments and the bf16 copy. Clipping: per-block partial sums in a fixed grid,
// summed in a fixed order by one block; the coefficient stays on the device.
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/math/adam.hpp"
#include "kernels/math/sgd.hpp"

namespace descent::cuda {

namespace {

// ---------------------------------------------------------------- SGD

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

// One SGD element, or a tile of four (for_each_tile).
struct SgdOp {
  SgdPointers p;
  detail::SgdCoeffs c;
  __device__ void element(std::int64_t i) const { sgd_element(p, c, i); }
  __device__ void tile(std::int64_t i) const {
    float4 w = reinterpret_cast<float4*>(p.params)[i];
    const float4 g = reinterpret_cast<const float4*>(p.grads)[i];
    auto* mom4 = reinterpret_cast<float4*>(p.momentum);
    float4 m = mom4 ? mom4[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    detail::sgd_one(w.x, m.x, g.x, c);
    detail::sgd_one(w.y, m.y, g.y, c);
    detail::sgd_one(w.z, m.z, g.z, c);
    detail::sgd_one(w.w, m.w, g.w, c);
    reinterpret_cast<float4*>(p.params)[i] = w;
    if (mom4) mom4[i] = m;
    if (p.params_bf16) store_bf16x4(p.params_bf16 + 4 * i, w);
  }
};

template <bool Vec>
__global__ void __launch_bounds__(kThreads)
    sgd_update_kernel(SgdPointers p, detail::SgdCoeffs c, std::int64_t n) {
  // A skipped step (a non-finite loss) must leave every buffer untouched.
  if (p.found_inf && *p.found_inf != 0) return;
  if (p.lr_device) c.lr = *p.lr_device;
  if (p.first) c.first_step = *p.first != 0;
  if (p.grad_scale_device) c.grad_scale = c.grad_scale * *p.grad_scale_device;
  for_each_tile<Vec>(SgdOp{p, c}, n);
}

// One thread, before the update: every block of the update must read the same first-step flag,
// so it is decided here (the first update applied, see SgdStep) and not by the update itself.
__global__ void sgd_begin_kernel(std::int32_t* started, const std::int32_t* found_inf) {
  if (found_inf && *found_inf != 0) return;
  started[1] = started[0] == 0 ? 1 : 0;
  started[0] = 1;
}

// ---------------------------------------------------------------- Adam, clipping

struct AdamPointers {
  float* params;
  const float* grads;
  float* exp_avg;
  float* exp_avg_sq;
  float* max_exp_avg_sq;  // null unless amsgrad
  bf16* params_bf16;      // null for an fp32 model
  const std::int32_t* found_inf;
  const float* grad_scale_device;
  const detail::AdamScalars* scalars;
};

__global__ void adam_begin_kernel(detail::AdamScalars* s, const float* lr, float beta1, float beta2,
                                  const std::int32_t* found_inf) {
  detail::adam_begin_step(*s, *lr, beta1, beta2, found_inf != nullptr && *found_inf != 0);
}

__device__ inline void adam_element(const AdamPointers& p, const detail::AdamCoeffs& c,
                                    const detail::AdamScalars& s, std::int64_t i) {
  float w = p.params[i], m = p.exp_avg[i], v = p.exp_avg_sq[i];
  float vmax = p.max_exp_avg_sq ? p.max_exp_avg_sq[i] : 0.0f;
  detail::adam_one(w, m, v, vmax, p.grads[i], c, s);
  p.params[i] = w;
  p.exp_avg[i] = m;
  p.exp_avg_sq[i] = v;
  if (p.max_exp_avg_sq) p.max_exp_avg_sq[i] = vmax;
  if (p.params_bf16) p.params_bf16[i] = to_bf16(w);
}

// One Adam element, or a tile of four (for_each_tile).
struct AdamOp {
  AdamPointers p;
  detail::AdamCoeffs c;
  detail::AdamScalars s;
  __device__ void element(std::int64_t i) const { adam_element(p, c, s, i); }
  __device__ void tile(std::int64_t i) const {
    auto* w4 = reinterpret_cast<float4*>(p.params);
    auto* m4 = reinterpret_cast<float4*>(p.exp_avg);
    auto* v4 = reinterpret_cast<float4*>(p.exp_avg_sq);
    auto* x4 = reinterpret_cast<float4*>(p.max_exp_avg_sq);
    float4 w = w4[i], m = m4[i], v = v4[i];
    const float4 g = reinterpret_cast<const float4*>(p.grads)[i];
    float4 x = x4 ? x4[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    detail::adam_one(w.x, m.x, v.x, x.x, g.x, c, s);
    detail::adam_one(w.y, m.y, v.y, x.y, g.y, c, s);
    detail::adam_one(w.z, m.z, v.z, x.z, g.z, c, s);
    detail::adam_one(w.w, m.w, v.w, x.w, g.w, c, s);
    w4[i] = w;
    m4[i] = m;
    v4[i] = v;
    if (x4) x4[i] = x;
    if (p.params_bf16) store_bf16x4(p.params_bf16 + 4 * i, w);
  }
};

template <bool Vec>
__global__ void __launch_bounds__(kThreads)
    adam_update_kernel(AdamPointers p, detail::AdamCoeffs c, std::int64_t n) {
  // A skipped step (a non-finite loss) must leave every buffer untouched.
  if (p.found_inf && *p.found_inf != 0) return;
  if (p.grad_scale_device) c.grad_scale = c.grad_scale * *p.grad_scale_device;
  for_each_tile<Vec>(AdamOp{p, c, *p.scalars}, n);
}

// A fixed grid, whatever the device: the partial sums, and so the norm, are the same bits on
// every run and every GPU.
constexpr int kNormBlocks = 1024;

// The 2-norm squares and sums in double at every level, as the CPU does: in fp32 the sum of
// squares overflows to inf for gradients near 1e19 (or many near 1e18) whose norm is finite,
// and the backends would clip differently. The inf-norm (a max, exact in any type) is carried
// in double too, so that one partials buffer serves both.
template <bool InfNorm>
__global__ void __launch_bounds__(kThreads)
    norm_partials_kernel(const float* __restrict__ g, std::int64_t n, double* partials) {
  __shared__ double shared[kThreads];
  double acc = 0.0;
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) {
    const double a = fabs(static_cast<double>(g[i]));
    if constexpr (InfNorm) {
      acc = (a > acc || a != a) ? a : acc;
    } else {
      acc = fma(a, a, acc);
    }
  }
  if constexpr (InfNorm) {
    shared[threadIdx.x] = acc;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s >>= 1) {
      if (static_cast<int>(threadIdx.x) < s) {
        const double o = shared[threadIdx.x + s], a = shared[threadIdx.x];
        shared[threadIdx.x] = (o > a || o != o) ? o : a;
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) partials[blockIdx.x] = shared[0];
  } else {
    const double sum = block_sum<kThreads>(acc, shared);
    if (threadIdx.x == 0) partials[blockIdx.x] = sum;
  }
}

template <bool InfNorm>
__global__ void __launch_bounds__(kThreads)
    norm_finish_kernel(const double* partials, int count, float max_norm, float* norm,
                       float* scale) {
  __shared__ double shared[kThreads];
  double acc = 0.0;
  for (int i = threadIdx.x; i < count; i += kThreads) {
    const double v = partials[i];
    if constexpr (InfNorm) {
      acc = (v > acc || v != v) ? v : acc;
    } else {
      acc += v;
    }
  }
  double total;
  if constexpr (InfNorm) {
    shared[threadIdx.x] = acc;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s >>= 1) {
      if (static_cast<int>(threadIdx.x) < s) {
        const double o = shared[threadIdx.x + s], a = shared[threadIdx.x];
        shared[threadIdx.x] = (o > a || o != o) ? o : a;
      }
      __syncthreads();
    }
    total = shared[0];
  } else {
    total = block_sum<kThreads>(acc, shared);
  }
  if (threadIdx.x == 0) {
    const float value = static_cast<float>(InfNorm ? total : sqrt(total));
    *norm = value;
    // torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1 (NaN stays NaN).
    const float coef = max_norm / (value + 1e-6f);
    *scale = (coef < 1.0f || coef != coef) ? coef : 1.0f;
  }
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
  launch_tiles(vec, sgd_update_kernel<true>, sgd_update_kernel<false>, n, stream, p, c, n);
  DESCENT_LAUNCH_CHECK(sgd_update_kernel);
}

void adam_update(const Context& ctx, VectorView<float> params, VectorView<const float> grads,
                 VectorView<float> exp_avg, VectorView<float> exp_avg_sq,
                 VectorView<float> max_exp_avg_sq, const AdamOptions& o, const AdamStep& step) {
  const std::int64_t n = params.size;
  cudaStream_t stream = stream_of(ctx);
  auto* scalars = reinterpret_cast<detail::AdamScalars*>(step.scalars);
  adam_begin_kernel<<<1, 1, 0, stream>>>(scalars, step.lr_device, o.beta1, o.beta2, step.found_inf);
  DESCENT_LAUNCH_CHECK(adam_begin_kernel);
  const detail::AdamCoeffs c{o.beta1,        o.beta2,         o.eps,
                             o.weight_decay, step.grad_scale, o.decoupled_weight_decay,
                             o.amsgrad,      o.maximize};
  const AdamPointers p{params.data,
                       grads.data,
                       exp_avg.data,
                       exp_avg_sq.data,
                       o.amsgrad ? max_exp_avg_sq.data : nullptr,
                       step.params_bf16.empty() ? nullptr : step.params_bf16.data,
                       step.found_inf,
                       step.grad_scale_device,
                       scalars};
  const bool vec = alignment_of(p.params) >= 16 && alignment_of(p.grads) >= 16 &&
                   alignment_of(p.exp_avg) >= 16 && alignment_of(p.exp_avg_sq) >= 16 &&
                   (!p.max_exp_avg_sq || alignment_of(p.max_exp_avg_sq) >= 16) &&
                   (!p.params_bf16 || alignment_of(p.params_bf16) >= 8);
  launch_tiles(vec, adam_update_kernel<true>, adam_update_kernel<false>, n, stream, p, c, n);
  DESCENT_LAUNCH_CHECK(adam_update_kernel);
}

void clip_grad_norm(const Context& ctx, VectorView<const float> grads, float max_norm,
                    float norm_type, float* norm, float* scale) {
  const std::int64_t n = grads.size;
  auto* partials = static_cast<double*>(scratch(ctx, sizeof(double) * kNormBlocks));
  cudaStream_t stream = stream_of(ctx);
  if (isinf(norm_type)) {
    norm_partials_kernel<true><<<kNormBlocks, kThreads, 0, stream>>>(grads.data, n, partials);
    DESCENT_LAUNCH_CHECK(norm_partials_kernel);
    norm_finish_kernel<true>
        <<<1, kThreads, 0, stream>>>(partials, kNormBlocks, max_norm, norm, scale);
  } else {
    norm_partials_kernel<false><<<kNormBlocks, kThreads, 0, stream>>>(grads.data, n, partials);
    DESCENT_LAUNCH_CHECK(norm_partials_kernel);
    norm_finish_kernel<false>
        <<<1, kThreads, 0, stream>>>(partials, kNormBlocks, max_norm, norm, scale);
  }
  DESCENT_LAUNCH_CHECK(norm_finish_kernel);
}

}  // namespace descent::cuda
