// The one interface every backend implements: a table of functions, one per op and per service
// the core objects need. The Context owns a pointer to its device's table (detail::backend_of);
// src/ops.cpp validates an op's arguments and calls exactly one entry, and Buffer, Mlp, Sgd,
// BatchLoader and Trainer reach a device only through the table. Backends trust their
// arguments (shapes agree, pointers are on the right device). The host library (src/) includes
// this header and nothing else of kernels/.
//
// clang-format off
// Which file defines which entry, in both backends (kernels/cpu/X.cpp <-> kernels/cuda/X.cu;
// the declarations: kernels/cpu/cpu.hpp, kernels/cuda/cuda.hpp):
//   init, stream, set_stream, synchronize ... cpu/backend.cpp     cuda/runtime.cu
//   copy, copy_rows ......................... cpu/backend.cpp     cuda/memory.cu
//   memory_bytes, allocate, deallocate,
//   store_float ............................. cpu/memory.cpp      cuda/memory.cu
//   dense_forward, dense_backward (+bf16) ... cpu/dense.cpp       cuda/dense.cu (+ matmul.cu)
//   mse_loss, softmax_cross_entropy,
//   sigmoid_bce, find_label_outside,
//   find_target_outside_unit ................ cpu/loss.cpp        cuda/loss.cu
//   sgd_update, adam_update, clip_grad_norm . cpu/optim.cpp       cuda/optim.cu
//   fill_uniform, fill ...................... cpu/init.cpp        cuda/init.cu
//   check_finite, to_bf16, to_float ......... cpu/convert.cpp     cuda/convert.cu
//   reset_stats, record_batch,
//   count_correct, count_correct_binary ..... cpu/stats.cpp       cuda/stats.cu
//   gather_rows_u8, gather_rows,
//   gather_labels ........................... cpu/gather.cpp      cuda/gather.cu
//   jet_activation_forward,
//   jet_activation_backward,
//   pde_residual_loss ....................... cpu/jet.cpp         cuda/jet.cu (math/jet.hpp)
// CUDA-only capabilities (null entries on the CPU):
//   begin/end/abort_capture, launch, destroy_graph, scratch_generation ...... cuda/graphs.cu
//   create/destroy_stager, stager_acquire/submit/release ..................... cuda/stager.cu
//   create/destroy_side_stream, side_stream, side_fork/join/mark/mark_done,
//   clear_error, device_identity ..................................... cuda/side_stream.cu
//   fused_width, fused_hidden_forward ......................................... cuda/fused_mlp.cu
// CPU-only capabilities (null entries on CUDA, whose jet backward recomputes σ and σ'):
//   jet_activation_forward_saving, jet_activation_backward_saved,
//   jet_layer_forward_t, jet_layer_backward_t, jet_residual_step_t ...... cpu/jet.cpp
//   jet_residual_step_f64 ............................................... cpu/jet64.cpp
//   dense_slice_step .............................................. cpu/dense_slices.cpp
// The math both backends share, down to the bit, is in kernels/math/ (activation, loss, sgd,
// adam, philox, step_stats); the tables themselves: cpu/backend.cpp, cuda/backend.cu. A build
// without CUDA links kernels/no_cuda.cpp, whose cuda_backend() throws DeviceError.
// clang-format on
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "descent/jet_ops.hpp"
#include "descent/ops.hpp"
#include "kernels/math/step_stats.hpp"  // StepStats: what the trainer reads back of its steps

