// The interface every backend implements. src/ops.cpp validates and then calls exactly one of
// these; backends trust their arguments (shapes agree, pointers are on the right device).
#pragma once

#include <cstdint>

#include "descent/ops.hpp"

#define DESCENT_BACKEND_OPS                                                                     \
  void dense_forward(const Context& ctx, MatrixView<const float> x, MatrixView<const float> w,  \
                     VectorView<const float> b, Activation act, MatrixView<float> y,            \
                     MatrixView<float> pre);                                                    \
  void dense_backward(const Context& ctx, MatrixView<const float> x, MatrixView<const float> w, \
                      MatrixView<const float> y, MatrixView<const float> pre,                   \
                      MatrixView<const float> dy, Activation act, const DenseGrads& grads);     \
  void dense_forward(const Context& ctx, MatrixView<const bf16> x, MatrixView<const bf16> w,    \
                     VectorView<const float> b, Activation act, MatrixView<bf16> y,             \
                     MatrixView<float> pre);                                                    \
  void dense_backward(const Context& ctx, MatrixView<const bf16> x, MatrixView<const bf16> w,   \
                      MatrixView<const bf16> y, MatrixView<const float> pre,                    \
                      MatrixView<const bf16> dy, Activation act, const DenseGradsBf16& grads);  \
  void mse_loss(const Context& ctx, MatrixView<const float> pred,                               \
                MatrixView<const float> target, const LossOutput& out);                         \
  void softmax_cross_entropy(const Context& ctx, MatrixView<const float> logits,                \
                             VectorView<const std::int32_t> labels, const LossOutput& out);     \
  void sigmoid_bce(const Context& ctx, MatrixView<const float> logits,                          \
                   MatrixView<const float> targets, const LossOutput& out);                     \
  void sgd_update(const Context& ctx, VectorView<float> params, VectorView<const float> grads,  \
                  VectorView<float> momentum, const SgdOptions& options, const SgdStep& step);  \
  void fill_uniform(const Context& ctx, VectorView<float> out, float lo, float hi,              \
                    std::uint64_t seed, std::uint64_t offset);                                  \
  void fill(const Context& ctx, VectorView<float> out, float value);                            \
  void check_finite(const Context& ctx, VectorView<const float> x, std::int32_t* flag);         \
  void convert(const Context& ctx, VectorView<const float> in, VectorView<bf16> out);           \
  void convert(const Context& ctx, VectorView<const bf16> in, VectorView<float> out);

namespace descent::cpu {
DESCENT_BACKEND_OPS
// Name of the GEMM library in use.
const char* gemm_name();
}  // namespace descent::cpu

namespace descent::cuda {
DESCENT_BACKEND_OPS
// Context/device/memory services of the CUDA backend (kernels/runtime.cu).
int device_count() noexcept;
void init_context(Context::Impl& impl, void* user_stream);  // creates State, sets impl.stream
void set_stream(Context::Impl& impl, void* stream);
void synchronize(const Context::Impl& impl);
void* allocate(std::size_t bytes, int device);  // throws OutOfMemory / DeviceError
void deallocate(void* ptr, int device) noexcept;
void copy_bytes(const Context::Impl& impl, void* dst, const void* src, std::size_t bytes);
}  // namespace descent::cuda

#include "context_impl.hpp"
