// The CPU backend's conversions between fp32 and bf16, and the finiteness check of a buffer.
#include <omp.h>

#include <cmath>

#include "kernels/cpu/cpu.hpp"

namespace descent::cpu {

void check_finite(const Context& ctx, VectorView<const float> x, std::int32_t* flag) {
  bool bad = false;
#pragma omp parallel for num_threads(ctx.threads()) schedule(static) reduction(|| : bad)
  for (std::int64_t i = 0; i < x.size; ++i) bad = bad || !std::isfinite(x.data[i]);
  if (bad) *flag = 1;
}

void convert(const Context& ctx, VectorView<const float> in, VectorView<bf16> out) {
#pragma omp parallel for num_threads(ctx.threads()) schedule(static)
  for (std::int64_t i = 0; i < in.size; ++i) out.data[i] = to_bf16(in.data[i]);
}

void convert(const Context& ctx, VectorView<const bf16> in, VectorView<float> out) {
#pragma omp parallel for num_threads(ctx.threads()) schedule(static)
  for (std::int64_t i = 0; i < in.size; ++i) out.data[i] = to_float(in.data[i]);
}

}  // namespace descent::cpu
