// Loss terms of one element or one row, written once for the CPU and the GPU backend; how the
// terms are summed (the reductions, and the precision they run in) stays with each backend.
//
// What is NOT here, and why: each backend's bits are pinned by its tests and by earlier results,
// and the two sides round some steps differently, so only the expressions they already compute
// identically are shared. Changing either side's form would move its last bit:
// - the gradient coefficients (grad_scale / N, 2 / N): the CPU rounds them in one order, the GPU
//   in another (see the backends);
// - the MSE gradient: the CPU multiplies d by one folded coefficient 2/N · grad_scale, the GPU
//   computes 2 d · (grad_scale / N);
// - max(z, 0) in the BCE value: the CPU's std::max passes a NaN through, the GPU's fmaxf turns
//   it into 0 (the value is NaN either way, through z·t), so the caller passes it in;
// - sigmoid(z) in the BCE gradient: the CPU reuses e^{-|z|} (one exp per element), the GPU calls
//   sigmoidf from activation.hpp (a second exp);
// - e^{z - max} in softmax cross-entropy: the CPU uses its vectorisable fast_exp, the GPU expf;
//   the CPU then scales by one reciprocal of the row sum and subtracts the coefficient at the
//   label, where the GPU divides each element by the sum.
#pragma once

#include <cmath>

#include "descent/detail/host_device.hpp"

namespace descent::detail {

// ---- mean squared error: mean (pred - target)², as torch.nn.MSELoss

// d = pred - target, from which the value d² and the gradient 2 d / N are built.
DESCENT_HD inline float mse_residual(float pred, float target) { return pred - target; }

// d², squared in the precision the backend sums in (Acc: double on the CPU, float on the GPU).
template <class Acc>
DESCENT_HD inline Acc mse_value(float d) {
  return static_cast<Acc>(d) * static_cast<Acc>(d);
}

// ---- binary cross-entropy on logits, as torch.nn.BCEWithLogitsLoss:
//      max(z, 0) - z t + log1p(e^{-|z|}), gradient (sigmoid(z) - t) / N

// e^{-|z|}: in (0, 1], so it never overflows.
DESCENT_HD inline float bce_exp(float z) { return expf(-fabsf(z)); }

// The value of one element, given relu_z = max(z, 0) as the backend computes it and
// e = bce_exp(z).
DESCENT_HD inline float bce_value(float relu_z, float z, float t, float e) {
  return relu_z - z * t + log1pf(e);
}

// The gradient of one element: (sigmoid(z) - t) · coeff.
DESCENT_HD inline float bce_grad(float sigmoid_z, float t, float coeff) {
  return (sigmoid_z - t) * coeff;
}

// ---- softmax cross-entropy on logits with integer labels, as torch.nn.CrossEntropyLoss

// -log softmax(z)[label] of one row from m = max z and s = Σ e^{z - m}: log s - (z[label] - m),
// taken in Acc (double on the CPU, float on the GPU). Exact when the label holds the max, even
// for logits of 1e4 where m + log s would round the loss away.
template <class Acc>
DESCENT_HD inline Acc softmax_ce_row_loss(float s, float z_label, float m) {
  return static_cast<Acc>(logf(s)) - (static_cast<Acc>(z_label) - static_cast<Acc>(m));
}

}  // namespace descent::detail
