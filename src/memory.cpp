// Raw memory on the host or a CUDA device, and copies between them.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <string>

#include "kernels/backend.hpp"
#include "descent/buffer.hpp"
#include "descent/error.hpp"

namespace descent::detail {

namespace {
// Host copies at least this large are split over the context's threads.
constexpr std::size_t kParallelCopyBytes = std::size_t(1) << 20;
}  // namespace

std::size_t checked_bytes(std::int64_t count, std::size_t element_size) {
  if (count < 0) {
    throw ArgumentError("Buffer: size must be >= 0, got " + std::to_string(count));
  }
  // No object may be larger than PTRDIFF_MAX bytes (pointer differences must fit), and a product
  // that wraps would allocate a short buffer.
  constexpr auto kMaxBytes = static_cast<std::size_t>(std::numeric_limits<std::ptrdiff_t>::max());
  if (element_size != 0 && static_cast<std::uint64_t>(count) > kMaxBytes / element_size) {
    throw ArgumentError("Buffer: size " + std::to_string(count) + " elements of " +
                        std::to_string(element_size) + " bytes: the byte count does not fit in " +
                        std::to_string(kMaxBytes) + " bytes, expected at most " +
                        std::to_string(kMaxBytes / element_size) + " elements");
  }
  return static_cast<std::size_t>(count) * element_size;
}

void* allocate(const Context& ctx, std::size_t bytes) {
  if (bytes == 0) return nullptr;
  return backend_of(ctx).allocate(ctx, bytes);
}

// Only memory that was allocated (non-null) reaches a backend: a build without CUDA never has
// CUDA memory to free.
void deallocate(Device device, void* ptr) noexcept {
  if (ptr != nullptr) backend_for(device).deallocate(device, ptr);
}

void throw_out_of_buffer(std::int64_t offset, std::int64_t count, std::int64_t size) {
  throw ArgumentError("Buffer::copy_from_host: " + std::to_string(count) + " elements at offset " +
                      std::to_string(offset) + " do not fit a buffer of " + std::to_string(size));
}

void copy_bytes(const Context& ctx, void* dst, Device dst_device, const void* src,
                Device src_device, std::size_t bytes) {
  if (bytes == 0) return;
  if (dst == nullptr || src == nullptr) {
    throw ArgumentError(std::string("copy: ") + (dst == nullptr ? "destination" : "source") +
                        " is null for a copy of " + std::to_string(bytes) + " bytes");
  }
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    const auto* s = static_cast<const char*>(src);
    auto* d = static_cast<char*>(dst);
    const bool overlap = d < s + bytes && s < d + bytes;
    if (overlap || bytes < kParallelCopyBytes) {
      std::memmove(dst, src, bytes);
      return;
    }
    // A large copy takes every thread, one contiguous piece each (large enough for the C
    // library to use streaming stores): one core alone cannot draw the memory bandwidth.
    const int threads = ctx.threads();
    const std::size_t piece = (bytes + threads - 1) / threads;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int t = 0; t < threads; ++t) {
      const std::size_t first = static_cast<std::size_t>(t) * piece;
      if (first < bytes) std::memcpy(d + first, s + first, std::min(piece, bytes - first));
    }
    return;
  }
  backend_of(ctx).copy(ctx, dst, src, bytes);  // the CPU backend refuses: it has no such memory
}

void copy_rows(const Context& ctx, void* dst, std::size_t dst_pitch, Device dst_device,
               const void* src, std::size_t src_pitch, Device src_device, std::size_t row_bytes,
               std::size_t rows) {
  if (rows == 0 || row_bytes == 0) return;
  if (dst_pitch == row_bytes && src_pitch == row_bytes) {
    copy_bytes(ctx, dst, dst_device, src, src_device, row_bytes * rows);  // one block
    return;
  }
  if (dst == nullptr || src == nullptr) {
    throw ArgumentError(std::string("copy: ") + (dst == nullptr ? "destination" : "source") +
                        " is null for a copy of " + std::to_string(rows) + " rows");
  }
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    for (std::size_t r = 0; r < rows; ++r) {
      std::memmove(static_cast<char*>(dst) + r * dst_pitch,
                   static_cast<const char*>(src) + r * src_pitch, row_bytes);
    }
    return;
  }
  backend_of(ctx).copy_rows(ctx, dst, dst_pitch, src, src_pitch, row_bytes, rows);
}

}  // namespace descent::detail
