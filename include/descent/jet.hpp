// Derivatives of an Mlp with respect to its inputs (forward jets) and gradients through them, for
// losses on derivatives of the network: physics-informed residuals, Sobolev and Eikonal terms;
// and the first-order input gradient ∂ℓ/∂x by one reverse pass (forces).
//
// For K input directions v_k (unit vectors by default) and weights c_k, a jet carries with each
// sample its value h, its directional derivatives J_k = (∂h/∂x) v_k and the weighted
// second-derivative sum L = Σ_k c_k v_kᵀ (∇²h) v_k (the Laplacian when V = I and c = 1) through
// the layers. The blocks are stacked as rows [h; J_1..J_K; L] (batch B gives (K+2)·B rows), so a
// layer is one matrix product forward and one per gradient backward, and the activation is one
// elementwise pass each way; docs/training-step.md derives the recurrences. The backward pass
// accumulates into the model's flat gradient buffer, so optimizers, clipping, checkpoints and
// data-parallel gradient sums work unchanged. Everything is fp32 (a bf16 model's jets read its
// fp32 master weights).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "descent/buffer.hpp"
#include "descent/context.hpp"
#include "descent/export.h"
#include "descent/jet_ops.hpp"
#include "descent/model.hpp"
#include "descent/ops.hpp"

DESCENT_API_BEGIN

namespace descent {

// ---------------------------------------------------------------- jets through an Mlp

struct JetOptions {
  // The directions v_k, K rows of inputs() floats (row-major, on the host); empty: the unit
  // vectors e_1..e_n (K = inputs(): ∂_k u are the partial derivatives, L the Laplacian).
  std::vector<float> directions;
  // c_k, K floats; empty: all 1.
  std::vector<float> weights;
  // Carry L (and need σ''' backward). false: value and first derivatives only, which relu allows.
  bool second_order = true;
  // One per layer to use instead of the model's activations (empty: the model's own), e.g.
  // softplus or silu, which an Mlp cannot hold yet. The model's forward() still uses its own.
  std::vector<JetActivation> activations;
};

struct JetAdjoints;
struct PdeResidual;

// A jet forward pass of one batch through an Mlp and what its backward pass needs: each layer's
// stacked input and pre-activation. Made by jet_forward; reused by the next jet_forward with
// the same options (its buffers grow with the batch and are kept).
class Jet {
 public:
  // Checks the options against the model (ArgumentError names the wrong one); no pass yet.
  Jet(const Mlp& model, JetOptions options);
  Jet(Jet&&) noexcept;
  Jet& operator=(Jet&&) noexcept;
  Jet(const Jet&) = delete;
  Jet& operator=(const Jet&) = delete;
  ~Jet();

  int directions() const { return blocks_.directions; }
  bool second_order() const { return blocks_.second_order; }
  const JetOptions& options() const { return options_; }
  // Rows of the last forward pass (0 before the first).
  std::int64_t batch() const { return blocks_.batch; }

  // The outputs of the last forward pass, each [batch, outputs()], valid until the next one:
  // u, ∂_k u = (∂u/∂x) v_k for k in [0, K), and Σ_k c_k v_kᵀ (∇²u) v_k (second_order only).
  MatrixView<const float> value() const { return block(0); }
  MatrixView<const float> derivative(int k) const;
  MatrixView<const float> second() const;

 private:
  friend void jet_forward(Mlp&, MatrixView<const float>, Jet&);
  friend void jet_backward(Mlp&, Jet&, const JetAdjoints&);
  friend void input_gradient(Mlp&, MatrixView<const float>, MatrixView<const float>,
                             MatrixView<float>);
  friend JetAdjoints pde_residual_loss(Jet&, const PdeResidual&, MatrixView<const float>,
                                       VectorView<float>, float, bool, std::int64_t);
  friend void pde_residual_step(Mlp&, MatrixView<const float>, Jet&, const PdeResidual&,
                                MatrixView<const float>, VectorView<float>, float, bool,
                                std::int64_t);
  Jet(const Mlp& model, JetOptions options, int directions);  // K = directions, no checks
  void reserve(std::int64_t batch);
  // The output blocks alone, for pde_residual_step's slices, which keep no layer's blocks.
  void reserve_outputs(std::int64_t batch);
  MatrixView<const float> block(int b) const;
  // The stacked output blocks, row-major [rows, outputs]: h_'s last in the row-major layout or
  // with one output, out_ otherwise.
  MatrixView<const float> output() const;

