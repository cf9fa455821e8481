// The CUDA backend's optional capabilities (see Backend in src/backend/backend.hpp): capture and
// replay of a step as a CUDA graph (graph.cu) and the pinned double buffers that stream a
// dataset too large to stay on the device (batch.cu).
#pragma once

#include <cstddef>

#include "backend/backend.hpp"

namespace descent::cuda {

// Starts capturing the work queued on ctx's stream (thread-local capture mode).
void begin_capture(const Context& ctx);
// Ends the capture and instantiates it.
detail::Graph* end_capture(const Context& ctx);
// Ends a capture that failed and drops what was captured; never throws.
void abort_capture(const Context& ctx) noexcept;
// Queues one replay on ctx's stream.
void launch(const Context& ctx, detail::Graph& graph);
void destroy_graph(detail::Graph* graph) noexcept;
// How many times ctx's scratch was reallocated (State::scratch_generation).
std::uint64_t scratch_generation(const Context& ctx);

detail::Stager* create_stager(const Context& ctx, std::size_t slot_bytes);
void destroy_stager(detail::Stager* stager) noexcept;
void* stager_acquire(detail::Stager& stager);
const void* stager_submit(detail::Stager& stager, const Context& ctx, std::size_t bytes);
void stager_release(detail::Stager& stager, const Context& ctx);

}  // namespace descent::cuda