namespace descent::detail {

// The floats of an Adam optimizer's device-resident scalars (AdamScalars, kernels/math/adam.hpp).
constexpr std::int64_t kAdamScalarFloats = 4;

struct Graph;       // a captured and instantiated step (CUDA graphs)
struct Stager;      // pinned double buffers streaming batches to the device
struct SideStream;  // a second stream of a device, ordered with a context's stream by events

// The first value of a check that fails: its index (row-major over the rows and columns for a
// matrix; -1 when every value passes) and the value.
struct ValueCheck {
  std::int64_t index = -1;
  double value = 0.0;
};

// What tells one GPU from every other, across nodes: its UUID, and its PCI bus id for messages.
struct DeviceIdentity {
  unsigned char uuid[16] = {};
  std::string pci_bus = "unknown";
};

// One hidden layer of a fused stack (Backend::fused_hidden_forward): W [width, width] row-major
// (out, in) in bf16, b [width], and where its output goes: y [rows, width] in bf16 (leading
// dimension width) and, when not null, the fp32 pre-activation pre [rows, width] (gelu's
// backward needs it).
// One layer of a whole-network jet step (Backend::jet_residual_step_t): its activation,
// parameters [out, in] and [out], and where their gradients go.
struct JetNetworkLayer {
  JetActivation act = JetActivation::identity;
  MatrixView<const float> w{};
  VectorView<const float> b{};
  MatrixView<float> dw{};
  VectorView<float> db{};
};

// One layer of a whole-network training step over slices of rows (Backend::dense_slice_step):
// its activation (identity, relu, sigmoid, tanh, or gelu, whose pre-activation it keeps),
// parameters W [out, in] and b [out] (b may be empty), and where their gradients go.
// (At most kMaxSliceStepLayers layers of at most kMaxSliceStepWidth features each.)
constexpr int kMaxSliceStepLayers = 32;
constexpr std::int64_t kMaxSliceStepWidth = 128;
struct DenseNetworkLayer {
  Activation act = Activation::identity;
  MatrixView<const float> w{};
  VectorView<const float> b{};
  MatrixView<float> dw{};
  VectorView<float> db{};
};
// The loss of that step: the mean squared error or sigmoid binary cross-entropy against targets
// [batch, out] (BCE's in [0, 1]), or softmax cross-entropy against labels [batch] in [0, out),
// as the trainer's losses (the values checked by the caller).
enum class SliceLoss { mse, softmax_cross_entropy, sigmoid_bce };
struct SliceStepLoss {
  SliceLoss kind = SliceLoss::mse;
  MatrixView<const float> targets{};
  VectorView<const std::int32_t> labels{};
};

// The float64 whole-network jet step (Backend::jet_residual_step_f64; descent::JetF64), on the
// host: the network (widths[0..layers], an activation per layer, params and grad in an Mlp's
// flat layout: per layer W [out, in] row-major, then b [out]), the input jet of x [batch,
// widths[0]] along v (K rows of widths[0]) with weights c_k, the residual's coefficients
// {a, c, b_0..b_{K-1}, d_0..d_{K-1}} and source [batch, out] (null: 0), as pde_residual_loss's.
// Returns weight · Σ r² / (batch · out); its gradient goes to grad (added when accumulate; null:
// no backward pass), the outputs [blocks · batch, out] to y (null: not written).
struct JetStepF64 {
  int layers = 0;
  const std::int64_t* widths = nullptr;
  const JetActivation* acts = nullptr;
  const double* params = nullptr;
  double* grad = nullptr;
  bool accumulate = false;
  int directions = 0;
  bool second_order = false;
  const double* v = nullptr;
  const double* cweights = nullptr;
  const double* coefficients = nullptr;
  std::int64_t batch = 0;
  const double* x = nullptr;
  const double* source = nullptr;
  double weight = 1.0;
  double* y = nullptr;
};

struct FusedLayer {
  const bf16* w = nullptr;
  const float* b = nullptr;
  Activation act = Activation::identity;
  bf16* y = nullptr;
  float* pre = nullptr;
};

struct Backend {
  const char* name;