  Context ctx_;
  JetOptions options_;
  std::vector<std::int64_t> widths_;
  std::vector<JetActivation> acts_;
  JetBlocks blocks_;
  Buffer<float> weights_;      // c_k on the device
  std::vector<float> inputs_;  // the constant input rows: v_k per direction block, then zeros
  std::int64_t capacity_ = 0;  // rows per block the buffers hold
  std::int64_t output_capacity_ = 0;  // rows per block the output buffer holds (reserve_outputs)
  std::int64_t input_rows_ = 0;       // batch whose constant input rows h_[0] holds
  // Whether the buffers below are feature-major ([width, rows]: the backend's whole-layer
  // passes, Backend::jet_layer_forward_t) or row-major ([rows, width]: dense ops and jet
  // activation passes).
  bool feature_major_ = false;
  std::vector<Buffer<float>> h_;  // per layer l: its stacked input [rows, widths[l]]; [L]: output
  std::vector<Buffer<float>> z_;  // per layer: stacked pre-activation [rows, widths[l + 1]]
  Buffer<float> out_;             // feature-major with several outputs: h_'s last, row-major
  // per layer: σ' of the value block [batch, widths[l + 1]] for the backward pass, where the
  // backend keeps it (tanh on the CPU); empty otherwise
  std::vector<Buffer<float>> slope_;
  Buffer<float> dh_[2], dz_;    // backward: ping-pong input adjoints, pre-activation adjoints
  Buffer<float> dw_scratch_;    // input_gradient: the weight gradients nobody asked for
  Buffer<float> adjoint_;       // pde_residual_loss: the stacked adjoints it returns views of
  Buffer<float> coefficients_;  // pde_residual_loss: a, c, b_k, d_k on the device
  // Whether the layers' blocks of the last pass are kept (jet_forward), so that jet_backward
  // can run; pde_residual_step keeps none.
  bool layers_kept_ = false;
};

// Queues the jet forward pass of x [batch, inputs()] (the model's fp32 parameters); the outputs
// are then read with jet.value(), jet.derivative(k), jet.second().
void jet_forward(Mlp& model, MatrixView<const float> x, Jet& jet);
// The same into a new Jet.
Jet jet_forward(Mlp& model, MatrixView<const float> x, const JetOptions& options = {});

// The adjoints of a loss ℓ with respect to the jet's outputs, each [batch, outputs()] on the
// model's device; an empty view stands for zero (so a loss on u alone gives only `value`).
struct JetAdjoints {
  MatrixView<const float> value{};                   // ∂ℓ/∂u
  std::vector<MatrixView<const float>> derivatives;  // ∂ℓ/∂(∂_k u): empty, or K views
  MatrixView<const float> second{};                  // ∂ℓ/∂(second-order sum)
  // Add the parameter gradients to model.grads() (false: overwrite them).
  bool accumulate = true;
  // Optional: receives ∂ℓ/∂x [batch, inputs()].
  MatrixView<float> dx{};
};

// Queues the backward pass of the last jet_forward of `jet` (the model's parameters must not
// have changed in between): the gradients of ℓ with respect to every parameter go into
// model.grads() (the same flat layout as Mlp::backward's).
void jet_backward(Mlp& model, Jet& jet, const JetAdjoints& adjoints);

// A PDE residual in the terms a jet carries, per point and output:
//   r = a·u + Σ_k b_k ∂_k u + c·L + Σ_k d_k u ∂_k u − f(x)
// (L the second-order sum; with unit directions over (t, x), u_t + u u_x − ν u_xx is
// b = {1, 0}, d = {0, 1}, and c = −ν with weights c_k = {0, 1}). b and d: K floats or empty (0).
struct PdeResidual {
  float a = 0.0f;
  std::vector<float> b;
  float c = 0.0f;
  std::vector<float> d;
};

// loss[0] = weight · mean over batch × outputs of r² (added to it when accumulate), for the
// last jet_forward of `jet`, with f = source [batch, outputs()] (empty: 0); value and adjoints
// in one pass. Returns the adjoints for jet_backward: views into the jet, valid until the next
// call. Boundary and initial conditions are ordinary mse_loss terms at their own points; any
// other loss forms its own JetAdjoints. Data parallel, each rank holding a shard of a global
// batch of mean_rows points (0: this batch is the whole), the mean is over the global batch:
// each rank's value and gradients are its share, and their sums over the ranks
// (Communicator::sum_gradients) are the whole batch's.
JetAdjoints pde_residual_loss(Jet& jet, const PdeResidual& residual, MatrixView<const float> source,
                              VectorView<float> loss, float weight = 1.0f, bool accumulate = false,
                              std::int64_t mean_rows = 0);

// One physics-informed term in one call: jet_forward(model, x, jet), then
// pde_residual_loss(jet, residual, source, loss, weight, false, mean_rows), then jet_backward
// with its adjoints (the gradients added to model.grads(); accumulate false: overwritten). The
// results agree with those three calls to rounding; loss[0] is written. Where the backend has a
// whole-network pass (the CPU, with the feature-major layout, for networks of up to 65,536
// parameters) it runs every layer over slices of points held in cache, forward and back, and
// keeps (and allocates) no layer's blocks, only the outputs. On every backend and path,
// jet.value(), jet.derivative(k) and jet.second() then hold the outputs, and jet_backward needs
// a jet_forward first. The same bits for any thread count.
void pde_residual_step(Mlp& model, MatrixView<const float> x, Jet& jet, const PdeResidual& residual,
                       MatrixView<const float> source, VectorView<float> loss, float weight = 1.0f,
                       bool accumulate = true, std::int64_t mean_rows = 0);

// ∂ℓ/∂x [batch, inputs()] = dy · ∂u/∂x for x [batch, inputs()] and dy = ∂ℓ/∂u [batch,
// outputs()], by one forward and one reverse pass; the model's gradients are left alone.
// With ℓ = Σ u (dy all ones) on a 1-output model this is ∇u, e.g. forces from an energy.
void input_gradient(Mlp& model, MatrixView<const float> x, MatrixView<const float> dy,
                    MatrixView<float> dx);

// ---------------------------------------------------------------- float64 on the CPU
//
// float32 resolves a residual to about 1e-7 of its largest term, and L-BFGS on a stiff problem
// stalls where its loss moves by less than that (Burgers' shock: docs/pinn.md). JetF64 evaluates
// the same residual and value losses in float64 throughout on the host CPU, for float64
// parameters the caller holds in the Mlp's flat layout (params_f64 copies a model's out,
// params_from_f64 rounds them back into it, e.g. to checkpoint or export); LBfgsF64
// (descent/optimizer.hpp) minimises over them. The whole network runs over slices of points held
// in cache, as pde_residual_step's; the same bits for any thread count.
class JetF64 {
 public:
  // The model's widths and activations (options.activations replacing them as for a Jet), the
  // directions and weights of `options`, checked as Jet's; the model's parameters are not read,
  // and it may live on any device (the evaluation runs on the host, with the model's CPU threads,
  // or all of them for a GPU model).
  JetF64(const Mlp& model, JetOptions options = {});

