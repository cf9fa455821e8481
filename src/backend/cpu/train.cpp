// The CPU backend's services for training: host memory, batch gathering, the loss bookkeeping
// and evaluation counts (run at once: the host is the device).
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "backend/backend.hpp"
#include "descent/error.hpp"
#include "math/step_stats.hpp"

namespace descent::cpu {

namespace {
// Host buffers are aligned for the widest vector loads the CPU backend uses.
constexpr std::size_t kHostAlignment = 64;
}  // namespace

// Physical memory: an allocation beyond it would only succeed through overcommit and end with
// the OOM killer.
double memory_bytes(const Context&) {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<double>(pages) * static_cast<double>(page)
                               : std::numeric_limits<double>::infinity();
}

void* allocate(const Context&, std::size_t bytes) {
  if (bytes > std::numeric_limits<std::size_t>::max() - kHostAlignment) {
    throw OutOfMemory("Buffer: cannot allocate " + std::to_string(bytes) +
                      " bytes of host memory (more than the address space)");
  }
  const std::size_t rounded = (bytes + kHostAlignment - 1) / kHostAlignment * kHostAlignment;
  void* p = std::aligned_alloc(kHostAlignment, rounded);
  if (p == nullptr) {
    throw OutOfMemory("Buffer: could not allocate " + std::to_string(bytes) +
                      " bytes of host memory");
  }
  return p;
}

void deallocate(Device, void* ptr) noexcept { std::free(ptr); }

void store_float(const Context&, float* dst, float value) { *dst = value; }

void reset_stats(const Context&, detail::StepStats* stats) { detail::reset_stats(*stats); }

void record_batch(const Context&, detail::StepStats* stats, const float* loss, double rows) {
  detail::record_batch(*stats, *loss, rows);
}

void count_correct(const Context&, MatrixView<const float> logits,
                   VectorView<const std::int32_t> labels, detail::StepStats* stats) {
  unsigned long long correct = 0;
  for (std::int64_t r = 0; r < logits.rows; ++r) {
    const float* z = logits.data + r * logits.ld;
    std::int64_t best = 0;
    for (std::int64_t j = 1; j < logits.cols; ++j) {
      if (z[j] > z[best]) best = j;  // the first maximum, as torch.argmax
    }
    correct += best == labels.data[r] ? 1u : 0u;
  }
  stats->correct += correct;
}

void count_correct_binary(const Context&, MatrixView<const float> logits,
                          MatrixView<const float> targets, detail::StepStats* stats) {
  unsigned long long correct = 0;
  for (std::int64_t r = 0; r < logits.rows; ++r) {
    const float* z = logits.data + r * logits.ld;
    const float* t = targets.data + r * targets.ld;
    for (std::int64_t j = 0; j < logits.cols; ++j) correct += (z[j] > 0.0f) == (t[j] > 0.5f) ? 1u : 0u;
  }
  stats->correct += correct;
}

void gather_rows(const Context&, const std::uint8_t* data, std::int64_t features,
                 const std::int32_t* index, std::int64_t rows, float scale, float shift,
                 float* out) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t src = index != nullptr ? index[r] : r;
    const std::uint8_t* in = data + src * features;
    float* o = out + r * features;
    for (std::int64_t j = 0; j < features; ++j) {
      const float scaled = static_cast<float>(in[j]) * scale;  // two roundings, as on the GPU
      o[j] = scaled + shift;
    }
  }
}

void gather_rows(const Context&, const float* data, std::int64_t features,
                 const std::int32_t* index, std::int64_t rows, float* out) {
  const auto row_bytes = sizeof(float) * static_cast<std::size_t>(features);
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t src = index != nullptr ? index[r] : r;
    std::memcpy(out + r * features, data + src * features, row_bytes);
  }
}

void gather_labels(const Context&, const std::int32_t* labels, const std::int32_t* index,
                   std::int64_t rows, std::int32_t* out) {
  for (std::int64_t r = 0; r < rows; ++r) out[r] = labels[index != nullptr ? index[r] : r];
}

}  // namespace descent::cpu
