// The functions of the CPU backend's table (kernels/cpu/backend.cpp), declared by the file that
// defines them. They trust their arguments: src/ops.cpp has validated them.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/backend.hpp"

namespace descent::cpu {

// backend.cpp: the context's host scratch of at least `floats` floats, valid until the next call
// on the same context (grown on demand and kept).
float* workspace(const Context& ctx, std::size_t floats);

// memory.cpp
double memory_bytes(const Context& ctx);
void* allocate(const Context& ctx, std::size_t bytes);
void deallocate(Device device, void* ptr) noexcept;
void store_float(const Context& ctx, float* dst, float value);

// dense.cpp
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

// loss.cpp
void mse_loss(const Context& ctx, MatrixView<const float> pred, MatrixView<const float> target,
              const LossOutput& out);
void softmax_cross_entropy(const Context& ctx, MatrixView<const float> logits,
                           VectorView<const std::int32_t> labels, const LossOutput& out);
void sigmoid_bce(const Context& ctx, MatrixView<const float> logits,
                 MatrixView<const float> targets, const LossOutput& out);
detail::ValueCheck find_label_outside(const Context& ctx, VectorView<const std::int32_t> labels,
                                      std::int64_t classes);
detail::ValueCheck find_target_outside_unit(const Context& ctx, MatrixView<const float> targets);

// optim.cpp
void sgd_update(const Context& ctx, VectorView<float> params, VectorView<const float> grads,
                VectorView<float> momentum, const SgdOptions& options, const SgdStep& step);
void adam_update(const Context& ctx, VectorView<float> params, VectorView<const float> grads,
                 VectorView<float> exp_avg, VectorView<float> exp_avg_sq,
                 VectorView<float> max_exp_avg_sq, const AdamOptions& options,
                 const AdamStep& step);
void clip_grad_norm(const Context& ctx, VectorView<const float> grads, float max_norm,
                    float norm_type, float* norm, float* scale);

// init.cpp
void fill_uniform(const Context& ctx, VectorView<float> out, float lo, float hi, std::uint64_t seed,
                  std::uint64_t offset);
void fill(const Context& ctx, VectorView<float> out, float value);

// convert.cpp
void check_finite(const Context& ctx, VectorView<const float> x, std::int32_t* flag);
void convert(const Context& ctx, VectorView<const float> in, VectorView<bf16> out);
void convert(const Context& ctx, VectorView<const bf16> in, VectorView<float> out);

// stats.cpp
void reset_stats(const Context& ctx, detail::StepStats* stats);
void record_batch(const Context& ctx, detail::StepStats* stats, const float* loss, double rows);
void count_correct(const Context& ctx, MatrixView<const float> logits,
                   VectorView<const std::int32_t> labels, detail::StepStats* stats);
void count_correct_binary(const Context& ctx, MatrixView<const float> logits,
                          MatrixView<const float> targets, detail::StepStats* stats);

// gather.cpp
void gather_rows(const Context& ctx, const std::uint8_t* data, std::int64_t features,
                 const std::int32_t* index, std::int64_t rows, float scale, float shift,
                 float* out);
void gather_rows(const Context& ctx, const float* data, std::int64_t features,
                 const std::int32_t* index, std::int64_t rows, float* out);
void gather_labels(const Context& ctx, const std::int32_t* labels, const std::int32_t* index,
                   std::int64_t rows, std::int32_t* out);

// jet.cpp
// slope (optional): σ'(z) of the value block, written by the forward pass; given with h to the
// backward pass (tanh), σ and σ' come from them instead of from z (the same bits).
void jet_activation_forward(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                            VectorView<const float> b, MatrixView<float> z, MatrixView<float> h,
                            MatrixView<float> slope);
void jet_activation_backward(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                             MatrixView<const float> z, MatrixView<const float> dh,
                             MatrixView<float> dz, VectorView<float> db, bool accumulate,
                             MatrixView<const float> h, MatrixView<const float> slope);
// The table's plain entries: no slope.
void jet_activation_forward_plain(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                                  VectorView<const float> b, MatrixView<float> z,
                                  MatrixView<float> h);
void jet_activation_backward_plain(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                                   MatrixView<const float> z, MatrixView<const float> dh,
                                   MatrixView<float> dz, VectorView<float> db, bool accumulate);
// Feature-major jet layers (Backend::jet_layer_forward_t / jet_layer_backward_t).
void jet_layer_forward_t(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                         MatrixView<const float> w, VectorView<const float> b,
                         MatrixView<const float> h, MatrixView<float> z, MatrixView<float> h_next,
                         MatrixView<float> slope);
void jet_layer_backward_t(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                          MatrixView<const float> w, MatrixView<const float> h,
                          MatrixView<const float> z, MatrixView<const float> h_next,
                          MatrixView<const float> slope, MatrixView<const float> dh_next,
                          MatrixView<float> dz, MatrixView<float> dw, VectorView<float> db,
                          bool accumulate, MatrixView<float> dh);
// The whole-network jet step over slices of points held in cache (Backend::jet_residual_step_t).
void jet_residual_step_t(const Context& ctx, const JetBlocks& blocks,
                         const detail::JetNetworkLayer* layers, int count,
                         MatrixView<const float> x, const float* directions,
                         VectorView<const float> coefficients, MatrixView<const float> source,
                         float weight, VectorView<float> loss, bool accumulate,
                         MatrixView<float> y);
// dense_slices.cpp: a whole training step of a small MLP over slices of rows
// (Backend::dense_slice_step).
void dense_slice_step(const Context& ctx, const detail::DenseNetworkLayer* layers, int count,
                      MatrixView<const float> x, const detail::SliceStepLoss& objective,
                      std::int64_t mean_rows, VectorView<float> loss);
// loss.cpp: one row of each loss (`cols` values of the prediction or logits z, the targets t or
// the label): writes the gradient row g (the loss's derivative times g_scale) and returns the
// row's loss sum. The losses above and the slice step share them, so their rows agree bit for
// bit.
double mse_row(const float* z, const float* t, float* g, std::int64_t cols, float g_scale);
double sigmoid_bce_row(const float* z, const float* t, float* g, std::int64_t cols, float g_scale);
double softmax_ce_row(const float* z, float* g, std::int64_t cols, std::int32_t label,
                      float g_scale);
// jet.cpp: the jet activation rows in float64, for jet64.cpp: `cols` values of one feature's
// row in each block (partners zs, hs, dhs, dzs values apart), the forward pass adding `bias`
// (cols values, or null) to the value block and writing σ' to `slope` (or null); the backward
// pass adding z̄ to part (or null) and, for tanh with h and slope given, reading σ and σ' from
// them.
struct JetRowsF64 {
  int directions;
  bool second_order;
  const double* weights;
  std::int64_t cols;
};
void jet_rows_forward_f64(JetActivation act, const JetRowsF64& rows, const double* bias, double* z,
                          std::int64_t zs, double* h, std::int64_t hs, double* slope);
void jet_rows_backward_f64(JetActivation act, const JetRowsF64& rows, const double* z,
                           std::int64_t zs, const double* dh, std::int64_t dhs, double* dz,
                           std::int64_t dzs, double* part, const double* h, const double* slope);
// jet64.cpp: the float64 whole-network step on the host (Backend::jet_residual_step_f64).
double jet_residual_step_f64(const Context& ctx, const detail::JetStepF64& step);
// jet_products.cpp, the products of jet_residual_step_t's slices (rows ld floats apart, cols a
// multiple of 32): z [out, cols] = w · h [in, cols], with w(i, j) = w[i · rs + j · cs] (rs = 1,
// cs = ld for the transpose); and dw [out, in] (row-major) += dz [out, cols] · h [in, cols]ᵀ,
// each element's 16 lane sums (columns c mod 16) folded in a fixed order (the same bits for
// every ISA variant that fuses its multiply-adds).
void slice_product(const float* w, std::int64_t rs, std::int64_t cs, std::int64_t out,
                   std::int64_t in, const float* h, std::int64_t ld, float* z, std::int64_t cols);
void slice_weight_gradient(const float* dz, std::int64_t out, const float* h, std::int64_t in,
                           std::int64_t ld, std::int64_t cols, float* dw);
// The same two in float64 (jet64.cpp; cols a multiple of 16), the gradient added straight to
// dw [out, in] (row-major): dw[i · in + j] += Σ_c dz[i, c] h[j, c].
void slice_product_f64(const double* w, std::int64_t rs, std::int64_t cs, std::int64_t out,
                       std::int64_t in, const double* h, std::int64_t ld, double* z,
                       std::int64_t cols);
void slice_weight_gradient_f64(const double* dz, std::int64_t out, const double* h, std::int64_t in,
                               std::int64_t ld, std::int64_t cols, double* dw);
// jet_products.cpp: dw [out, in] (+)= dz [out, rows] · h [in, rows]ᵀ (feature-major layers).
void jet_weight_gradient_t(const Context& ctx, MatrixView<const float> dz,
                           MatrixView<const float> h, MatrixView<float> dw, bool accumulate);
void pde_residual_loss(const Context& ctx, const JetBlocks& blocks, MatrixView<const float> y,
                       VectorView<const float> coefficients, MatrixView<const float> source,
                       float weight, VectorView<float> loss, bool accumulate,
                       MatrixView<float> grad);

}  // namespace descent::cpu
