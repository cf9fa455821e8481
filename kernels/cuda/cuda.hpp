// The functions of the CUDA backend's table (kernels/cuda/backend.cu), declared by the file that
// defines them, and the runtime the other CUDA files share. They trust their arguments:
// src/ops.cpp has validated them. Every launcher makes its context's device current first.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/backend.hpp"

namespace descent::cuda {

// runtime.cu
int device_count() noexcept;
void init_context(detail::ContextImpl& impl, void* user_stream);  // creates State, sets stream
void* stream(const detail::ContextImpl& impl);
void set_stream(detail::ContextImpl& impl, void* stream);
void synchronize(const detail::ContextImpl& impl);

// memory.cu
double memory_bytes(const Context& ctx);
void* allocate(const Context& ctx, std::size_t bytes);
void deallocate(Device device, void* ptr) noexcept;
void copy_bytes(const Context& ctx, void* dst, const void* src, std::size_t bytes);
void copy_rows(const Context& ctx, void* dst, std::size_t dst_pitch, const void* src,
               std::size_t src_pitch, std::size_t row_bytes, std::size_t rows);
void store_float(const Context& ctx, float* dst, float value);
// Raw device memory of `device` (the context's allocate calls it; so do the backend's own
// buffers).
void* allocate_on(std::size_t bytes, int device);  // throws OutOfMemory / DeviceError
void deallocate_on(void* ptr, int device) noexcept;

// dense.cu
void dense_forward(const Context& ctx, MatrixView<const float> x, MatrixView<const float> w,
                   VectorView<const float> b, Activation act, MatrixView<float> y,
                   MatrixView<float> pre);
void dense_backward(const Context& ctx, MatrixView<const float> x, MatrixView<const float> w,
                    MatrixView<const float> y, MatrixView<const float> pre,
                    MatrixView<const float> dy, Activation act, const DenseGrads& grads);
void dense_forward(const Context& ctx, MatrixView<const bf16> x, MatrixView<const bf16> w,
                   VectorView<const float> b, Activation act, MatrixView<bf16> y,
                   MatrixView<float> pre);
void dense_backward(const Context& ctx, MatrixView<const bf16> x, MatrixView<const bf16> w,
                    MatrixView<const bf16> y, MatrixView<const float> pre,
                    MatrixView<const bf16> dy, Activation act, const DenseGradsBf16& grads);

// loss.cu
void mse_loss(const Context& ctx, MatrixView<const float> pred, MatrixView<const float> target,
              const LossOutput& out);
void softmax_cross_entropy(const Context& ctx, MatrixView<const float> logits,
                           VectorView<const std::int32_t> labels, const LossOutput& out);
void sigmoid_bce(const Context& ctx, MatrixView<const float> logits,
                 MatrixView<const float> targets, const LossOutput& out);
detail::ValueCheck find_label_outside(const Context& ctx, VectorView<const std::int32_t> labels,
                                      std::int64_t classes);
detail::ValueCheck find_target_outside_unit(const Context& ctx, MatrixView<const float> targets);

// optim.cu
void sgd_update(const Context& ctx, VectorView<float> params, VectorView<const float> grads,
                VectorView<float> momentum, const SgdOptions& options, const SgdStep& step);
void adam_update(const Context& ctx, VectorView<float> params, VectorView<const float> grads,
                 VectorView<float> exp_avg, VectorView<float> exp_avg_sq,
                 VectorView<float> max_exp_avg_sq, const AdamOptions& options,
                 const AdamStep& step);
void clip_grad_norm(const Context& ctx, VectorView<const float> grads, float max_norm,
                    float norm_type, float* norm, float* scale);

// init.cu
void fill_uniform(const Context& ctx, VectorView<float> out, float lo, float hi, std::uint64_t seed,
                  std::uint64_t offset);
void fill(const Context& ctx, VectorView<float> out, float value);

// convert.cu
void check_finite(const Context& ctx, VectorView<const float> x, std::int32_t* flag);
void convert(const Context& ctx, VectorView<const float> in, VectorView<bf16> out);
void convert(const Context& ctx, VectorView<const bf16> in, VectorView<float> out);

// stats.cu
void reset_stats(const Context& ctx, detail::StepStats* stats);
void record_batch(const Context& ctx, detail::StepStats* stats, const float* loss, double rows);
void count_correct(const Context& ctx, MatrixView<const float> logits,
                   VectorView<const std::int32_t> labels, detail::StepStats* stats);
void count_correct_binary(const Context& ctx, MatrixView<const float> logits,
                          MatrixView<const float> targets, detail::StepStats* stats);

// gather.cu
void gather_rows(const Context& ctx, const std::uint8_t* data, std::int64_t features,
                 const std::int32_t* index, std::int64_t rows, float scale, float shift,
                 float* out);
void gather_rows(const Context& ctx, const float* data, std::int64_t features,
                 const std::int32_t* index, std::int64_t rows, float* out);
void gather_labels(const Context& ctx, const std::int32_t* labels, const std::int32_t* index,
                   std::int64_t rows, std::int32_t* out);

// graphs.cu
// Starts capturing the work queued on ctx's stream (thread-local capture mode).
void begin_capture(const Context& ctx);
// Ends the capture and instantiates it.
detail::Graph* end_capture(const Context& ctx);
// Ends a capture that failed and drops what was captured; never throws.
void abort_capture(const Context& ctx) noexcept;
// Queues one replay on ctx's stream.
void launch(const Context& ctx, detail::Graph& graph);
void destroy_graph(detail::Graph* graph) noexcept;
// How many times ctx's scratch was reallocated (State::scratch_generation).
std::uint64_t scratch_generation(const Context& ctx);

// side_stream.cu
detail::SideStream* create_side_stream(const Context& ctx);
void destroy_side_stream(detail::SideStream* side) noexcept;
void* side_stream_handle(detail::SideStream& side);
void side_fork(detail::SideStream& side, const Context& ctx);
void side_join(detail::SideStream& side, const Context& ctx);
void side_mark(detail::SideStream& side, const Context& ctx);
bool side_mark_done(detail::SideStream& side);
void clear_error(const Context& ctx) noexcept;
detail::DeviceIdentity device_identity(const Context& ctx);

// stager.cu
detail::Stager* create_stager(const Context& ctx, std::size_t slot_bytes);
void destroy_stager(detail::Stager* stager) noexcept;
void* stager_acquire(detail::Stager& stager);
const void* stager_submit(detail::Stager& stager, const Context& ctx, std::size_t bytes);
void stager_release(detail::Stager& stager, const Context& ctx);

// jet.cu
void jet_activation_forward(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                            VectorView<const float> b, MatrixView<float> z, MatrixView<float> h);
void jet_activation_backward(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                             MatrixView<const float> z, MatrixView<const float> dh,
                             MatrixView<float> dz, VectorView<float> db, bool accumulate);
void pde_residual_loss(const Context& ctx, const JetBlocks& blocks, MatrixView<const float> y,
                       VectorView<const float> coefficients, MatrixView<const float> source,
                       float weight, VectorView<float> loss, bool accumulate,
                       MatrixView<float> grad);

}  // namespace descent::cuda