  // ---------------------------------------------------------------- context and memory
  // Creates impl.state, the backend's own state; `stream` is a user stream (null: the backend's
  // own).
  void (*init)(ContextImpl& impl, void* stream);
  void* (*stream)(const ContextImpl& impl);  // the stream in use (null on the CPU)
  void (*set_stream)(ContextImpl& impl, void* stream);
  void (*synchronize)(const ContextImpl& impl);
  // Memory the next allocations may take: free device memory, or the host's physical memory.
  double (*memory_bytes)(const Context& ctx);
  const char* memory_bytes_are;  // how messages describe that amount ("free", "of memory")
  void* (*allocate)(const Context& ctx, std::size_t bytes);  // throws OutOfMemory
  void (*deallocate)(Device device, void* ptr) noexcept;
  // A copy in which at least one side is this backend's device memory (host to host copies
  // never reach a backend). Returns once a host side may be read or reused.
  void (*copy)(const Context& ctx, void* dst, const void* src, std::size_t bytes);
  // The same for `rows` rows of row_bytes bytes between blocks whose rows start dst_pitch and
  // src_pitch bytes apart (one strided copy, not one per row).
  void (*copy_rows)(const Context& ctx, void* dst, std::size_t dst_pitch, const void* src,
                    std::size_t src_pitch, std::size_t row_bytes, std::size_t rows);

  // ---------------------------------------------------------------- ops (see descent/ops.hpp)
  void (*dense_forward)(const Context&, MatrixView<const float> x, MatrixView<const float> w,
                        VectorView<const float> b, Activation act, MatrixView<float> y,
                        MatrixView<float> pre);
  void (*dense_backward)(const Context&, MatrixView<const float> x, MatrixView<const float> w,
                         MatrixView<const float> y, MatrixView<const float> pre,
                         MatrixView<const float> dy, Activation act, const DenseGrads& grads);
  void (*dense_forward_bf16)(const Context&, MatrixView<const bf16> x, MatrixView<const bf16> w,
                             VectorView<const float> b, Activation act, MatrixView<bf16> y,
                             MatrixView<float> pre);
  void (*dense_backward_bf16)(const Context&, MatrixView<const bf16> x, MatrixView<const bf16> w,
                              MatrixView<const bf16> y, MatrixView<const float> pre,
                              MatrixView<const bf16> dy, Activation act,
                              const DenseGradsBf16& grads);
  void (*mse_loss)(const Context&, MatrixView<const float> pred, MatrixView<const float> target,
                   const LossOutput& out);
  void (*softmax_cross_entropy)(const Context&, MatrixView<const float> logits,
                                VectorView<const std::int32_t> labels, const LossOutput& out);
  void (*sigmoid_bce)(const Context&, MatrixView<const float> logits,
                      MatrixView<const float> targets, const LossOutput& out);
  void (*sgd_update)(const Context&, VectorView<float> params, VectorView<const float> grads,
                     VectorView<float> momentum, const SgdOptions& options, const SgdStep& step);
  void (*adam_update)(const Context&, VectorView<float> params, VectorView<const float> grads,
                      VectorView<float> exp_avg, VectorView<float> exp_avg_sq,
                      VectorView<float> max_exp_avg_sq, const AdamOptions& options,
                      const AdamStep& step);
  void (*clip_grad_norm)(const Context&, VectorView<const float> grads, float max_norm,
                         float norm_type, float* norm, float* scale);
  void (*fill_uniform)(const Context&, VectorView<float> out, float lo, float hi,
                       std::uint64_t seed, std::uint64_t offset);
  void (*fill)(const Context&, VectorView<float> out, float value);
  void (*check_finite)(const Context&, VectorView<const float> x, std::int32_t* flag);
  void (*to_bf16)(const Context&, VectorView<const float> in, VectorView<bf16> out);
  void (*to_float)(const Context&, VectorView<const bf16> in, VectorView<float> out);

