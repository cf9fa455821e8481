// check_finite on every backend: NaN, infinities and a signalling NaN at the start, the middle
// and the end of arrays up to 2^20 elements.
#include <limits>

#include "test_support.hpp"

namespace descent::test {
namespace {

class ConvertTest : public BackendTest {};
DESCENT_INSTANTIATE_BACKENDS(ConvertTest);

TEST_P(ConvertTest, CheckFiniteSetsFlagForNaNAndInf) {
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), from_bits(0x7f800001u)};
  for (std::int64_t n : {1, 17, 1 << 20}) {
    for (float special : specials) {
      for (std::int64_t where : {std::int64_t(0), n / 2, n - 1}) {
        std::vector<float> x = random_floats(rng_, n);
        x[std::size_t(where)] = special;
        EXPECT_EQ(run_check_finite(ctx(), x, 0), 1)
            << "n " << n << ", " << special << " at " << where;
      }
    }
  }
}

}  // namespace
}  // namespace descent::test
