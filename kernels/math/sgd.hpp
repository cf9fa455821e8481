// The SGD update of one parameter, written once for the CPU and the GPU backend.
#pragma once

#include <type_traits>

#include "descent/detail/host_device.hpp"

namespace descent::detail {

struct SgdCoeffs {
  float lr, momentum, dampening, weight_decay, grad_scale;
  bool nesterov, maximize, first_step;
};

// Option bits for sgd_one's compile-time form (see sgd_flags).
enum SgdFlag : int {
  kSgdMaximize = 1,
  kSgdDecay = 2,
  kSgdMomentum = 4,
  kSgdFirst = 8,
  kSgdNesterov = 16,
  kSgdFlagCount = 5
};

DESCENT_HD inline int sgd_flags(const SgdCoeffs& c) {
  return (c.maximize ? kSgdMaximize : 0) | (c.weight_decay != 0.0f ? kSgdDecay : 0) |
         (c.momentum != 0.0f ? kSgdMomentum : 0) | (c.first_step ? kSgdFirst : 0) |
         (c.nesterov ? kSgdNesterov : 0);
}

// Updates p (and its momentum buffer m) as torch.optim.SGD's single-tensor path does; the
// operations are kept in PyTorch's order so results match it to the last bit in fp32.
// kFlags >= 0 fixes the options at compile time (then they must equal sgd_flags(c)), which
// lets a CPU loop vectorise; kFlags = -1 reads them from c.
template <int kFlags = -1>
DESCENT_HD inline void sgd_one(float& p, float& m, float grad, const SgdCoeffs& c) {
  const int f = kFlags >= 0 ? kFlags : sgd_flags(c);
  float g = grad * c.grad_scale;
  if (f & kSgdMaximize) g = -g;
  if (f & kSgdDecay) g = g + c.weight_decay * p;
  if (f & kSgdMomentum) {
    if (f & kSgdFirst) {
      m = g;
    } else {
      m = m * c.momentum + (1.0f - c.dampening) * g;
    }
    g = (f & kSgdNesterov) ? g + c.momentum * m : m;
  }
  p = p - c.lr * g;
}

// Calls fn(std::integral_constant<int, flags>) for run-time flags, one instantiation each.
template <int F = 0, int Bit = 0, class Fn>
inline void with_sgd_flags(int flags, Fn&& fn) {
  if constexpr (Bit == kSgdFlagCount) {
    fn(std::integral_constant<int, F>{});
  } else if (flags & (1 << Bit)) {
    with_sgd_flags<F | (1 << Bit), Bit + 1>(flags, fn);
  } else {
    with_sgd_flags<F, Bit + 1>(flags, fn);
  }
}

}  // namespace descent::detail
