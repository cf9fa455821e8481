// Conversions on the GPU: fp32 <-> bf16, and the non-finite check of a buffer.
#include "kernels/cuda/elementwise.cuh"

namespace descent::cuda {

namespace {

// CUDA kernels

// Only ever stores 1, so concurrent stores from many threads race harmlessly; one store per warp.
__global__ void check_finite_kernel(const float* x, std::int64_t n, std::int32_t* flag) {
  bool bad = false;
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) bad |= !isfinite(x[i]);
  if (__any_sync(0xffffffffu, bad) && (threadIdx.x % 32) == 0) *flag = 1;
}

template <class In, class Out>
__global__ void convert_kernel(const In* in, Out* out, std::int64_t n) {
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) {
    store_from_float(&out[i], load_as_float(&in[i]));
  }
}

}  // namespace

// kernel launchers

void check_finite(const Context& ctx, VectorView<const float> x, std::int32_t* flag) {
  if (x.size == 0) return;
  check_finite_kernel<<<grid_for(x.size), kThreads, 0, stream_of(ctx)>>>(x.data, x.size, flag);
  DESCENT_LAUNCH_CHECK(check_finite_kernel);
}

void convert(const Context& ctx, VectorView<const float> in, VectorView<bf16> out) {
  if (in.size == 0) return;
  convert_kernel<<<grid_for(in.size), kThreads, 0, stream_of(ctx)>>>(in.data, out.data, in.size);
  DESCENT_LAUNCH_CHECK(convert_kernel);
}

void convert(const Context& ctx, VectorView<const bf16> in, VectorView<float> out) {
  if (in.size == 0) return;
  convert_kernel<<<grid_for(in.size), kThreads, 0, stream_of(ctx)>>>(in.data, out.data, in.size);
  DESCENT_LAUNCH_CHECK(convert_kernel);
}

}  // namespace descent::cuda
