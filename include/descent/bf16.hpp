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

// Written without a branch (a select), so that loops over it vectorise.
DESCENT_HD inline bf16 to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const std::uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const std::uint32_t quiet = (u >> 16) | 0x0040u;  // a NaN stays a (quiet) NaN
  return bf16{static_cast<std::uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? quiet : rounded)};
}

}  // namespace descent

DESCENT_API_END
