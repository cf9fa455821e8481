// convert (fp32 <-> bf16, round to nearest even) and check_finite on every backend (check_finite
// of non-finite values in long arrays: tests/backends/slow/test_convert.cpp).
#include <cmath>
#include <limits>

#include "test_support.hpp"

namespace descent::test {
namespace {

bool is_bf16_nan(bf16 b) { return (b.bits & 0x7f80u) == 0x7f80u && (b.bits & 0x007fu) != 0; }

struct RoundCase {
  std::uint32_t in;
  std::uint16_t want;
  const char* why;
};

// bf16 keeps the top 16 bits; the lower 16 decide the rounding (0x8000 is the tie).
const RoundCase kRoundCases[] = {
    {0x3f800000u, 0x3f80, "1.0 is exact"},
    {0x3f807fffu, 0x3f80, "just below the tie rounds down"},
    {0x3f808000u, 0x3f80, "tie, lower neighbour even: stays"},
    {0x3f808001u, 0x3f81, "just above the tie rounds up"},
    {0x3f818000u, 0x3f82, "tie, lower neighbour odd: rounds up to even"},
    {0xbf818000u, 0xbf82, "negative tie to even"},
    {0xbf80c000u, 0xbf81, "negative above the tie"},
    {0x00000000u, 0x0000, "+0"},
    {0x80000000u, 0x8000, "-0"},
    {0x7f800000u, 0x7f80, "+inf"},
    {0xff800000u, 0xff80, "-inf"},
    {0x7f7fffffu, 0x7f80, "FLT_MAX rounds up to inf"},
    {0x7f7f7fffu, 0x7f7f, "largest below the FLT_MAX tie"},
    {0x00018000u, 0x0002, "subnormal tie to even"},
    {0x00010000u, 0x0001, "subnormal exact"},
    {0x807fffffu, 0x8080, "negative subnormal rounds up into the normals"},
    {0x3fffffffu, 0x4000, "carry into the exponent"},
};

class ConvertTest : public BackendTest {};
DESCENT_INSTANTIATE_BACKENDS(ConvertTest);

TEST_P(ConvertTest, Fp32ToBf16RoundsToNearestEven) {
  std::vector<float> in;
  for (const RoundCase& c : kRoundCases) in.push_back(from_bits(c.in));
  Buffer<float> src = upload(ctx(), in);
  Buffer<bf16> dst = poisoned<bf16>(ctx(), std::int64_t(in.size()));
  convert(ctx(), std::as_const(src).view(), dst.view());
  const std::vector<bf16> got = dst.to_host(ctx());
  for (std::size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(got[i].bits, kRoundCases[i].want)
        << kRoundCases[i].why << ": 0x" << std::hex << kRoundCases[i].in;
  }
}

TEST_P(ConvertTest, Fp32ToBf16KeepsNaNsNaN) {
  // A NaN whose payload sits only in the low 16 bits must not round to infinity.
  const std::vector<float> in = {from_bits(0x7fc00000u), from_bits(0x7f800001u),
                                 from_bits(0xff800001u), from_bits(0x7fffffffu)};
  Buffer<float> src = upload(ctx(), in);
  Buffer<bf16> dst = poisoned<bf16>(ctx(), 4);
  convert(ctx(), std::as_const(src).view(), dst.view());
  for (bf16 b : dst.to_host(ctx())) EXPECT_TRUE(is_bf16_nan(b)) << std::hex << b.bits;
}

TEST_P(ConvertTest, Fp32ToBf16MatchesSharedHelperOnRandomValues) {
  std::vector<float> in = random_floats(rng_, 100003, -1e3f, 1e3f);
  // Also values whose low half is exactly a tie.
  for (std::size_t i = 0; i < in.size(); i += 7) {
    std::uint32_t u;
    std::memcpy(&u, &in[i], sizeof u);
    in[i] = from_bits((u & 0xffff0000u) | 0x8000u);
  }
  Buffer<float> src = upload(ctx(), in);
  Buffer<bf16> dst = poisoned<bf16>(ctx(), std::int64_t(in.size()));
  convert(ctx(), std::as_const(src).view(), dst.view());
  const std::vector<bf16> got = dst.to_host(ctx());
  std::int64_t wrong = 0;
  for (std::size_t i = 0; i < in.size(); ++i) wrong += got[i].bits != descent::to_bf16(in[i]).bits;
  EXPECT_EQ(wrong, 0);
}

TEST_P(ConvertTest, Bf16ToFp32IsExactForEveryBitPattern) {
  std::vector<bf16> in(65536);
  for (std::uint32_t i = 0; i < 65536; ++i) in[i].bits = std::uint16_t(i);
  Buffer<bf16> src = upload(ctx(), in);
  Buffer<float> dst = poisoned<float>(ctx(), 65536);
  convert(ctx(), std::as_const(src).view(), dst.view());
  const std::vector<float> got = dst.to_host(ctx());
  std::int64_t wrong = 0;
  for (std::uint32_t i = 0; i < 65536; ++i) {
    const float want = from_bits(i << 16);
    wrong += std::isnan(want) ? !std::isnan(got[i]) : !same_bits(got[i], want);
  }
  EXPECT_EQ(wrong, 0);
}

TEST_P(ConvertTest, ConvertsOnlyTheGivenSlice) {
  const std::vector<float> in = random_floats(rng_, 20);
  Buffer<float> src = upload(ctx(), in);
  Buffer<bf16> dst = poisoned<bf16>(ctx(), 20);
  convert(ctx(), std::as_const(src).view().slice(3, 5), dst.view().slice(3, 5));
  const std::vector<bf16> got = dst.to_host(ctx());
  for (std::size_t i = 0; i < 20; ++i) {
    if (i >= 3 && i < 8) {
      EXPECT_EQ(got[i].bits, descent::to_bf16(in[i]).bits) << i;
    } else {
      EXPECT_EQ(got[i].bits, poison_value<bf16>().bits) << i;
    }
  }
}

// ---------------------------------------------------------------- check_finite

TEST_P(ConvertTest, CheckFiniteLeavesFlagForFiniteInput) {
  for (std::int64_t n : {1, 3, 1023, 1 << 20}) {
    std::vector<float> x = random_floats(rng_, n, -1e30f, 1e30f);
    x[0] = std::numeric_limits<float>::max();
    x[std::size_t(n - 1)] = -std::numeric_limits<float>::denorm_min();
    EXPECT_EQ(run_check_finite(ctx(), x, 0), 0) << "n " << n;
    EXPECT_EQ(run_check_finite(ctx(), x, 1), 1) << "an earlier flag must stay set, n " << n;
  }
}

}  // namespace
}  // namespace descent::test
