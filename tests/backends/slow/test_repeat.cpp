// A short training run repeated on the same backend ends with the same bits.
#include <cstring>

#include "short_run.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

class RepeatTest : public BackendTest {};

TEST_P(RepeatTest, SameSeedSameBitsAfterTwentySteps) {
  const Dataset data = short_run::dataset(3);
  const auto first = short_run::train(GetParam(), Activation::gelu, 20, data);
  const auto second = short_run::train(GetParam(), Activation::gelu, 20, data);
  ASSERT_EQ(first.size(), second.size());
  EXPECT_EQ(std::memcmp(first.data(), second.data(), first.size() * sizeof(float)), 0);
}

DESCENT_INSTANTIATE_BACKENDS(RepeatTest);

}  // namespace
}  // namespace descent::test
