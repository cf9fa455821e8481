// The low-level ops of forward jets (descent/jet.hpp runs them through an Mlp): the activation
// with its first three derivatives applied to stacked jet blocks, forward and backward. As for
// every op (descent/ops.hpp), an output may not share memory with another argument, except where
// an op says it works in place.
#pragma once

#include <cstdint>

#include "descent/buffer.hpp"
#include "descent/context.hpp"
#include "descent/export.h"
#include "descent/ops.hpp"

DESCENT_API_BEGIN

namespace descent {

// The activations a jet can differentiate: descent::Activation's (same ids) plus softplus
// (log(1 + eᶻ)) and silu (z·sigmoid(z), a.k.a. swish). softplus and silu exist on the jet path
// only for now: an Mlp, its checkpoints and ONNX export know only descent::Activation, so a model
// that uses them takes them through JetOptions::activations.
enum class JetActivation { identity, relu, sigmoid, tanh, gelu, softplus, silu };
// "identity", "relu", "sigmoid", "tanh", "gelu", "softplus", "silu".
const char* to_string(JetActivation a);
JetActivation parse_jet_activation(const char* text);
// The same function as a jet activation.
JetActivation jet_activation(Activation a);

// ---------------------------------------------------------------- the jet activation op

// The layout of a stacked jet matrix: `batch` rows of values, then `directions` blocks of
// `batch` rows of directional derivatives, then (second_order) `batch` rows of the weighted
// second-derivative sum. weights: the c_k, `directions` floats on the context's device.
struct JetBlocks {
  std::int64_t batch = 0;
  int directions = 0;
  VectorView<const float> weights{};
  bool second_order = true;
  std::int64_t blocks() const { return 1 + directions + (second_order ? 1 : 0); }
  std::int64_t rows() const { return batch * blocks(); }
};

// One activation on stacked jets, elementwise: z [rows, n] holds z, Ż_k, L_z (the layer's matrix
// product, without bias); b [n] (optional) is added to the value block of z in place, then
//   h = σ(z)   J_k = σ'(z) ⊙ Ż_k   L = σ'(z) ⊙ L_z + σ''(z) ⊙ Σ_k c_k Ż_k²
// are written to h [rows, n]. relu is refused when second_order (σ'' = 0 almost everywhere).
void jet_activation_forward(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                            VectorView<const float> b, MatrixView<float> z, MatrixView<float> h);

// Its backward pass: from z (as jet_activation_forward left it, bias included) and the adjoints
// dh [rows, n] of h, J_k, L, writes the adjoints dz [rows, n] of z, Ż_k, L_z:
//   L̄_z = σ' ⊙ L̄    Ż̄_k = σ' ⊙ J̄_k + 2 c_k σ'' ⊙ L̄ ⊙ Ż_k
//   z̄   = σ' ⊙ h̄ + σ'' ⊙ Σ_k J̄_k ⊙ Ż_k + (σ'' ⊙ L_z + σ''' ⊙ Σ_k c_k Ż_k²) ⊙ L̄
// and, when db [n] is given, db = Σ over the value rows of z̄ (added to it when accumulate), in a
// fixed order (the same bits for any thread count). dz may be dh (in place).
void jet_activation_backward(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                             MatrixView<const float> z, MatrixView<const float> dh,
                             MatrixView<float> dz, VectorView<float> db, bool accumulate = false);

// The same passes keeping σ' for the backward pass (tanh; the CPU backend, where the backward
// pass otherwise spends about half its time recomputing tanh from z): the forward pass also
// writes σ'(z) of the value block to slope [batch, n]; given that slope and the forward pass's h
// (its value block is σ(z)), the backward pass takes σ and σ' from them, with the same bits as
// from z. z must still be as the forward pass left it (its derivative blocks are read). Throws
// ArgumentError for another activation, for only one of h and slope, or on a device whose
// backend does not keep slopes (CUDA: pass none there).
void jet_activation_forward(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                            VectorView<const float> b, MatrixView<float> z, MatrixView<float> h,
                            MatrixView<float> slope);
void jet_activation_backward(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                             MatrixView<const float> z, MatrixView<const float> dh,
                             MatrixView<float> dz, VectorView<float> db, bool accumulate,
                             MatrixView<const float> h, MatrixView<const float> slope);

// The mean-square PDE residual of a jet's output, value and adjoints in one pass. y [rows, n]
// is the stacked jet output (u, ∂_k u, the second-order sum); per value element
//   r = a u + Σ_k b_k ∂_k u + c L + Σ_k d_k u ∂_k u − f      (f: source [batch, n], optional)
// and loss[0] = weight · mean of r² over batch × n (added to it when accumulate); grad [rows, n]
// receives the adjoints of that loss for every block. coefficients: 2 + 2K floats on the
// device, {a, c, b_0..b_{K-1}, d_0..d_{K-1}} (c must be 0 without a second-order block).
void pde_residual_loss(const Context& ctx, const JetBlocks& blocks, MatrixView<const float> y,
                       VectorView<const float> coefficients, MatrixView<const float> source,
                       float weight, VectorView<float> loss, bool accumulate,
                       MatrixView<float> grad);

}  // namespace descent

DESCENT_API_END
