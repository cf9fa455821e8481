// Batches on the GPU: rows of a resident dataset gathered by index (uint8 widened and
// normalised on the fly) and their labels.
#include "kernels/cuda/common.cuh"

namespace descent::cuda {

namespace {

// CUDA kernels

// Rows are spread over the grid's blocks, features over a block's threads: no division per
// element, and consecutive threads read consecutive bytes of one row.
template <class In, class Map>
__global__ void gather_rows_kernel(const In* __restrict__ data, std::int64_t features,
                                   const std::int32_t* __restrict__ index, std::int64_t rows,
                                   Map map, float* __restrict__ out) {
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const std::int64_t src = index != nullptr ? static_cast<std::int64_t>(index[r]) : r;
    const In* in = data + src * features;
    float* o = out + r * features;
    for (std::int64_t j = threadIdx.x; j < features; j += blockDim.x) o[j] = map(in[j]);
  }
}

struct Normalise {
  float scale, shift;
  __device__ float operator()(std::uint8_t v) const {
    return __fadd_rn(__fmul_rn(static_cast<float>(v), scale), shift);  // as the CPU: no FMA
  }
};

struct Copy {
  __device__ float operator()(float v) const { return v; }
};

__global__ void gather_labels_kernel(const std::int32_t* __restrict__ labels,
                                     const std::int32_t* __restrict__ index, std::int64_t rows,
                                     std::int32_t* __restrict__ out) {
  for (std::int64_t r = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    out[r] = labels[index != nullptr ? index[r] : r];
  }
}

}  // namespace

// kernel launchers

void gather_rows(const Context& ctx, const std::uint8_t* data, std::int64_t features,
                 const std::int32_t* index, std::int64_t rows, float scale, float shift,
                 float* out) {
  gather_rows_kernel<<<grid_for_rows(rows), kThreads, 0, stream_of(ctx)>>>(
      data, features, index, rows, Normalise{scale, shift}, out);
  DESCENT_LAUNCH_CHECK(gather_rows_kernel);
}

void gather_rows(const Context& ctx, const float* data, std::int64_t features,
                 const std::int32_t* index, std::int64_t rows, float* out) {
  gather_rows_kernel<<<grid_for_rows(rows), kThreads, 0, stream_of(ctx)>>>(data, features, index,
                                                                           rows, Copy{}, out);
  DESCENT_LAUNCH_CHECK(gather_rows_kernel);
}

void gather_labels(const Context& ctx, const std::int32_t* labels, const std::int32_t* index,
                   std::int64_t rows, std::int32_t* out) {
  gather_labels_kernel<<<grid_for(rows), kThreads, 0, stream_of(ctx)>>>(labels, index, rows, out);
  DESCENT_LAUNCH_CHECK(gather_labels_kernel);
}

}  // namespace descent::cuda
