// The GPU-only pieces of training: CUDA graph capture and replay of a step (kernels/graph.cu),
// batch gathering and normalisation, evaluation counts and pinned double-buffer streaming
// (kernels/batch.cu). Without CUDA, src/no_cuda/train_absent.cpp throws DeviceError.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "descent/buffer.hpp"
#include "descent/context.hpp"
#include "train_stats.hpp"

namespace descent::cuda_train {

// ---------------------------------------------------------------- graphs (kernels/graph.cu)

// A captured and instantiated step.
struct Graph;
void destroy_graph(Graph* graph) noexcept;
using GraphPtr = std::unique_ptr<Graph, void (*)(Graph*) noexcept>;

// Starts capturing the work queued on ctx's stream (thread-local capture mode).
void begin_capture(const Context& ctx);
// Ends the capture and instantiates it.
GraphPtr end_capture(const Context& ctx);
// Ends a capture that failed and drops what was captured; never throws.
void abort_capture(const Context& ctx) noexcept;
// Queues one replay on ctx's stream.
void launch(const Context& ctx, Graph& graph);

// *dst = value, queued on the stream (a kernel argument, so the host never waits).
void store_float(const Context& ctx, float* dst, float value);
// detail::reset_stats / record_batch on device memory, queued on the stream.
void reset_stats(const Context& ctx, detail::StepStats* stats);
void record_batch(const Context& ctx, detail::StepStats* stats, const float* loss, double rows);

// ---------------------------------------------------------------- batches (kernels/batch.cu)

// out[r, :] = data[index[r], :] * scale + shift for r < rows (index null: row r itself);
// out has leading dimension `features`.
void gather_rows(const Context& ctx, const std::uint8_t* data, std::int64_t features,
                 const std::int32_t* index, std::int64_t rows, float scale, float shift,
                 float* out);
void gather_rows(const Context& ctx, const float* data, std::int64_t features,
                 const std::int32_t* index, std::int64_t rows, float* out);
void gather_labels(const Context& ctx, const std::int32_t* labels, const std::int32_t* index,
                   std::int64_t rows, std::int32_t* out);

// stats->correct += rows whose arg-max logit equals the label.
void count_correct(const Context& ctx, MatrixView<const float> logits,
                   VectorView<const std::int32_t> labels, detail::StepStats* stats);
// stats->correct += outputs whose sign agrees with their 0/1 target (logit > 0 ⇔ target > 0.5).
void count_correct_binary(const Context& ctx, MatrixView<const float> logits,
                          MatrixView<const float> targets, detail::StepStats* stats);

// Free device memory in bytes on ctx's device.
std::size_t free_memory(const Context& ctx);

// Two slots, each a pinned host block and a device block of slot_bytes, and a copy stream. The
// host fills a slot while the GPU still computes on the previous batch; the copy runs on the
// copy stream and the compute stream waits for it with an event.
struct Stager;
void destroy_stager(Stager* stager) noexcept;
using StagerPtr = std::unique_ptr<Stager, void (*)(Stager*) noexcept>;
StagerPtr create_stager(const Context& ctx, std::size_t slot_bytes);
// The host block of the next slot, once the copy that last read it is done.
void* stager_acquire(Stager& stager);
// Queues the copy of the first `bytes` of the acquired slot (after the compute stream released
// the slot's device block) and makes ctx's stream wait for it; returns the device block.
const void* stager_submit(Stager& stager, const Context& ctx, std::size_t bytes);
// Marks the device block of the acquired slot free once the work queued so far on ctx's stream
// (the kernels reading it) is done.
void stager_release(Stager& stager, const Context& ctx);

}  // namespace descent::cuda_train
