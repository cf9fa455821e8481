// Philox-4x32-10 (kernels/math/philox.hpp): the reference implementation's known answers, and
// the uniform draws made from it.
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

}  // namespace
}  // namespace descent::test
