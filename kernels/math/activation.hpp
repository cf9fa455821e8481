// Activation functions and their derivatives, written once for the CPU and the GPU backend.
#pragma once

#include <cmath>
#include <type_traits>

#include "descent/detail/host_device.hpp"

namespace descent::detail {

// Activation ids as in descent::Activation, usable as template arguments in kernels.
enum class Act : int { identity = 0, relu = 1, sigmoid = 2, tanh = 3, gelu = 4 };

// sqrt(2/pi) and the cubic coefficient of the tanh approximation of GELU (PyTorch's
// approximate='tanh').
inline constexpr float kGeluC = 0.7978845608028654f;
inline constexpr float kGeluA = 0.044715f;
// The same two in float64 (the CPU's float64 jets).
inline constexpr double kGeluC64 = 0.7978845608028654;
inline constexpr double kGeluA64 = 0.044715;

DESCENT_HD inline float sigmoidf(float z) { return 1.0f / (1.0f + expf(-z)); }

// Where tanh and sigmoid come from: the math library by default (the GPU's are fast); the CPU
// backend passes its vectorisable ones (kernels/cpu/fast_exp.hpp), libm's being a call per
// element.
struct LibmActMath {
  DESCENT_HD static float tanh(float u) { return tanhf(u); }
  DESCENT_HD static float sigmoid(float z) { return sigmoidf(z); }
};

template <Act A, class M = LibmActMath>
DESCENT_HD inline float activate(float z) {
  if constexpr (A == Act::identity) return z;
  if constexpr (A == Act::relu) return z < 0.0f ? 0.0f : z;  // NaN passes through, as in PyTorch
  if constexpr (A == Act::sigmoid) return M::sigmoid(z);
  if constexpr (A == Act::tanh) return M::tanh(z);
  if constexpr (A == Act::gelu) {
    return 0.5f * z * (1.0f + M::tanh(kGeluC * (z + kGeluA * z * z * z)));
  }
}

// d act / dz, given the output y = act(z) and (for gelu, which needs it) z itself.
template <Act A, class M = LibmActMath>
DESCENT_HD inline float activate_grad(float y, float z) {
  if constexpr (A == Act::identity) return 1.0f;
  if constexpr (A == Act::relu) return y > 0.0f ? 1.0f : 0.0f;
  if constexpr (A == Act::sigmoid) return y * (1.0f - y);
  if constexpr (A == Act::tanh) return 1.0f - y * y;
  if constexpr (A == Act::gelu) {
    const float z2 = z * z;
    const float t = M::tanh(kGeluC * (z + kGeluA * z2 * z));
    return 0.5f * (1.0f + t) + 0.5f * z * (1.0f - t * t) * kGeluC * (1.0f + 3.0f * kGeluA * z2);
  }
}

// Calls f(std::integral_constant<Act, a>) for a run-time activation id, so a kernel or loop can
// be instantiated once per activation.
template <class F>
inline decltype(auto) dispatch_activation(int act, F&& f) {
  switch (static_cast<Act>(act)) {
    case Act::relu:
      return f(std::integral_constant<Act, Act::relu>{});
    case Act::sigmoid:
      return f(std::integral_constant<Act, Act::sigmoid>{});
    case Act::tanh:
      return f(std::integral_constant<Act, Act::tanh>{});
    case Act::gelu:
      return f(std::integral_constant<Act, Act::gelu>{});
    default:
      return f(std::integral_constant<Act, Act::identity>{});
  }
}

}  // namespace descent::detail
