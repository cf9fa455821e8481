// fill_uniform on every backend: 200000 draws in [lo, hi), with a uniform's mean and variance
// and few repeats.
#include <cmath>
#include <set>
#include <utility>

#include "test_support.hpp"

namespace descent::test {
namespace {

class InitTest : public BackendTest {};
DESCENT_INSTANTIATE_BACKENDS(InitTest);

TEST_P(InitTest, FillUniformValuesInRangeWithUniformMoments) {
  const std::int64_t n = 200000;
  for (auto [lo, hi] : {std::pair{-1.0f, 1.0f}, std::pair{0.0f, 1.0f}, std::pair{-0.125f, 0.125f},
                        std::pair{2.0f, 3.0f}}) {
    SCOPED_TRACE(cat("[", lo, ", ", hi, ")"));
    Buffer<float> out = poisoned<float>(ctx(), n);
    fill_uniform(ctx(), out.view(), lo, hi, seed_, 0);
    const std::vector<float> v = out.to_host(ctx());
    double sum = 0, sum2 = 0;
    std::int64_t outside = 0;
    for (float x : v) {
      outside += !(x >= lo && x < hi);
      sum += x;
      sum2 += double(x) * x;
    }
    EXPECT_EQ(outside, 0) << "values outside [lo, hi)";
    const double span = double(hi) - lo, mean = sum / n, var = sum2 / n - mean * mean;
    // 6 standard errors of the mean; the variance of a uniform is span²/12.
    EXPECT_NEAR(mean, (double(lo) + hi) / 2, 6 * span / std::sqrt(12.0 * n));
    EXPECT_NEAR(var, span * span / 12, 0.02 * span * span / 12);
    EXPECT_GT(std::set<float>(v.begin(), v.end()).size(), std::size_t(n * 9 / 10))
        << "too many repeated values";
  }
}

}  // namespace
}  // namespace descent::test
