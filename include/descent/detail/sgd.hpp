// The SGD update of one parameter, written once for the CPU and the GPU backend.
#pragma once

#include "descent/detail/host_device.hpp"

namespace descent::detail {

struct SgdCoeffs {
  float lr, momentum, dampening, weight_decay, grad_scale;
  bool nesterov, maximize, first_step;
};

// Updates p (and its momentum buffer m) as torch.optim.SGD's single-tensor path does; the
// operations are kept in PyTorch's order so results match it to the last bit in fp32.
DESCENT_HD inline void sgd_one(float& p, float& m, float grad, const SgdCoeffs& c) {
  float g = grad * c.grad_scale;
  if (c.maximize) g = -g;
  if (c.weight_decay != 0.0f) g = g + c.weight_decay * p;
  if (c.momentum != 0.0f) {
    if (c.first_step) {
      m = g;
    } else {
      m = m * c.momentum + (1.0f - c.dampening) * g;
    }
    g = c.nesterov ? g + c.momentum * m : m;
  }
  p = p - c.lr * g;
}

}  // namespace descent::detail
