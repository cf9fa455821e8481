// A second stream of a context's device and the events that order it with the context's stream
// (an optional capability of the Backend table): the NCCL communicator sums gradients on one,
// forked from the compute stream after a bucket's gradients and joined back before the update,
// and bounds its waits by polling a marker instead of blocking in cudaStreamSynchronize.
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda.hpp"

struct descent::detail::SideStream {
  int device = 0;
  cudaStream_t stream = nullptr;
  cudaEvent_t forked = nullptr;  // recorded on the context's stream at each fork
  cudaEvent_t joined = nullptr;  // recorded on the side stream at each join
  cudaEvent_t marked = nullptr;  // recorded on the context's stream by mark, then polled

  // Never throws: the errors met here are cleared, so that they do not surface in a later check.
  ~SideStream() {
    cudaSetDevice(device);
    if (marked != nullptr) cudaEventDestroy(marked);
    if (joined != nullptr) cudaEventDestroy(joined);
    if (forked != nullptr) cudaEventDestroy(forked);
    if (stream != nullptr) cudaStreamDestroy(stream);
    cudaGetLastError();
  }
};

namespace descent::cuda {

using detail::SideStream;

void destroy_side_stream(SideStream* side) noexcept { delete side; }

SideStream* create_side_stream(const Context& ctx) {
  const State& state = state_of(ctx);
  std::unique_ptr<SideStream, void (*)(SideStream*) noexcept> s(new SideStream,
                                                                &destroy_side_stream);
  s->device = state.device;
  DESCENT_CUDA_CHECK(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
  for (cudaEvent_t* e : {&s->forked, &s->joined, &s->marked}) {
    DESCENT_CUDA_CHECK(cudaEventCreateWithFlags(e, cudaEventDisableTiming));
  }
  return s.release();
}

void* side_stream_handle(SideStream& s) { return s.stream; }

// During a capture the event wait pulls the side stream into the capture, so that what is
// queued on it becomes part of the graph.
void side_fork(SideStream& s, const Context& ctx) {
  const cudaStream_t main = stream_of(ctx);
  DESCENT_CUDA_CHECK(cudaEventRecord(s.forked, main));
  DESCENT_CUDA_CHECK(cudaStreamWaitEvent(s.stream, s.forked, 0));
}

void side_join(SideStream& s, const Context& ctx) {
  const cudaStream_t main = stream_of(ctx);
  DESCENT_CUDA_CHECK(cudaEventRecord(s.joined, s.stream));
  DESCENT_CUDA_CHECK(cudaStreamWaitEvent(main, s.joined, 0));
}

void side_mark(SideStream& s, const Context& ctx) {
  DESCENT_CUDA_CHECK(cudaEventRecord(s.marked, stream_of(ctx)));
}

bool side_mark_done(SideStream& s) {
  ensure_device(s.device);
  const cudaError_t done = cudaEventQuery(s.marked);
  if (done == cudaSuccess) return true;
  if (done != cudaErrorNotReady) DESCENT_CUDA_CHECK(done);
  return false;
}

void clear_error(const Context& ctx) noexcept {
  cudaSetDevice(state_of(detail::impl_of(ctx)).device);
  cudaGetLastError();
}

detail::DeviceIdentity device_identity(const Context& ctx) {
  const State& state = state_of(ctx);
  cudaDeviceProp prop{};
  DESCENT_CUDA_CHECK(cudaGetDeviceProperties(&prop, state.device));
  detail::DeviceIdentity id;
  static_assert(sizeof id.uuid == sizeof prop.uuid.bytes);
  for (std::size_t i = 0; i < sizeof id.uuid; ++i) {
    id.uuid[i] = static_cast<unsigned char>(prop.uuid.bytes[i]);
  }
  char pci[32] = {};
  if (cudaDeviceGetPCIBusId(pci, sizeof pci, state.device) == cudaSuccess) {
    id.pci_bus = pci;
  } else {
    cudaGetLastError();
  }
  return id;
}

}  // namespace descent::cuda
