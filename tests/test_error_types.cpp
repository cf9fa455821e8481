// descent's exception types: every one derives from descent::Error, itself a runtime_error.
#include <stdexcept>
#include <string>
#include <type_traits>

#include "test_support.hpp"

namespace descent::test {
namespace {

using ::testing::HasSubstr;

TEST(ErrorMessages, EveryExceptionDerivesFromError) {
  static_assert(std::is_base_of_v<Error, ShapeError>);
  static_assert(std::is_base_of_v<Error, ArgumentError>);
  static_assert(std::is_base_of_v<Error, DeviceError>);
  static_assert(std::is_base_of_v<Error, DataError>);
  static_assert(std::is_base_of_v<Error, OutOfMemory>);
  static_assert(std::is_base_of_v<Error, IoError>);
  static_assert(std::is_base_of_v<Error, NumericError>);
  static_assert(std::is_base_of_v<std::runtime_error, Error>);
  EXPECT_THAT(std::string(ShapeError("w: expected [2, 3]").what()), HasSubstr("w"));
}

}  // namespace
}  // namespace descent::test
