// The one place where every op's arguments are validated before the backend runs it.
#include "descent/ops.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <sstream>
#include <string>
#include <utility>

#include "descent/error.hpp"
#include "descent/jet.hpp"
#include "enum_names.hpp"
#include "jet_check.hpp"
#include "kernels/backend.hpp"

namespace descent {

namespace {
constexpr detail::EnumName<Activation> kActivationNames[] = {{Activation::identity, "identity"},
                                                             {Activation::relu, "relu"},
                                                             {Activation::sigmoid, "sigmoid"},
                                                             {Activation::tanh, "tanh"},
                                                             {Activation::gelu, "gelu"}};
}  // namespace

const char* to_string(Activation a) { return detail::name_of(kActivationNames, a); }
Activation parse_activation(const char* text) {
  return detail::parse_enum(kActivationNames, text, "activation");
}

namespace {

// Builds "op: arg: <detail>" messages and throws the given exception type.
// The bytes a view spans, [first, second): its first element to the end of its last row
// (unsigned arithmetic: a view too large to exist wraps rather than overflows).
template <class T>
std::pair<std::uintptr_t, std::uintptr_t> span_of(const MatrixView<T>& m) {
  using U = std::uintptr_t;
  const auto first = reinterpret_cast<U>(m.data);
  return {first, first + (U(m.rows - 1) * U(m.ld) + U(m.cols)) * sizeof(T)};
}
template <class T>
std::pair<std::uintptr_t, std::uintptr_t> span_of(const VectorView<T>& v) {
  using U = std::uintptr_t;
  const auto first = reinterpret_cast<U>(v.data);
  return {first, first + U(v.size) * sizeof(T)};
}

// An argument's name and the bytes its view spans (none when the view is empty).
struct Named {
  const char* arg;
  std::uintptr_t first = 0, second = 0;
};
template <class V>
Named named(const char* arg, const V& v) {
  if (v.empty()) return {arg};
  const auto [first, second] = span_of(v);
  return {arg, first, second};
}

class Check {
 public:
  Check(const Context& ctx, const char* op) : ctx_(ctx), op_(op) {}

  template <class E = ShapeError, class... Parts>
  [[noreturn]] void fail(const char* arg, const Parts&... parts) const {
    std::ostringstream s;
    s << op_ << ": " << arg << ": ";
    (s << ... << parts);
    throw E(s.str());
  }

  void device(const char* arg, Device d) const {
    if (d != ctx_.device()) {
      fail<DeviceError>(arg, "is on ", d.str(), " but the context runs on ", ctx_.device().str());
    }
  }

  // A required matrix of shape [rows, cols] (-1: any extent, which must be >= 1).
  template <class T>
  void matrix(const char* arg, const MatrixView<T>& m, std::int64_t rows, std::int64_t cols) const {
    if (m.data == nullptr) fail<ArgumentError>(arg, "data is null");
    if (m.rows < 1 || m.cols < 1) {
      fail(arg, "shape must be at least [1, 1], got [", m.rows, ", ", m.cols, "]");
    }
    if ((rows >= 0 && m.rows != rows) || (cols >= 0 && m.cols != cols)) {
      fail(arg, "expected shape [", extent(rows), ", ", extent(cols), "], got [", m.rows, ", ",
           m.cols, "]");
    }
    if (m.ld < m.cols) fail(arg, "leading dimension ", m.ld, " is smaller than cols ", m.cols);
    device(arg, m.device);
  }
  // An optional matrix: empty, or of shape [rows, cols].
  template <class T>
  void optional_matrix(const char* arg, const MatrixView<T>& m, std::int64_t rows,
                       std::int64_t cols) const {
    if (!m.empty() || m.rows != 0 || m.cols != 0) matrix(arg, m, rows, cols);
  }
  template <class T>
  void vector(const char* arg, const VectorView<T>& v, std::int64_t size) const {
    if (v.data == nullptr) fail<ArgumentError>(arg, "data is null");
    if (v.size < 1) fail(arg, "size must be at least 1, got ", v.size);
    if (size >= 0 && v.size != size) fail(arg, "expected size ", size, ", got ", v.size);
    device(arg, v.device);
  }
  template <class T>
  void optional_vector(const char* arg, const VectorView<T>& v, std::int64_t size) const {
    if (!v.empty() || v.size != 0) vector(arg, v, size);
  }
  // An output sharing memory with another argument would be written while that one is still
  // being read (or written): no backend gives the right answer then, so it is refused. Every
  // output is checked against every input and every other output. Call after the shape checks
  // (the spans come from the shapes).
  void apart(std::initializer_list<Named> outputs, std::initializer_list<Named> inputs) const {
    for (auto o = outputs.begin(); o != outputs.end(); ++o) {
      for (const Named& i : inputs) check_apart(*o, i);
      for (auto p = o + 1; p != outputs.end(); ++p) check_apart(*o, *p);
    }
  }

