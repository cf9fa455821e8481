// The argument checks of the jet API (descent/jet.hpp), defined with the other ops' checks in
// src/ops.cpp, so that every message has the same shape ("op: argument: found …, expected …").
#pragma once

#include <cstdint>
#include <vector>

#include "descent/jet.hpp"

namespace descent::detail {

// Jet(model, options): the directions, weights and activations against the model's widths and
// activations (relu with second_order is refused, saying why).
void check_jet_options(const Context& ctx, const std::vector<std::int64_t>& widths,
                       const std::vector<Activation>& model_activations, const JetOptions& options);
// The options checked (check_jet_options) and completed: the unit vectors for no directions,
// weights of 1 for none, the model's activations for none (Jet's and JetF64's constructors).
JetOptions complete_jet_options(const Mlp& model, JetOptions options);
// A jet op's model against the widths its Jet was made for, and its input x [rows, inputs].
void check_jet_model(const char* op, const Context& ctx, const std::vector<std::int64_t>& widths,
                     const Mlp& model);
void check_jet_input(const char* op, const Context& ctx, std::int64_t inputs,
                     MatrixView<const float> x);
// jet_backward's adjoints for a Jet whose last forward pass had `blocks`.
void check_jet_adjoints(const Context& ctx, const JetBlocks& blocks, std::int64_t inputs,
                        std::int64_t outputs, const JetAdjoints& adjoints);
// input_gradient's dy [x.rows, outputs] and dx [x.rows, inputs].
void check_input_gradient(const Context& ctx, std::int64_t inputs, std::int64_t outputs,
                          MatrixView<const float> x, MatrixView<const float> dy,
                          MatrixView<float> dx);

// A residual's coefficients and weight against a Jet whose last forward pass had `blocks`; `op`
// (pde_residual_loss or pde_residual_step) names the call in the message.
void check_pde_residual(const char* op, const Context& ctx, const JetBlocks& blocks,
                        const PdeResidual& residual, float weight);

// pde_residual_step's source [batch, outputs] (or empty) and loss (at least one float, apart
// from the source).
void check_residual_step(const Context& ctx, const JetBlocks& blocks, std::int64_t outputs,
                         MatrixView<const float> source, VectorView<float> loss);

}  // namespace descent::detail
