// The float64 oracle: naive, obviously-correct implementations of every descent op (test-only).
#pragma once

#include <cstdint>
#include <vector>

#include "descent/ops.hpp"

namespace descent::oracle {

using Vec = std::vector<double>;

// Dense row-major matrix in double.
struct Mat {
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  Vec v;

  Mat() = default;
  Mat(std::int64_t r, std::int64_t c, double fill = 0.0)
      : rows(r), cols(c), v(static_cast<std::size_t>(r * c), fill) {}
  double& at(std::int64_t r, std::int64_t c) { return v[static_cast<std::size_t>(r * cols + c)]; }
  double at(std::int64_t r, std::int64_t c) const {
    return v[static_cast<std::size_t>(r * cols + c)];
  }
};

// act(z) and d act/dz at z; gelu is PyTorch's approximate='tanh'.
double activate(Activation act, double z);
double activate_grad(Activation act, double z);

// y = act(x · wᵀ + b); b empty means no bias.
struct DenseResult {
  Mat y;
  Mat pre;
};
DenseResult dense_forward(const Mat& x, const Mat& w, const Vec& b, Activation act);

// Gradients of a dense layer from dy, with the derivative taken at the pre-activation.
struct DenseGradsResult {
  Mat dx;
  Mat dw;
  Vec db;
};
DenseGradsResult dense_backward(const Mat& x, const Mat& w, const Mat& pre, const Mat& dy,
                                Activation act);

// A loss value (mean reduction) and its gradient w.r.t. the prediction / logits.
struct LossResult {
  double value = 0.0;
  Mat grad;
};
LossResult mse(const Mat& pred, const Mat& target);
LossResult softmax_cross_entropy(const Mat& logits, const std::vector<std::int32_t>& labels);
LossResult sigmoid_bce(const Mat& logits, const Mat& targets);

// torch.optim.SGD, single-tensor algorithm, in float64. `buffer_exists` plays the role of
// "momentum_buffer is None" in PyTorch.
struct SgdState {
  Vec momentum;
  bool buffer_exists = false;
};
struct SgdHyper {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  bool maximize = false;
};
void sgd_step(Vec& params, const Vec& grads, SgdState& state, const SgdHyper& h);

// torch.optim.Adam / AdamW in float64: coupled L2 (Adam) or decoupled (AdamW) weight decay,
// amsgrad, maximize, bias correction by the count of steps taken.
struct AdamState {
  Vec exp_avg, exp_avg_sq, max_exp_avg_sq;
  std::int64_t step = 0;
};
struct AdamHyper {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled = false;  // AdamW
  bool amsgrad = false;
  bool maximize = false;
};
void adam_step(Vec& params, const Vec& grads, AdamState& state, const AdamHyper& h);

// torch.nn.utils.clip_grad_norm_ in float64: scales grads by min(1, max_norm / (norm + 1e-6))
// and returns the total norm before clipping (norm_type 2, or infinity for the max norm).
double clip_grad_norm(Vec& grads, double max_norm, double norm_type);

// A small MLP: layer l maps widths[l] -> widths[l+1]; hidden layers use `hidden`, the last layer
// is identity (logits).
enum class LossKind { mse, softmax_cross_entropy, sigmoid_bce };
const char* to_string(LossKind k);

struct Mlp {
  std::vector<Mat> w;
  std::vector<Vec> b;
  Activation hidden = Activation::identity;
};
struct MlpTargets {
  Mat target;                        // mse and sigmoid_bce
  std::vector<std::int32_t> labels;  // softmax_cross_entropy
};
struct MlpGrads {
  double loss = 0.0;
  std::vector<Mat> dw;
  std::vector<Vec> db;
  Mat dx;  // gradient w.r.t. the network input
};
double mlp_loss(const Mlp& net, const Mat& x, LossKind loss, const MlpTargets& t);
MlpGrads mlp_backward(const Mlp& net, const Mat& x, LossKind loss, const MlpTargets& t);

}  // namespace descent::oracle
