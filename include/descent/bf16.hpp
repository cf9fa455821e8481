// bfloat16 storage type, usable in host and device code without CUDA headers.
#pragma once

#include <cstdint>
#include <cstring>

#include "descent/detail/host_device.hpp"
#include "descent/export.h"

DESCENT_API_BEGIN

namespace descent {

// 16-bit brain float: the top half of an IEEE float. Conversions round to nearest even.
struct bf16 {
  std::uint16_t bits = 0;
};

DESCENT_HD inline float to_float(bf16 v) {
  std::uint32_t u = static_cast<std::uint32_t>(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

DESCENT_HD inline bf16 to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) {
    return bf16{static_cast<std::uint16_t>((u >> 16) | 0x0040u)};  // keep NaN a (quiet) NaN
  }
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{static_cast<std::uint16_t>(u >> 16)};
}

}  // namespace descent

DESCENT_API_END
