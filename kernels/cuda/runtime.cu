// The CUDA runtime services of a Context: device selection, stream, cuBLASLt handle, memory,
// copies, scratch, and the errors thrown when any of them fails.
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda.hpp"

namespace descent::cuda {

namespace {

constexpr std::size_t kLtWorkspaceBytes = 32u << 20;

std::string where(const char* file, int line) {
  return std::string(file) + ":" + std::to_string(line);
}

const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "CUBLAS_STATUS_LICENSE_ERROR";
    default:
      return "unknown cuBLAS status";
  }
}

}  // namespace

void ensure_device(int device) {
  int current = -1;
  DESCENT_CUDA_CHECK(cudaGetDevice(&current));
  if (current != device) DESCENT_CUDA_CHECK(cudaSetDevice(device));
}

void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
  throw DeviceError(std::string("CUDA error ") + cudaGetErrorName(err) + " (" +
                    cudaGetErrorString(err) + ") in " + expr + " at " + where(file, line));
}

void throw_cublas_error(cublasStatus_t status, const char* expr, const char* file, int line) {
  throw DeviceError(std::string("cuBLAS error ") + cublas_status_name(status) + " (" +
                    std::to_string(static_cast<int>(status)) + ") in " + expr + " at " +
                    where(file, line));
}

// Destruction must not throw: errors here are ignored (the context is going away anyway).
State::~State() {
  cudaSetDevice(device);
  for (auto& [key, plan] : plans) {
    if (plan.pref) cublasLtMatmulPreferenceDestroy(plan.pref);
    if (plan.a) cublasLtMatrixLayoutDestroy(plan.a);
    if (plan.b) cublasLtMatrixLayoutDestroy(plan.b);
    if (plan.d) cublasLtMatrixLayoutDestroy(plan.d);
    if (plan.desc) cublasLtMatmulDescDestroy(plan.desc);
  }
  // Buffers may still be in use by queued work on a user stream: cudaFree waits for the device.
  if (scratch) cudaFree(scratch);
  if (workspace) cudaFree(workspace);
  if (lt) cublasLtDestroy(lt);
  if (own_stream) cudaStreamDestroy(own_stream);
}

State& state_of(const detail::ContextImpl& impl) { return static_cast<State&>(*impl.state); }

State& state_of(const Context& ctx) {
  State& s = state_of(detail::impl_of(ctx));
  ensure_device(s.device);
  return s;
}

void* scratch(const Context& ctx, std::size_t bytes) {
  State& s = state_of(ctx);
  if (bytes <= s.scratch_bytes) return s.scratch;
  cudaStream_t stream = stream_of(ctx);
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  DESCENT_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone) {
    throw DeviceError("descent needs " + std::to_string(bytes) +
                      " bytes of device scratch but only " + std::to_string(s.scratch_bytes) +
                      " are allocated, and the stream is being captured into a CUDA graph; "
                      "run the same ops once before capturing");
  }
  // Grow geometrically so that a sequence of slightly larger shapes does not reallocate each time.
  std::size_t grown = s.scratch_bytes * 2;
  if (grown < bytes) grown = bytes;
  grown = (grown + (1u << 20) - 1) / (1u << 20) * (1u << 20);
  DESCENT_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (s.scratch) {
    DESCENT_CUDA_CHECK(cudaFree(s.scratch));
    s.scratch = nullptr;
    s.scratch_bytes = 0;
  }
  ++s.scratch_generation;  // before the allocation, which may throw: the old block is gone
  s.scratch = allocate_on(grown, s.device);
  s.scratch_bytes = grown;
  return s.scratch;
}

std::uint64_t scratch_generation(const Context& ctx) {
  return state_of(detail::impl_of(ctx)).scratch_generation;
}

int device_count() noexcept {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the error so that later calls do not report it
    return 0;
  }
  return count;
}

void init_context(detail::ContextImpl& impl, void* user_stream) {
  const int index = impl.device.index;
  const int count = device_count();
  if (count == 0) {
    throw DeviceError("device " + impl.device.str() +
                      " requested but no CUDA device is usable (no GPU, or the driver reported "
                      "an error); use device cpu");
  }
  if (index < 0 || index >= count) {
    throw DeviceError(
        "device " + impl.device.str() + " requested but only " + std::to_string(count) +
        " CUDA device(s) are visible; use cuda:0 .. cuda:" + std::to_string(count - 1));
  }
  DESCENT_CUDA_CHECK(cudaSetDevice(index));
  auto state = std::unique_ptr<State>(new State);
  state->device = index;
  DESCENT_CUDA_CHECK(cudaStreamCreateWithFlags(&state->own_stream, cudaStreamNonBlocking));
  DESCENT_CUBLAS_CHECK(cublasLtCreate(&state->lt));
  state->workspace = allocate_on(kLtWorkspaceBytes, index);
  state->workspace_bytes = kLtWorkspaceBytes;
  state->stream = user_stream ? static_cast<cudaStream_t>(user_stream) : state->own_stream;
  impl.state = std::move(state);
}

void* stream(const detail::ContextImpl& impl) { return state_of(impl).stream; }

void set_stream(detail::ContextImpl& impl, void* stream) {
  State& s = state_of(impl);
  ensure_device(s.device);
  cudaStream_t old = s.stream;
  // Work already queued on the old stream may still use the scratch the next op reuses.
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  DESCENT_CUDA_CHECK(cudaStreamIsCapturing(old, &capture));
  if (capture == cudaStreamCaptureStatusNone) DESCENT_CUDA_CHECK(cudaStreamSynchronize(old));
  s.stream = stream ? static_cast<cudaStream_t>(stream) : s.own_stream;
}

void synchronize(const detail::ContextImpl& impl) {
  State& s = state_of(impl);
  ensure_device(s.device);
  DESCENT_CUDA_CHECK(cudaStreamSynchronize(s.stream));
}

}  // namespace descent::cuda
