// Forward jets through an Mlp: the stacked blocks [h; J_1..J_K; L] go through each layer as one
// matrix product (dense_forward without bias) and one jet activation pass (which adds the bias to
// the value block); backward, one jet activation pass and one matrix product per gradient
// (dense_backward), accumulating into the model's flat gradient buffer.
#include "descent/jet.hpp"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>

#include "descent/error.hpp"
#include "enum_names.hpp"
#include "jet_check.hpp"
#include "kernels/backend.hpp"

namespace descent {

namespace {

constexpr detail::EnumName<JetActivation> kJetActivationNames[] = {
    {JetActivation::identity, "identity"}, {JetActivation::relu, "relu"},
    {JetActivation::sigmoid, "sigmoid"},   {JetActivation::tanh, "tanh"},
    {JetActivation::gelu, "gelu"},         {JetActivation::softplus, "softplus"},
    {JetActivation::silu, "silu"},         {JetActivation::silu, "swish"}};

// The jet ids of descent::Activation's functions are its own ids.
static_assert(static_cast<int>(JetActivation::identity) == static_cast<int>(Activation::identity));
static_assert(static_cast<int>(JetActivation::relu) == static_cast<int>(Activation::relu));
static_assert(static_cast<int>(JetActivation::sigmoid) == static_cast<int>(Activation::sigmoid));
static_assert(static_cast<int>(JetActivation::tanh) == static_cast<int>(Activation::tanh));
static_assert(static_cast<int>(JetActivation::gelu) == static_cast<int>(Activation::gelu));

constexpr std::size_t kFloat = sizeof(float);

// Rows [first * batch, (first + count) * batch) of a stacked matrix.
template <class T>
MatrixView<T> blocks_of(MatrixView<T> m, std::int64_t batch, std::int64_t first,
                        std::int64_t count = 1) {
  return m.row_block(first * batch, count * batch);
}

// The backend's whole-layer feature-major passes where it has them, unless
// DESCENT_JET_LAYOUT=rows asks for the row-major ones (to compare the two on one machine).
bool uses_feature_major(const Context& ctx) {
  if (detail::backend_of(ctx).jet_layer_forward_t == nullptr) return false;
  const char* layout = std::getenv("DESCENT_JET_LAYOUT");
  return layout == nullptr || std::string_view(layout) != "rows";
}

// Column c of a row-major [rows, cols] matrix (leading dimension ld) to and from row c of a
// feature-major one [cols, ld_t]: one strided copy per column.
void columns_to_rows(const Context& ctx, const float* src, std::int64_t ld, Device src_device,
                     std::int64_t rows, std::int64_t cols, float* dst, std::int64_t ld_t,
                     Device dst_device) {
  for (std::int64_t c = 0; c < cols; ++c) {
    detail::copy_rows(ctx, dst + c * ld_t, kFloat, dst_device, src + c, ld * kFloat, src_device,
                      kFloat, rows);
  }
}
void rows_to_columns(const Context& ctx, const float* src, std::int64_t ld_t, Device src_device,
                     std::int64_t rows, std::int64_t cols, float* dst, std::int64_t ld,
                     Device dst_device) {
  for (std::int64_t c = 0; c < cols; ++c) {
    detail::copy_rows(ctx, dst + c, ld * kFloat, dst_device, src + c * ld_t, kFloat, src_device,
                      kFloat, rows);
  }
}

}  // namespace

const char* to_string(JetActivation a) { return detail::name_of(kJetActivationNames, a); }
JetActivation parse_jet_activation(const char* text) {
  return detail::parse_enum(kJetActivationNames, text, "jet activation");
}
JetActivation jet_activation(Activation a) {
  return static_cast<JetActivation>(static_cast<int>(a));
}

JetOptions detail::complete_jet_options(const Mlp& model, JetOptions options) {
  detail::check_jet_options(model.context(), model.widths(), model.activations(), options);
  const std::int64_t inputs = model.inputs();
  const auto k = options.directions.empty()
                     ? inputs
                     : static_cast<std::int64_t>(options.directions.size()) / inputs;
  if (options.directions.empty()) {
    options.directions.assign(static_cast<std::size_t>(k * inputs), 0.0f);
    for (std::int64_t i = 0; i < k; ++i) options.directions[i * inputs + i] = 1.0f;
  }
  if (options.weights.empty()) options.weights.assign(static_cast<std::size_t>(k), 1.0f);
  if (options.activations.empty()) {
    for (Activation a : model.activations()) options.activations.push_back(jet_activation(a));
  }
  return options;
}

Jet::Jet(const Mlp& model, JetOptions options)
    : ctx_(model.context()),
      options_(detail::complete_jet_options(model, std::move(options))),
      widths_(model.widths()) {
  const auto k = static_cast<std::int64_t>(options_.weights.size());
  blocks_.directions = static_cast<int>(k);
  blocks_.second_order = options_.second_order;
  feature_major_ = uses_feature_major(ctx_);
  weights_ = Buffer<float>(ctx_, std::span<const float>(options_.weights));
  blocks_.weights = weights_.view();
}

Jet::Jet(const Mlp& model, JetOptions options, int directions)
    : ctx_(model.context()), options_(std::move(options)), widths_(model.widths()) {
  for (Activation a : model.activations()) options_.activations.push_back(jet_activation(a));
  blocks_.directions = directions;
  blocks_.second_order = options_.second_order;
  feature_major_ = uses_feature_major(ctx_);
}

Jet::Jet(Jet&&) noexcept = default;
Jet& Jet::operator=(Jet&&) noexcept = default;
Jet::~Jet() = default;

MatrixView<const float> Jet::output() const {
  const std::int64_t out = widths_.back();
  if (h_.empty()) return {};
  // Feature-major [1, rows] is row-major [rows, 1].
  return feature_major_ && out > 1 ? out_.matrix(blocks_.rows(), out)
                                   : h_.back().matrix(blocks_.rows(), out);
}

MatrixView<const float> Jet::block(int b) const {
  const MatrixView<const float> all = output();
  return all.empty() ? all : blocks_of(all, blocks_.batch, b);
}

MatrixView<const float> Jet::derivative(int k) const {
  if (k < 0 || k >= blocks_.directions) {
    throw ArgumentError("Jet::derivative: k: expected a direction in [0, " +
                        std::to_string(blocks_.directions) + "), got " + std::to_string(k));
  }
  return block(1 + k);
}

MatrixView<const float> Jet::second() const {
  if (!blocks_.second_order) {
    throw ArgumentError(
        "Jet::second: the jet has no second-order block (JetOptions::second_order "
        "is false)");
  }
  return block(1 + blocks_.directions);
}

void Jet::reserve(std::int64_t batch) {
  if (batch <= capacity_) return;
  const std::int64_t rows = batch * blocks_.blocks();
  const int layers = static_cast<int>(widths_.size()) - 1;
  const std::int64_t widest = *std::max_element(widths_.begin(), widths_.end());
  // Build the new set first, so a failed allocation leaves the old one usable.
  std::vector<Buffer<float>> h, z, slope(static_cast<std::size_t>(layers));
  for (int l = 0; l <= layers; ++l) h.emplace_back(ctx_, rows * widths_[l]);
  for (int l = 0; l < layers; ++l) z.emplace_back(ctx_, rows * widths_[l + 1]);
  const bool keeps_slopes = detail::backend_of(ctx_).jet_activation_forward_saving != nullptr;
  for (int l = 0; l < layers; ++l) {
    if (keeps_slopes && options_.activations[static_cast<std::size_t>(l)] == JetActivation::tanh) {
      slope[static_cast<std::size_t>(l)] = Buffer<float>(ctx_, batch * widths_[l + 1]);
    }
  }
  Buffer<float> dh0(ctx_, rows * widest), dh1(ctx_, rows * widest), dz(ctx_, rows * widest);
  Buffer<float> out;
  if (feature_major_ && widths_.back() > 1) out = Buffer<float>(ctx_, rows * widths_.back());
  h_ = std::move(h);
  out_ = std::move(out);
  z_ = std::move(z);
  slope_ = std::move(slope);
  dh_[0] = std::move(dh0);
  dh_[1] = std::move(dh1);
  dz_ = std::move(dz);
  capacity_ = batch;
  output_capacity_ = batch;  // the outputs were made anew too
  input_rows_ = 0;
}

void Jet::reserve_outputs(std::int64_t batch) {
  if (batch <= capacity_ || batch <= output_capacity_) return;
  const std::int64_t rows = batch * blocks_.blocks(), out = widths_.back();
  // Where output() reads them: out_ for several outputs by feature, else h_'s last.
  Buffer<float> fresh(ctx_, rows * out);
  if (h_.empty()) h_.resize(widths_.size());  // output() reads nothing from an empty h_
  if (feature_major_ && out > 1) {
    out_ = std::move(fresh);
  } else {
    h_.back() = std::move(fresh);
  }
  output_capacity_ = batch;
}

void jet_forward(Mlp& model, MatrixView<const float> x, Jet& jet) {
  const Context& ctx = jet.ctx_;
  detail::check_jet_model("jet_forward", ctx, jet.widths_, model);
  detail::check_jet_input("jet_forward", ctx, jet.widths_.front(), x);
  const std::int64_t batch = x.rows, in = jet.widths_.front();
  jet.reserve(batch);
  jet.blocks_.batch = batch;
  jet.layers_kept_ = true;
  const JetBlocks& blocks = jet.blocks_;
  const std::int64_t rows = blocks.rows();

  if (jet.feature_major_) {
    // The same jet by feature: x's columns, then in each feature's row v_k's component of that
    // feature over every point of block k, then zeros.
    const detail::Backend& backend = detail::backend_of(ctx);
    columns_to_rows(ctx, x.data, x.ld, x.device, batch, in, jet.h_[0].data(), rows, ctx.device());
    if (jet.input_rows_ != batch && rows > batch) {
      std::vector<float> constant(static_cast<std::size_t>(rows - batch), 0.0f);
      for (std::int64_t i = 0; i < in; ++i) {
        for (int k = 0; k < blocks.directions; ++k) {
          std::fill_n(constant.begin() + k * batch, batch, jet.options_.directions[k * in + i]);
        }
        jet.h_[0].copy_from_host(ctx, constant, i * rows + batch);
      }
    }
    jet.input_rows_ = batch;
    for (int l = 0; l < model.layers(); ++l) {
      const std::int64_t n_in = jet.widths_[l], out = jet.widths_[l + 1];
      Buffer<float>& slope = jet.slope_[static_cast<std::size_t>(l)];
      backend.jet_layer_forward_t(
          ctx, blocks, jet.options_.activations[l], model.weight(l), model.bias(l),
          std::as_const(jet.h_[l]).matrix(n_in, rows), jet.z_[l].matrix(out, rows),
          jet.h_[l + 1].matrix(out, rows),
          slope.size() > 0 ? slope.matrix(out, batch) : MatrixView<float>());
    }
    const std::int64_t out = jet.widths_.back();
    if (out > 1) {
      rows_to_columns(ctx, jet.h_.back().data(), rows, ctx.device(), rows, out, jet.out_.data(),
                      out, ctx.device());
    }
    return;
  }

  // The input's jet: x, then each direction v_k in every row of its block (∂x/∂x · v_k), then
  // zeros (x has no curvature). The constant rows are written once per batch size.
  MatrixView<float> h0 = jet.h_[0].matrix(rows, in);
  detail::copy_rows(ctx, h0.data, in * kFloat, h0.device, x.data, x.ld * kFloat, x.device,
                    in * kFloat, batch);
  if (jet.input_rows_ != batch && rows > batch) {
    std::vector<float> constant(static_cast<std::size_t>((rows - batch) * in), 0.0f);
    for (int k = 0; k < blocks.directions; ++k) {
      const float* v = jet.options_.directions.data() + k * in;
      for (std::int64_t r = 0; r < batch; ++r) {
        std::copy(v, v + in, constant.begin() + (k * batch + r) * in);
      }
    }
    jet.h_[0].copy_from_host(ctx, constant, batch * in);
  }
  jet.input_rows_ = batch;

  for (int l = 0; l < model.layers(); ++l) {
    const std::int64_t out = jet.widths_[l + 1];
    const MatrixView<float> z = jet.z_[l].matrix(rows, out);
    dense_forward(ctx, jet.h_[l].matrix(rows, jet.widths_[l]), model.weight(l), {},
                  Activation::identity, z);
    // σ' of the value block kept for the backward pass where the Jet keeps one (reserve).
    Buffer<float>& slope = jet.slope_[static_cast<std::size_t>(l)];
    jet_activation_forward(ctx, blocks, jet.options_.activations[l], model.bias(l), z,
                           jet.h_[l + 1].matrix(rows, out),
                           slope.size() > 0 ? slope.matrix(batch, out) : MatrixView<float>());
  }
}

Jet jet_forward(Mlp& model, MatrixView<const float> x, const JetOptions& options) {
  Jet jet(model, options);
  jet_forward(model, x, jet);
  return jet;
}

namespace {

// The backward pass of a Jet's last forward pass: `params` false leaves the model's gradients
// alone (the weight gradients go to `dw_scratch`, which holds the largest layer's).
void backward_pass(Mlp& model, const Context& ctx, const JetBlocks& blocks,
                   const std::vector<std::int64_t>& widths, const std::vector<JetActivation>& acts,
                   std::vector<Buffer<float>>& h, std::vector<Buffer<float>>& z,
                   const std::vector<Buffer<float>>& slopes, Buffer<float> (&dh)[2],
                   Buffer<float>& dz, const JetAdjoints& adjoints, bool params,
                   Buffer<float>* dw_scratch, bool feature_major) {
  const std::int64_t batch = blocks.batch, rows = blocks.rows();
  const int layers = static_cast<int>(widths.size()) - 1;
  const std::int64_t out = widths.back(), in = widths.front();

  // The adjoints of the output blocks, stacked as the blocks are (zero where not given); by
  // feature, they are stacked row-major in dz first where there are several outputs.
  MatrixView<float> top = feature_major && out > 1 ? dz.matrix(rows, out) : dh[0].matrix(rows, out);
  const auto place = [&](std::int64_t b, MatrixView<const float> a) {
    MatrixView<float> dst = blocks_of(top, batch, b);
    if (a.empty()) {
      fill(ctx, VectorView<float>(dst.data, batch * out, dst.device), 0.0f);
    } else {
      detail::copy_rows(ctx, dst.data, out * kFloat, dst.device, a.data, a.ld * kFloat, a.device,
                        out * kFloat, batch);
    }
  };
  place(0, adjoints.value);
  for (int k = 0; k < blocks.directions; ++k) {
    place(1 + k,
          adjoints.derivatives.empty() ? MatrixView<const float>() : adjoints.derivatives[k]);
  }
  if (blocks.second_order) place(1 + blocks.directions, adjoints.second);

  if (feature_major) {
    const detail::Backend& backend = detail::backend_of(ctx);
    if (out > 1) {
      columns_to_rows(ctx, top.data, out, ctx.device(), rows, out, dh[0].data(), rows,
                      ctx.device());
    }
    int cur = 0;
    for (int l = layers - 1; l >= 0; --l) {
      const std::int64_t n_out = widths[l + 1], n_in = widths[l];
      const Buffer<float>& slope = slopes[static_cast<std::size_t>(l)];
      const bool need_dx = l > 0 || !adjoints.dx.empty();
      const MatrixView<float> dw =
          params ? model.weight_grad(l)
                 : dw_scratch->view().slice(0, n_out * n_in).as_matrix(n_out, n_in);
      backend.jet_layer_backward_t(
          ctx, blocks, acts[l], model.weight(l), std::as_const(h[l]).matrix(n_in, rows),
          std::as_const(z[l]).matrix(n_out, rows), std::as_const(h[l + 1]).matrix(n_out, rows),
          slope.size() > 0 ? slope.matrix(n_out, batch) : MatrixView<const float>(),
          std::as_const(dh[cur]).matrix(n_out, rows), dz.matrix(n_out, rows), dw,
          params ? model.bias_grad(l) : VectorView<float>(), params && adjoints.accumulate,
          need_dx ? dh[1 - cur].matrix(n_in, rows) : MatrixView<float>());
      cur = 1 - cur;
    }
    if (!adjoints.dx.empty()) {
      rows_to_columns(ctx, dh[cur].data(), rows, ctx.device(), batch, in, adjoints.dx.data,
                      adjoints.dx.ld, adjoints.dx.device);
    }
    return;
  }

  int cur = 0;
  for (int l = layers - 1; l >= 0; --l) {
    const std::int64_t n_out = widths[l + 1], n_in = widths[l];
    const MatrixView<const float> zl = z[l].matrix(rows, n_out);
    const MatrixView<float> dzl = dz.matrix(rows, n_out);
    // σ and σ' from the forward pass where it kept them (h[l + 1]'s value block, the slope).
    const Buffer<float>& slope = slopes[static_cast<std::size_t>(l)];
    jet_activation_backward(
        ctx, blocks, acts[l], zl, dh[cur].matrix(rows, n_out), dzl,
        params ? model.bias_grad(l) : VectorView<float>(), adjoints.accumulate,
        slope.size() > 0 ? std::as_const(h[l + 1]).matrix(rows, n_out) : MatrixView<const float>(),
        slope.size() > 0 ? slope.matrix(batch, n_out) : MatrixView<const float>());
    // Layer 0's input adjoint is needed only for dx, and then only its value block: the
    // direction and curvature rows of the input are constants.
    const bool need_dx = l > 0 || !adjoints.dx.empty();
    DenseGrads g;
    g.dx = need_dx ? dh[1 - cur].matrix(rows, n_in) : MatrixView<float>();
    g.dw = params ? model.weight_grad(l)
                  : dw_scratch->view().slice(0, n_out * n_in).as_matrix(n_out, n_in);
    g.accumulate = params && adjoints.accumulate;
    dense_backward(ctx, h[l].matrix(rows, n_in), model.weight(l), zl, {}, dzl, Activation::identity,
                   g);
    cur = 1 - cur;
  }
  if (!adjoints.dx.empty()) {
    const MatrixView<float> dx0 = dh[cur].matrix(rows, in);
    detail::copy_rows(ctx, adjoints.dx.data, adjoints.dx.ld * kFloat, adjoints.dx.device, dx0.data,
                      in * kFloat, dx0.device, in * kFloat, batch);
  }
}

}  // namespace

void jet_backward(Mlp& model, Jet& jet, const JetAdjoints& adjoints) {
  detail::check_jet_model("jet_backward", jet.ctx_, jet.widths_, model);
  detail::check_jet_adjoints(jet.ctx_, jet.blocks_, jet.widths_.front(), jet.widths_.back(),
                             adjoints);
  if (!jet.layers_kept_) {
    throw ArgumentError(
        "jet_backward: jet: its last pass was pde_residual_step, which keeps no layer's blocks "
        "(run jet_forward first)");
  }
  backward_pass(model, jet.ctx_, jet.blocks_, jet.widths_, jet.options_.activations, jet.h_, jet.z_,
                jet.slope_, jet.dh_, jet.dz_, adjoints, true, nullptr, jet.feature_major_);
}

namespace {

// The most parameters pde_residual_step takes through the backend's whole-network slices.
constexpr std::int64_t kSliceMaxParameters = std::int64_t(1) << 16;

// The residual's weight of this batch: checked (errors name `op`), and with mean_rows (a global
// batch this one is a shard of) scaled by the shard's share of the rows.
float residual_weight(const char* op, const Context& ctx, const JetBlocks& blocks,
                      const PdeResidual& residual, float weight, std::int64_t mean_rows) {
  detail::check_pde_residual(op, ctx, blocks, residual, weight);
  if (mean_rows != 0 && mean_rows < blocks.batch) {
    throw ArgumentError(std::string(op) + ": mean_rows: expected 0 or at least the batch's " +
                        std::to_string(blocks.batch) +
                        " rows (the global batch this one is a "
                        "shard of), got " +
                        std::to_string(mean_rows));
  }
  if (mean_rows > 0) {
    weight = static_cast<float>(static_cast<double>(weight) * static_cast<double>(blocks.batch) /
                                static_cast<double>(mean_rows));
  }
  return weight;
}

// The residual's coefficients {a, c, b_k, d_k} on the jet's device, in `buffer`.
void upload_coefficients(const Context& ctx, const PdeResidual& residual, std::int64_t k,
                         Buffer<float>& buffer) {
  std::vector<float> coefficients(static_cast<std::size_t>(2 + 2 * k), 0.0f);
  coefficients[0] = residual.a;
  coefficients[1] = residual.c;
  std::copy(residual.b.begin(), residual.b.end(), coefficients.begin() + 2);
  std::copy(residual.d.begin(), residual.d.end(), coefficients.begin() + 2 + k);
  if (buffer.size() != 2 + 2 * k) buffer = Buffer<float>(ctx, 2 + 2 * k);
  buffer.copy_from_host(ctx, coefficients);
}

}  // namespace

JetAdjoints pde_residual_loss(Jet& jet, const PdeResidual& residual, MatrixView<const float> source,
                              VectorView<float> loss, float weight, bool accumulate,
                              std::int64_t mean_rows) {
  const JetBlocks& blocks = jet.blocks_;
  weight = residual_weight("pde_residual_loss", jet.ctx_, blocks, residual, weight, mean_rows);
  const std::int64_t k = blocks.directions, out = jet.widths_.back();
  upload_coefficients(jet.ctx_, residual, k, jet.coefficients_);
  // (By the batch: after pde_residual_step only the outputs are reserved.)
  if (jet.adjoint_.size() < blocks.rows() * out) {
    jet.adjoint_ =
        Buffer<float>(jet.ctx_, std::max(jet.capacity_, blocks.batch) * blocks.blocks() * out);
  }
  const MatrixView<float> grad = jet.adjoint_.matrix(blocks.rows(), out);
  pde_residual_loss(jet.ctx_, blocks, jet.output(), jet.coefficients_.view(), source, weight, loss,
                    accumulate, grad);
  JetAdjoints a;
  a.value = blocks_of(grad, blocks.batch, 0);
  for (int i = 0; i < k; ++i) a.derivatives.push_back(blocks_of(grad, blocks.batch, 1 + i));
  if (blocks.second_order) a.second = blocks_of(grad, blocks.batch, 1 + k);
  return a;
}

void pde_residual_step(Mlp& model, MatrixView<const float> x, Jet& jet, const PdeResidual& residual,
                       MatrixView<const float> source, VectorView<float> loss, float weight,
                       bool accumulate, std::int64_t mean_rows) {
  const Context& ctx = jet.ctx_;
  // Every check before anything changes (the jet keeps its last pass if one fails), on either
  // path.
  detail::check_jet_model("pde_residual_step", ctx, jet.widths_, model);
  detail::check_jet_input("pde_residual_step", ctx, jet.widths_.front(), x);
  JetBlocks blocks = jet.blocks_;
  blocks.batch = x.rows;
  const float scaled =
      residual_weight("pde_residual_step", ctx, blocks, residual, weight, mean_rows);
  const std::int64_t out = jet.widths_.back();
  detail::check_residual_step(ctx, blocks, out, source, loss);
  const detail::Backend& backend = detail::backend_of(ctx);
  // The slices suit the small networks of physics-informed training: each thread keeps 16
  // partial sums of every parameter, so larger networks take the three calls.
  if (!jet.feature_major_ || backend.jet_residual_step_t == nullptr ||
      model.parameter_count() > kSliceMaxParameters) {
    jet_forward(model, x, jet);
    JetAdjoints a = pde_residual_loss(jet, residual, source, loss, weight, false, mean_rows);
    a.accumulate = accumulate;
    jet_backward(model, jet, a);
    jet.layers_kept_ = false;  // as after the slices: the same contract on every backend
    return;
  }
  weight = scaled;

  upload_coefficients(ctx, residual, blocks.directions, jet.coefficients_);
  jet.reserve_outputs(blocks.batch);
  std::vector<detail::JetNetworkLayer> layers;
  for (int l = 0; l < model.layers(); ++l) {
    layers.push_back({jet.options_.activations[static_cast<std::size_t>(l)], model.weight(l),
                      model.bias(l), model.weight_grad(l), model.bias_grad(l)});
  }
  // The outputs where jet.output() reads them: h_'s last ([rows] with one output) or out_.
  const MatrixView<float> y =
      out > 1 ? jet.out_.matrix(blocks.rows(), out) : jet.h_.back().matrix(blocks.rows(), 1);
  jet.blocks_.batch = 0;  // no usable pass while this one runs
  backend.jet_residual_step_t(ctx, blocks, layers.data(), model.layers(), x,
                              jet.options_.directions.data(), jet.coefficients_.view(), source,
                              weight, loss, accumulate, y);
  jet.blocks_.batch = blocks.batch;
  jet.layers_kept_ = false;
}

void input_gradient(Mlp& model, MatrixView<const float> x, MatrixView<const float> dy,
                    MatrixView<float> dx) {
  detail::check_input_gradient(model.context(), model.inputs(), model.outputs(), x, dy, dx);
  JetOptions first_order;
  first_order.second_order = false;
  Jet jet(model, std::move(first_order), 0);  // the value block alone
  jet_forward(model, x, jet);
  std::int64_t largest = 1;
  for (int l = 0; l < model.layers(); ++l) {
    largest = std::max(largest, model.widths()[l] * model.widths()[l + 1]);
  }
  jet.dw_scratch_ = Buffer<float>(jet.ctx_, largest);
  JetAdjoints a;
  a.value = dy;
  a.dx = dx;
  backward_pass(model, jet.ctx_, jet.blocks_, jet.widths_, jet.options_.activations, jet.h_, jet.z_,
                jet.slope_, jet.dh_, jet.dz_, a, false, &jet.dw_scratch_, jet.feature_major_);
}

}  // namespace descent
