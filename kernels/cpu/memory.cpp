// The CPU backend's memory: aligned host allocations, the memory a model may take, and the
// one-float stores the optimizers use for their device-resident scalars.
#include <unistd.h>

#include <cstdlib>
#include <limits>
#include <string>

#include "descent/error.hpp"
#include "kernels/cpu/cpu.hpp"

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

}  // namespace descent::cpu
