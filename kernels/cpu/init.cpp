// The CPU backend's initialisation: parameters drawn from the counter-based Philox stream shared
// with the GPU (so both give the same bits for a seed), and plain fills.
#include <omp.h>

#include "kernels/cpu/cpu.hpp"
#include "kernels/math/philox.hpp"

namespace descent::cpu {

void fill_uniform(const Context& ctx, VectorView<float> out, float lo, float hi, std::uint64_t seed,
                  std::uint64_t offset) {
#pragma omp parallel for num_threads(ctx.threads()) schedule(static)
  for (std::int64_t i = 0; i < out.size; ++i) {
    out.data[i] =
        detail::uniform_in(lo, hi, detail::uniform01(seed, offset + static_cast<std::uint64_t>(i)));
  }
}

void fill(const Context& ctx, VectorView<float> out, float value) {
#pragma omp parallel for num_threads(ctx.threads()) schedule(static)
  for (std::int64_t i = 0; i < out.size; ++i) out.data[i] = value;
}

}  // namespace descent::cpu
