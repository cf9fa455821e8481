// The float64 oracle: straightforward loops, written for clarity rather than speed.
#include "oracle/oracle.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>

namespace descent::oracle {

namespace {
const double kGeluC = std::sqrt(2.0 / std::numbers::pi);
constexpr double kGeluA = 0.044715;

double sigmoid(double z) {
  // Two forms so that neither overflows for large |z|.
  if (z >= 0) return 1.0 / (1.0 + std::exp(-z));
  const double e = std::exp(z);
  return e / (1.0 + e);
}
}  // namespace

double activate(Activation act, double z) {
  switch (act) {
    case Activation::identity:
      return z;
    case Activation::relu:
      return z > 0 ? z : 0.0;
    case Activation::sigmoid:
      return sigmoid(z);
    case Activation::tanh:
      return std::tanh(z);
    case Activation::gelu:
      return 0.5 * z * (1.0 + std::tanh(kGeluC * (z + kGeluA * z * z * z)));
  }
  throw std::logic_error("oracle: unknown activation");
}

double activate_grad(Activation act, double z) {
  switch (act) {
    case Activation::identity:
      return 1.0;
    case Activation::relu:
      return z > 0 ? 1.0 : 0.0;
    case Activation::sigmoid: {
      const double s = sigmoid(z);
      return s * (1.0 - s);
    }
    case Activation::tanh: {
      const double t = std::tanh(z);
      return 1.0 - t * t;
    }
    case Activation::gelu: {
      const double t = std::tanh(kGeluC * (z + kGeluA * z * z * z));
      return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * kGeluC * (1.0 + 3.0 * kGeluA * z * z);
    }
  }
  throw std::logic_error("oracle: unknown activation");
}

DenseResult dense_forward(const Mat& x, const Mat& w, const Vec& b, Activation act) {
  const std::int64_t batch = x.rows, in = x.cols, out = w.rows;
  if (w.cols != in || (!b.empty() && std::int64_t(b.size()) != out)) {
    throw std::logic_error("oracle::dense_forward: shapes disagree");
  }
  DenseResult r{Mat(batch, out), Mat(batch, out)};
  for (std::int64_t i = 0; i < batch; ++i) {
    for (std::int64_t o = 0; o < out; ++o) {
      double z = b.empty() ? 0.0 : b[static_cast<std::size_t>(o)];
      for (std::int64_t k = 0; k < in; ++k) z += x.at(i, k) * w.at(o, k);
      r.pre.at(i, o) = z;
      r.y.at(i, o) = activate(act, z);
    }
  }
  return r;
}

DenseGradsResult dense_backward(const Mat& x, const Mat& w, const Mat& pre, const Mat& dy,
                                Activation act) {
  const std::int64_t batch = x.rows, in = x.cols, out = w.rows;
  Mat dz(batch, out);
  for (std::int64_t i = 0; i < batch; ++i) {
    for (std::int64_t o = 0; o < out; ++o)
      dz.at(i, o) = dy.at(i, o) * activate_grad(act, pre.at(i, o));
  }
  DenseGradsResult g{Mat(batch, in), Mat(out, in), Vec(static_cast<std::size_t>(out), 0.0)};
  for (std::int64_t i = 0; i < batch; ++i) {
    for (std::int64_t o = 0; o < out; ++o) {
      const double d = dz.at(i, o);
      g.db[static_cast<std::size_t>(o)] += d;
      for (std::int64_t k = 0; k < in; ++k) {
        g.dw.at(o, k) += d * x.at(i, k);
        g.dx.at(i, k) += d * w.at(o, k);
      }
    }
  }
  return g;
}

LossResult mse(const Mat& pred, const Mat& target) {
  const double n = double(pred.rows * pred.cols);
  LossResult r{0.0, Mat(pred.rows, pred.cols)};
  for (std::size_t i = 0; i < pred.v.size(); ++i) {
    const double d = pred.v[i] - target.v[i];
    r.value += d * d;
    r.grad.v[i] = 2.0 * d / n;
  }
  r.value /= n;
  return r;
}

LossResult softmax_cross_entropy(const Mat& logits, const std::vector<std::int32_t>& labels) {
  const std::int64_t rows = logits.rows, cols = logits.cols;
  LossResult r{0.0, Mat(rows, cols)};
  for (std::int64_t i = 0; i < rows; ++i) {
    double m = logits.at(i, 0);
    for (std::int64_t j = 1; j < cols; ++j) m = std::max(m, logits.at(i, j));
    double s = 0.0;
    for (std::int64_t j = 0; j < cols; ++j) s += std::exp(logits.at(i, j) - m);
    const double lse = m + std::log(s);
    const std::int32_t label = labels[static_cast<std::size_t>(i)];
    r.value += lse - logits.at(i, label);
    for (std::int64_t j = 0; j < cols; ++j) {
      const double p = std::exp(logits.at(i, j) - lse);
      r.grad.at(i, j) = (p - (j == label ? 1.0 : 0.0)) / double(rows);
    }
  }
  r.value /= double(rows);
  return r;
}

LossResult sigmoid_bce(const Mat& logits, const Mat& targets) {
  const double n = double(logits.rows * logits.cols);
  LossResult r{0.0, Mat(logits.rows, logits.cols)};
  for (std::size_t i = 0; i < logits.v.size(); ++i) {
    const double x = logits.v[i], t = targets.v[i];
    // -[t log σ(x) + (1-t) log(1-σ(x))] written without overflow.
    r.value += std::max(x, 0.0) - x * t + std::log1p(std::exp(-std::abs(x)));
    r.grad.v[i] = (sigmoid(x) - t) / n;
  }
  r.value /= n;
  return r;
}

void sgd_step(Vec& params, const Vec& grads, SgdState& state, const SgdHyper& h) {
  // The per-parameter loop of torch.optim.sgd._single_tensor_sgd.
  if (h.momentum != 0.0 && !state.buffer_exists) state.momentum.assign(params.size(), 0.0);
  for (std::size_t i = 0; i < params.size(); ++i) {
    double d_p = h.maximize ? -grads[i] : grads[i];
    if (h.weight_decay != 0.0) d_p = d_p + h.weight_decay * params[i];
    if (h.momentum != 0.0) {
      double& buf = state.momentum[i];
      if (!state.buffer_exists) {
        buf = d_p;
      } else {
        buf = buf * h.momentum + (1.0 - h.dampening) * d_p;
      }
      d_p = h.nesterov ? d_p + h.momentum * buf : buf;
    }
    params[i] -= h.lr * d_p;
  }
  if (h.momentum != 0.0) state.buffer_exists = true;
}

void adam_step(Vec& params, const Vec& grads, AdamState& state, const AdamHyper& h) {
  // The per-parameter loop of torch.optim.adam._single_tensor_adam / adamw.
  if (state.step == 0) {
    state.exp_avg.assign(params.size(), 0.0);
    state.exp_avg_sq.assign(params.size(), 0.0);
    if (h.amsgrad) state.max_exp_avg_sq.assign(params.size(), 0.0);
  }
  ++state.step;
  const double t = static_cast<double>(state.step);
  const double bias_correction1 = 1.0 - std::pow(h.beta1, t);
  const double bias_correction2 = 1.0 - std::pow(h.beta2, t);
  const double step_size = h.lr / bias_correction1;
  for (std::size_t i = 0; i < params.size(); ++i) {
    double g = h.maximize ? -grads[i] : grads[i];
    if (h.weight_decay != 0.0) {
      if (h.decoupled) {
        params[i] *= 1.0 - h.lr * h.weight_decay;
      } else {
        g += h.weight_decay * params[i];
      }
    }
    double& m = state.exp_avg[i];
    double& v = state.exp_avg_sq[i];
    m = h.beta1 * m + (1.0 - h.beta1) * g;
    v = h.beta2 * v + (1.0 - h.beta2) * g * g;
    double second = v;
    if (h.amsgrad) {
      state.max_exp_avg_sq[i] = std::max(state.max_exp_avg_sq[i], v);
      second = state.max_exp_avg_sq[i];
    }
    const double denom = std::sqrt(second) / std::sqrt(bias_correction2) + h.eps;
    params[i] -= step_size * m / denom;
  }
}

double clip_grad_norm(Vec& grads, double max_norm, double norm_type) {
  double norm = 0.0;
  if (std::isinf(norm_type)) {
    for (double g : grads) norm = std::isnan(g) || std::isnan(norm) ? NAN : std::max(norm, std::abs(g));
  } else {
    for (double g : grads) norm += std::pow(std::abs(g), norm_type);
    norm = std::pow(norm, 1.0 / norm_type);
  }
  const double ratio = max_norm / (norm + 1e-6);
  const double coef = std::isnan(ratio) ? ratio : std::min(1.0, ratio);  // NaN stays, as torch
  for (double& g : grads) g *= coef;
  return norm;
}

const char* to_string(LossKind k) {
  switch (k) {
    case LossKind::mse:
      return "mse";
    case LossKind::softmax_cross_entropy:
      return "softmax_cross_entropy";
    case LossKind::sigmoid_bce:
      return "sigmoid_bce";
  }
  return "?";
}

namespace {
struct Forward {
  std::vector<Mat> inputs;  // input of each layer
  std::vector<Mat> pre;     // pre-activation of each layer
  Mat out;
};

Forward mlp_forward(const Mlp& net, const Mat& x) {
  Forward f;
  Mat h = x;
  for (std::size_t l = 0; l < net.w.size(); ++l) {
    const Activation act = l + 1 == net.w.size() ? Activation::identity : net.hidden;
    DenseResult r = dense_forward(h, net.w[l], net.b[l], act);
    f.inputs.push_back(h);
    f.pre.push_back(r.pre);
    h = r.y;
  }
  f.out = h;
  return f;
}

LossResult apply_loss(const Mat& out, LossKind loss, const MlpTargets& t) {
  switch (loss) {
    case LossKind::mse:
      return mse(out, t.target);
    case LossKind::softmax_cross_entropy:
      return softmax_cross_entropy(out, t.labels);
    case LossKind::sigmoid_bce:
      return sigmoid_bce(out, t.target);
  }
  throw std::logic_error("oracle: unknown loss");
}
}  // namespace

double mlp_loss(const Mlp& net, const Mat& x, LossKind loss, const MlpTargets& t) {
  return apply_loss(mlp_forward(net, x).out, loss, t).value;
}

MlpGrads mlp_backward(const Mlp& net, const Mat& x, LossKind loss, const MlpTargets& t) {
  const Forward f = mlp_forward(net, x);
  LossResult lr = apply_loss(f.out, loss, t);
  MlpGrads g;
  g.loss = lr.value;
  g.dw.resize(net.w.size());
  g.db.resize(net.w.size());
  Mat dy = lr.grad;
  for (std::size_t l = net.w.size(); l-- > 0;) {
    const Activation act = l + 1 == net.w.size() ? Activation::identity : net.hidden;
    DenseGradsResult r = dense_backward(f.inputs[l], net.w[l], f.pre[l], dy, act);
    g.dw[l] = std::move(r.dw);
    g.db[l] = std::move(r.db);
    dy = std::move(r.dx);
  }
  g.dx = std::move(dy);
  return g;
}

}  // namespace descent::oracle
