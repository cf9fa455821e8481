// The CPU backend's batch gathering: the rows (and labels) of a batch, by index, normalised from
// bytes on the way (two roundings, as on the GPU).
#include <cstring>

#include "kernels/cpu/cpu.hpp"

namespace descent::cpu {

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
