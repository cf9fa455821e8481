// Philox-4x32-10 known answers, fill_uniform (the spec is the shared header) and fill.
#include <cmath>
#include <set>

#include "kernels/math/philox.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

// Known-answer vectors of the Random123 reference implementation of Philox4x32-10.
TEST(Philox, KnownAnswerZeroCounterZeroKey) {
  const detail::Philox4 r = detail::philox4x32_10(0, 0, 0, 0, 0, 0);
  EXPECT_EQ(r.v[0], 0x6627e8d5u);
  EXPECT_EQ(r.v[1], 0xe169c58du);
  EXPECT_EQ(r.v[2], 0xbc57ac4cu);
  EXPECT_EQ(r.v[3], 0x9b00dbd8u);
}

TEST(Philox, KnownAnswerAllOnes) {
  const std::uint32_t f = 0xffffffffu;
  const detail::Philox4 r = detail::philox4x32_10(f, f, f, f, f, f);
  EXPECT_EQ(r.v[0], 0x408f276du);
  EXPECT_EQ(r.v[1], 0x41c83b0eu);
  EXPECT_EQ(r.v[2], 0xa20bc7c6u);
  EXPECT_EQ(r.v[3], 0x6d5451fdu);
}

TEST(Philox, KnownAnswerDigitsOfPi) {
  const detail::Philox4 r = detail::philox4x32_10(0x243f6a88u, 0x85a308d3u, 0x13198a2eu,
                                                  0x03707344u, 0xa4093822u, 0x299f31d0u);
  EXPECT_EQ(r.v[0], 0xd16cfe09u);
  EXPECT_EQ(r.v[1], 0x94fdccebu);
  EXPECT_EQ(r.v[2], 0x5001e420u);
  EXPECT_EQ(r.v[3], 0x24126ea1u);
}

TEST(Philox, Uniform01UsesBlockAndLaneOfTheIndex) {
  const std::uint64_t seed = 0x0123456789abcdefull;
  const std::uint64_t index = (std::uint64_t(5) << 32 | 7u) * 4 + 2;  // block 5·2³²+7, lane 2
  const detail::Philox4 r = detail::philox4x32_10(7u, 5u, 0, 0, 0x89abcdefu, 0x01234567u);
  EXPECT_EQ(detail::uniform01(seed, index), float(r.v[2] >> 8) / 16777216.0f);
}

TEST(Philox, Uniform01InUnitInterval) {
  for (std::uint64_t i = 0; i < 100000; ++i) {
    const float u = detail::uniform01(42, i);
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
  }
}

// What fill_uniform must produce, straight from the shared header.
std::vector<float> spec_uniform(std::int64_t n, float lo, float hi, std::uint64_t seed,
                                std::uint64_t offset) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    v[std::size_t(i)] =
        detail::uniform_in(lo, hi, detail::uniform01(seed, offset + std::uint64_t(i)));
  }
  return v;
}

std::int64_t count_bit_differences(const std::vector<float>& a, const std::vector<float>& b) {
  std::int64_t n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) n += !same_bits(a[i], b[i]);
  return n;
}

class InitTest : public BackendTest {};
DESCENT_INSTANTIATE_BACKENDS(InitTest);

struct UniformCase {
  std::int64_t n;
  float lo, hi;
  std::uint64_t seed, offset;
};

TEST_P(InitTest, FillUniformIsBitIdenticalToTheSpec) {
  const UniformCase cases[] = {
      {1, -1.0f, 1.0f, 0, 0},
      {3, 0.0f, 1.0f, 1, 0},
      {1003, -0.0765f, 0.0765f, 12345, 0},
      {1023, -1.0f, 1.0f, 0xdeadbeefcafef00dull, 3},          // offset not a multiple of 4
      {17, 2.0f, 3.0f, 7, (std::uint64_t(1) << 32) * 4 - 6},  // block counter crosses 2³²
      {100000, -0.125f, 0.125f, 99, 1000001},
  };
  for (const UniformCase& c : cases) {
    SCOPED_TRACE(cat("n ", c.n, " seed ", c.seed, " offset ", c.offset));
    Buffer<float> out = poisoned<float>(ctx(), c.n);
    fill_uniform(ctx(), out.view(), c.lo, c.hi, c.seed, c.offset);
    EXPECT_EQ(
        count_bit_differences(out.to_host(ctx()), spec_uniform(c.n, c.lo, c.hi, c.seed, c.offset)),
        0)
        << "elements that differ from the shared Philox formula";
  }
}

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

