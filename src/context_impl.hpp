// The device state behind a Context: its backend's table and what the backends need (shared by
// src/ and kernels/). Reached through detail::impl_of(ctx).
#pragma once

#include <cstddef>
#include <memory>

#include "descent/context.hpp"

namespace descent {

namespace cuda {
// Per-context CUDA state (stream, cuBLASLt handle, matmul plan cache, device workspace);
// defined in kernels/cuda/, which also sets its deleter.
struct State;
}  // namespace cuda

namespace detail {
struct Backend;
}

struct detail::ContextImpl {
  const Backend* backend = nullptr;  // the table of the device's backend (kernels/backend.hpp)
  Device device{};
  int threads = 1;
  MathMode math = MathMode::fp32;
  void* stream = nullptr;  // cudaStream_t in use (user's or the state's own)
  std::unique_ptr<cuda::State, void (*)(cuda::State*) noexcept> cuda{nullptr, nullptr};

  // Host scratch memory for the CPU backend, grown on demand and kept, so that a training step
  // stops allocating after its first call.
  float* host_workspace(std::size_t floats);

 private:
  std::unique_ptr<float[]> host_ws_;
  std::size_t host_ws_size_ = 0;
};

}  // namespace descent
