// Launch header of the element-wise family, plus the fp32/bf16 load-store helpers the other
// kernel families share.
#pragma once

#include "descent/bf16.hpp"
#include "backend/cuda/common.cuh"

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

}  // namespace descent::cuda
