// The CPU backend's table: the ops on oneDNN's (or OpenBLAS's) sgemm and OpenMP loops, and the
// training services on host memory. It reads host memory in place, so it needs no staging, and
// it runs each call at once, so there is nothing to capture.
#include <memory>
#include <new>
#include <string>

#include "descent/error.hpp"
#include "kernels/cpu/cpu.hpp"

namespace descent {

namespace {

// Host scratch memory, grown on demand and kept, so that a training step stops allocating after
// its first call.
struct State final : detail::BackendState {
  std::unique_ptr<float[]> workspace;
  std::size_t workspace_floats = 0;
};

void refuse_stream(void* stream) {
  if (stream != nullptr) throw ArgumentError("stream: a CUDA stream was given for a cpu context");
}

void init(detail::ContextImpl& impl, void* stream) {
  refuse_stream(stream);
  impl.state = std::make_unique<State>();
}

void* no_stream(const detail::ContextImpl&) { return nullptr; }

void set_stream(detail::ContextImpl&, void* stream) { refuse_stream(stream); }

void synchronize(const detail::ContextImpl&) {}

[[noreturn]] void refuse_copy(const Context&, void*, const void*, std::size_t) {
  throw DeviceError("copy: a copy to or from CUDA memory needs a CUDA context, got a cpu context");
}

[[noreturn]] void refuse_copy_rows(const Context& ctx, void* dst, std::size_t, const void* src,
                                   std::size_t, std::size_t bytes, std::size_t) {
  refuse_copy(ctx, dst, src, bytes);
}

}  // namespace

float* cpu::workspace(const Context& ctx, std::size_t floats) {
  State& s = static_cast<State&>(*detail::impl_of(ctx).state);
  if (floats > s.workspace_floats) {
    try {
      s.workspace = std::make_unique<float[]>(floats);
    } catch (const std::bad_alloc&) {
      throw OutOfMemory("host workspace: could not allocate " + std::to_string(floats * 4) +
                        " bytes");
    }
    s.workspace_floats = floats;
  }
  return s.workspace.get();
}

const detail::Backend& detail::cpu_backend() {
  static constexpr Backend table{
      .name = "cpu",
      .init = &init,
      .stream = &no_stream,
      .set_stream = &set_stream,
      .synchronize = &synchronize,
      .memory_bytes = &cpu::memory_bytes,
      .memory_bytes_are = "of memory",
      .allocate = &cpu::allocate,
      .deallocate = &cpu::deallocate,
      .copy = &refuse_copy,
      .copy_rows = &refuse_copy_rows,
      .dense_forward = &cpu::dense_forward,
      .dense_backward = &cpu::dense_backward,
      .dense_forward_bf16 = &cpu::dense_forward,
      .dense_backward_bf16 = &cpu::dense_backward,
      .mse_loss = &cpu::mse_loss,
      .softmax_cross_entropy = &cpu::softmax_cross_entropy,
      .sigmoid_bce = &cpu::sigmoid_bce,
      .sgd_update = &cpu::sgd_update,
      .adam_update = &cpu::adam_update,
      .clip_grad_norm = &cpu::clip_grad_norm,
      .fill_uniform = &cpu::fill_uniform,
      .fill = &cpu::fill,
      .check_finite = &cpu::check_finite,
      .to_bf16 = &cpu::convert,
      .to_float = &cpu::convert,
      .store_float = &cpu::store_float,
      .reset_stats = &cpu::reset_stats,
      .record_batch = &cpu::record_batch,
      .count_correct = &cpu::count_correct,
      .count_correct_binary = &cpu::count_correct_binary,
      .gather_rows_u8 = &cpu::gather_rows,
      .gather_rows = &cpu::gather_rows,
      .gather_labels = &cpu::gather_labels,
      .find_label_outside = &cpu::find_label_outside,
      .find_target_outside_unit = &cpu::find_target_outside_unit,
      .host_memory = true,
      .begin_capture = nullptr,
      .end_capture = nullptr,
      .abort_capture = nullptr,
      .launch = nullptr,
      .destroy_graph = nullptr,
      .scratch_generation = nullptr,
      .create_stager = nullptr,
      .destroy_stager = nullptr,
      .stager_acquire = nullptr,
      .stager_submit = nullptr,
      .stager_release = nullptr,
      .create_side_stream = nullptr,
      .destroy_side_stream = nullptr,
      .side_stream = nullptr,
      .side_fork = nullptr,
      .side_join = nullptr,
      .side_mark = nullptr,
      .side_mark_done = nullptr,
      .clear_error = nullptr,
      .device_identity = nullptr,
      .fused_width = nullptr,
      .fused_hidden_forward = nullptr,
      .jet_activation_forward = &cpu::jet_activation_forward_plain,
      .jet_activation_backward = &cpu::jet_activation_backward_plain,
      .jet_activation_forward_saving = &cpu::jet_activation_forward,
      .jet_activation_backward_saved = &cpu::jet_activation_backward,
      .jet_layer_forward_t = &cpu::jet_layer_forward_t,
      .jet_layer_backward_t = &cpu::jet_layer_backward_t,
      .jet_residual_step_t = &cpu::jet_residual_step_t,
      .dense_slice_step = &cpu::dense_slice_step,
      .jet_residual_step_f64 = &cpu::jet_residual_step_f64,
      .pde_residual_loss = &cpu::pde_residual_loss,
  };
  return table;
}

}  // namespace descent
