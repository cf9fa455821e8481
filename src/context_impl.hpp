// The device state behind a Context: its backend's table and the backend's own state (shared by
// src/ and kernels/). Reached through detail::impl_of(ctx).
#pragma once

#include <memory>

#include "descent/context.hpp"

namespace descent {

namespace detail {
struct Backend;

// What a backend keeps per context, opaque to the host library: the CPU backend's host scratch
// (kernels/cpu/backend.cpp), the CUDA backend's stream, cuBLASLt handle, plan cache and device
// scratch (kernels/cuda/common.cuh). Each backend derives its own type, creates it in its init
// and is the only code that looks inside.
struct BackendState {
  BackendState() = default;
  BackendState(const BackendState&) = delete;
  BackendState& operator=(const BackendState&) = delete;
  virtual ~BackendState() = default;
};
}  // namespace detail

struct detail::ContextImpl {
  const Backend* backend = nullptr;  // the table of the device's backend (kernels/backend.hpp)
  Device device{};
  int threads = 1;
  MathMode math = MathMode::fp32;
  std::unique_ptr<BackendState> state;  // set by backend->init
};

}  // namespace descent
