// A gzip bomb: the IDX reader stops one byte past the size the header declares, quickly, instead
// of inflating 256 MiB of zeros.
#include <chrono>

#include "descent/descent.hpp"
#include "gzip_idx.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

TEST_F(GzipIdx, ABombStopsOneBytePastTheDeclaredSize) {
  // 256 MiB of zeros after a header that declares 8 bytes: a reader that inflates everything
  // takes far longer and reports the full size.
  write_bytes(img, gzip_of(pixels, std::size_t(256) << 20));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW_THAT(
      load_idx(img, lab), DataError,
      AllOf(HasSubstr("'" + img + "'"), HasSubstr("2 x 2 x 2"), HasSubstr("holds more")));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

}  // namespace
}  // namespace descent::test