  // ---------------------------------------------------------------- training services
  // Queued in stream order, so that a step never waits for the host.
  void (*store_float)(const Context&, float* dst, float value);  // *dst = value
  void (*reset_stats)(const Context&, StepStats* stats);
  // Adds one batch of `rows` rows whose mean loss is *loss (see math/step_stats.hpp).
  void (*record_batch)(const Context&, StepStats* stats, const float* loss, double rows);
  // stats->correct += rows whose arg-max logit (the first maximum, as torch.argmax) equals
  // the label.
  void (*count_correct)(const Context&, MatrixView<const float> logits,
                        VectorView<const std::int32_t> labels, StepStats* stats);
  // stats->correct += outputs whose sign agrees with their 0/1 target (logit > 0 ⇔ target > 0.5).
  void (*count_correct_binary)(const Context&, MatrixView<const float> logits,
                               MatrixView<const float> targets, StepStats* stats);
  // out[r, :] = data[index[r], :] · scale + shift for r < rows (index null: row r itself; no
  // fused multiply-add, so every backend gives the same floats); out has leading dimension
  // `features`. `data` and `index` are this backend's memory.
  void (*gather_rows_u8)(const Context&, const std::uint8_t* data, std::int64_t features,
                         const std::int32_t* index, std::int64_t rows, float scale, float shift,
                         float* out);
  void (*gather_rows)(const Context&, const float* data, std::int64_t features,
                      const std::int32_t* index, std::int64_t rows, float* out);
  void (*gather_labels)(const Context&, const std::int32_t* labels, const std::int32_t* index,
                        std::int64_t rows, std::int32_t* out);
  // The first label outside [0, classes), and the first target outside [0, 1] (NaN included):
  // the range checks of src/ops.cpp, the same on every device. On a GPU they read their answer
  // back, so they wait for the queued work, and refuse a stream being captured.
  ValueCheck (*find_label_outside)(const Context&, VectorView<const std::int32_t> labels,
                                   std::int64_t classes);
  ValueCheck (*find_target_outside_unit)(const Context&, MatrixView<const float> targets);
  // True when the device memory is host memory: the host reads it directly, and a dataset in
  // host memory is used in place.
  bool host_memory;

  // ---------------------------------------------------------------- optional: graphs
  // Capture of the work queued on the stream (null when the backend cannot capture).
  void (*begin_capture)(const Context&);
  Graph* (*end_capture)(const Context&);           // ends the capture and instantiates it
  void (*abort_capture)(const Context&) noexcept;  // drops a failed capture; never throws
  void (*launch)(const Context&, Graph& graph);    // queues one replay
  void (*destroy_graph)(Graph* graph) noexcept;
  // Counts the times the device scratch the ops share was freed and reallocated (to grow it): a
  // graph captured under another count points into freed memory and must not be replayed.
  std::uint64_t (*scratch_generation)(const Context&);

  // ---------------------------------------------------------------- optional: streaming
  // Two slots, each a pinned host block and a device block of slot_bytes, and a copy stream:
  // the host fills one slot while the device still computes on the other (null when the
  // backend reads host memory directly and needs no staging).
  Stager* (*create_stager)(const Context&, std::size_t slot_bytes);
  void (*destroy_stager)(Stager* stager) noexcept;
  // The host block of the next slot, once the copy that last read it is done.
  void* (*stager_acquire)(Stager& stager);
  // Queues the copy of the first `bytes` of the acquired slot and makes ctx's stream wait for
  // it; returns the device block.
  const void* (*stager_submit)(Stager& stager, const Context&, std::size_t bytes);
  // Frees the acquired slot's device block once the work queued so far on ctx's stream is done.
  void (*stager_release)(Stager& stager, const Context&);
  // ---------------------------------------------------------------- optional: side streams
  // A second stream of ctx's device for work a library queues itself (NCCL's sums), ordered
  // with ctx's stream by events (null when the backend runs each call at once).
  SideStream* (*create_side_stream)(const Context&);
  void (*destroy_side_stream)(SideStream* side) noexcept;
  void* (*side_stream)(SideStream& side);  // the stream itself (cudaStream_t)
  // The side stream waits for the work queued on ctx's stream so far (during a capture, this
  // pulls the side stream into it).
  void (*side_fork)(SideStream& side, const Context&);
  // ctx's stream waits for the work queued on the side stream so far.
  void (*side_join)(SideStream& side, const Context&);
  // Marks the work queued on ctx's stream so far; side_mark_done tells, without blocking,
  // whether it is done.
  void (*side_mark)(SideStream& side, const Context&);
  bool (*side_mark_done)(SideStream& side);
  // Clears the device's last error (after a library aborted its own kernels); never throws.
  void (*clear_error)(const Context&) noexcept;
  DeviceIdentity (*device_identity)(const Context&);