TEST_P(InitTest, FillUniformOffsetContinuesTheStream) {
  const std::int64_t n = 1000;
  Buffer<float> whole = poisoned<float>(ctx(), n);
  fill_uniform(ctx(), whole.view(), -1.0f, 1.0f, seed_, 0);
  const std::vector<float> all = whole.to_host(ctx());
  for (std::int64_t k : {1, 2, 3, 4, 5, 17, 999}) {
    SCOPED_TRACE(cat("offset ", k));
    Buffer<float> tail = poisoned<float>(ctx(), n - k);
    fill_uniform(ctx(), tail.view(), -1.0f, 1.0f, seed_, std::uint64_t(k));
    EXPECT_EQ(
        count_bit_differences(tail.to_host(ctx()), std::vector<float>(all.begin() + k, all.end())),
        0);
  }
  // Filling a slice of a buffer at its own offset reproduces that part of the whole fill.
  Buffer<float> parts = poisoned<float>(ctx(), n);
  fill_uniform(ctx(), parts.view().slice(0, 333), -1.0f, 1.0f, seed_, 0);
  fill_uniform(ctx(), parts.view().slice(333, n - 333), -1.0f, 1.0f, seed_, 333);
  EXPECT_EQ(count_bit_differences(parts.to_host(ctx()), all), 0);
}

TEST_P(InitTest, FillUniformDifferentSeedsDiffer) {
  const std::int64_t n = 4096;
  Buffer<float> a = poisoned<float>(ctx(), n), b = poisoned<float>(ctx(), n),
                c = poisoned<float>(ctx(), n);
  fill_uniform(ctx(), a.view(), -1.0f, 1.0f, 1, 0);
  fill_uniform(ctx(), b.view(), -1.0f, 1.0f, 2, 0);
  fill_uniform(ctx(), c.view(), -1.0f, 1.0f, 1ull << 32 | 1, 0);  // differs only in the high word
  const std::vector<float> va = a.to_host(ctx()), vb = b.to_host(ctx()), vc = c.to_host(ctx());
  EXPECT_GT(count_bit_differences(va, vb), n * 99 / 100);
  EXPECT_GT(count_bit_differences(va, vc), n * 99 / 100);
}

TEST_P(InitTest, FillUniformSameArgumentsRepeat) {
  Buffer<float> a = poisoned<float>(ctx(), 513), b = poisoned<float>(ctx(), 513);
  fill_uniform(ctx(), a.view(), -0.5f, 0.5f, seed_, 11);
  fill_uniform(ctx(), b.view(), -0.5f, 0.5f, seed_, 11);
  EXPECT_EQ(count_bit_differences(a.to_host(ctx()), b.to_host(ctx())), 0);
}

TEST_P(InitTest, FillWritesTheValueEverywhere) {
  for (std::int64_t n : {1, 3, 1023, 100003}) {
    Buffer<float> out = poisoned<float>(ctx(), n + 2);
    fill(ctx(), out.view().slice(1, n), -2.5f);
    const std::vector<float> v = out.to_host(ctx());
    EXPECT_TRUE(same_bits(v.front(), poison_value<float>()));
    EXPECT_TRUE(same_bits(v.back(), poison_value<float>()));
    for (std::int64_t i = 1; i <= n; ++i) ASSERT_EQ(v[std::size_t(i)], -2.5f) << i;
  }
}

// The CPU and the GPU draw the same numbers for the same arguments.
TEST(FillUniformAcrossBackends, CpuAndGpuBitIdentical) {
  DESCENT_REQUIRE_CUDA_OR_SKIP();
  Context cpu(Device::cpu()), gpu(Device::cuda(0));
  for (auto [n, seed, offset] : {std::tuple<std::int64_t, std::uint64_t, std::uint64_t>{1, 0, 0},
                                 {1003, 77, 5},
                                 {1 << 20, 0xfeedfacecafebeefull, 123456789}}) {
    SCOPED_TRACE(cat("n ", n));
    Buffer<float> a = poisoned<float>(cpu, n), b = poisoned<float>(gpu, n);
    fill_uniform(cpu, a.view(), -0.3f, 0.7f, seed, offset);
    fill_uniform(gpu, b.view(), -0.3f, 0.7f, seed, offset);
    EXPECT_EQ(count_bit_differences(a.to_host(cpu), b.to_host(gpu)), 0);
  }
}

}  // namespace
}  // namespace descent::test
