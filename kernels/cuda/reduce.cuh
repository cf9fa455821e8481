// Deterministic reductions shared by the kernel families: fixed-shape trees, no float atomics, so
// the same inputs give bit-identical sums on every run.
#pragma once

#include "kernels/cuda/common.cuh"

namespace descent::cuda {

// Sum of v over the block (blockDim.x == Threads, a power of two) in a fixed tree order; the
// result is valid in thread 0. `shared` holds Threads values.
template <int Threads, class T>
__device__ inline T block_sum(T v, T* shared) {
  static_assert((Threads & (Threads - 1)) == 0, "block_sum needs a power-of-two block");
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = Threads / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  return shared[0];
}

// loss[0] = (Σ partials) / count, or loss[0] += that when accumulate. One block of kThreads;
// the sum is taken in double, in a fixed order, from `count` fixed-size per-block partials.
void finalize_mean(const Context& ctx, const float* partials, std::int64_t n_partials, double count,
                   float* loss, bool accumulate);

}  // namespace descent::cuda
