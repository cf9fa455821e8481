// The low-level ops of a training step: dense layers, losses, SGD and parameter initialisation.
//
// Every op validates shapes, devices and arguments, then runs on the Context's backend. All
// buffers passed to one op must live on the Context's device, and an output may not share memory
// with another argument (ArgumentError naming it) unless the op says it works in place. Ops are
// queued on the Context's stream: on the GPU they return before the work is done (read results
// with Buffer::to_host or Context::synchronize).
#pragma once

#include <cstdint>

#include "descent/bf16.hpp"
#include "descent/buffer.hpp"
#include "descent/context.hpp"
#include "descent/export.h"

DESCENT_API_BEGIN

namespace descent {

enum class Activation { identity, relu, sigmoid, tanh, gelu };
// "identity", "relu", "sigmoid", "tanh", "gelu".
const char* to_string(Activation a);
Activation parse_activation(const char* text);

// ---------------------------------------------------------------- dense layer

// y = act(x · wᵀ + b)
//   x [batch, in], w [out, in], b [out] (may be empty: no bias), y [batch, out].
//   pre [batch, out], optional: receives the pre-activation z = x · wᵀ + b. dense_backward
//   needs it for gelu; the other activations' derivatives are computed from y.
void dense_forward(const Context& ctx, MatrixView<const float> x, MatrixView<const float> w,
                   VectorView<const float> b, Activation act, MatrixView<float> y,
                   MatrixView<float> pre = {});

// Gradients of a dense layer given dy = dL/dy:
//   dz = dy ⊙ act'(z)      (from y, or from pre for gelu)
//   dw = dzᵀ · x            [out, in]   (overwritten, or added to when accumulate is true)
//   db = Σ_batch dz          [out]       (optional; same accumulate rule)
//   dx = dz · w             [batch, in] (optional: the first layer needs none)
// dx has the element type T of the layer's activations; dw and db are fp32 in every precision.
template <class T>
struct DenseGradsOf {
  MatrixView<T> dx{};
  MatrixView<float> dw{};
  VectorView<float> db{};
  bool accumulate = false;
};
using DenseGrads = DenseGradsOf<float>;
using DenseGradsBf16 = DenseGradsOf<bf16>;

// y is the forward output and pre the forward pre-activation (required for gelu only).
void dense_backward(const Context& ctx, MatrixView<const float> x, MatrixView<const float> w,
                    MatrixView<const float> y, MatrixView<const float> pre,
                    MatrixView<const float> dy, Activation act, const DenseGrads& grads);

// bf16 variants (GPU: bf16 tensor cores with fp32 accumulation; CPU: computed in fp32 from the
// bf16 values). Bias, pre-activation and gradients of weights stay fp32.
void dense_forward(const Context& ctx, MatrixView<const bf16> x, MatrixView<const bf16> w,
                   VectorView<const float> b, Activation act, MatrixView<bf16> y,
                   MatrixView<float> pre = {});
void dense_backward(const Context& ctx, MatrixView<const bf16> x, MatrixView<const bf16> w,
                    MatrixView<const bf16> y, MatrixView<const float> pre,
                    MatrixView<const bf16> dy, Activation act, const DenseGradsBf16& grads);

// ---------------------------------------------------------------- losses
//
// Each loss computes its mean value and d(loss)/d(input) in one pass, with PyTorch's
// reduction='mean' semantics. The value is written to loss[0] on the Context's device (added
// to it when accumulate is true) so a training step never waits for the host; read it with
// Buffer::to_host. grad_scale multiplies the gradient (not the value), e.g. for loss scaling.
struct LossOutput {
  VectorView<float> loss{};  // one element, on the device
  MatrixView<float> grad{};  // same shape as the prediction
  bool accumulate = false;
  float grad_scale = 1.0f;
  // Rows of the whole batch the mean is taken over; 0: the prediction's own rows. A shard of a
  // larger batch (data-parallel training) passes the whole batch's rows (>= its own): its value
  // and gradient are then its share of the whole batch's mean, so that the shards' values and
  // gradients summed over the ranks are the whole batch's, and each row's gradient has the bits
  // it would have in the whole batch.
  std::int64_t mean_rows = 0;
};

// mean over all elements of (pred - target)², as torch.nn.MSELoss.
void mse_loss(const Context& ctx, MatrixView<const float> pred, MatrixView<const float> target,
              const LossOutput& out);

// mean over rows of -log softmax(logits)[label], as torch.nn.CrossEntropyLoss on logits with
// integer class labels in [0, classes). Stable for any finite logits. A label out of range
// throws ArgumentError on every device, with nothing written; on a GPU that check reads its
// answer back, so the call waits for the work queued before it (the Trainer checks its labels
// once per dataset instead, and steps without waiting).
void softmax_cross_entropy(const Context& ctx, MatrixView<const float> logits,
                           VectorView<const std::int32_t> labels, const LossOutput& out);

// mean over all elements of the binary cross-entropy of sigmoid(logits) with targets in [0,1],
// as torch.nn.BCEWithLogitsLoss. A target outside [0, 1] (or NaN) throws ArgumentError, checked
// as softmax_cross_entropy checks its labels.
void sigmoid_bce(const Context& ctx, MatrixView<const float> logits,
                 MatrixView<const float> targets, const LossOutput& out);

// ---------------------------------------------------------------- optimizer

// torch.optim.SGD's options, with the same meaning.
struct SgdOptions {
  float lr = 0.01f;
  float momentum = 0.0f;
  float dampening = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
  bool maximize = false;
};

// Throws ArgumentError naming the option when it breaks torch.optim.SGD's rules (lr, momentum
// and weight_decay finite and >= 0; nesterov needs momentum > 0 and dampening == 0).
void validate(const SgdOptions& options);

// One SGD step over a flat parameter buffer, exactly as torch.optim.SGD (foreach=False):
//   g = grad * grad_scale;  g = -g if maximize;  g += weight_decay * p
//   if momentum != 0: buf = g on the first step, else buf = momentum * buf + (1 - dampening) * g
//                     g = g + momentum * buf if nesterov else buf
//   p -= lr * g
// momentum may be empty when options.momentum == 0. If found_inf is set (a device int), the
// update is skipped when *found_inf != 0 (mixed precision). If params_bf16 is set, it receives
// the updated parameters rounded to bf16 in the same pass. If lr_device is set (one float on the
// device) it overrides options.lr, so a captured CUDA graph follows a learning-rate schedule.
struct SgdStep {
  // Whether this is the first update (the momentum buffer becomes the gradient, as torch).
  bool first_step = false;
  // Optional device int32[2] that decides first_step on the device instead: [0] != 0 once an
  // update was applied (one not skipped through found_inf), and the update sets it; [1] is
  // written with the flag the update used. A step skipped for a non-finite loss then leaves the
  // next update first, as in torch, inside a captured graph too.
  std::int32_t* momentum_started = nullptr;
  float grad_scale = 1.0f;
  // Optional device float multiplying grad_scale (gradient clipping's coefficient).
  const float* grad_scale_device = nullptr;
  const std::int32_t* found_inf = nullptr;
  const float* lr_device = nullptr;
  VectorView<bf16> params_bf16{};
};
void sgd_update(const Context& ctx, VectorView<float> params, VectorView<const float> grads,
                VectorView<float> momentum, const SgdOptions& options, const SgdStep& step = {});

// Adam and AdamW with torch.optim.Adam / AdamW's options and defaults.
struct AdamOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  bool amsgrad = false;
  bool maximize = false;
  bool decoupled_weight_decay = false;  // AdamW: p -= lr · weight_decay · p, not g += wd · p
};

