// Training statistics on the GPU: the loss bookkeeping of each step (one-thread kernels that
// read the loss on the device, so the host never waits) and the evaluation counts.
#include "kernels/cuda/common.cuh"
#include "kernels/math/step_stats.hpp"

namespace descent::cuda {

namespace {

// CUDA kernels

__global__ void reset_stats_kernel(detail::StepStats* s) { detail::reset_stats(*s); }

// One thread: the loss is one float, and a fixed order keeps the sums deterministic.
__global__ void record_batch_kernel(detail::StepStats* s, const float* loss, double rows) {
  detail::record_batch(*s, *loss, rows);
}

// One thread per row; the first maximum wins, as torch.argmax. Integer atomics are exact.
__global__ void count_correct_kernel(const float* __restrict__ logits, std::int64_t rows,
                                     std::int64_t cols, std::int64_t ld,
                                     const std::int32_t* __restrict__ labels,
                                     detail::StepStats* stats) {
  unsigned long long mine = 0;
  for (std::int64_t r = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const float* z = logits + r * ld;
    std::int64_t best = 0;
    for (std::int64_t j = 1; j < cols; ++j) {
      if (z[j] > z[best]) best = j;
    }
    mine += best == labels[r] ? 1u : 0u;
  }
  if (mine != 0) atomicAdd(&stats->correct, mine);
}

__global__ void count_correct_binary_kernel(const float* __restrict__ logits, std::int64_t rows,
                                            std::int64_t cols, std::int64_t ld,
                                            const float* __restrict__ targets, std::int64_t tld,
                                            detail::StepStats* stats) {
  unsigned long long mine = 0;
  const std::int64_t n = rows * cols;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / cols, c = i % cols;
    mine += (logits[r * ld + c] > 0.0f) == (targets[r * tld + c] > 0.5f) ? 1u : 0u;
  }
  if (mine != 0) atomicAdd(&stats->correct, mine);
}

}  // namespace

// kernel launchers

void reset_stats(const Context& ctx, detail::StepStats* stats) {
  reset_stats_kernel<<<1, 1, 0, stream_of(ctx)>>>(stats);
  DESCENT_LAUNCH_CHECK(reset_stats_kernel);
}

void record_batch(const Context& ctx, detail::StepStats* stats, const float* loss, double rows) {
  record_batch_kernel<<<1, 1, 0, stream_of(ctx)>>>(stats, loss, rows);
  DESCENT_LAUNCH_CHECK(record_batch_kernel);
}

void count_correct(const Context& ctx, MatrixView<const float> logits,
                   VectorView<const std::int32_t> labels, detail::StepStats* stats) {
  count_correct_kernel<<<grid_for(logits.rows), kThreads, 0, stream_of(ctx)>>>(
      logits.data, logits.rows, logits.cols, logits.ld, labels.data, stats);
  DESCENT_LAUNCH_CHECK(count_correct_kernel);
}

void count_correct_binary(const Context& ctx, MatrixView<const float> logits,
                          MatrixView<const float> targets, detail::StepStats* stats) {
  count_correct_binary_kernel<<<grid_for(logits.rows * logits.cols), kThreads, 0, stream_of(ctx)>>>(
      logits.data, logits.rows, logits.cols, logits.ld, targets.data, targets.ld, stats);
  DESCENT_LAUNCH_CHECK(count_correct_binary_kernel);
}

}  // namespace descent::cuda
