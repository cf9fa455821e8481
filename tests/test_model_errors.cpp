// The errors of a bad Mlp: a zero or overflowing width, a wrong input width, an unknown init.
#include "descent/model.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

TEST(MlpErrors, HiddenWidthZeroNamesTheWidth) {
  Context ctx;
  EXPECT_THROW_THAT(
      Mlp(ctx, {784, 0, 10}), ArgumentError,
      ::testing::AllOf(::testing::HasSubstr("widths[1]"), ::testing::HasSubstr("hidden width"),
                       ::testing::HasSubstr("got 0")));
  EXPECT_THROW_THAT(Mlp(ctx, {784}), ArgumentError, ::testing::HasSubstr("at least 2"));
  EXPECT_THROW_THAT(Mlp(ctx, {4, 3, 2}, std::vector<Activation>{Activation::relu}), ArgumentError,
                    ::testing::HasSubstr("one per layer"));
  EXPECT_THROW_THAT(Mlp(ctx, {4, 2}, Activation::relu, {Init::torch_default, 0, 0}), ArgumentError,
                    NamesArgument("max_batch"));
}

TEST(MlpErrors, TooLargeIsOutOfMemoryNotAnAbort) {
  Context ctx;
  // 2^40 hidden units: petabytes of parameters, refused before any allocation.
  EXPECT_THROW_THAT(Mlp(ctx, {784, std::int64_t(1) << 40, 10}), OutOfMemory,
                    ::testing::AllOf(::testing::HasSubstr("784-1099511627776-10"),
                                     ::testing::HasSubstr("bytes of memory")));
  // A parameter count that overflows 64 bits cannot be represented: an ArgumentError.
  EXPECT_THROW_THAT(Mlp(ctx, {std::int64_t(1) << 40, std::int64_t(1) << 40}), ArgumentError,
                    ::testing::AllOf(NamesArgument("widths"), ::testing::HasSubstr("overflow")));
}

TEST(MlpErrors, WrongInputWidthIsAShapeError) {
  Context ctx;
  Mlp m(ctx, {4, 3, 2});
  Buffer<float> x(ctx, 12);
  EXPECT_THROW_THAT(
      m.forward(x.matrix(4, 3)), ShapeError,
      ::testing::AllOf(::testing::HasSubstr("4-3-2"), ::testing::HasSubstr("[4, 3]")));
  std::vector<float> wrong(5);
  EXPECT_THROW(m.params_from_host(wrong), ShapeError);
}

TEST(MlpErrors, ParseInit) {
  EXPECT_EQ(parse_init("he"), Init::he);
  EXPECT_EQ(parse_init("torch"), Init::torch_default);
  EXPECT_THROW_THAT(parse_init("glorot"), ArgumentError, ::testing::HasSubstr("glorot"));
}

}  // namespace
}  // namespace descent::test
