// What the element-wise kernels share: fp32/bf16 load-store helpers, grid indexing, and the tile
// split of the optimizer updates (for_each_tile).
#pragma once

#include <utility>

#include "descent/bf16.hpp"
#include "kernels/cuda/common.cuh"

namespace descent::cuda {

// Storage-type agnostic element access: kernels compute in fp32 whatever the storage type, and
// round to bf16 exactly as the CPU backend does (descent::to_bf16, round to nearest even).
__device__ inline float load_as_float(const float* p) { return *p; }
__device__ inline float load_as_float(const bf16* p) { return to_float(*p); }
__device__ inline void store_from_float(float* p, float v) { *p = v; }
__device__ inline void store_from_float(bf16* p, float v) { *p = to_bf16(v); }

// Rounds four floats to bf16 (as to_bf16) and writes them with one 8-byte store; dst must be
// 8-byte aligned.
__device__ inline void store_bf16x4(bf16* dst, float4 v) {
  const bf16 b[4] = {to_bf16(v.x), to_bf16(v.y), to_bf16(v.z), to_bf16(v.w)};
  uint2 packed;
  packed.x = static_cast<unsigned>(b[0].bits) | (static_cast<unsigned>(b[1].bits) << 16);
  packed.y = static_cast<unsigned>(b[2].bits) | (static_cast<unsigned>(b[3].bits) << 16);
  *reinterpret_cast<uint2*>(dst) = packed;
}

// Index of this thread in a 1-D grid, and the grid-stride step, as 64-bit values.
__device__ inline std::int64_t global_thread() {
  return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ inline std::int64_t grid_stride() {
  return static_cast<std::int64_t>(gridDim.x) * blockDim.x;
}

// The tile split of every elementwise update over the flat buffers (SGD, Adam), written once:
// with Vec (every pointer 16-byte aligned, 8 for a bf16 copy) full tiles of four elements move
// with one load each over the grid, then the n % 4 tail goes element-wise to the first threads;
// without, every element alone. `op` supplies tile(i) (elements 4i .. 4i+3) and element(i).
template <bool Vec, class Op>
__device__ inline void for_each_tile(const Op& op, std::int64_t n) {
  if constexpr (Vec) {
    const std::int64_t tiles = n / 4;
    for (std::int64_t i = global_thread(); i < tiles; i += grid_stride()) op.tile(i);
    const std::int64_t t = global_thread();
    if (t < n - tiles * 4) op.element(tiles * 4 + t);
  } else {
    for (std::int64_t i = global_thread(); i < n; i += grid_stride()) op.element(i);
  }
}

// Launches an update kernel over n elements as for_each_tile splits them: `tiled` (the Vec
// instantiation) when `vec`, else `plain`.
template <class... Params, class... Args>
void launch_tiles(bool vec, void (*tiled)(Params...), void (*plain)(Params...), std::int64_t n,
                  cudaStream_t stream, Args&&... args) {
  if (vec) {
    tiled<<<grid_for((n + 3) / 4), kThreads, 0, stream>>>(std::forward<Args>(args)...);
  } else {
    plain<<<grid_for(n), kThreads, 0, stream>>>(std::forward<Args>(args)...);
  }
}

}  // namespace descent::cuda
