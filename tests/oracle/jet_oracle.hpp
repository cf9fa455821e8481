// The float64 oracle of forward jets (test-only): the network evaluated on truncated Taylor
// series in one variable t along x + t·v_k, built from exp, log, products and quotients of series
// alone, so that no hand-derived derivative of an activation is shared with descent's jet math.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "descent/jet_ops.hpp"
#include "oracle/oracle.hpp"

namespace descent::oracle {

// a₀ + a₁ t + a₂ t² + a₃ t³ (+ O(t⁴)).
using Taylor = std::array<double, 4>;

// σ applied to a series (relu: its value's branch; the derivatives are those of that branch).
Taylor activate(JetActivation act, const Taylor& z);

// σ(z), σ'(z), σ''(z), σ'''(z) from the series of σ(z + t).
std::array<double, 4> jet_derivatives(JetActivation act, double z);

// A network: layer l maps w[l].cols inputs to w[l].rows outputs, y = act[l](w x + b).
struct JetNet {
  std::vector<Mat> w;
  std::vector<Vec> b;
  std::vector<JetActivation> act;
};

// u, ∂_k u = (∂u/∂x) v_k and Σ_k c_k v_kᵀ (∇²u) v_k at every row of x, each [rows, outputs].
struct JetResult {
  Mat u;
  std::vector<Mat> du;
  Mat second;
};
// directions: K rows of inputs; weights: the c_k.
JetResult jet_forward(const JetNet& net, const Mat& x, const Mat& directions, const Vec& weights);

}  // namespace descent::oracle