  void activation(Activation act) const {
    const int a = static_cast<int>(act);
    if (a < 0 || a > static_cast<int>(Activation::gelu)) {
      fail<ArgumentError>("act", "unknown activation id ", a);
    }
  }
  void finite(const char* arg, float v) const {
    if (!std::isfinite(v)) fail<ArgumentError>(arg, "must be finite, got ", v);
  }
  void non_negative(const char* arg, float v) const {
    if (!(v >= 0.0f) || !std::isfinite(v)) {
      fail<ArgumentError>(arg, "must be a finite number >= 0, got ", v);
    }
  }

 private:
  void check_apart(const Named& out, const Named& other) const {
    if (out.first < other.second && other.first < out.second) {
      fail<ArgumentError>(out.arg, "shares memory with ", other.arg,
                          ": an output may not overlap another argument");
    }
  }
  static std::string extent(std::int64_t n) {
    return n < 0 ? std::string("any") : std::to_string(n);
  }
  const Context& ctx_;
  const char* op_;
};

template <class T>
void check_dense_forward(const Check& c, MatrixView<const T> x, MatrixView<const T> w,
                         VectorView<const float> b, Activation act, MatrixView<T> y,
                         MatrixView<float> pre) {
  c.activation(act);
  c.matrix("x", x, -1, -1);
  c.matrix("w", w, -1, x.cols);
  c.optional_vector("b", b, w.rows);
  c.matrix("y", y, x.rows, w.rows);
  c.optional_matrix("pre", pre, x.rows, w.rows);
  c.apart({named("y", y), named("pre", pre)}, {named("x", x), named("w", w), named("b", b)});
}

template <class T>
void check_dense_backward(const Check& c, MatrixView<const T> x, MatrixView<const T> w,
                          MatrixView<const T> y, MatrixView<const float> pre,
                          MatrixView<const T> dy, Activation act, const DenseGradsOf<T>& g) {
  c.activation(act);
  c.matrix("x", x, -1, -1);
  c.matrix("w", w, -1, x.cols);
  c.matrix("y", y, x.rows, w.rows);
  c.matrix("dy", dy, x.rows, w.rows);
  if (act == Activation::gelu) {
    if (pre.empty())
      c.fail<ArgumentError>(
          "pre", "gelu needs the forward pre-activation; pass the 'pre' written by dense_forward");
    c.matrix("pre", pre, x.rows, w.rows);
  } else {
    c.optional_matrix("pre", pre, x.rows, w.rows);
  }
  c.matrix("dw", g.dw, w.rows, w.cols);
  c.optional_vector("db", g.db, w.rows);
  c.optional_matrix("dx", g.dx, x.rows, x.cols);
  c.apart({named("dw", g.dw), named("db", g.db), named("dx", g.dx)},
          {named("x", x), named("w", w), named("y", y), named("pre", pre), named("dy", dy)});
}

// The loss's outputs (its value and gradient) apart from its two inputs and from each other.
void check_loss_apart(const Check& c, const LossOutput& out, Named a, Named b) {
  c.apart({named("loss", out.loss), named("grad", out.grad)}, {a, b});
}

void check_loss_output(const Check& c, const LossOutput& out, std::int64_t rows,
                       std::int64_t cols) {
  c.vector("loss", out.loss, -1);
  c.matrix("grad", out.grad, rows, cols);
  c.finite("grad_scale", out.grad_scale);
  if (out.mean_rows != 0 && out.mean_rows < rows) {
    c.fail<ArgumentError>("mean_rows", "must be 0 or at least the prediction's rows (", rows,
                          "), got ", out.mean_rows);
  }
}

}  // namespace

// The op's entry in the context's backend table.
#define DESCENT_DISPATCH(entry, ...) detail::backend_of(ctx).entry(__VA_ARGS__)

void dense_forward(const Context& ctx, MatrixView<const float> x, MatrixView<const float> w,
                   VectorView<const float> b, Activation act, MatrixView<float> y,
                   MatrixView<float> pre) {
  check_dense_forward(Check(ctx, "dense_forward"), x, w, b, act, y, pre);
  DESCENT_DISPATCH(dense_forward, ctx, x, w, b, act, y, pre);
}

void dense_forward(const Context& ctx, MatrixView<const bf16> x, MatrixView<const bf16> w,
                   VectorView<const float> b, Activation act, MatrixView<bf16> y,
                   MatrixView<float> pre) {
  check_dense_forward(Check(ctx, "dense_forward"), x, w, b, act, y, pre);
  DESCENT_DISPATCH(dense_forward_bf16, ctx, x, w, b, act, y, pre);
}

void dense_backward(const Context& ctx, MatrixView<const float> x, MatrixView<const float> w,
                    MatrixView<const float> y, MatrixView<const float> pre,
                    MatrixView<const float> dy, Activation act, const DenseGrads& grads) {
  check_dense_backward(Check(ctx, "dense_backward"), x, w, y, pre, dy, act, grads);
  DESCENT_DISPATCH(dense_backward, ctx, x, w, y, pre, dy, act, grads);
}

void dense_backward(const Context& ctx, MatrixView<const bf16> x, MatrixView<const bf16> w,
                    MatrixView<const bf16> y, MatrixView<const float> pre,
                    MatrixView<const bf16> dy, Activation act, const DenseGradsBf16& grads) {
  check_dense_backward(Check(ctx, "dense_backward"), x, w, y, pre, dy, act, grads);
  DESCENT_DISPATCH(dense_backward_bf16, ctx, x, w, y, pre, dy, act, grads);
}

void mse_loss(const Context& ctx, MatrixView<const float> pred, MatrixView<const float> target,
              const LossOutput& out) {
  const Check c(ctx, "mse_loss");
  c.matrix("pred", pred, -1, -1);
  c.matrix("target", target, pred.rows, pred.cols);
  check_loss_output(c, out, pred.rows, pred.cols);
  check_loss_apart(c, out, named("pred", pred), named("target", target));
  DESCENT_DISPATCH(mse_loss, ctx, pred, target, out);
}

namespace {

void check_cross_entropy(const Check& c, MatrixView<const float> logits,
                         VectorView<const std::int32_t> labels, const LossOutput& out) {
  c.matrix("logits", logits, -1, -1);
  c.vector("labels", labels, logits.rows);
  check_loss_output(c, out, logits.rows, logits.cols);
  check_loss_apart(c, out, named("logits", logits), named("labels", labels));
}

void check_bce(const Check& c, MatrixView<const float> logits, MatrixView<const float> targets,
               const LossOutput& out) {
  c.matrix("logits", logits, -1, -1);
  c.matrix("targets", targets, logits.rows, logits.cols);
  check_loss_output(c, out, logits.rows, logits.cols);
  check_loss_apart(c, out, named("logits", logits), named("targets", targets));
}

}  // namespace

void softmax_cross_entropy(const Context& ctx, MatrixView<const float> logits,
                           VectorView<const std::int32_t> labels, const LossOutput& out) {
  const Check c(ctx, "softmax_cross_entropy");
  check_cross_entropy(c, logits, labels, out);
  const detail::ValueCheck bad =
      detail::backend_of(ctx).find_label_outside(ctx, labels, logits.cols);
  if (bad.index >= 0) {
    c.fail<ArgumentError>("labels", "labels[", bad.index, "] = ", std::int64_t(bad.value),
                          " is outside [0, ", logits.cols, ") (classes = logits.cols)");
  }
  DESCENT_DISPATCH(softmax_cross_entropy, ctx, logits, labels, out);
}

void detail::softmax_cross_entropy_in_range(const Context& ctx, MatrixView<const float> logits,
                                            VectorView<const std::int32_t> labels,
                                            const LossOutput& out) {
  check_cross_entropy(Check(ctx, "softmax_cross_entropy"), logits, labels, out);
  DESCENT_DISPATCH(softmax_cross_entropy, ctx, logits, labels, out);
}

void sigmoid_bce(const Context& ctx, MatrixView<const float> logits,
                 MatrixView<const float> targets, const LossOutput& out) {
  const Check c(ctx, "sigmoid_bce");
  check_bce(c, logits, targets, out);
  const detail::ValueCheck bad = detail::backend_of(ctx).find_target_outside_unit(ctx, targets);
  if (bad.index >= 0) {
    c.fail<ArgumentError>("targets", "targets[", bad.index / targets.cols, ", ",
                          bad.index % targets.cols, "] = ", float(bad.value),
                          " is outside [0, 1] (a probability: binary cross-entropy)");
  }
  DESCENT_DISPATCH(sigmoid_bce, ctx, logits, targets, out);
}

void detail::sigmoid_bce_in_range(const Context& ctx, MatrixView<const float> logits,
                                  MatrixView<const float> targets, const LossOutput& out) {
  check_bce(Check(ctx, "sigmoid_bce"), logits, targets, out);
  DESCENT_DISPATCH(sigmoid_bce, ctx, logits, targets, out);
}

void validate(const SgdOptions& o) {
  // Same rules, and the same order, as torch.optim.SGD's constructor.
  const auto bad = [](const char* arg, const std::string& what) {
    throw ArgumentError(std::string("sgd: ") + arg + ": " + what);
  };
  if (!(o.lr >= 0.0f) || !std::isfinite(o.lr))
    bad("lr", "must be a finite number >= 0, got " + std::to_string(o.lr));
  if (!(o.momentum >= 0.0f) || !std::isfinite(o.momentum))
    bad("momentum", "must be a finite number >= 0, got " + std::to_string(o.momentum));
  if (!(o.weight_decay >= 0.0f) || !std::isfinite(o.weight_decay))
    bad("weight_decay", "must be a finite number >= 0, got " + std::to_string(o.weight_decay));
  if (!std::isfinite(o.dampening))
    bad("dampening", "must be finite, got " + std::to_string(o.dampening));
  if (o.nesterov && (o.momentum <= 0.0f || o.dampening != 0.0f)) {
    bad("nesterov", "requires momentum > 0 and dampening == 0 (got momentum " +
                        std::to_string(o.momentum) + ", dampening " + std::to_string(o.dampening) +
                        ")");
  }
}

void sgd_update(const Context& ctx, VectorView<float> params, VectorView<const float> grads,
                VectorView<float> momentum, const SgdOptions& options, const SgdStep& step) {
  const Check c(ctx, "sgd_update");
  validate(options);
  c.vector("params", params, -1);
  c.vector("grads", grads, params.size);
  if (options.momentum != 0.0f) {
    c.vector("momentum", momentum, params.size);
  } else {
    c.optional_vector("momentum", momentum, params.size);
  }
  c.optional_vector("params_bf16", step.params_bf16, params.size);
  c.finite("grad_scale", step.grad_scale);
  c.apart({named("params", params), named("momentum", momentum),
           named("params_bf16", step.params_bf16)},
          {named("grads", grads)});
  DESCENT_DISPATCH(sgd_update, ctx, params, grads, momentum, options, step);
}

void validate(const AdamOptions& o) {
  // Same rules, and the same order, as torch.optim.Adam's constructor.
  const auto bad = [](const char* arg, const std::string& what) {
    throw ArgumentError(std::string("adam: ") + arg + ": " + what);
  };
  const auto finite_non_negative = [&](const char* arg, float v) {
    if (!(v >= 0.0f) || !std::isfinite(v)) {
      bad(arg, "must be a finite number >= 0, got " + std::to_string(v));
    }
  };
  finite_non_negative("lr", o.lr);
  finite_non_negative("eps", o.eps);
  if (!(o.beta1 >= 0.0f && o.beta1 < 1.0f))
    bad("beta1", "must be in [0, 1), got " + std::to_string(o.beta1));
  if (!(o.beta2 >= 0.0f && o.beta2 < 1.0f))
    bad("beta2", "must be in [0, 1), got " + std::to_string(o.beta2));
  finite_non_negative("weight_decay", o.weight_decay);
}

void adam_update(const Context& ctx, VectorView<float> params, VectorView<const float> grads,
                 VectorView<float> exp_avg, VectorView<float> exp_avg_sq,
                 VectorView<float> max_exp_avg_sq, const AdamOptions& options,
                 const AdamStep& step) {
  const Check c(ctx, "adam_update");
  validate(options);
  c.vector("params", params, -1);
  c.vector("grads", grads, params.size);
  c.vector("exp_avg", exp_avg, params.size);
  c.vector("exp_avg_sq", exp_avg_sq, params.size);
  if (options.amsgrad) {
    c.vector("max_exp_avg_sq", max_exp_avg_sq, params.size);
  } else {
    c.optional_vector("max_exp_avg_sq", max_exp_avg_sq, params.size);
  }
  c.optional_vector("params_bf16", step.params_bf16, params.size);
  c.finite("grad_scale", step.grad_scale);
  c.apart({named("params", params), named("exp_avg", exp_avg), named("exp_avg_sq", exp_avg_sq),
           named("max_exp_avg_sq", max_exp_avg_sq), named("params_bf16", step.params_bf16)},
          {named("grads", grads)});
  if (step.lr_device == nullptr)
    c.fail<ArgumentError>("lr_device", "is null (the rate is read on the device)");
  if (step.scalars == nullptr)
    c.fail<ArgumentError>("scalars", "is null (4 device floats, zero for a new optimizer)");
  DESCENT_DISPATCH(adam_update, ctx, params, grads, exp_avg, exp_avg_sq, max_exp_avg_sq, options,
                   step);
}

void clip_grad_norm(const Context& ctx, VectorView<const float> grads, float max_norm,
                    float norm_type, float* norm, float* scale) {
  const Check c(ctx, "clip_grad_norm");
  c.vector("grads", grads, -1);
  if (!(max_norm > 0.0f) || !std::isfinite(max_norm)) {
    c.fail<ArgumentError>("max_norm", "must be a finite number > 0, got ", max_norm);
  }
  if (norm_type != 2.0f && !(std::isinf(norm_type) && norm_type > 0.0f)) {
    c.fail<ArgumentError>("norm_type", "must be 2 or inf, got ", norm_type);
  }
  if (norm == nullptr) c.fail<ArgumentError>("norm", "is null");
  if (scale == nullptr) c.fail<ArgumentError>("scale", "is null");
  DESCENT_DISPATCH(clip_grad_norm, ctx, grads, max_norm, norm_type, norm, scale);
}

void fill_uniform(const Context& ctx, VectorView<float> out, float lo, float hi, std::uint64_t seed,
                  std::uint64_t offset) {
  const Check c(ctx, "fill_uniform");
  c.vector("out", out, -1);
  c.finite("lo", lo);
  c.finite("hi", hi);
  if (!(lo <= hi)) c.fail<ArgumentError>("hi", "must be >= lo (", lo, "), got ", hi);
  DESCENT_DISPATCH(fill_uniform, ctx, out, lo, hi, seed, offset);
}

void fill(const Context& ctx, VectorView<float> out, float value) {
  Check(ctx, "fill").vector("out", out, -1);
  DESCENT_DISPATCH(fill, ctx, out, value);
}

void check_finite(const Context& ctx, VectorView<const float> x, std::int32_t* flag) {
  const Check c(ctx, "check_finite");
  c.vector("x", x, -1);
  if (flag == nullptr) c.fail<ArgumentError>("flag", "is null");
  DESCENT_DISPATCH(check_finite, ctx, x, flag);
}

void convert(const Context& ctx, VectorView<const float> in, VectorView<bf16> out) {
  const Check c(ctx, "convert");
  c.vector("in", in, -1);
  c.vector("out", out, in.size);
  c.apart({named("out", out)}, {named("in", in)});
  DESCENT_DISPATCH(to_bf16, ctx, in, out);
}

void convert(const Context& ctx, VectorView<const bf16> in, VectorView<float> out) {
  const Check c(ctx, "convert");
  c.vector("in", in, -1);
  c.vector("out", out, in.size);
  c.apart({named("out", out)}, {named("in", in)});
  DESCENT_DISPATCH(to_float, ctx, in, out);
}

// ---------------------------------------------------------------- forward jets (descent/jet.hpp)

namespace {

// Why relu cannot carry a second-order jet, for every message that refuses it.
constexpr const char* kReluSecondOrder =
    "relu has sigma'' = 0 almost everywhere (and none at 0), so every second derivative of a relu "
    "network is zero and a second-order loss would train on nothing; use tanh, sigmoid, gelu, "
    "softplus or silu, or second_order = false for first derivatives only";

void check_jet_blocks(const Check& c, const JetBlocks& blocks, JetActivation act) {
  const int a = static_cast<int>(act);
  if (a < 0 || a > static_cast<int>(JetActivation::silu)) {
    c.fail<ArgumentError>("act", "unknown jet activation id ", a);
  }
  if (blocks.second_order && act == JetActivation::relu) {
    c.fail<ArgumentError>("act", kReluSecondOrder);
  }
  if (blocks.batch < 1) {
    c.fail<ArgumentError>("blocks.batch", "must be at least 1, got ", blocks.batch);
  }
  if (blocks.directions < 0) {
    c.fail<ArgumentError>("blocks.directions", "must be >= 0, got ", blocks.directions);
  }
  if (blocks.directions > 0) {
    c.vector("blocks.weights", blocks.weights, blocks.directions);
  } else {
    c.optional_vector("blocks.weights", blocks.weights, 0);
  }
}

}  // namespace

void jet_activation_forward(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                            VectorView<const float> b, MatrixView<float> z, MatrixView<float> h) {
  jet_activation_forward(ctx, blocks, act, b, z, h, MatrixView<float>());
}

void jet_activation_backward(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                             MatrixView<const float> z, MatrixView<const float> dh,
                             MatrixView<float> dz, VectorView<float> db, bool accumulate) {
  jet_activation_backward(ctx, blocks, act, z, dh, dz, db, accumulate, MatrixView<const float>(),
                          MatrixView<const float>());
}

namespace {

// The saved-slope variants run where the backend has them (the CPU), for tanh.
void check_slope_support(const Check& c, const Context& ctx, JetActivation act, bool available) {
  if (act != JetActivation::tanh) {
    c.fail<ArgumentError>("slope", "is kept for tanh only, got ", to_string(act));
  }
  if (!available) {
    c.fail<ArgumentError>("slope", "is not supported on ", ctx.device().str(),
                          " (its backward pass recomputes σ'): pass none there");
  }
}

}  // namespace

void jet_activation_forward(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                            VectorView<const float> b, MatrixView<float> z, MatrixView<float> h,
                            MatrixView<float> slope) {
  const Check c(ctx, "jet_activation_forward");
  check_jet_blocks(c, blocks, act);
  c.matrix("z", z, blocks.rows(), -1);
  c.optional_vector("b", b, z.cols);
  c.matrix("h", h, blocks.rows(), z.cols);
  if (slope.empty()) {
    c.apart({named("z", z), named("h", h)}, {named("b", b)});  // z gets the bias in place
    DESCENT_DISPATCH(jet_activation_forward, ctx, blocks, act, b, z, h);
    return;
  }
  check_slope_support(c, ctx, act, detail::backend_of(ctx).jet_activation_forward_saving);
  c.matrix("slope", slope, blocks.batch, z.cols);
  c.apart({named("z", z), named("h", h), named("slope", slope)}, {named("b", b)});
  DESCENT_DISPATCH(jet_activation_forward_saving, ctx, blocks, act, b, z, h, slope);
}

void jet_activation_backward(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                             MatrixView<const float> z, MatrixView<const float> dh,
                             MatrixView<float> dz, VectorView<float> db, bool accumulate,
                             MatrixView<const float> h, MatrixView<const float> slope) {
  const Check c(ctx, "jet_activation_backward");
  check_jet_blocks(c, blocks, act);
  const bool saved = !h.empty() || !slope.empty();
  if (saved && (h.empty() || slope.empty())) {
    c.fail<ArgumentError>(h.empty() ? "h" : "slope", "is needed with ", h.empty() ? "slope" : "h",
                          ": give both or neither");
  }
  if (saved) {
    check_slope_support(c, ctx, act, detail::backend_of(ctx).jet_activation_backward_saved);
  }
  c.matrix("z", z, blocks.rows(), -1);
  c.matrix("dh", dh, blocks.rows(), z.cols);
  c.matrix("dz", dz, blocks.rows(), z.cols);
  if (dz.data == dh.data && dz.ld != dh.ld) {
    c.fail("dz", "is dh (in place) with leading dimension ", dz.ld, ", expected dh's ", dh.ld);
  }
  c.optional_vector("db", db, z.cols);
  if (saved) {
    c.matrix("h", h, blocks.rows(), z.cols);
    c.matrix("slope", slope, blocks.batch, z.cols);
  }
  // dz may be dh itself (checked above; then db is kept apart from it as an output), but not
  // overlap it otherwise, nor anything else.
  c.apart({named("dz", dz), named("db", db)},
          {named("z", z), named("dh", dz.data != dh.data ? dh : MatrixView<const float>()),
           named("h", h), named("slope", slope)});
  if (!saved) {
    DESCENT_DISPATCH(jet_activation_backward, ctx, blocks, act, z, dh, dz, db, accumulate);
    return;
  }
  DESCENT_DISPATCH(jet_activation_backward_saved, ctx, blocks, act, z, dh, dz, db, accumulate, h,
                   slope);
}

void pde_residual_loss(const Context& ctx, const JetBlocks& blocks, MatrixView<const float> y,
                       VectorView<const float> coefficients, MatrixView<const float> source,
                       float weight, VectorView<float> loss, bool accumulate,
                       MatrixView<float> grad) {
  const Check c(ctx, "pde_residual_loss");
  check_jet_blocks(c, blocks, JetActivation::identity);
  c.matrix("y", y, blocks.rows(), -1);
  c.vector("coefficients", coefficients, 2 + 2 * std::int64_t(blocks.directions));
  c.optional_matrix("source", source, blocks.batch, y.cols);
  c.finite("weight", weight);
  c.vector("loss", loss, -1);
  c.matrix("grad", grad, blocks.rows(), y.cols);
  c.apart({named("loss", loss), named("grad", grad)},
          {named("y", y), named("coefficients", coefficients), named("source", source)});
  DESCENT_DISPATCH(pde_residual_loss, ctx, blocks, y, coefficients, source, weight, loss,
                   accumulate, grad);
}

void detail::check_residual_step(const Context& ctx, const JetBlocks& blocks, std::int64_t outputs,
                                 MatrixView<const float> source, VectorView<float> loss) {
  const Check c(ctx, "pde_residual_step");
  c.optional_matrix("source", source, blocks.batch, outputs);
  c.vector("loss", loss, -1);
  c.apart({named("loss", loss)}, {named("source", source)});
}

void detail::check_pde_residual(const char* op, const Context& ctx, const JetBlocks& blocks,
                                const PdeResidual& r, float weight) {
  const Check c(ctx, op);
  if (blocks.batch < 1) {
    c.fail<ArgumentError>("jet", "has no forward pass (call jet_forward first)");
  }
  const auto coefficients = [&](const char* arg, const std::vector<float>& v) {
    if (!v.empty() && static_cast<std::int64_t>(v.size()) != blocks.directions) {
      c.fail<ArgumentError>(arg, "holds ", v.size(),
                            " floats, expected one per direction (K = ", blocks.directions,
                            ") or none (0)");
    }
    for (float x : v) c.finite(arg, x);
  };
  c.finite("a", r.a);
  coefficients("b", r.b);
  c.finite("c", r.c);
  coefficients("d", r.d);
  if (r.c != 0.0f && !blocks.second_order) {
    c.fail<ArgumentError>("c", "is ", r.c,
                          ", but the jet has no second-order block "
                          "(JetOptions::second_order is false)");
  }
  c.finite("weight", weight);
}

void detail::check_jet_options(const Context& ctx, const std::vector<std::int64_t>& widths,
                               const std::vector<Activation>& model_activations,
                               const JetOptions& o) {
  const Check c(ctx, "jet");
  const std::int64_t inputs = widths.front();
  const std::size_t layers = widths.size() - 1;
  std::int64_t k = inputs;
  if (!o.directions.empty()) {
    if (o.directions.size() % static_cast<std::size_t>(inputs) != 0) {
      c.fail<ArgumentError>("directions", "holds ", o.directions.size(),
                            " floats, expected K rows of inputs = ", inputs, " floats");
    }
    k = static_cast<std::int64_t>(o.directions.size()) / inputs;
    for (std::size_t i = 0; i < o.directions.size(); ++i) {
      if (!std::isfinite(o.directions[i])) {
        c.fail<ArgumentError>("directions", "element ", i, " is ", o.directions[i],
                              ", expected a finite number");
      }
    }
  }
  if (k > 65536) {
    c.fail<ArgumentError>("directions", "K = ", k, " directions, expected at most 65536");
  }
  if (!o.weights.empty()) {
    if (static_cast<std::int64_t>(o.weights.size()) != k) {
      c.fail<ArgumentError>("weights", "holds ", o.weights.size(), " floats, expected one per ",
                            "direction (K = ", k, ") or none (all 1)");
    }
    for (std::size_t i = 0; i < o.weights.size(); ++i) c.finite("weights", o.weights[i]);
  }
  if (!o.activations.empty() && o.activations.size() != layers) {
    c.fail<ArgumentError>("activations", "holds ", o.activations.size(),
                          " activations, expected one per layer (", layers,
                          ") or none (the model's own)");
  }
  for (std::size_t l = 0; l < layers; ++l) {
    const JetActivation a =
        o.activations.empty() ? jet_activation(model_activations[l]) : o.activations[l];
    const int id = static_cast<int>(a);
    if (id < 0 || id > static_cast<int>(JetActivation::silu)) {
      c.fail<ArgumentError>("activations", "layer ", l, ": unknown jet activation id ", id);
    }
    if (o.second_order && a == JetActivation::relu) {
      c.fail<ArgumentError>("activations", "layer ", l, " is relu: ", kReluSecondOrder);
    }
  }
}

void detail::check_jet_model(const char* op, const Context& ctx,
                             const std::vector<std::int64_t>& widths, const Mlp& model) {
  const Check c(ctx, op);
  if (model.widths() != widths) {
    const auto join = [](const std::vector<std::int64_t>& w) {
      std::ostringstream s;
      for (std::size_t i = 0; i < w.size(); ++i) s << (i > 0 ? "-" : "") << w[i];
      return s.str();
    };
    c.fail<ArgumentError>("model", "has widths ", join(model.widths()),
                          ", but the Jet was made for widths ", join(widths),
                          " (a Jet belongs to the model it was made for)");
  }
  c.device("model", model.context().device());
}

void detail::check_jet_input(const char* op, const Context& ctx, std::int64_t inputs,
                             MatrixView<const float> x) {
  Check(ctx, op).matrix("x", x, -1, inputs);
}

void detail::check_jet_adjoints(const Context& ctx, const JetBlocks& blocks, std::int64_t inputs,
                                std::int64_t outputs, const JetAdjoints& a) {
  const Check c(ctx, "jet_backward");
  if (blocks.batch < 1) {
    c.fail<ArgumentError>("jet", "has no forward pass to differentiate (call jet_forward first)");
  }
  c.optional_matrix("value", a.value, blocks.batch, outputs);
  if (!a.derivatives.empty() &&
      static_cast<std::int64_t>(a.derivatives.size()) != blocks.directions) {
    c.fail<ArgumentError>("derivatives", "holds ", a.derivatives.size(),
                          " views, expected one per direction (K = ", blocks.directions,
                          ") or none");
  }
  for (const MatrixView<const float>& d : a.derivatives) {
    c.optional_matrix("derivatives", d, blocks.batch, outputs);
  }
  if (!blocks.second_order && !a.second.empty()) {
    c.fail<ArgumentError>("second",
                          "is given, but the jet has no second-order block "
                          "(JetOptions::second_order is false)");
  }
  c.optional_matrix("second", a.second, blocks.batch, outputs);
  c.optional_matrix("dx", a.dx, blocks.batch, inputs);
}

void detail::check_input_gradient(const Context& ctx, std::int64_t inputs, std::int64_t outputs,
                                  MatrixView<const float> x, MatrixView<const float> dy,
                                  MatrixView<float> dx) {
  const Check c(ctx, "input_gradient");
  c.matrix("x", x, -1, inputs);
  c.matrix("dy", dy, x.rows, outputs);
  c.matrix("dx", dx, x.rows, inputs);
}

// ---------------------------------------------------------------- fused hidden layers (internal)

void detail::fused_hidden_forward(const Context& ctx, MatrixView<const bf16> x,
                                  const FusedLayer* layers, int count) {
  const Check c(ctx, "fused_hidden_forward");
  const detail::Backend& be = detail::backend_of(ctx);
  if (be.fused_hidden_forward == nullptr) {
    c.fail<DeviceError>("ctx", "the ", be.name, " backend has no fused hidden layers");
  }
  c.matrix("x", x, -1, -1);
  if (!be.fused_width(x.cols)) {
    c.fail<ArgumentError>("x", "width ", x.cols, " is not one the fused kernel takes");
  }
  if (!x.contiguous()) c.fail("x", "must be contiguous (ld == cols), got ld ", x.ld);
  if (layers == nullptr || count < 1 || count > kMaxFusedLayers) {
    c.fail<ArgumentError>("layers", "expected 1 .. ", kMaxFusedLayers, " layers, got ", count,
                          layers == nullptr ? " (null)" : "");
  }
  for (int i = 0; i < count; ++i) {
    const FusedLayer& l = layers[i];
    if (l.w == nullptr || l.b == nullptr || l.y == nullptr) {
      c.fail<ArgumentError>("layers", "layer ", i, ": w, b and y must not be null");
    }
    if (l.act == Activation::gelu && l.pre == nullptr) {
      c.fail<ArgumentError>("layers", "layer ", i,
                            ": gelu needs its pre-activation buffer (its backward reads it)");
    }
    if (static_cast<int>(l.act) < 0 ||
        static_cast<int>(l.act) > static_cast<int>(Activation::gelu)) {
      c.fail<ArgumentError>("layers", "layer ", i, ": unknown activation id ",
                            static_cast<int>(l.act));
    }
  }
  be.fused_hidden_forward(ctx, x, layers, count);
}

}  // namespace descent