  std::int64_t inputs() const { return widths_.front(); }
  std::int64_t outputs() const { return widths_.back(); }
  std::int64_t parameter_count() const { return parameters_; }
  int directions() const { return directions_; }
  const JetOptions& options() const { return options_; }

  // weight · mean over rows × outputs() of r², r = a·u + Σ_k b_k ∂_k u + c·L + Σ_k d_k u ∂_k u − f
  // (pde_residual_loss's terms, its coefficients' floats), at x [rows, inputs()] row-major (rows
  // = x.size() / inputs()), f = source [rows, outputs()] (empty: 0), for the parameters params.
  // Its gradient with respect to them is added to grad (accumulate) or written to it.
  double pde_residual_step(std::span<const double> params, std::span<const double> x,
                           const PdeResidual& residual, std::span<const double> source,
                           std::span<double> grad, double weight = 1.0,
                           bool accumulate = true) const;
  // weight · mean over rows × outputs() of (u − target)², the value alone (boundary and initial
  // conditions), target [rows, outputs()]; its gradient as pde_residual_step's.
  double mse_step(std::span<const double> params, std::span<const double> x,
                  std::span<const double> target, std::span<double> grad, double weight = 1.0,
                  bool accumulate = true) const;
  // u [rows, outputs()] at x.
  std::vector<double> predict(std::span<const double> params, std::span<const double> x) const;

 private:
  double run(const char* op, std::span<const double> params, std::span<const double> x, bool jets,
             const std::vector<double>& coefficients, std::span<const double> source, double* grad,
             std::size_t grad_size, double weight, bool accumulate, double* y) const;

  Context ctx_;
  JetOptions options_;
  std::vector<std::int64_t> widths_;
  std::int64_t parameters_ = 0;
  int directions_ = 0;
  std::vector<double> v_, c_;  // the directions and their weights in float64
};

// A model's parameters as float64 (the flat layout), and back, rounded to the nearest float
// (ArgumentError for a size that is not parameter_count() or a value that is not finite).
std::vector<double> params_f64(const Mlp& model);
void params_from_f64(Mlp& model, std::span<const double> params);

}  // namespace descent

DESCENT_API_END
