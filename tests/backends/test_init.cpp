// fill_uniform on every backend bit for bit against the shared Philox header, and fill (the
// moments of 200000 draws: tests/backends/slow/test_init.cpp; Philox itself:
// tests/test_philox.cpp).
#include "kernels/math/philox.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

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

}  // namespace
}  // namespace descent::test
