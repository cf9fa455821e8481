// The gradient checks' problem: a small 3-layer MLP with random parameters, inputs and targets,
// for every loss (tests/test_gradcheck.cpp, tests/backends/test_gradcheck.cpp).
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace descent::test {

using LossKind = oracle::LossKind;

inline constexpr LossKind kLosses[] = {LossKind::mse, LossKind::softmax_cross_entropy,
                                       LossKind::sigmoid_bce};
inline constexpr std::int64_t kBatch = 4;

// A 5-7-6-k network (k = 4 classes for cross-entropy, 3 outputs otherwise), with its inputs and
// targets; every value already representable in float so descent and the oracle see the same.
struct Problem {
  std::vector<std::int64_t> widths;
  oracle::Mlp net;
  oracle::Mat x;
  oracle::MlpTargets targets;
  LossKind loss;
};

inline oracle::Mat random_mat(std::mt19937_64& rng, std::int64_t rows, std::int64_t cols, float lo,
                              float hi) {
  return to_mat(random_floats(rng, rows * cols, lo, hi), rows, cols);
}

inline Problem make_problem(std::mt19937_64& rng, LossKind loss, Activation hidden) {
  Problem p;
  const std::int64_t k = loss == LossKind::softmax_cross_entropy ? 4 : 3;
  p.widths = {5, 7, 6, k};
  p.loss = loss;
  p.net.hidden = hidden;
  for (std::size_t l = 0; l + 1 < p.widths.size(); ++l) {
    const float s = std::sqrt(3.0f / float(p.widths[l]));
    p.net.w.push_back(random_mat(rng, p.widths[l + 1], p.widths[l], -1.5f * s, 1.5f * s));
    p.net.b.push_back(to_vec(random_floats(rng, p.widths[l + 1], -0.3f, 0.3f)));
  }
  p.x = random_mat(rng, kBatch, 5, -1.0f, 1.0f);
  if (loss == LossKind::softmax_cross_entropy) {
    p.targets.labels = random_labels(rng, kBatch, k);
  } else {
    p.targets.target = random_mat(rng, kBatch, k, loss == LossKind::mse ? -1.0f : 0.0f, 1.0f);
  }
  return p;
}

inline std::string describe(const Problem& p) {
  return cat(oracle::to_string(p.loss), ", hidden ", to_string(p.net.hidden));
}

}  // namespace descent::test
