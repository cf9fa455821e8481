// The fused MLP path of the CUDA backend (fused_mlp.cu): the hidden layers of one width run in
// one kernel on tensor cores, their activations kept in shared memory between layers.
#pragma once

#include <cstdint>

#include "kernels/backend.hpp"

namespace descent::cuda {

// Widths the fused kernels take: 16, 32, 64, 128.
bool fused_width(std::int64_t width);
// Backend::fused_hidden_forward.
void fused_hidden_forward(const Context& ctx, MatrixView<const bf16> x,
                          const detail::FusedLayer* layers, int count);

}  // namespace descent::cuda
