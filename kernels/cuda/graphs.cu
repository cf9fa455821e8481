// Captured training steps: CUDA graph capture, instantiation and replay (an optional capability
// of the Backend table).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda.hpp"

namespace descent {

struct detail::Graph {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
};

namespace cuda {

void destroy_graph(detail::Graph* g) noexcept {
  if (g == nullptr) return;
  if (g->exec != nullptr) cudaGraphExecDestroy(g->exec);
  if (g->graph != nullptr) cudaGraphDestroy(g->graph);
  delete g;
}

namespace {

// Ends a capture left open on `stream` (one that failed part-way) and drops what it recorded.
void end_open_capture(cudaStream_t stream) noexcept {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &status) == cudaSuccess &&
      status != cudaStreamCaptureStatusNone) {
    cudaGraph_t g = nullptr;
    cudaStreamEndCapture(stream, &g);
    if (g != nullptr) cudaGraphDestroy(g);
  }
}

// A failed capture call also leaves its error in the runtime's last-error slot, which the next
// launch check (cudaGetLastError) would report: the trainer's eager fallback would then fail on
// its first kernel with the capture's error. Close the capture, clear the slot, then throw.
[[noreturn]] void fail_capture(cudaStream_t stream, cudaError_t err, const char* expr, int line) {
  end_open_capture(stream);
  cudaGetLastError();
  throw_cuda_error(err, expr, __FILE__, line);
}

}  // namespace

// Every path out of a capture ends it and clears the last-error slot (see fail_capture).
#define DESCENT_CAPTURE_CHECK(stream, expr)                                               \
  do {                                                                                    \
    const cudaError_t descent_err_ = (expr);                                              \
    if (descent_err_ != cudaSuccess) fail_capture(stream, descent_err_, #expr, __LINE__); \
  } while (0)

void begin_capture(const Context& ctx) {
  const cudaStream_t stream = stream_of(ctx);
  // Thread-local mode: a forbidden call (an allocation, a synchronisation) made by this thread
  // during the capture fails the capture instead of silently leaving the graph.
  DESCENT_CAPTURE_CHECK(stream, cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
}

detail::Graph* end_capture(const Context& ctx) {
  std::unique_ptr<detail::Graph, void (*)(detail::Graph*) noexcept> out(new detail::Graph,
                                                                        &destroy_graph);
  const cudaStream_t stream = stream_of(ctx);
  DESCENT_CAPTURE_CHECK(stream, cudaStreamEndCapture(stream, &out->graph));
  DESCENT_CAPTURE_CHECK(stream, cudaGraphInstantiate(&out->exec, out->graph, 0));
  return out.release();
}

void abort_capture(const Context& ctx) noexcept {
  // The stream without stream_of's device check, which may throw: this function must not.
  end_open_capture(state_of(detail::impl_of(ctx)).stream);
  cudaGetLastError();  // the failed capture's error must not surface in a later check
}

void launch(const Context& ctx, detail::Graph& g) {
  DESCENT_CUDA_CHECK(cudaGraphLaunch(g.exec, stream_of(ctx)));
}

}  // namespace cuda
}  // namespace descent
