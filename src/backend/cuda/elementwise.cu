// Element-wise ops: Philox initialisation (bit-identical to the CPU backend), fill, the
// non-finite check used by loss scaling, and fp32 <-> bf16 conversion.
#include "math/philox.hpp"
#include "backend/cuda/elementwise.cuh"

namespace descent::cuda {

namespace {

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

void fill_uniform(const Context& ctx, VectorView<float> out, float lo, float hi,
                  std::uint64_t seed, std::uint64_t offset) {
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
