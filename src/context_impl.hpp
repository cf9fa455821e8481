// The device state behind a Context: what a backend needs (shared by src/, src/cpu/ and
// kernels/). Reached through detail::impl_of(ctx).
#pragma once

#include <cstddef>
#include <memory>

#include "descent/context.hpp"

namespace descent {

namespace cuda {
// Per-context CUDA state (stream, cuBLASLt handle, matmul plan cache, device workspace);
// defined in kernels/, absent when descent is built without CUDA.
struct State;
void destroy_state(State* state) noexcept;
}  // namespace cuda

struct detail::ContextImpl {
  Device device{};
  int threads = 1;
  MathMode math = MathMode::fp32;
  void* stream = nullptr;  // cudaStream_t in use (user's or the state's own)
  std::unique_ptr<cuda::State, void (*)(cuda::State*) noexcept> cuda{nullptr, &cuda::destroy_state};

  // Host scratch memory for the CPU backend, grown on demand and kept, so that a training step
  // stops allocating after its first call.
  float* host_workspace(std::size_t floats);

 private:
  std::unique_ptr<float[]> host_ws_;
  std::size_t host_ws_size_ = 0;
};

}  // namespace descent
