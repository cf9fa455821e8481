// Forward jets through one activation, written once for the CPU and the GPU backend: σ and its
// first three derivatives for every smooth activation, and the per-element forward and backward
// passes over the stacked blocks [h; J_1..J_K; L] (docs/training-step.md, "Derivatives of the
// network" derives them).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "descent/detail/host_device.hpp"
#include "kernels/math/activation.hpp"  // kGeluC, kGeluA: the same gelu as the dense layers

namespace descent::detail {

// Activation ids of the jet path, as in descent::JetActivation (descent/jet.hpp). The first five
// equal descent::Activation's ids; softplus and silu exist on the jet path only (the dense
// layers, checkpoints and ONNX export do not know them yet).
enum class JetAct : int {
  identity = 0,
  relu = 1,
  sigmoid = 2,
  tanh = 3,
  gelu = 4,
  softplus = 5,
  silu = 6
};

// σ(z) and dσ/dz, d²σ/dz², d³σ/dz³ at one z, in T (float but in the CPU's float64 step).
template <class T>
struct ActDerivativesT {
  T d0, d1, d2, d3;
};
using ActDerivatives = ActDerivativesT<float>;

// sech²(u) = 1 − tanh²(u), from cosh: 1 − t² cancels to nothing in fp32 once |u| > ~4, where
// the second and third derivatives of tanh and gelu still matter.
DESCENT_HD inline float sech2(float u) {
  const float c = coshf(u);
  return 1.0f / (c * c);  // cosh overflows to inf past |u| ~ 89: sech² = 0, as it should
}

// The transcendental functions the derivatives are built on: tanh with sech², and sigmoid. The
// default takes them from the math library (the GPU's are fast); the CPU backend passes its own
// vectorisable ones (kernels/cpu/fast_exp.hpp), since libm's are a call per element.
struct LibmJetMath {
  struct TanhSech2 {
    float t, q;
  };
  DESCENT_HD static TanhSech2 tanh_sech2(float u) { return {tanhf(u), sech2(u)}; }
  DESCENT_HD static float sigmoid(float z) { return sigmoidf(z); }
};

// The number type a math policy computes in: its `scalar`, float when it names none.
template <class M, class = void>
struct JetScalar {
  using type = float;
};
template <class M>
struct JetScalar<M, std::void_t<typename M::scalar>> {
  using type = typename M::scalar;
};

// tanh's σ and derivatives from t = tanh(z) and q = sech²(z) (jet_derivatives' own formulas, so
// the CPU's backward pass, given the forward pass's t and q, gives the same bits).
template <class T>
DESCENT_HD inline ActDerivativesT<T> tanh_derivatives(T t, T q) {
  return {t, q, T(-2) * t * q, q * (T(6) * t * t - T(2))};
}

template <JetAct A, class M = LibmJetMath, class T = typename JetScalar<M>::type>
DESCENT_HD inline ActDerivativesT<T> jet_derivatives(T z) {
  if constexpr (A == JetAct::identity) {
    return {z, T(1), T(0), T(0)};
  } else if constexpr (A == JetAct::relu) {
    // σ'' = σ''' = 0 except at 0, where they do not exist: first-order jets only (ops refuse
    // second-order ones).
    return {z < T(0) ? T(0) : z, z > T(0) ? T(1) : T(0), T(0), T(0)};
  } else if constexpr (A == JetAct::tanh) {
    const auto [t, q] = M::tanh_sech2(z);
    return tanh_derivatives<T>(t, q);
  } else if constexpr (A == JetAct::sigmoid || A == JetAct::softplus || A == JetAct::silu) {
    // All three are built on s = sigmoid(z) and its derivatives s' = s(1-s),
    // s'' = s'(1-2s), s''' = s'(1-6s+6s²).
    const T s = M::sigmoid(z);
    const T s1 = s * (T(1) - s);
    const T s2 = s1 * (T(1) - T(2) * s);
    const T s3 = s1 * (T(1) - T(6) * s + T(6) * s * s);
    if constexpr (A == JetAct::sigmoid) {
      return {s, s1, s2, s3};
    } else if constexpr (A == JetAct::softplus) {
      // log(1 + e^z) without overflow: max(z, 0) + log1p(e^-|z|).
      if constexpr (std::is_same_v<T, float>) {
        return {fmaxf(z, 0.0f) + log1pf(expf(-fabsf(z))), s, s1, s2};
      } else {
        return {std::fmax(z, T(0)) + std::log1p(std::exp(-std::fabs(z))), s, s1, s2};
      }
    } else {
      // silu(z) = z s: derivatives by Leibniz, (z s)^(n) = z s^(n) + n s^(n-1).
      return {z * s, s + z * s1, T(2) * s1 + z * s2, T(3) * s2 + z * s3};
    }
  } else {
    static_assert(A == JetAct::gelu);
    // g(z) = ½ z (1 + T), T = tanh(u), u = C (z + A z³): u' = C (1 + 3A z²), u'' = 6 C A z,
    // u''' = 6 C A; with q = 1 - T²: T' = q u', T'' = q (u'' - 2 T u'²),
    // T''' = q (u''' - 6 T u' u'' - 2 (1 - 3T²) u'³); g' = ½ (1 + T) + ½ z T',
    // g'' = T' + ½ z T'', g''' = (3/2) T'' + ½ z T'''.
    constexpr bool kSingle = std::is_same_v<T, float>;
    const T c = kSingle ? T(kGeluC) : T(kGeluC64), a = kSingle ? T(kGeluA) : T(kGeluA64);
    const T z2 = z * z;
    const T u = c * (z + a * z2 * z);
    const auto [t, q] = M::tanh_sech2(u);
    const T u1 = c * (T(1) + T(3) * a * z2);
    const T u2 = T(6) * c * a * z;
    const T u3 = T(6) * c * a;
    const T t1 = q * u1;
    const T t2 = q * (u2 - T(2) * t * u1 * u1);
    const T t3 = q * (u3 - T(6) * t * u1 * u2 - T(2) * (T(1) - T(3) * t * t) * u1 * u1 * u1);
    return {T(0.5) * z * (T(1) + t), T(0.5) * (T(1) + t) + T(0.5) * z * t1, t1 + T(0.5) * z * t2,
            T(1.5) * t2 + T(0.5) * z * t3};
  }
}

// Calls f(std::integral_constant<JetAct, a>) for a run-time jet activation id.
template <class F>
inline decltype(auto) dispatch_jet_activation(int act, F&& f) {
  switch (static_cast<JetAct>(act)) {
    case JetAct::relu:
      return f(std::integral_constant<JetAct, JetAct::relu>{});
    case JetAct::sigmoid:
      return f(std::integral_constant<JetAct, JetAct::sigmoid>{});
    case JetAct::tanh:
      return f(std::integral_constant<JetAct, JetAct::tanh>{});
    case JetAct::gelu:
      return f(std::integral_constant<JetAct, JetAct::gelu>{});
    case JetAct::softplus:
      return f(std::integral_constant<JetAct, JetAct::softplus>{});
    case JetAct::silu:
      return f(std::integral_constant<JetAct, JetAct::silu>{});
    default:
      return f(std::integral_constant<JetAct, JetAct::identity>{});
  }
}

// The blocks of a stacked jet: value, then the K directions, then (second order) the weighted
// second-derivative sum. One element (row r of the value block, column j) of a matrix has its
// partner in block b at p[b * stride], stride = rows per block · leading dimension.
struct JetShape {
  int directions;  // K
  bool second_order;
};

// The forward pass of one element: z (value block, bias already added), Ż_k, L_z read from
// `z`, and h = σ(z), J_k = σ'(z) Ż_k, L = σ'(z) L_z + σ''(z) Σ_k c_k Ż_k² written to `h`.
template <JetAct A, class M = LibmJetMath>
DESCENT_HD inline void jet_forward_element(const JetShape& e, const float* weights, const float* z,
                                           std::int64_t zs, float* h, std::int64_t hs) {
  const ActDerivatives d = jet_derivatives<A, M>(z[0]);
  h[0] = d.d0;
  float s = 0.0f;
  for (int k = 0; k < e.directions; ++k) {
    const float zk = z[(k + 1) * zs];
    h[(k + 1) * hs] = d.d1 * zk;
    s += weights[k] * zk * zk;
  }
  if (e.second_order) {
    const int l = e.directions + 1;
    h[l * hs] = d.d1 * z[l * zs] + d.d2 * s;
  }
}

// The backward pass of one element: from z, Ż_k, L_z (read from `z`) and the adjoints h̄, J̄_k,
// L̄ of the outputs (read from `dh`), writes the adjoints z̄, Ż̄_k, L̄_z of the inputs to `dz`:
//   L̄_z = σ' L̄      Ż̄_k = σ' J̄_k + 2 c_k σ'' L̄ Ż_k
//   z̄   = σ' h̄ + σ'' Σ_k J̄_k Ż_k + (σ'' L_z + σ''' S) L̄,   S = Σ_k c_k Ż_k².
// Returns z̄ (the bias gradient sums it over the value block).
template <JetAct A, class M = LibmJetMath>
DESCENT_HD inline float jet_backward_element(const JetShape& e, const float* weights,
                                             const float* z, std::int64_t zs, const float* dh,
                                             std::int64_t dhs, float* dz, std::int64_t dzs) {
  const ActDerivatives d = jet_derivatives<A, M>(z[0]);
  const int l = e.directions + 1;
  const float lbar = e.second_order ? dh[l * dhs] : 0.0f;
  float s = 0.0f, jz = 0.0f;
  for (int k = 0; k < e.directions; ++k) {
    const float zk = z[(k + 1) * zs];
    const float jbar = dh[(k + 1) * dhs];
    dz[(k + 1) * dzs] = d.d1 * jbar + 2.0f * weights[k] * d.d2 * lbar * zk;
    jz += jbar * zk;
    s += weights[k] * zk * zk;
  }
  float zbar = d.d1 * dh[0] + d.d2 * jz;
  if (e.second_order) {
    zbar += (d.d2 * z[l * zs] + d.d3 * s) * lbar;
    dz[l * dzs] = d.d1 * lbar;
  }
  dz[0] = zbar;
  return zbar;
}

// The PDE residual at one output element of a jet, r = a u + Σ_k b_k ∂_k u + c L
// + Σ_k d_k u ∂_k u − f, with coefficients {a, c, b_0..b_{K-1}, d_0..d_{K-1}}; writes the
// adjoints of w·r² / count scaled by `scale` = 2w / count to the same places in `g`:
//   ∂/∂u = scale r (a + Σ_k d_k ∂_k u)   ∂/∂(∂_k u) = scale r (b_k + d_k u)   ∂/∂L = scale r c.
// Returns r².
template <class T>
DESCENT_HD inline T pde_residual_element(const JetShape& e, const T* coefficients, const T* y,
                                         std::int64_t ys, T f, T scale, T* g, std::int64_t gs) {
  const int k_count = e.directions;
  const T* b = coefficients + 2;
  const T* d = coefficients + 2 + k_count;
  const T u = y[0];
  T r = coefficients[0] * u - f;
  T du_coeff = coefficients[0];
  for (int k = 0; k < k_count; ++k) {
    const T uk = y[(k + 1) * ys];
    r += (b[k] + d[k] * u) * uk;
    du_coeff += d[k] * uk;
  }
  const int l = k_count + 1;
  if (e.second_order) r += coefficients[1] * y[l * ys];
  const T sr = scale * r;
  g[0] = sr * du_coeff;
  for (int k = 0; k < k_count; ++k) g[(k + 1) * gs] = sr * (b[k] + d[k] * u);
  if (e.second_order) g[l * gs] = sr * coefficients[1];
  return r * r;
}

}  // namespace descent::detail
