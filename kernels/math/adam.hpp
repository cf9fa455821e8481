// The Adam/AdamW update of one parameter and the per-step bias corrections, written once for the
// CPU and the GPU backend. The order of operations is that of PyTorch's fused Adam kernel
// (float arithmetic throughout, the step count a float), so `AdamW(fused=True)` is the peer.
#pragma once

#include <type_traits>

#include "descent/detail/host_device.hpp"

#if !defined(__CUDACC__)
#include <cmath>
#endif

namespace descent::detail {

// The optimizer's device-resident scalars: the count of updates applied (a float, as PyTorch's
// state_steps) and what the next update uses. Written by adam_begin_step, read by adam_one.
struct AdamScalars {
  float step;                   // updates applied so far
  float step_size;              // lr / (1 - beta1^t)
  float bias_correction2_sqrt;  // sqrt(1 - beta2^t)
  float lr;                     // the learning rate of this update
};
static_assert(sizeof(AdamScalars) == 4 * sizeof(float), "kAdamScalarFloats in backend.hpp");

struct AdamCoeffs {
  float beta1, beta2, eps, weight_decay, grad_scale;
  bool decoupled;  // AdamW: decay the parameter itself, not through the gradient
  bool amsgrad, maximize;
};

DESCENT_HD inline float adam_pow(float base, float exponent) {
#if defined(__CUDA_ARCH__)
  return powf(base, exponent);
#else
  return std::pow(base, exponent);
#endif
}

DESCENT_HD inline float adam_sqrt(float x) {
#if defined(__CUDA_ARCH__)
  return sqrtf(x);
#else
  return std::sqrt(x);
#endif
}

// Counts the update about to be applied (unless it is skipped: found_inf) and computes its bias
// corrections from the new count t: step_size = lr / (1 - beta1^t), sqrt(1 - beta2^t).
DESCENT_HD inline void adam_begin_step(AdamScalars& s, float lr, float beta1, float beta2,
                                       bool skipped) {
  if (skipped) return;
  s.step += 1.0f;
  s.lr = lr;
  const float bias_correction1 = 1.0f - adam_pow(beta1, s.step);
  s.step_size = lr / bias_correction1;
  s.bias_correction2_sqrt = adam_sqrt(1.0f - adam_pow(beta2, s.step));
}

// Option bits for adam_one's compile-time form (see adam_flags).
enum AdamFlag : int {
  kAdamMaximize = 1,
  kAdamDecay = 2,
  kAdamDecoupled = 4,
  kAdamAmsgrad = 8,
  kAdamFlagCount = 4
};

DESCENT_HD inline int adam_flags(const AdamCoeffs& c) {
  return (c.maximize ? kAdamMaximize : 0) | (c.weight_decay != 0.0f ? kAdamDecay : 0) |
         (c.decoupled ? kAdamDecoupled : 0) | (c.amsgrad ? kAdamAmsgrad : 0);
}

// Updates p and its moments m, v (and the running maximum vmax when amsgrad) with the gradient.
// kFlags >= 0 fixes the options at compile time (then they must equal adam_flags(c)), which
// lets a CPU loop vectorise; kFlags = -1 reads them from c.
template <int kFlags = -1>
DESCENT_HD inline void adam_one(float& p, float& m, float& v, float& vmax, float grad,
                                const AdamCoeffs& c, const AdamScalars& s) {
  const int f = kFlags >= 0 ? kFlags : adam_flags(c);
  float g = grad * c.grad_scale;
  if (f & kAdamMaximize) g = -g;
  if (f & kAdamDecay) {
    if (f & kAdamDecoupled) {
      p = p - s.lr * c.weight_decay * p;
    } else {
      g = g + p * c.weight_decay;
    }
  }
  m = c.beta1 * m + (1.0f - c.beta1) * g;
  v = c.beta2 * v + (1.0f - c.beta2) * g * g;
  float second = v;
  if (f & kAdamAmsgrad) {
    vmax = (vmax != vmax || vmax > v) ? vmax : v;  // torch.maximum: a NaN on either side wins
    second = vmax;
  }
  const float denom = adam_sqrt(second) / s.bias_correction2_sqrt + c.eps;
  p = p - s.step_size * m / denom;
}

// Calls fn(std::integral_constant<int, flags>) for run-time flags, one instantiation each.
template <int F = 0, int Bit = 0, class Fn>
inline void with_adam_flags(int flags, Fn&& fn) {
  if constexpr (Bit == kAdamFlagCount) {
    fn(std::integral_constant<int, F>{});
  } else if (flags & (1 << Bit)) {
    with_adam_flags<F | (1 << Bit), Bit + 1>(flags, fn);
  } else {
    with_adam_flags<F, Bit + 1>(flags, fn);
  }
}

}  // namespace descent::detail
