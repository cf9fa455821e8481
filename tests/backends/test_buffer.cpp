// Buffer on every backend: round trips of host data, copies from the host at an offset, views
// with padding, empty and moved buffers, synchronisation.
#include <limits>
#include <numeric>

#include "test_support.hpp"

namespace descent::test {
namespace {

class BufferTest : public BackendTest {};
DESCENT_INSTANTIATE_BACKENDS(BufferTest);

TEST_P(BufferTest, RoundTripsHostData) {
  const std::vector<float> host = random_floats(rng_, 1023);
  Buffer<float> b = upload(ctx(), host);
  EXPECT_EQ(b.size(), 1023);
  EXPECT_EQ(b.device(), GetParam());
  EXPECT_EQ(b.to_host(ctx()), host);
  std::vector<std::int32_t> ints(17);
  std::iota(ints.begin(), ints.end(), -8);
  EXPECT_EQ(upload(ctx(), ints).to_host(ctx()), ints);
  const std::vector<bf16> halves = to_bf16_vec(host);
  const std::vector<bf16> back = upload(ctx(), halves).to_host(ctx());
  for (std::size_t i = 0; i < back.size(); ++i) ASSERT_EQ(back[i].bits, halves[i].bits);
}

TEST_P(BufferTest, CopyFromHostAtOffset) {
  Buffer<float> b = upload(ctx(), std::vector<float>(10, 1.0f));
  const std::vector<float> part = {2.0f, 3.0f, 4.0f};
  b.copy_from_host(ctx(), std::span<const float>(part), 6);
  EXPECT_EQ(b.to_host(ctx()), (std::vector<float>{1, 1, 1, 1, 1, 1, 2, 3, 4, 1}));
}

// A copy that does not fit is refused before any byte moves (no write past the end).
TEST_P(BufferTest, CopyFromHostThatDoesNotFitIsRefused) {
  Buffer<float> b = upload(ctx(), std::vector<float>(10, 1.0f));
  const std::vector<float> part = {2.0f, 3.0f, 4.0f};
  for (std::int64_t offset : {std::int64_t{8}, std::int64_t{-1}, std::int64_t{11},
                              std::numeric_limits<std::int64_t>::max()}) {
    SCOPED_TRACE(offset);
    EXPECT_THROW_THAT(b.copy_from_host(ctx(), std::span<const float>(part), offset), ArgumentError,
                      ::testing::HasSubstr("do not fit a buffer of 10"));
  }
  EXPECT_EQ(b.to_host(ctx()), std::vector<float>(10, 1.0f));
}

// to_host of a view: its rows and columns, densely, whatever its leading dimension.
TEST_P(BufferTest, ViewToHostSkipsThePadding) {
  const Buffer<float> b = upload(ctx(), std::vector<float>{1, 2, 3, 9, 4, 5, 6, 9});
  EXPECT_EQ(to_host(ctx(), MatrixView<const float>(b.data(), 2, 3, b.device(), 4)),
            (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(to_host(ctx(), b.matrix(2, 4)), (std::vector<float>{1, 2, 3, 9, 4, 5, 6, 9}));
  EXPECT_TRUE(to_host(ctx(), MatrixView<const float>()).empty());
}

TEST_P(BufferTest, EmptyAndMoved) {
  Buffer<float> empty(ctx(), 0);
  EXPECT_EQ(empty.size(), 0);
  EXPECT_TRUE(empty.view().empty());
  EXPECT_TRUE(empty.to_host(ctx()).empty());
  Buffer<float> a = upload(ctx(), std::vector<float>{1.5f, 2.5f});
  Buffer<float> b(std::move(a));
  EXPECT_EQ(a.size(), 0);  // NOLINT(bugprone-use-after-move): moved-from state is specified
  EXPECT_EQ(b.to_host(ctx()), (std::vector<float>{1.5f, 2.5f}));
  Buffer<float> c;
  c = std::move(b);
  EXPECT_EQ(c.to_host(ctx()), (std::vector<float>{1.5f, 2.5f}));
}

TEST_P(BufferTest, ViewsDescribeTheBuffer) {
  Buffer<float> b = poisoned<float>(ctx(), 12);
  const MatrixView<float> m = b.matrix(3, 4);
  EXPECT_EQ(m.rows, 3);
  EXPECT_EQ(m.cols, 4);
  EXPECT_EQ(m.ld, 4);
  EXPECT_TRUE(m.contiguous());
  EXPECT_EQ(m.device, GetParam());
  EXPECT_EQ(m.row_block(1, 2).data, b.data() + 4);
  const VectorView<float> v = b.view().slice(5, 3);
  EXPECT_EQ(v.data, b.data() + 5);
  EXPECT_EQ(v.as_matrix(1, 3).cols, 3);
}

TEST_P(BufferTest, SynchronizeAfterWork) {
  Buffer<float> b = poisoned<float>(ctx(), 1 << 16);
  fill(ctx(), b.view(), 3.0f);
  EXPECT_NO_THROW(ctx().synchronize());
  for (float v : b.to_host(ctx())) ASSERT_EQ(v, 3.0f);
}

}  // namespace
}  // namespace descent::test
