// Memory on the GPU: device allocations (an OutOfMemory that says how much was free), copies that
// return once a host side may be reused, the free memory a model may take, and the one-float
// store the optimizers use for their device-resident scalars (queued, so graphs capture it).
#include <string>

#include "kernels/cuda/common.cuh"

namespace descent::cuda {

void* allocate_on(std::size_t bytes, int device) {
  if (bytes == 0) return nullptr;
  ensure_device(device);
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    std::size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw OutOfMemory("cuda:" + std::to_string(device) + ": out of device memory allocating " +
                      std::to_string(bytes) + " bytes (free " + std::to_string(free_b) + " of " +
                      std::to_string(total_b) +
                      " bytes); use a smaller batch or model, or free other buffers");
  }
  if (err != cudaSuccess) throw_cuda_error(err, "cudaMalloc", __FILE__, __LINE__);
  return p;
}

void deallocate_on(void* ptr, int device) noexcept {
  if (!ptr) return;
  int current = -1;
  if (cudaGetDevice(&current) == cudaSuccess && current != device) cudaSetDevice(device);
  // A destructor cannot throw and the library never prints: a failed cudaFree means the device
  // is in an error state, which the next checked CUDA call reports (sticky errors stay).
  if (cudaFree(ptr) != cudaSuccess) cudaGetLastError();
}

namespace {
bool is_device_memory(const void* p) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return attr.type == cudaMemoryTypeDevice;
}
}  // namespace

void* allocate(const Context& ctx, std::size_t bytes) {
  return allocate_on(bytes, ctx.device().index);
}

void deallocate(Device device, void* ptr) noexcept { deallocate_on(ptr, device.index); }

void copy_bytes(const Context& ctx, void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  const cudaStream_t stream = stream_of(ctx);
  DESCENT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream));
  // A host buffer must be ready (or free to reuse) when the call returns; device-to-device copies
  // stay asynchronous so that they can be captured into a graph.
  if (!is_device_memory(dst) || !is_device_memory(src)) {
    DESCENT_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
}

void copy_rows(const Context& ctx, void* dst, std::size_t dst_pitch, const void* src,
               std::size_t src_pitch, std::size_t row_bytes, std::size_t rows) {
  if (rows == 0 || row_bytes == 0) return;
  const cudaStream_t stream = stream_of(ctx);
  DESCENT_CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, row_bytes, rows,
                                       cudaMemcpyDefault, stream));
  if (!is_device_memory(dst) || !is_device_memory(src)) {
    DESCENT_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
}

double memory_bytes(const Context& ctx) {
  state_of(ctx);
  std::size_t free_b = 0, total_b = 0;
  DESCENT_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return static_cast<double>(free_b);
}

namespace {

__global__ void store_float_kernel(float* dst, float value) { *dst = value; }

}  // namespace

void store_float(const Context& ctx, float* dst, float value) {
  store_float_kernel<<<1, 1, 0, stream_of(ctx)>>>(dst, value);
  DESCENT_LAUNCH_CHECK(store_float_kernel);
}

}  // namespace descent::cuda
