// The float64 jet oracle: Taylor-series arithmetic (the standard recurrences for products,
// quotients, exp and log of power series) and the network evaluated on it.
#include "oracle/jet_oracle.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace descent::oracle {

namespace {

constexpr int kTerms = 4;

Taylor constant(double c) { return {c, 0.0, 0.0, 0.0}; }

Taylor operator+(const Taylor& a, const Taylor& b) {
  Taylor r{};
  for (int i = 0; i < kTerms; ++i) r[i] = a[i] + b[i];
  return r;
}

Taylor operator*(double s, const Taylor& a) {
  Taylor r{};
  for (int i = 0; i < kTerms; ++i) r[i] = s * a[i];
  return r;
}

Taylor operator*(const Taylor& a, const Taylor& b) {
  Taylor r{};
  for (int n = 0; n < kTerms; ++n) {
    for (int j = 0; j <= n; ++j) r[n] += a[j] * b[n - j];
  }
  return r;
}

// q = a / b: from q·b = a, q_n = (a_n − Σ_{j<n} q_j b_{n−j}) / b₀.
Taylor operator/(const Taylor& a, const Taylor& b) {
  Taylor q{};
  for (int n = 0; n < kTerms; ++n) {
    double s = a[n];
    for (int j = 0; j < n; ++j) s -= q[j] * b[n - j];
    q[n] = s / b[0];
  }
  return q;
}

// e = exp(a): from e' = a' e, n e_n = Σ_{j=1..n} j a_j e_{n−j}.
Taylor exp(const Taylor& a) {
  Taylor e{};
  e[0] = std::exp(a[0]);
  for (int n = 1; n < kTerms; ++n) {
    double s = 0.0;
    for (int j = 1; j <= n; ++j) s += j * a[j] * e[n - j];
    e[n] = s / n;
  }
  return e;
}

// l = log(a): from a l' = a', n a₀ l_n = n a_n − Σ_{j=1..n−1} j l_j a_{n−j}.
Taylor log(const Taylor& a) {
  Taylor l{};
  l[0] = std::log(a[0]);
  for (int n = 1; n < kTerms; ++n) {
    double s = n * a[n];
    for (int j = 1; j < n; ++j) s -= j * l[j] * a[n - j];
    l[n] = s / (n * a[0]);
  }
  return l;
}

Taylor sigmoid(const Taylor& z) { return constant(1.0) / (constant(1.0) + exp(-1.0 * z)); }
Taylor tanh(const Taylor& z) {
  // (1 − e^{−2z}) / (1 + e^{−2z}), written for the moderate z the tests use.
  const Taylor e = exp(-2.0 * z);
  return (constant(1.0) + -1.0 * e) / (constant(1.0) + e);
}

}  // namespace

Taylor activate(JetActivation act, const Taylor& z) {
  switch (act) {
    case JetActivation::identity:
      return z;
    case JetActivation::relu:
      return z[0] > 0.0 ? z : Taylor{};
    case JetActivation::sigmoid:
      return sigmoid(z);
    case JetActivation::tanh:
      return tanh(z);
    case JetActivation::gelu: {
      const double c = std::sqrt(2.0 / std::numbers::pi), a = 0.044715;
      return 0.5 * z * (constant(1.0) + tanh(c * (z + a * (z * z * z))));
    }
    case JetActivation::softplus:
      return log(constant(1.0) + exp(z));
    case JetActivation::silu:
      return z * sigmoid(z);
  }
  return z;
}

std::array<double, 4> jet_derivatives(JetActivation act, double z) {
  const Taylor s = activate(act, Taylor{z, 1.0, 0.0, 0.0});
  return {s[0], s[1], 2.0 * s[2], 6.0 * s[3]};  // σ⁽ⁿ⁾ = n! × the n-th coefficient
}

JetResult jet_forward(const JetNet& net, const Mat& x, const Mat& directions, const Vec& weights) {
  const std::int64_t rows = x.rows, k_count = directions.rows;
  const std::int64_t outputs = net.w.back().rows;
  JetResult r;
  r.u = Mat(rows, outputs);
  r.second = Mat(rows, outputs);
  r.du.assign(static_cast<std::size_t>(k_count), Mat(rows, outputs));
  for (std::int64_t i = 0; i < rows; ++i) {
    // One pass per direction (one along no direction when K = 0, for the value alone).
    for (std::int64_t k = 0; k < std::max<std::int64_t>(k_count, 1); ++k) {
      std::vector<Taylor> h(static_cast<std::size_t>(x.cols));
      for (std::int64_t j = 0; j < x.cols; ++j) {
        h[j] = {x.at(i, j), k < k_count ? directions.at(k, j) : 0.0, 0.0, 0.0};
      }
      for (std::size_t l = 0; l < net.w.size(); ++l) {
        const Mat& w = net.w[l];
        std::vector<Taylor> next(static_cast<std::size_t>(w.rows));
        for (std::int64_t o = 0; o < w.rows; ++o) {
          Taylor z = constant(net.b[l].empty() ? 0.0 : net.b[l][o]);
          for (std::int64_t j = 0; j < w.cols; ++j) z = z + w.at(o, j) * h[j];
          next[o] = activate(net.act[l], z);
        }
        h = std::move(next);
      }
      for (std::int64_t o = 0; o < outputs; ++o) {
        r.u.at(i, o) = h[o][0];
        if (k == k_count) continue;
        r.du[k].at(i, o) = h[o][1];
        r.second.at(i, o) += weights[k] * 2.0 * h[o][2];  // v_kᵀ ∇²u v_k = 2 × the t² coefficient
      }
    }
  }
  return r;
}

}  // namespace descent::oracle
