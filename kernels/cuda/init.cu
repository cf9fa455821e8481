// Initialisation on the GPU: Philox draws bit-identical to the CPU backend's, and fills.
#include "kernels/cuda/elementwise.cuh"
#include "kernels/math/philox.hpp"

namespace descent::cuda {

namespace {

// CUDA kernels

// Each element recomputes its Philox block: initialisation runs once, and sharing the exact
// CPU formula (uniform01 + uniform_in) is what makes the two backends agree bit for bit.
__global__ void fill_uniform_kernel(float* out, std::int64_t n, float lo, float hi,
                                    std::uint64_t seed, std::uint64_t offset) {
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) {
    const float u = detail::uniform01(seed, offset + static_cast<std::uint64_t>(i));
    out[i] = detail::uniform_in(lo, hi, u);
  }
}

__global__ void fill_kernel(float* out, std::int64_t n, float value) {
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) out[i] = value;
}

}  // namespace

// kernel launchers

void fill_uniform(const Context& ctx, VectorView<float> out, float lo, float hi, std::uint64_t seed,
                  std::uint64_t offset) {
  if (out.size == 0) return;
  fill_uniform_kernel<<<grid_for(out.size), kThreads, 0, stream_of(ctx)>>>(out.data, out.size, lo,
                                                                           hi, seed, offset);
  DESCENT_LAUNCH_CHECK(fill_uniform_kernel);
}

void fill(const Context& ctx, VectorView<float> out, float value) {
  if (out.size == 0) return;
  fill_kernel<<<grid_for(out.size), kThreads, 0, stream_of(ctx)>>>(out.data, out.size, value);
  DESCENT_LAUNCH_CHECK(fill_kernel);
}

}  // namespace descent::cuda
