// Streaming on the GPU: the pinned double buffers that carry a dataset too large to stay on the
// device, copying on their own stream while the compute stream trains (an optional capability
// of the Backend table).
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda.hpp"

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