// Throws ArgumentError naming the option when it breaks torch.optim.Adam's rules (lr, eps and
// weight_decay finite and >= 0; betas in [0, 1)).
void validate(const AdamOptions& options);

// One Adam/AdamW step over a flat parameter buffer, in the order of PyTorch's fused kernel:
//   t = step + 1 (the update count, a float in scalars[0]; not advanced when skipped)
//   g = grad * grad_scale;  g = -g if maximize
//   AdamW: p -= lr * weight_decay * p        Adam: g += p * weight_decay
//   m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g * g
//   amsgrad: vmax = max(vmax, v), v̂ = vmax; else v̂ = v
//   p -= (lr / (1 - beta1^t)) * m / (sqrt(v̂) / sqrt(1 - beta2^t) + eps)
// scalars: 4 device floats (the update count, then what the update used), zero for a new
// optimizer. max_exp_avg_sq is empty unless amsgrad. found_inf, lr_device, grad_scale_device
// and params_bf16 act as in SgdStep; lr_device is required (the rate is read on the device).
struct AdamStep {
  float grad_scale = 1.0f;
  const float* grad_scale_device = nullptr;
  const std::int32_t* found_inf = nullptr;
  const float* lr_device = nullptr;
  float* scalars = nullptr;
  VectorView<bf16> params_bf16{};
};
void adam_update(const Context& ctx, VectorView<float> params, VectorView<const float> grads,
                 VectorView<float> exp_avg, VectorView<float> exp_avg_sq,
                 VectorView<float> max_exp_avg_sq, const AdamOptions& options,
                 const AdamStep& step);

// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_ over one flat buffer:
// *norm = ||grads||_p (p = 2, or infinity for the largest magnitude) and
// *scale = min(1, max_norm / (*norm + 1e-6)), both device floats, computed in a fixed order
// (repeat runs are bit-identical); the gradients are not touched: an optimizer's update reads
// `scale` (grad_scale_device), so no value crosses to the host.
void clip_grad_norm(const Context& ctx, VectorView<const float> grads, float max_norm,
                    float norm_type, float* norm, float* scale);

// ---------------------------------------------------------------- initialisation and helpers

// out[i] = lo + (hi - lo) * u(seed, offset + i), u uniform in [0, 1) from Philox-4x32-10.
// Bit-identical on every backend for the same arguments.
void fill_uniform(const Context& ctx, VectorView<float> out, float lo, float hi, std::uint64_t seed,
                  std::uint64_t offset = 0);

// out[i] = value.
void fill(const Context& ctx, VectorView<float> out, float value);

// Sets *flag (a device int) to 1 if any element of x is NaN or ±inf, else leaves it.
void check_finite(const Context& ctx, VectorView<const float> x, std::int32_t* flag);

// Rounds fp32 to bf16 (round to nearest even) and back.
void convert(const Context& ctx, VectorView<const float> in, VectorView<bf16> out);
void convert(const Context& ctx, VectorView<const bf16> in, VectorView<float> out);

}  // namespace descent

DESCENT_API_END
