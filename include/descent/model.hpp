// Mlp: a multi-layer perceptron whose parameters, gradients and activations live on a Context.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "descent/buffer.hpp"
#include "descent/context.hpp"
#include "descent/export.h"
#include "descent/ops.hpp"
#include "descent/scaling.hpp"

DESCENT_API_BEGIN

namespace descent {

// How the parameters are drawn (fan_in = inputs of a layer, fan_out = its outputs):
//   torch_default: W and b ~ U(±1/sqrt(fan_in))           (torch.nn.Linear's default)
//   xavier:        W ~ U(±sqrt(6/(fan_in+fan_out))), b = 0 (Glorot uniform)
//   he:            W ~ U(±sqrt(6/fan_in)), b = 0           (Kaiming uniform, ReLU gain)
enum class Init { torch_default, xavier, he };
// "torch", "xavier", "he".
const char* to_string(Init init);
Init parse_init(const char* text);

// What the matrix products read and the activations are stored in. fp32: everything fp32.
// bf16: bf16 activations and a bf16 copy of the weights (rewritten by each SGD update in the same
// pass), with fp32 master weights, biases, gradients, pre-activations, logits and losses.
enum class Precision { fp32, bf16 };
// "fp32", "bf16".
const char* to_string(Precision p);
Precision parse_precision(const char* text);

struct MlpOptions {
  Init init = Init::torch_default;
  std::uint64_t seed = 0;
  // Rows the activation buffers are sized for at construction. A larger batch grows them once
  // (outside any captured step); a smaller one uses the leading rows.
  std::int64_t max_batch = 256;
  Precision precision = Precision::fp32;
  // CUDA, bf16 precision: every run of two or more consecutive hidden layers of one width in
  // 16, 32, 64 or 128 goes through one fused kernel (the activations stay on chip between the
  // layers) instead of one matrix product each; same results up to the order of the sums.
  // Off by default until it has been verified on a GPU.
  bool fused_layers = false;
};

// "784-512-256-10 (relu, relu, identity)": the widths joined by '-', the activations listed.
std::string describe_architecture(const std::vector<std::int64_t>& widths,
                                  const std::vector<Activation>& activations);
// Which parameter flat index `index` of an Mlp with these widths is, in the flat layout (per
// layer its weight [out, in] row by row, then its bias [out]): "layer 1 weight [2, 3]",
// "layer 0 bias [4]"; "index N (past the last parameter)" when outside.
std::string parameter_name(const std::vector<std::int64_t>& widths, std::int64_t index);

// What a forward pass leaves for its backward pass, handed over explicitly: the input it read, the
// output it wrote, and where a loss writes dL/d(output), which backward reads. A pass belongs to
// one forward of one model (generation): backward refuses a pass whose activations a later
// forward or reserve has overwritten.
struct ForwardPass {
  MatrixView<const float> input;
  MatrixView<const float> output;  // [rows, outputs()]
  MatrixView<float> output_grad;   // [rows, outputs()]: the loss's gradient goes here
  std::uint64_t generation = 0;
  // The output, so that `MatrixView<const float> y = model.forward(x)` reads as it always did.
  operator MatrixView<const float>() const { return output; }
  std::int64_t rows() const { return output.rows; }
};

// Layers l = 0 .. L-1 map widths[l] inputs to widths[l+1] outputs: y = act_l(x · W_lᵀ + b_l).
//
// All parameters live in one contiguous fp32 buffer: layer 0's W [out, in] row-major, then its
// b [out], then layer 1's W and b, and so on. The gradient buffer has the same layout, so the
// optimizer is one pass and a checkpoint is one blob. Initialisation uses fill_uniform with the
// element's index in the flat buffer as the Philox offset: the same seed gives bit-identical
// weights on every backend.
//
// The Mlp holds a handle of its Context (a copy sharing the device state), so the Context
// object it was made with may be moved or destroyed first.
class Mlp {
 public:
  // Hidden layers use `hidden`, the last layer is the identity (it produces logits).
  Mlp(const Context& ctx, std::vector<std::int64_t> widths, Activation hidden = Activation::relu,
      MlpOptions options = {});
  // One activation per layer (activations.size() == widths.size() - 1).
  Mlp(const Context& ctx, std::vector<std::int64_t> widths, std::vector<Activation> activations,
      MlpOptions options = {});
  Mlp(Mlp&&) noexcept;
  Mlp& operator=(Mlp&&) noexcept;
  Mlp(const Mlp&) = delete;
  Mlp& operator=(const Mlp&) = delete;
  ~Mlp();

  const Context& context() const { return ctx_; }
  int layers() const { return static_cast<int>(activations_.size()); }
  const std::vector<std::int64_t>& widths() const { return widths_; }
  const std::vector<Activation>& activations() const { return activations_; }
  std::int64_t inputs() const { return widths_.front(); }
  std::int64_t outputs() const { return widths_.back(); }
  std::int64_t parameter_count() const { return params_.size(); }
  // "784-512-256-10 (relu, relu, identity)": describe_architecture(widths(), activations()).
  std::string describe() const;

  // Redraws every parameter.
  void init(Init init, std::uint64_t seed);

  VectorView<float> params() { return params_.view(); }
  VectorView<const float> params() const { return params_.view(); }
  VectorView<float> grads() { return grads_.view(); }
  VectorView<const float> grads() const { return grads_.view(); }
  Precision precision() const { return precision_; }
  // MlpOptions::fused_layers as given.
  bool fused_layers() const { return fused_layers_; }
  // The bf16 copy of the parameters (empty for fp32), same layout as params().
  VectorView<bf16> params_bf16() { return params_bf16_.view(); }
  // Rewrites the bf16 copy from the fp32 parameters (init and params_from_host do it).
  void refresh_bf16();
  // Views of layer l's parameters and gradients inside the flat buffers.
  MatrixView<float> weight(int layer);
  VectorView<float> bias(int layer);
  MatrixView<float> weight_grad(int layer);
  VectorView<float> bias_grad(int layer);
  // Offset of layer l's W in the flat buffer (its b follows W).
  std::int64_t weight_offset(int layer) const { return offsets_[static_cast<std::size_t>(layer)]; }

