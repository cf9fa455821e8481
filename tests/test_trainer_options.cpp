// LrSchedule's formulas, and the options and arguments that Sgd, Adam and the Trainer refuse.
#include <cmath>
#include <limits>

#include "descent/descent.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

TEST(LrSchedule, FollowsTorchFormulas) {
  EXPECT_EQ(LrSchedule::constant().at(0.1f, 12345), 0.1f);
  const LrSchedule step = LrSchedule::step(3, 0.5f);
  EXPECT_FLOAT_EQ(step.at(0.8f, 0), 0.8f);
  EXPECT_FLOAT_EQ(step.at(0.8f, 2), 0.8f);
  EXPECT_FLOAT_EQ(step.at(0.8f, 3), 0.4f);
  EXPECT_FLOAT_EQ(step.at(0.8f, 7), 0.2f);
  const LrSchedule cos = LrSchedule::cosine(100, 0.01f);
  EXPECT_FLOAT_EQ(cos.at(1.0f, 0), 1.0f);
  EXPECT_FLOAT_EQ(cos.at(1.0f, 50), 0.505f);
  EXPECT_FLOAT_EQ(cos.at(1.0f, 100), 0.01f);
  EXPECT_FLOAT_EQ(cos.at(1.0f, 1000), 0.01f);
}

TEST(LrSchedule, RejectsBadValues) {
  EXPECT_THROW_THAT(LrSchedule::step(0, 0.5f), ArgumentError, NamesArgument("every"));
  EXPECT_THROW_THAT(LrSchedule::step(5, -1.0f), ArgumentError, NamesArgument("gamma"));
  EXPECT_THROW_THAT(LrSchedule::cosine(0), ArgumentError, NamesArgument("total"));
  EXPECT_THROW_THAT(LrSchedule::cosine(10, std::nanf("")), ArgumentError, NamesArgument("min_lr"));
}

TEST(SgdErrors, NegativeOrNanLearningRate) {
  Context ctx;
  Mlp m(ctx, {3, 2});
  EXPECT_THROW_THAT(Sgd(m, {-0.1f}), ArgumentError,
                    ::testing::AllOf(NamesArgument("lr"), ::testing::HasSubstr("-0.1")));
  EXPECT_THROW_THAT(Sgd(m, {std::nanf("")}), ArgumentError,
                    ::testing::AllOf(NamesArgument("lr"), ::testing::HasSubstr("nan")));
}

TEST(TrainerErrors, BadBatchesAndOwners) {
  Context ctx;
  Mlp m(ctx, {3, 2}), other(ctx, {3, 2});
  Sgd sgd(other, {});
  EXPECT_THROW_THAT(Trainer(m, Loss::softmax_cross_entropy, sgd), ArgumentError,
                    ::testing::HasSubstr("another Mlp"));
  Sgd mine(m, {});
  Trainer t(m, Loss::softmax_cross_entropy, mine);
  Buffer<float> x(ctx, 6);
  EXPECT_THROW_THAT(t.step(Batch{x.matrix(2, 3), {}, {}}), ArgumentError, NamesArgument("labels"));
  Trainer t2(m, Loss::mse, mine);
  EXPECT_THROW_THAT(t2.step(Batch{x.matrix(2, 3), {}, {}}), ArgumentError,
                    NamesArgument("targets"));
  EXPECT_EQ(parse_loss("ce"), Loss::softmax_cross_entropy);
  EXPECT_EQ(parse_loss("bce"), Loss::sigmoid_bce);
  EXPECT_THROW_THAT(parse_loss("hinge"), ArgumentError, ::testing::HasSubstr("hinge"));
}

TEST(AdamTrainerErrors, BadClippingOptionsNameTheField) {
  Context ctx;
  Mlp m(ctx, {3, 2});
  Adam adam(m);
  const float inf = std::numeric_limits<float>::infinity();
  for (const float bad : {-1.0f, std::nanf(""), inf, -inf}) {
    SCOPED_TRACE(bad);
    TrainerOptions to;
    to.clip_grad_norm = bad;
    EXPECT_THROW_THAT(Trainer(m, Loss::softmax_cross_entropy, adam, to), ArgumentError,
                      NamesArgument("clip_grad_norm"));
  }
  for (const float bad : {3.0f, 1.0f, 0.0f, -inf, std::nanf("")}) {
    SCOPED_TRACE(bad);
    TrainerOptions to;
    to.clip_grad_norm = 1.0f;
    to.clip_norm_type = bad;
    EXPECT_THROW_THAT(Trainer(m, Loss::softmax_cross_entropy, adam, to), ArgumentError,
                      NamesArgument("clip_norm_type"));
  }
  Trainer t(m, Loss::softmax_cross_entropy, adam);
  EXPECT_THROW_THAT(t.set_clip_grad_norm(-1.0f), ArgumentError, NamesArgument("clip_grad_norm"));
  EXPECT_THROW_THAT(t.set_clip_grad_norm(1.0f, 3.0f), ArgumentError,
                    NamesArgument("clip_norm_type"));
  EXPECT_NO_THROW(t.set_clip_grad_norm(1.0f, inf));
  EXPECT_NO_THROW(t.set_clip_grad_norm(0.0f));
}

}  // namespace
}  // namespace descent::test