  // ---------------------------------------------------------------- optional: fused MLP
  // The forward pass of `count` hidden layers of one width in one kernel, the activations kept
  // on chip between layers: layers[i].y = act_i(in · W_iᵀ + b_i) rounded to bf16, where in is x
  // [rows, width] for the first layer and the previous layer's output after it; products of
  // bf16 on tensor cores with fp32 accumulation, bias and activation applied to the fp32 sums
  // (as dense_forward does in bf16). fused_width reports whether a width is supported (null:
  // the backend has no fused path).
  bool (*fused_width)(std::int64_t width);
  void (*fused_hidden_forward)(const Context&, MatrixView<const bf16> x, const FusedLayer* layers,
                               int count);

  // ---------------------------------------------------------------- forward jets
  // (descent/jet_ops.hpp; the shared math: kernels/math/jet.hpp)
  void (*jet_activation_forward)(const Context&, const JetBlocks& blocks, JetActivation act,
                                 VectorView<const float> b, MatrixView<float> z,
                                 MatrixView<float> h);
  void (*jet_activation_backward)(const Context&, const JetBlocks& blocks, JetActivation act,
                                  MatrixView<const float> z, MatrixView<const float> dh,
                                  MatrixView<float> dz, VectorView<float> db, bool accumulate);
  // The same passes, the forward one also writing σ'(z) of the value block to slope [batch, n],
  // the backward one taking σ and σ' from the forward pass's h and slope instead of z (tanh).
  void (*jet_activation_forward_saving)(const Context&, const JetBlocks& blocks, JetActivation act,
                                        VectorView<const float> b, MatrixView<float> z,
                                        MatrixView<float> h, MatrixView<float> slope);
  void (*jet_activation_backward_saved)(const Context&, const JetBlocks& blocks, JetActivation act,
                                        MatrixView<const float> z, MatrixView<const float> dh,
                                        MatrixView<float> dz, VectorView<float> db, bool accumulate,
                                        MatrixView<const float> h, MatrixView<const float> slope);
  // Whole jet layers on feature-major blocks (null: the backend has none, and Jet uses the
  // row-major passes above with dense_forward/dense_backward). h [in, rows], z and h_next
  // [out, rows], slope [out, batch]: row j holds feature j of every stacked point, block b in
  // columns [b · batch, (b + 1) · batch). Forward: z = W h, then the jet activation (bias on the
  // value block), σ' of the value block to slope where not empty (tanh). Backward: dz from
  // dh_next and z (or h_next and slope), db (+)= Σ z̄ where db is not empty, dw (+)= dz · hᵀ
  // (every block's points), dh = Wᵀ dz where dh is not empty.
  void (*jet_layer_forward_t)(const Context&, const JetBlocks& blocks, JetActivation act,
                              MatrixView<const float> w, VectorView<const float> b,
                              MatrixView<const float> h, MatrixView<float> z,
                              MatrixView<float> h_next, MatrixView<float> slope);
  void (*jet_layer_backward_t)(const Context&, const JetBlocks& blocks, JetActivation act,
                               MatrixView<const float> w, MatrixView<const float> h,
                               MatrixView<const float> z, MatrixView<const float> h_next,
                               MatrixView<const float> slope, MatrixView<const float> dh_next,
                               MatrixView<float> dz, MatrixView<float> dw, VectorView<float> db,
                               bool accumulate, MatrixView<float> dh);
  // A whole physics-informed step of a jet through every layer (null: the backend has none, and
  // pde_residual_step runs jet_forward, pde_residual_loss and jet_backward): the input jet of
  // x [batch, in] (host rows) along `directions` (K rows of `in` floats, host), the layers, the
  // residual loss with `coefficients` (as pde_residual_loss) written to loss[0], its gradients
  // into each layer's dw and db (added when accumulate), the outputs to y [rows, out]
  // (row-major; may be empty). Keeps no layer's blocks.
  void (*jet_residual_step_t)(const Context&, const JetBlocks& blocks,
                              const JetNetworkLayer* layers, int count, MatrixView<const float> x,
                              const float* directions, VectorView<const float> coefficients,
                              MatrixView<const float> source, float weight, VectorView<float> loss,
                              bool accumulate, MatrixView<float> y);
  // A whole training step of a small MLP over slices of rows held in cache (null: the backend
  // has none, and the trainer runs the layers one by one): x [batch, in] and the loss's targets
  // or labels (host rows), the loss's mean (over mean_rows · out values; softmax cross-entropy:
  // over mean_rows rows) to loss[0], the gradients written to each layer's dw and db.
  void (*dense_slice_step)(const Context&, const DenseNetworkLayer* layers, int count,
                           MatrixView<const float> x, const SliceStepLoss& objective,
                           std::int64_t mean_rows, VectorView<float> loss);
  // The float64 step on the host (JetStepF64; null: the backend has none, and JetF64 runs on a
  // CPU context of its own).
  double (*jet_residual_step_f64)(const Context&, const JetStepF64& step);
  void (*pde_residual_loss)(const Context&, const JetBlocks& blocks, MatrixView<const float> y,
                            VectorView<const float> coefficients, MatrixView<const float> source,
                            float weight, VectorView<float> loss, bool accumulate,
                            MatrixView<float> grad);
};

// The fused forward pass of `count` hidden layers of x's width (Backend::fused_hidden_forward),
// validated like every op (src/ops.cpp) before the backend runs it; at most kMaxFusedLayers a call.
constexpr int kMaxFusedLayers = 16;
void fused_hidden_forward(const Context& ctx, MatrixView<const bf16> x, const FusedLayer* layers,
                          int count);

// softmax_cross_entropy and sigmoid_bce (descent/ops.hpp) for labels or targets whose range is
// already known (the Trainer's, checked once per Dataset or per batch): every check but the scan
// of their values, which on a GPU would read back and wait at each step.
void softmax_cross_entropy_in_range(const Context& ctx, MatrixView<const float> logits,
                                    VectorView<const std::int32_t> labels, const LossOutput& out);
void sigmoid_bce_in_range(const Context& ctx, MatrixView<const float> logits,
                          MatrixView<const float> targets, const LossOutput& out);

// The CPU backend (kernels/cpu/backend.cpp).
const Backend& cpu_backend();
// The CPU backend's GEMM library ("oneDNN 2.6.3 dnnl_sgemm"; kernels/cpu/gemm.cpp).
const char* cpu_gemm_name();
// What runs the CPU backend's bf16 products (kernels/cpu/gemm.cpp).
const char* cpu_bf16_gemm_name();
// The CUDA backend (kernels/cuda/backend.cu); throws DeviceError when descent was built without
// it (kernels/no_cuda.cpp).
const Backend& cuda_backend();
// Number of CUDA devices usable from this process (0 without the CUDA backend or on any error).
int cuda_device_count() noexcept;

// The table of ctx's device.
const Backend& backend_of(const Context& ctx);
// The table of a device kind (deallocation knows only the device).
const Backend& backend_for(Device device);

// copy_bytes (descent/buffer.hpp) for `rows` rows of row_bytes bytes between pitched blocks:
// host to host on the host, anything else through ctx's backend.
void copy_rows(const Context& ctx, void* dst, std::size_t dst_pitch, Device dst_device,
               const void* src, std::size_t src_pitch, Device src_device, std::size_t row_bytes,
               std::size_t rows);

// Owning handles for the optional capabilities, destroyed through their backend.
using GraphPtr = std::unique_ptr<Graph, void (*)(Graph*) noexcept>;
using StagerPtr = std::unique_ptr<Stager, void (*)(Stager*) noexcept>;
using SideStreamPtr = std::unique_ptr<SideStream, void (*)(SideStream*) noexcept>;

}  // namespace descent::detail

#include "context_impl.hpp"