  std::vector<float> params_to_host() const;
  void params_from_host(std::span<const float> host);

  // Grows the activation buffers to hold `rows` rows (never shrinks). Allocates only when rows
  // exceeds max_batch(). Strong guarantee: OutOfMemory (refused up front when the device's
  // memory cannot hold the larger set, or thrown by the allocator) leaves the model with its
  // previous buffers and max_batch(); rows whose sizes overflow 64 bits are an ArgumentError.
  void reserve(std::int64_t rows);
  std::int64_t max_batch() const { return max_batch_; }

  // Queues the forward pass of x [rows, inputs()]: the pass holds the output [rows, outputs()]
  // (and converts to it) and the view a loss writes dL/d(output) into for backward. Valid until
  // the next forward or a reserve that grows the model.
  ForwardPass forward(MatrixView<const float> x);
  // Queues the backward pass of `pass` (the latest forward: an earlier one is an ArgumentError,
  // its activations are gone): from pass.output_grad and the activations, writes the gradients
  // of every parameter (overwriting them). on_layer(l), when given, is called on the host right
  // after layer l's gradients are queued, for l = layers() - 1 down to 0 (data-parallel training
  // starts summing them there, while the layers before are still being differentiated).
  void backward(const ForwardPass& pass, const std::function<void(int layer)>& on_layer = {});

  // The scaling kept with the model (descent/scaling.hpp; empty: none) and in its checkpoints.
  // forward(), backward() and the trainers work in the network's own units (train on data scaled
  // by it: Dataset::apply, Scaling::to_network_inputs / to_network_outputs); predict() and the C
  // API's descent_model_predict answer in the caller's units.
  const Scaling& scaling() const { return scaling_; }
  // ArgumentError (validate) when it does not fit the model; the old scaling stays then.
  void set_scaling(Scaling s);
  // The outputs [rows, outputs()] in the caller's units for x [rows, inputs()] (host memory,
  // row-major, in the caller's units): the scaling applied around forward(); returns once done.
  std::vector<float> predict(std::span<const float> x, std::int64_t rows);
  // The parameters with the scaling folded into the first and last layers (W/s and b − W·m/s in
  // the first; σ·W and σ·b + μ in the last, summed in double): a plain network that answers in
  // the caller's units, as ONNX and safetensors exports carry it (to within float rounding).
  // ArgumentError when there is an output scaling and the last layer's activation is not the
  // identity (the scaling cannot pass through it).
  std::vector<float> params_with_scaling_folded() const;

 private:
  // The activations of one element type: each layer's output and two ping-pong output gradients.
  // Only the set of the model's precision holds memory; fp32 and bf16 run the same code on it.
  template <class T>
  struct ActivationBuffers {
    std::vector<Buffer<T>> y;  // per layer: output [max_batch, out]
    Buffer<T> dy[2];           // ping-pong output gradients [max_batch, max width]
  };

  void allocate_activations(std::int64_t rows);
  template <class T>
  void allocate_as(std::int64_t rows);
  void check_input(const char* op, MatrixView<const float> x) const;
  template <class T>
  ActivationBuffers<T>& buffers();
  // Layer l's W and b inside a flat buffer (the parameters, their gradients or the bf16 copy).
  template <class T>
  MatrixView<T> weight_in(Buffer<T>& flat, int layer);
  VectorView<float> bias_in(Buffer<float>& flat, int layer);
  // Layer l's W in element type T: the fp32 parameters or their bf16 copy.
  template <class T>
  MatrixView<const T> weight_as(int layer);
  // The forward pass of x to fp32 logits (a bf16 model converts on the way).
  MatrixView<const float> forward_logits(MatrixView<const float> x);
  // The forward and backward passes in element type T over x [rows, inputs()] in T.
  template <class T>
  MatrixView<const T> forward_as(MatrixView<const T> x);
  template <class T>
  void backward_as(MatrixView<const T> x, const std::function<void(int)>& on_layer);

  Context ctx_;  // a handle: the model keeps its device state alive
  std::vector<std::int64_t> widths_;
  std::vector<Activation> activations_;
  std::vector<std::int64_t> offsets_;  // per layer: offset of W; b follows at + out*in
  Buffer<float> params_, grads_;
  std::int64_t max_batch_ = 0;
  std::uint64_t generation_ = 0;  // forwards and growing reserves so far (ForwardPass)
  // Where a loss writes dL/d(output) for the last forward of `rows` rows.
  MatrixView<float> output_grad(std::int64_t rows);
  std::vector<Buffer<float>> pre_;  // per layer: pre-activation (gelu only, else empty); fp32
  ActivationBuffers<float> fp32_;
  ActivationBuffers<bf16> bf16_;
  // bf16 only: the weight copy, the input in bf16, and the fp32 logits and logit gradients the
  // loss works on.
  Precision precision_ = Precision::fp32;
  bool fused_layers_ = false;
  // Layers from `first` on that the fused path takes (MlpOptions::fused_layers), 0 for none.
  int fused_run(int first) const;
  Buffer<bf16> params_bf16_, x_bf16_;
  Buffer<float> logits_, dlogits_;
  Scaling scaling_;
};

}  // namespace descent

DESCENT_API_END
