// The CUDA backend's table: every entry of the Backend interface, capture and streaming included.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda.hpp"
#include "kernels/cuda/fused_mlp.cuh"

namespace descent {

const detail::Backend& detail::cuda_backend() {
  static constexpr Backend table{
      .name = "cuda",
      .init = &cuda::init_context,
      .stream = &cuda::stream,
      .set_stream = &cuda::set_stream,
      .synchronize = &cuda::synchronize,
      .memory_bytes = &cuda::memory_bytes,
      .memory_bytes_are = "free",
      .allocate = &cuda::allocate,
      .deallocate = &cuda::deallocate,
      .copy = &cuda::copy_bytes,
      .copy_rows = &cuda::copy_rows,
      .dense_forward = &cuda::dense_forward,
      .dense_backward = &cuda::dense_backward,
      .dense_forward_bf16 = &cuda::dense_forward,
      .dense_backward_bf16 = &cuda::dense_backward,
      .mse_loss = &cuda::mse_loss,
      .softmax_cross_entropy = &cuda::softmax_cross_entropy,
      .sigmoid_bce = &cuda::sigmoid_bce,
      .sgd_update = &cuda::sgd_update,
      .adam_update = &cuda::adam_update,
      .clip_grad_norm = &cuda::clip_grad_norm,
      .fill_uniform = &cuda::fill_uniform,
      .fill = &cuda::fill,
      .check_finite = &cuda::check_finite,
      .to_bf16 = &cuda::convert,
      .to_float = &cuda::convert,
      .store_float = &cuda::store_float,
      .reset_stats = &cuda::reset_stats,
      .record_batch = &cuda::record_batch,
      .count_correct = &cuda::count_correct,
      .count_correct_binary = &cuda::count_correct_binary,
      .gather_rows_u8 = &cuda::gather_rows,
      .gather_rows = &cuda::gather_rows,
      .gather_labels = &cuda::gather_labels,
      .find_label_outside = &cuda::find_label_outside,
      .find_target_outside_unit = &cuda::find_target_outside_unit,
      .host_memory = false,
      .begin_capture = &cuda::begin_capture,
      .end_capture = &cuda::end_capture,
      .abort_capture = &cuda::abort_capture,
      .launch = &cuda::launch,
      .destroy_graph = &cuda::destroy_graph,
      .scratch_generation = &cuda::scratch_generation,
      .create_stager = &cuda::create_stager,
      .destroy_stager = &cuda::destroy_stager,
      .stager_acquire = &cuda::stager_acquire,
      .stager_submit = &cuda::stager_submit,
      .stager_release = &cuda::stager_release,
      .create_side_stream = &cuda::create_side_stream,
      .destroy_side_stream = &cuda::destroy_side_stream,
      .side_stream = &cuda::side_stream_handle,
      .side_fork = &cuda::side_fork,
      .side_join = &cuda::side_join,
      .side_mark = &cuda::side_mark,
      .side_mark_done = &cuda::side_mark_done,
      .clear_error = &cuda::clear_error,
      .device_identity = &cuda::device_identity,
      .fused_width = &cuda::fused_width,
      .fused_hidden_forward = &cuda::fused_hidden_forward,
      .jet_activation_forward = &cuda::jet_activation_forward,
      .jet_activation_backward = &cuda::jet_activation_backward,
      .jet_activation_forward_saving = nullptr,
      .jet_activation_backward_saved = nullptr,
      .jet_layer_forward_t = nullptr,
      .jet_layer_backward_t = nullptr,
      .jet_residual_step_t = nullptr,
      .jet_residual_step_f64 = nullptr,
      .pde_residual_loss = &cuda::pde_residual_loss,
  };
  return table;
}

int detail::cuda_device_count() noexcept { return cuda::device_count(); }

}  // namespace descent
