// Mlp: layer bookkeeping over one flat parameter buffer, initialisation, forward and backward.
#include "descent/model.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "descent/error.hpp"
#include "enum_names.hpp"
#include "kernels/backend.hpp"

namespace descent {

namespace {
constexpr detail::EnumName<Init> kInitNames[] = {
    {Init::torch_default, "torch"}, {Init::xavier, "xavier"}, {Init::he, "he"}};
constexpr detail::EnumName<Precision> kPrecisionNames[] = {{Precision::fp32, "fp32"},
                                                           {Precision::bf16, "bf16"}};
}  // namespace

const char* to_string(Init init) { return detail::name_of(kInitNames, init); }
Init parse_init(const char* text) { return detail::parse_enum(kInitNames, text, "init"); }
const char* to_string(Precision p) { return detail::name_of(kPrecisionNames, p); }
Precision parse_precision(const char* text) {
  return detail::parse_enum(kPrecisionNames, text, "precision");
}

namespace {

std::vector<Activation> default_activations(std::size_t widths, Activation hidden) {
  std::vector<Activation> acts(widths >= 2 ? widths - 1 : 0, hidden);
  if (!acts.empty()) acts.back() = Activation::identity;
  return acts;
}

std::string join_widths(const std::vector<std::int64_t>& widths) {
  std::string s;
  for (std::size_t i = 0; i < widths.size(); ++i) {
    if (i > 0) s += '-';
    s += std::to_string(widths[i]);
  }
  return s;
}

// Memory of the device: physical memory for the CPU, free memory for a GPU.
double device_memory(const Context& ctx) { return detail::backend_of(ctx).memory_bytes(ctx); }

// Floats of the activation buffers for `batch` rows (fp32 layout; bf16 needs no more): one
// output per layer (two with gelu: the pre-activation too) and two ping-pong gradients.
double activation_floats(const std::vector<std::int64_t>& widths,
                         const std::vector<Activation>& acts, std::int64_t batch) {
  double floats = 0.0, widest = 0.0;
  for (std::size_t l = 1; l < widths.size(); ++l) {
    const auto w = static_cast<double>(widths[l]);
    floats += static_cast<double>(batch) * w * (acts[l - 1] == Activation::gelu ? 2.0 : 1.0);
    widest = std::max(widest, w);
  }
  return floats + 2.0 * static_cast<double>(batch) * widest;
}

// Throws OutOfMemory, before anything is allocated, when the parameters, their gradients and the
// activations of one batch cannot fit the device.
void check_fits(const Context& ctx, const std::vector<std::int64_t>& widths,
                const std::vector<Activation>& acts, std::int64_t params, std::int64_t batch) {
  const double floats = 2.0 * static_cast<double>(params) + activation_floats(widths, acts, batch);
  const double need = floats * sizeof(float), have = device_memory(ctx);
  if (need > have) {
    char text[256];
    std::snprintf(text, sizeof text,
                  "needs %.3g bytes for parameters, gradients and the activations of %lld rows, "
                  "but %s has %.3g bytes %s",
                  need, static_cast<long long>(batch), ctx.device().str().c_str(), have,
                  detail::backend_of(ctx).memory_bytes_are);
    throw OutOfMemory("Mlp " + join_widths(widths) + ": " + text +
                      "; use smaller widths or batches");
  }
}

}  // namespace

Mlp::Mlp(const Context& ctx, std::vector<std::int64_t> widths, Activation hidden,
         MlpOptions options)
    : Mlp(ctx, widths, default_activations(widths.size(), hidden), options) {}

Mlp::Mlp(const Context& ctx, std::vector<std::int64_t> widths, std::vector<Activation> activations,
         MlpOptions options)
    : ctx_(ctx), widths_(std::move(widths)), activations_(std::move(activations)) {
  if (widths_.size() < 2) {
    throw ArgumentError("Mlp: widths: expected at least 2 widths (inputs and outputs), got " +
                        std::to_string(widths_.size()));
  }
  for (std::size_t i = 0; i < widths_.size(); ++i) {
    if (widths_[i] < 1) {
      const char* what = i == 0                    ? "input width"
                         : i + 1 == widths_.size() ? "output width"
                                                   : "hidden width";
      throw ArgumentError("Mlp: widths[" + std::to_string(i) + "] (" + what +
                          "): must be >= 1, got " + std::to_string(widths_[i]));
    }
  }
  if (activations_.size() != widths_.size() - 1) {
    throw ArgumentError("Mlp: activations: expected one per layer (" +
                        std::to_string(widths_.size() - 1) + "), got " +
                        std::to_string(activations_.size()));
  }
  for (Activation a : activations_) {
    const int id = static_cast<int>(a);
    if (id < 0 || id > static_cast<int>(Activation::gelu)) {
      throw ArgumentError("Mlp: activations: unknown activation id " + std::to_string(id));
    }
  }
  if (options.max_batch < 1) {
    throw ArgumentError("Mlp: max_batch: must be >= 1, got " + std::to_string(options.max_batch));
  }
  // Parameter count with overflow checks: a size that cannot be represented is an ArgumentError,
  // never a wrapped short allocation.
  std::int64_t total = 0;
  for (int l = 0; l < layers(); ++l) {
    offsets_.push_back(total);
    std::int64_t w = 0, layer = 0;
    const std::int64_t in = widths_[static_cast<std::size_t>(l)];
    const std::int64_t out = widths_[static_cast<std::size_t>(l) + 1];
    if (__builtin_mul_overflow(in, out, &w) || __builtin_add_overflow(w, out, &layer) ||
        __builtin_add_overflow(total, layer, &total) ||
        total > std::numeric_limits<std::int64_t>::max() / 8) {
      throw ArgumentError("Mlp: widths: " + join_widths(widths_) +
                          ": the parameter count overflows 64-bit sizes; use smaller widths");
    }
  }
  check_fits(ctx, widths_, activations_, total, options.max_batch);
  if (options.precision != Precision::fp32 && options.precision != Precision::bf16) {
    throw ArgumentError("Mlp: precision: unknown precision id " +
                        std::to_string(static_cast<int>(options.precision)));
  }
  precision_ = options.precision;
  fused_layers_ = options.fused_layers;
  params_ = Buffer<float>(ctx, total);
  grads_ = Buffer<float>(ctx, total);
  if (precision_ == Precision::bf16) params_bf16_ = Buffer<bf16>(ctx, total);
  fp32_.y.resize(activations_.size());
  bf16_.y.resize(activations_.size());
  pre_.resize(activations_.size());
  reserve(options.max_batch);
  init(options.init, options.seed);
}

Mlp::Mlp(Mlp&&) noexcept = default;
Mlp& Mlp::operator=(Mlp&&) noexcept = default;
Mlp::~Mlp() = default;

std::string describe_architecture(const std::vector<std::int64_t>& widths,
                                  const std::vector<Activation>& activations) {
  std::string s = join_widths(widths) + " (";
  for (std::size_t i = 0; i < activations.size(); ++i) {
    if (i > 0) s += ", ";
    s += to_string(activations[i]);
  }
  return s + ")";
}

std::string parameter_name(const std::vector<std::int64_t>& widths, std::int64_t index) {
  std::int64_t at = index;
  for (std::size_t l = 0; l + 1 < widths.size() && at >= 0; ++l) {
    const std::int64_t in = widths[l], out = widths[l + 1];
    const std::string layer = "layer " + std::to_string(l);
    if (at < in * out) {
      return layer + " weight [" + std::to_string(at / in) + ", " + std::to_string(at % in) + "]";
    }
    at -= in * out;
    if (at < out) return layer + " bias [" + std::to_string(at) + "]";
    at -= out;
  }
  return "index " + std::to_string(index) + " (past the last parameter)";
}

std::string Mlp::describe() const { return describe_architecture(widths_, activations_); }

void Mlp::init(Init init, std::uint64_t seed) {
  for (int l = 0; l < layers(); ++l) {
    const std::int64_t in = widths_[static_cast<std::size_t>(l)];
    const std::int64_t out = widths_[static_cast<std::size_t>(l) + 1];
    const std::int64_t w_at = weight_offset(l), b_at = w_at + in * out;
    VectorView<float> w = params_.view().slice(w_at, in * out);
    VectorView<float> b = params_.view().slice(b_at, out);
    double bound = 0.0;
    switch (init) {
      case Init::torch_default:
        bound = 1.0 / std::sqrt(static_cast<double>(in));
        break;
      case Init::xavier:
        bound = std::sqrt(6.0 / static_cast<double>(in + out));
        break;
      case Init::he:
        bound = std::sqrt(6.0 / static_cast<double>(in));
        break;
    }
    const auto a = static_cast<float>(bound);
    fill_uniform(ctx_, w, -a, a, seed, static_cast<std::uint64_t>(w_at));
    if (init == Init::torch_default) {
      fill_uniform(ctx_, b, -a, a, seed, static_cast<std::uint64_t>(b_at));
    } else {
      fill(ctx_, b, 0.0f);
    }
  }
  refresh_bf16();
}

void Mlp::refresh_bf16() {
  if (precision_ == Precision::bf16) convert(ctx_, params(), params_bf16());
}

namespace {

void check_layer(const Mlp& m, int layer) {
  if (layer < 0 || layer >= m.layers()) {
    throw ArgumentError("Mlp: layer: expected 0 .. " + std::to_string(m.layers() - 1) + ", got " +
                        std::to_string(layer));
  }
}

}  // namespace

template <class T>
MatrixView<T> Mlp::weight_in(Buffer<T>& flat, int layer) {
  check_layer(*this, layer);
  const auto l = static_cast<std::size_t>(layer);
  return flat.view()
      .slice(offsets_[l], widths_[l] * widths_[l + 1])
      .as_matrix(widths_[l + 1], widths_[l]);
}

VectorView<float> Mlp::bias_in(Buffer<float>& flat, int layer) {
  check_layer(*this, layer);
  const auto l = static_cast<std::size_t>(layer);
  return flat.view().slice(offsets_[l] + widths_[l] * widths_[l + 1], widths_[l + 1]);
}

MatrixView<float> Mlp::weight(int layer) { return weight_in(params_, layer); }
VectorView<float> Mlp::bias(int layer) { return bias_in(params_, layer); }
MatrixView<float> Mlp::weight_grad(int layer) { return weight_in(grads_, layer); }
VectorView<float> Mlp::bias_grad(int layer) { return bias_in(grads_, layer); }

template <class T>
MatrixView<const T> Mlp::weight_as(int layer) {
  if constexpr (std::is_same_v<T, bf16>) {
    return weight_in(params_bf16_, layer);
  } else {
    return weight_in(params_, layer);
  }
}

std::vector<float> Mlp::params_to_host() const { return params_.to_host(ctx_); }

void Mlp::params_from_host(std::span<const float> host) {
  if (static_cast<std::int64_t>(host.size()) != params_.size()) {
    throw ShapeError("Mlp::params_from_host: expected " + std::to_string(params_.size()) +
                     " parameters for " + describe() + ", got " + std::to_string(host.size()));
  }
  params_.copy_from_host(ctx_, host);
  refresh_bf16();
}

void Mlp::set_scaling(Scaling s) {
  validate(s, inputs(), outputs());
  scaling_ = std::move(s);
}

std::vector<float> Mlp::predict(std::span<const float> x, std::int64_t rows) {
  if (rows < 1 || static_cast<std::int64_t>(x.size()) != rows * inputs()) {
    throw ArgumentError("Mlp::predict: x: expected rows (" + std::to_string(rows) + ") x " +
                        std::to_string(inputs()) + " inputs, got " + std::to_string(x.size()) +
                        " values");
  }
  std::vector<float> scaled(x.begin(), x.end());
  scaling_.to_network_inputs(scaled, rows, inputs());
  const Buffer<float> input(ctx_, std::span<const float>(scaled));
  std::vector<float> out = to_host(ctx_, forward(input.matrix(rows, inputs())).output);
  scaling_.from_network_outputs(out, rows, outputs());
  return out;
}

std::vector<float> Mlp::params_with_scaling_folded() const {
  std::vector<float> p = params_to_host();
  const auto fold = [&](int layer, auto&& weight, auto&& bias) {
    const std::int64_t in = widths_[static_cast<std::size_t>(layer)];
    const std::int64_t out = widths_[static_cast<std::size_t>(layer) + 1];
    float* w = p.data() + weight_offset(layer);
    float* b = w + out * in;
    for (std::int64_t i = 0; i < out; ++i) {
      double shift = 0.0;
      for (std::int64_t j = 0; j < in; ++j) weight(w[i * in + j], i, j, shift);
      bias(b[i], i, shift);
    }
  };
  if (scaling_.scales_inputs()) {
    const std::vector<float>&m = scaling_.input_mean, &s = scaling_.input_scale;
    fold(
        0,
        [&](float& w, std::int64_t, std::int64_t j, double& shift) {
          const auto ju = static_cast<std::size_t>(j);
          shift += static_cast<double>(w) * m[ju] / s[ju];
          w = static_cast<float>(static_cast<double>(w) / s[ju]);
        },
        [](float& b, std::int64_t, double shift) {
          b = static_cast<float>(static_cast<double>(b) - shift);
        });
  }
  if (scaling_.scales_outputs()) {
    if (activations_.back() != Activation::identity) {
      throw ArgumentError(std::string("Mlp: an output scaling cannot be folded through the last "
                                      "layer's ") +
                          to_string(activations_.back()) + "; only an identity last layer folds");
    }
    const std::vector<float>&mu = scaling_.output_mean, &sigma = scaling_.output_scale;
    fold(
        layers() - 1,
        [&](float& w, std::int64_t i, std::int64_t, double&) {
          w = static_cast<float>(static_cast<double>(w) * sigma[static_cast<std::size_t>(i)]);
        },
        [&](float& b, std::int64_t i, double) {
          const auto iu = static_cast<std::size_t>(i);
          b = static_cast<float>(static_cast<double>(b) * sigma[iu] + mu[iu]);
        });
  }
  return p;
}

void Mlp::reserve(std::int64_t rows) {
  if (rows <= max_batch_) return;
  // Every activation size fits 64 bits (an ArgumentError, never a wrapped short allocation).
  for (std::size_t l = 1; l < widths_.size(); ++l) {
    std::int64_t n = 0;
    if (__builtin_mul_overflow(rows, widths_[l], &n) ||
        n > std::numeric_limits<std::int64_t>::max() / 8) {
      throw ArgumentError("Mlp::reserve: rows: " + std::to_string(rows) + " rows of " + describe() +
                          " overflow 64-bit sizes");
    }
  }
  // Refuse what cannot fit before anything is released: the model stays as it was.
  const double extra = (activation_floats(widths_, activations_, rows) -
                        activation_floats(widths_, activations_, max_batch_)) *
                       sizeof(float);
  const double have = device_memory(ctx_);
  if (extra > have) {
    char text[200];
    std::snprintf(text, sizeof text,
                  "%.3g more bytes for the activations of %lld rows, but %s has %.3g bytes %s",
                  extra, static_cast<long long>(rows), ctx_.device().str().c_str(), have,
                  detail::backend_of(ctx_).memory_bytes_are);
    throw OutOfMemory("Mlp::reserve: " + describe() + " needs " + text +
                      "; use smaller batches (the model keeps its " + std::to_string(max_batch_) +
                      " rows)");
  }
  const std::int64_t before = max_batch_;
  try {
    allocate_activations(rows);
  } catch (const OutOfMemory&) {
    // The device said no after all (other users of its memory): give back what the larger set
    // took and restore the previous one, which fitted before. If even that fails, the model
    // holds no activations and the next forward allocates them again.
    max_batch_ = 0;
    allocate_activations(before);  // releases the partial larger set first
    max_batch_ = before;
    throw;
  }
  max_batch_ = rows;
  ++generation_;  // the activations moved: no earlier pass may be differentiated
}

template <class T>
Mlp::ActivationBuffers<T>& Mlp::buffers() {
  if constexpr (std::is_same_v<T, bf16>) {
    return bf16_;
  } else {
    return fp32_;
  }
}

// Releases the activation buffers, then allocates them for `rows` rows (none for 0): peak
// memory is one set of buffers, not two.
void Mlp::allocate_activations(std::int64_t rows) {
  for (std::size_t l = 0; l < activations_.size(); ++l) {
    fp32_.y[l] = Buffer<float>();
    bf16_.y[l] = Buffer<bf16>();
    pre_[l] = Buffer<float>();
  }
  for (int k = 0; k < 2; ++k) {
    fp32_.dy[k] = Buffer<float>();
    bf16_.dy[k] = Buffer<bf16>();
  }
  x_bf16_ = Buffer<bf16>();
  logits_ = Buffer<float>();
  dlogits_ = Buffer<float>();
  if (rows == 0) return;
  if (precision_ == Precision::bf16) {
    allocate_as<bf16>(rows);
    x_bf16_ = Buffer<bf16>(ctx_, rows * inputs());
    logits_ = Buffer<float>(ctx_, rows * outputs());
    dlogits_ = Buffer<float>(ctx_, rows * outputs());
  } else {
    allocate_as<float>(rows);
  }
}

// The activations of `rows` rows in T (the pre-activations are fp32 in every precision).
template <class T>
void Mlp::allocate_as(std::int64_t rows) {
  ActivationBuffers<T>& a = buffers<T>();
  for (std::size_t l = 0; l < activations_.size(); ++l) {
    const std::int64_t n = rows * widths_[l + 1];
    a.y[l] = Buffer<T>(ctx_, n);
    if (activations_[l] == Activation::gelu) pre_[l] = Buffer<float>(ctx_, n);
  }
  const std::int64_t widest = *std::max_element(widths_.begin() + 1, widths_.end());
  for (int k = 0; k < 2; ++k) a.dy[k] = Buffer<T>(ctx_, rows * widest);
}

void Mlp::check_input(const char* op, MatrixView<const float> x) const {
  if (x.cols != inputs() || x.rows < 1) {
    throw ShapeError(std::string(op) + ": x: expected [rows >= 1, " + std::to_string(inputs()) +
                     "] for " + describe() + ", got [" + std::to_string(x.rows) + ", " +
                     std::to_string(x.cols) + "]");
  }
}

namespace {

// Rows [0, rows) of a contiguous matrix held in a buffer, as one vector (for convert).
template <class T>
VectorView<T> leading(Buffer<T>& b, std::int64_t rows, std::int64_t cols) {
  return b.view().slice(0, rows * cols);
}

}  // namespace

ForwardPass Mlp::forward(MatrixView<const float> x) {
  check_input("Mlp::forward", x);
  reserve(x.rows);
  ForwardPass pass;
  pass.input = x;
  pass.output = forward_logits(x);
  pass.output_grad = output_grad(x.rows);
  pass.generation = ++generation_;
  return pass;
}

MatrixView<const float> Mlp::forward_logits(MatrixView<const float> x) {
  if (precision_ == Precision::fp32) return forward_as<float>(x);
  // bf16: the layers run on a bf16 copy of x, and the loss works on fp32 logits.
  if (!x.contiguous()) {
    throw ShapeError("Mlp::forward: x: bf16 models need a contiguous x (ld == cols), got ld " +
                     std::to_string(x.ld) + " for " + std::to_string(x.cols) + " columns");
  }
  const std::int64_t rows = x.rows;
  convert(ctx_, VectorView<const float>(x.data, rows * x.cols, x.device),
          leading(x_bf16_, rows, inputs()));
  const MatrixView<const bf16> out = forward_as<bf16>(x_bf16_.matrix(rows, inputs()));
  convert(ctx_, VectorView<const bf16>(out.data, rows * outputs(), out.device),
          leading(logits_, rows, outputs()));
  return logits_.matrix(rows, outputs());
}

int Mlp::fused_run(int first) const {
  const detail::Backend& be = detail::backend_of(ctx_);
  if (!fused_layers_ || be.fused_hidden_forward == nullptr || precision_ != Precision::bf16) {
    return 0;
  }
  const std::int64_t width = widths_[static_cast<std::size_t>(first)];
  if (!be.fused_width(width)) return 0;
  int run = 0;
  while (first + run < layers() && widths_[static_cast<std::size_t>(first + run + 1)] == width) {
    ++run;
  }
  return run >= 2 ? run : 0;
}

template <class T>
MatrixView<const T> Mlp::forward_as(MatrixView<const T> x) {
  ActivationBuffers<T>& a = buffers<T>();
  const std::int64_t rows = x.rows;
  MatrixView<const T> in = x;
  for (int l = 0; l < layers(); ++l) {
    if constexpr (std::is_same_v<T, bf16>) {
      if (const int run = fused_run(l); run > 0) {
        // Layers l .. l + run - 1 in chunks of one fused launch each, written to the same
        // buffers the layer-by-layer path writes (the backward pass reads them).
        constexpr int kChunk = detail::kMaxFusedLayers;
        detail::FusedLayer stack[kChunk];
        for (int done = 0; done < run; done += kChunk) {
          const int n = std::min(kChunk, run - done);
          for (int j = 0; j < n; ++j) {
            const auto i = static_cast<std::size_t>(l + done + j);
            stack[j] = {weight_as<bf16>(l + done + j).data, bias(l + done + j).data,
                        activations_[i], a.y[i].data(),
                        pre_[i].size() > 0 ? pre_[i].data() : nullptr};
          }
          detail::fused_hidden_forward(ctx_, in, stack, n);
          const auto last = static_cast<std::size_t>(l + done + n - 1);
          in = a.y[last].matrix(rows, widths_[last + 1]);
        }
        l += run - 1;
        continue;
      }
    }
    const auto i = static_cast<std::size_t>(l);
    const std::int64_t out = widths_[i + 1];
    MatrixView<T> y = a.y[i].matrix(rows, out);
    MatrixView<float> pre = pre_[i].size() > 0 ? pre_[i].matrix(rows, out) : MatrixView<float>();
    dense_forward(ctx_, in, weight_as<T>(l), bias(l), activations_[i], y, pre);
    in = y;
  }
  return in;
}

MatrixView<float> Mlp::output_grad(std::int64_t rows) {
  if (rows < 1 || rows > max_batch_) {
    throw ArgumentError("Mlp::output_grad: rows: expected 1 .. " + std::to_string(max_batch_) +
                        ", got " + std::to_string(rows));
  }
  if (precision_ == Precision::bf16) return dlogits_.matrix(rows, outputs());
  return fp32_.dy[static_cast<std::size_t>(layers() - 1) % 2].matrix(rows, outputs());
}

void Mlp::backward(const ForwardPass& pass, const std::function<void(int)>& on_layer) {
  if (pass.generation == 0 || pass.generation != generation_) {
    throw ArgumentError("Mlp::backward: pass: " +
                        std::string(pass.generation == 0
                                        ? "not made by Mlp::forward"
                                        : "an earlier forward's, whose activations a later "
                                          "forward or reserve has overwritten") +
                        "; call backward with the pass of the latest forward");
  }
  const MatrixView<const float> x = pass.input;
  check_input("Mlp::backward", x);
  if (x.rows > max_batch_) {
    throw ArgumentError("Mlp::backward: x: " + std::to_string(x.rows) +
                        " rows, more than the last forward could have held (" +
                        std::to_string(max_batch_) + ")");
  }
  if (precision_ == Precision::fp32) {
    backward_as<float>(x, on_layer);
    return;
  }
  // bf16: the loss wrote fp32 logit gradients; the layers read the bf16 copy of x the forward
  // made.
  const std::int64_t rows = x.rows;
  const auto last = static_cast<std::size_t>(layers() - 1);
  convert(ctx_, leading(dlogits_, rows, outputs()), leading(bf16_.dy[last % 2], rows, outputs()));
  backward_as<bf16>(x_bf16_.matrix(rows, inputs()), on_layer);
}

template <class T>
void Mlp::backward_as(MatrixView<const T> x, const std::function<void(int)>& on_layer) {
  ActivationBuffers<T>& a = buffers<T>();
  const std::int64_t rows = x.rows;
  for (int l = layers() - 1; l >= 0; --l) {
    const auto i = static_cast<std::size_t>(l);
    const std::int64_t out = widths_[i + 1];
    MatrixView<const T> in = l == 0 ? x : MatrixView<const T>(a.y[i - 1].matrix(rows, widths_[i]));
    MatrixView<const float> pre = pre_[i].size() > 0
                                      ? MatrixView<const float>(pre_[i].matrix(rows, out))
                                      : MatrixView<const float>();
    DenseGradsOf<T> g;
    g.dw = weight_grad(l);
    g.db = bias_grad(l);
    if (l > 0) g.dx = a.dy[(i - 1) % 2].matrix(rows, widths_[i]);
    dense_backward(ctx_, in, weight_as<T>(l), a.y[i].matrix(rows, out), pre,
                   a.dy[i % 2].matrix(rows, out), activations_[i], g);
    if (on_layer) on_layer(l);
  }
}

}  // namespace descent
