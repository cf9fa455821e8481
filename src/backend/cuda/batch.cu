// Batches on the GPU: gathering rows of a resident dataset (uint8 widened and normalised on the
// fly), evaluation counts, and the pinned double buffers that stream a dataset too large to
// stay on the device, copying on their own stream while the compute stream trains.
#include <string>

#include "backend/cuda/common.cuh"
#include "backend/cuda/train.hpp"
#include "math/step_stats.hpp"

namespace descent::cuda {

namespace {

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

void gather_rows(const Context& ctx, const std::uint8_t* data, std::int64_t features,
                 const std::int32_t* index, std::int64_t rows, float scale, float shift,
                 float* out) {
  gather_rows_kernel<<<grid_for_rows(rows), kThreads, 0, stream_of(ctx)>>>(
      data, features, index, rows, Normalise{scale, shift}, out);
  DESCENT_LAUNCH_CHECK(gather_rows_kernel);
}

void gather_rows(const Context& ctx, const float* data, std::int64_t features,
                 const std::int32_t* index, std::int64_t rows, float* out) {
  gather_rows_kernel<<<grid_for_rows(rows), kThreads, 0, stream_of(ctx)>>>(
      data, features, index, rows, Copy{}, out);
  DESCENT_LAUNCH_CHECK(gather_rows_kernel);
}

void gather_labels(const Context& ctx, const std::int32_t* labels, const std::int32_t* index,
                   std::int64_t rows, std::int32_t* out) {
  gather_labels_kernel<<<grid_for(rows), kThreads, 0, stream_of(ctx)>>>(
      labels, index, rows, out);
  DESCENT_LAUNCH_CHECK(gather_labels_kernel);
}

void count_correct(const Context& ctx, MatrixView<const float> logits,
                   VectorView<const std::int32_t> labels, detail::StepStats* stats) {
  count_correct_kernel<<<grid_for(logits.rows), kThreads, 0, stream_of(ctx)>>>(
      logits.data, logits.rows, logits.cols, logits.ld, labels.data, stats);
  DESCENT_LAUNCH_CHECK(count_correct_kernel);
}

void count_correct_binary(const Context& ctx, MatrixView<const float> logits,
                          MatrixView<const float> targets, detail::StepStats* stats) {
  count_correct_binary_kernel<<<grid_for(logits.rows * logits.cols), kThreads, 0,
                                stream_of(ctx)>>>(logits.data, logits.rows, logits.cols,
                                                        logits.ld, targets.data, targets.ld, stats);
  DESCENT_LAUNCH_CHECK(count_correct_binary_kernel);
}

double memory_bytes(const Context& ctx) {
  state_of(ctx);
  std::size_t free_b = 0, total_b = 0;
  DESCENT_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return static_cast<double>(free_b);
}

}  // namespace descent::cuda

// ---------------------------------------------------------------- streaming

struct descent::detail::Stager {
  int device = 0;
  std::size_t bytes = 0;
  cudaStream_t copy = nullptr;
  void* host[2] = {nullptr, nullptr};
  void* dev[2] = {nullptr, nullptr};
  cudaEvent_t copied[2] = {nullptr, nullptr};    // the H2D copy out of host[i] is done
  cudaEvent_t released[2] = {nullptr, nullptr};  // the kernels reading dev[i] are done
  bool used[2] = {false, false};
  int slot = 0;  // the slot acquired last
  int next = 0;

  ~Stager() {
    cudaSetDevice(device);
    if (copy != nullptr) cudaStreamSynchronize(copy);
    for (int i = 0; i < 2; ++i) {
      if (host[i] != nullptr) cudaFreeHost(host[i]);
      cuda::deallocate_on(dev[i], device);
      if (copied[i] != nullptr) cudaEventDestroy(copied[i]);
      if (released[i] != nullptr) cudaEventDestroy(released[i]);
    }
    if (copy != nullptr) cudaStreamDestroy(copy);
  }
};

namespace descent::cuda {

using detail::Stager;

void destroy_stager(Stager* s) noexcept { delete s; }

Stager* create_stager(const Context& ctx, std::size_t slot_bytes) {
  State& state = state_of(ctx);
  std::unique_ptr<Stager, void (*)(Stager*) noexcept> s(new Stager, &destroy_stager);
  s->device = state.device;
  s->bytes = slot_bytes;
  DESCENT_CUDA_CHECK(cudaStreamCreateWithFlags(&s->copy, cudaStreamNonBlocking));
  for (int i = 0; i < 2; ++i) {
    if (cudaMallocHost(&s->host[i], slot_bytes) != cudaSuccess) {
      cudaGetLastError();
      throw OutOfMemory("BatchLoader: could not allocate " + std::to_string(slot_bytes) +
                        " bytes of pinned host memory for streaming; use a smaller batch");
    }
    s->dev[i] = allocate_on(slot_bytes, s->device);
    DESCENT_CUDA_CHECK(cudaEventCreateWithFlags(&s->copied[i], cudaEventDisableTiming));
    DESCENT_CUDA_CHECK(cudaEventCreateWithFlags(&s->released[i], cudaEventDisableTiming));
  }
  return s.release();
}

void* stager_acquire(Stager& s) {
  s.slot = s.next;
  s.next ^= 1;
  // The host may refill a pinned block only once the copy that read it has finished.
  if (s.used[s.slot]) DESCENT_CUDA_CHECK(cudaEventSynchronize(s.copied[s.slot]));
  return s.host[s.slot];
}

const void* stager_submit(Stager& s, const Context& ctx, std::size_t bytes) {
  state_of(ctx);
  const int i = s.slot;
  // The device block is overwritten only after the kernels that read its last batch are done.
  if (s.used[i]) DESCENT_CUDA_CHECK(cudaStreamWaitEvent(s.copy, s.released[i], 0));
  DESCENT_CUDA_CHECK(cudaMemcpyAsync(s.dev[i], s.host[i], bytes, cudaMemcpyHostToDevice, s.copy));
  DESCENT_CUDA_CHECK(cudaEventRecord(s.copied[i], s.copy));
  DESCENT_CUDA_CHECK(cudaStreamWaitEvent(stream_of(ctx), s.copied[i], 0));
  s.used[i] = true;
  return s.dev[i];
}

void stager_release(Stager& s, const Context& ctx) {
  DESCENT_CUDA_CHECK(cudaEventRecord(s.released[s.slot], stream_of(ctx)));
}

}  // namespace descent::cuda
