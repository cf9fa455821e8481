// Shared by every kernel family: error-checking macros, the per-context CUDA state, launch sizes.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "descent/error.hpp"
#include "kernels/cuda/cuda.hpp"

namespace descent::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line);
// Makes `device` current for this thread (runtime.cu).
void ensure_device(int device);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* expr, const char* file,
                                     int line);

}  // namespace descent::cuda

// Every CUDA runtime and cuBLASLt call goes through one of these, so a failure names the call.
#define DESCENT_CUDA_CHECK(expr)                                                  \
  do {                                                                            \
    const cudaError_t descent_err_ = (expr);                                      \
    if (descent_err_ != cudaSuccess)                                              \
      ::descent::cuda::throw_cuda_error(descent_err_, #expr, __FILE__, __LINE__); \
  } while (0)

#define DESCENT_CUBLAS_CHECK(expr)                                                 \
  do {                                                                             \
    const cublasStatus_t descent_st_ = (expr);                                     \
    if (descent_st_ != CUBLAS_STATUS_SUCCESS)                                      \
      ::descent::cuda::throw_cublas_error(descent_st_, #expr, __FILE__, __LINE__); \
  } while (0)

// After every kernel launch: a bad configuration is reported by the launch, not by the kernel.
#define DESCENT_LAUNCH_CHECK(kernel)                                                             \
  do {                                                                                           \
    const cudaError_t descent_err_ = cudaGetLastError();                                         \
    if (descent_err_ != cudaSuccess)                                                             \
      ::descent::cuda::throw_cuda_error(descent_err_, "launch of " #kernel, __FILE__, __LINE__); \
  } while (0)

namespace descent::cuda {

// One cached cuBLASLt matmul: descriptors and the algorithm the heuristic chose for a shape,
// so a shape seen before costs neither a heuristic query nor an allocation.
struct MatmulPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool supported = false;  // false: cuBLASLt has no algorithm; the caller takes its fallback
};

using MatmulKey = std::array<std::int64_t, 22>;

struct MatmulKeyHash {
  std::size_t operator()(const MatmulKey& k) const noexcept {
    std::uint64_t h = 1469598103934665603ull;
    for (std::int64_t v : k) {
      h ^= static_cast<std::uint64_t>(v);
      h *= 1099511628211ull;
    }
    return static_cast<std::size_t>(h);
  }
};

struct State final : detail::BackendState {
  int device = 0;
  cudaStream_t own_stream = nullptr;
  cudaStream_t stream = nullptr;  // the stream in use: the user's or own_stream
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;  // cuBLASLt workspace
  std::size_t workspace_bytes = 0;
  void* scratch = nullptr;  // temporaries of the ops, grown on demand and kept
  std::size_t scratch_bytes = 0;
  // +1 each time scratch is freed to grow: captured graphs record it and are not replayed under
  // another value (they would write into the freed block).
  std::uint64_t scratch_generation = 0;
  std::unordered_map<MatmulKey, MatmulPlan, MatmulKeyHash> plans;

  State() = default;
  ~State() override;
};

// The context's state (no device change; never throws).
State& state_of(const detail::ContextImpl& impl);
// The context's state with its device made current.
State& state_of(const Context& ctx);
// The stream to launch on, with the context's device made current: every launcher takes its
// stream from here, so no launch goes to whatever device happens to be current (two Contexts on
// two GPUs). A cudaGetDevice per call; replayed graphs make no such call at all.
inline cudaStream_t stream_of(const Context& ctx) { return state_of(ctx).stream; }

// Device scratch of at least `bytes`, valid until the next call on the same context. Growing it
// waits for the stream (the old block may still be in use), counts a new scratch generation (a
// graph captured before must not be replayed: it points into the freed block) and is refused
// while the stream is being captured into a graph: run a step once before capturing.
void* scratch(const Context& ctx, std::size_t bytes);

// Carves aligned pieces out of one scratch block.
struct ScratchLayout {
  std::size_t bytes = 0;
  std::size_t add(std::size_t n) {
    const std::size_t at = bytes;
    bytes += (n + 255) / 256 * 256;
    return at;
  }
};

inline constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements with `threads` per block.
inline unsigned grid_for(std::int64_t n, int threads = kThreads, std::int64_t cap = 8192) {
  std::int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > cap) blocks = cap;
  return static_cast<unsigned>(blocks);
}

// Most blocks for a loop that hands whole rows to blocks: a grid-stride loop covers the rest.
inline constexpr std::int64_t kMaxRowBlocks = 65535;

// Blocks for a grid-stride loop over rows, rows_per_block at a time (1 for a block per row,
// kThreads / 32 for a warp per row).
inline unsigned grid_for_rows(std::int64_t rows, int rows_per_block = 1,
                              std::int64_t cap = kMaxRowBlocks) {
  return grid_for(rows, rows_per_block, cap);
}

// Largest power of two (up to 256) dividing the address: what cuBLASLt and vector loads may
// assume about a pointer.
inline std::uint32_t alignment_of(const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::uint32_t align = 256;
  while (align > 1 && (a % align) != 0) align >>= 1;
  return align;
}

}  // namespace descent::cuda
