// Checkpoints on every backend: a round trip keeps everything, and Adam's and AdamW's state
// survives a resumed run bit for bit (the SGD resume: tests/backends/slow/test_checkpoint.cpp; the
// files themselves: tests/test_checkpoint_files.cpp).
#include "descent/descent.hpp"
#include "test_support.hpp"
#include "train_support.hpp"

namespace descent::test {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

class CheckpointTest : public BackendTest {
 protected:
  TempDir dir;
};

TEST_P(CheckpointTest, RoundTripKeepsEverything) {
  Mlp m(ctx(), {6, 5, 3}, std::vector<Activation>{Activation::gelu, Activation::identity},
        {Init::he, 4, 8});
  Sgd sgd(m, {0.05f, 0.9f, 0.1f, 0.001f, false, false}, LrSchedule::step(7, 0.5f));
  const Dataset data = blobs(40, 6, 3, seed_);
  BatchLoader loader(ctx(), data, {8, true, 2});
  Trainer t(m, Loss::softmax_cross_entropy, sgd);
  train_steps(t, loader, 3);
  const std::string path = dir / "model.ckpt";
  save_checkpoint(path, m, &sgd, {{"loss", "ce"}, {"note", "hello"}});
  const Checkpoint c = read_checkpoint(path);
  EXPECT_EQ(c.version, kCheckpointVersion);
  EXPECT_EQ(c.widths, m.widths());
  EXPECT_EQ(c.activations, m.activations());
  EXPECT_EQ(c.params, m.params_to_host());
  EXPECT_TRUE(c.has_optimizer);
  EXPECT_EQ(c.steps, 3);
  EXPECT_EQ(c.option("dampening").number, 0.1f);
  EXPECT_EQ(c.schedule.kind, LrSchedule::Kind::step);
  EXPECT_EQ(c.schedule.every, 7);
  EXPECT_EQ(c.momentum, sgd.momentum_to_host());
  EXPECT_EQ(c.get("note"), "hello");
  EXPECT_EQ(c.get("absent", "x"), "x");

  Mlp m2(ctx(), {6, 5, 3}, std::vector<Activation>{Activation::gelu, Activation::identity});
  Sgd sgd2(m2, {0.05f, 0.9f});
  load_checkpoint(path, m2, &sgd2);
  EXPECT_EQ(m2.params_to_host(), m.params_to_host());
  EXPECT_EQ(sgd2.momentum_to_host(), sgd.momentum_to_host());
  EXPECT_EQ(sgd2.steps(), 3);
  EXPECT_EQ(make_model(ctx(), c).params_to_host(), m.params_to_host());
}

DESCENT_INSTANTIATE_BACKENDS(CheckpointTest);

// ---------------------------------------------------------------- Adam, AdamW

class AdamCheckpointTest : public CheckpointTest {};
DESCENT_INSTANTIATE_BACKENDS(AdamCheckpointTest);

// Adam's moments, its update count and the schedule position survive a checkpoint: a run
// resumed mid-epoch into fresh objects, twice, ends bit-identical to an uninterrupted one, and
// one resumed with the parameters alone does not.
TEST_P(AdamCheckpointTest, ResumedAdamRunIsBitIdentical) {
  const Dataset data = blobs(90, 12, 4, seed_);
  const MlpOptions mo{Init::torch_default, 21, 16};
  const auto schedule = LrSchedule::cosine(24, 0.001f);
  struct Config {
    const char* name;
    AdamOptions opt;
    float clip;
  };
  const Config configs[] = {
      {"adam + weight_decay", adam_options(0.01f, 1e-3f, false, false), 0.0f},
      {"adamw + amsgrad + clipping", adam_options(0.01f, 0.05f, true, true), 0.5f},
  };
  const std::string path = dir / "resume.ckpt";
  for (const Config& c : configs) {
    SCOPED_TRACE(c.name);
    // Trains `steps` steps from the checkpoint (all of it, the parameters alone, or nothing) and
    // saves one when asked.
    enum class From { scratch, checkpoint, params_only };
    const auto segment = [&](From from, std::int64_t steps, bool save) {
      Mlp m(ctx(), {12, 20, 4}, Activation::relu, mo);
      Adam adam(m, c.opt, schedule);
      if (from == From::checkpoint) load_checkpoint(path, m, &adam);
      if (from == From::params_only) {
        load_checkpoint(path, m);
        adam.set_steps(read_checkpoint(path).steps);
      }
      TrainerOptions to;
      to.clip_grad_norm = c.clip;
      Trainer t(m, Loss::softmax_cross_entropy, adam, to);
      BatchLoader loader(ctx(), data, {16, true, 99});  // 6 batches, the last partial
      train_steps(t, loader, steps);
      if (save) save_checkpoint(path, m, &adam);  // each save waits for the disk: only two
      return m.params_to_host();
    };
    const std::vector<float> straight = segment(From::scratch, 24, false);
    segment(From::scratch, 5, true);
    segment(From::checkpoint, 10, true);
    const std::vector<float> resumed = segment(From::checkpoint, 9, false);
    for (std::size_t i = 0; i < straight.size(); ++i) {
      ASSERT_TRUE(same_bits(straight[i], resumed[i])) << "resumed twice mid-epoch, parameter " << i;
    }
    EXPECT_NE(segment(From::params_only, 9, false), straight)
        << "the optimizer state made no difference";
  }
}

// Batches of 8 rows of 5 features; `bad` holds a NaN, so a tanh model's loss is NaN.
struct GoodAndBadBatch {
  Buffer<float> good_x, bad_x;
  Buffer<std::int32_t> labels;
  Batch good, bad;
  GoodAndBadBatch(const Context& ctx, std::mt19937_64& rng) {
    std::vector<float> x = random_floats(rng, 8 * 5);
    good_x = upload(ctx, x);
    x[17] = std::numeric_limits<float>::quiet_NaN();
    bad_x = upload(ctx, x);
    labels = upload(ctx, random_labels(rng, 8, 3));
    good = {good_x.matrix(8, 5), labels.view(), {}};
    bad = {bad_x.matrix(8, 5), labels.view(), {}};
  }
};

// A skipped step counts as taken but is not an update: the checkpoint keeps both counts
// (steps 3, "step" 2), and the resumed run's bias correction follows the update count.
TEST_P(AdamCheckpointTest, ResumeKeepsTheUpdateCountOfSkippedSteps) {
  const AdamOptions opt = adam_options(0.02f, 0.01f, true, false);
  const MlpOptions mo{Init::torch_default, 2, 8};
  TrainerOptions skip;
  skip.on_non_finite = NonFinitePolicy::skip;
  GoodAndBadBatch batches(ctx(), rng_);
  Mlp m(ctx(), {5, 6, 3}, Activation::tanh, mo);
  Adam adam(m, opt);
  Trainer t(m, Loss::softmax_cross_entropy, adam, skip);
  t.step(batches.good);
  t.step(batches.bad);
  t.step(batches.good);
  EXPECT_EQ(t.skipped_steps(), 1);
  const std::string path = dir / "skipped.ckpt";
  save_checkpoint(path, m, &adam);
  const Checkpoint c = read_checkpoint(path);
  EXPECT_EQ(c.steps, 3);
  ASSERT_EQ(c.state.size(), 4u);
  EXPECT_EQ(c.state[3].first, "step");
  EXPECT_EQ(c.state[3].second, std::vector<float>{2.0f});
  Mlp m2(ctx(), {5, 6, 3}, Activation::tanh, mo);
  Adam adam2(m2, opt);
  load_checkpoint(path, m2, &adam2);
  EXPECT_EQ(adam2.steps(), 3);
  EXPECT_EQ(adam2.state_to_host("step"), std::vector<float>{2.0f});
  Trainer t2(m2, Loss::softmax_cross_entropy, adam2, skip);
  for (int s = 0; s < 3; ++s) {
    t.step(batches.good);
    t2.step(batches.good);
    ASSERT_EQ(m.params_to_host(), m2.params_to_host()) << "step " << s;
  }
  EXPECT_EQ(adam2.state_to_host("step"), std::vector<float>{5.0f});
  EXPECT_EQ(adam2.steps(), 6);
}

TEST_P(AdamCheckpointTest, RoundTripKeepsTheAdamState) {
  Mlp m(ctx(), {6, 5, 3}, std::vector<Activation>{Activation::gelu, Activation::identity},
        {Init::he, 4, 8});
  AdamOptions opt = adam_options(0.03f, 0.02f, true, true);
  opt.beta1 = 0.8f;
  opt.beta2 = 0.99f;
  opt.eps = 1e-6f;
  opt.maximize = true;
  AdamW adamw(m, opt, LrSchedule::step(7, 0.5f));
  const Dataset data = blobs(40, 6, 3, seed_);
  BatchLoader loader(ctx(), data, {8, true, 2});
  Trainer t(m, Loss::softmax_cross_entropy, adamw);
  train_steps(t, loader, 3);
  const std::string path = dir / "adamw.ckpt";
  save_checkpoint(path, m, &adamw, {{"note", "adamw"}});
  const Checkpoint c = read_checkpoint(path);
  EXPECT_EQ(c.version, 2u);
  EXPECT_EQ(c.version, kCheckpointVersion);
  EXPECT_TRUE(c.has_optimizer);
  EXPECT_EQ(c.optimizer, OptimizerKind::adamw);
  EXPECT_EQ(c.option("lr").number, 0.03f);
  EXPECT_EQ(c.option("beta1").number, 0.8f);
  EXPECT_EQ(c.option("beta2").number, 0.99f);
  EXPECT_EQ(c.option("eps").number, 1e-6f);
  EXPECT_EQ(c.option("weight_decay").number, 0.02f);
  EXPECT_TRUE(c.option("amsgrad").flag);
  EXPECT_TRUE(c.option("maximize").flag);
  EXPECT_THROW(c.option("momentum"), ArgumentError);  // not an option of AdamW
  EXPECT_EQ(c.schedule.kind, LrSchedule::Kind::step);
  EXPECT_EQ(c.schedule.every, 7);
  EXPECT_EQ(c.steps, 3);
  EXPECT_TRUE(c.momentum.empty());
  EXPECT_EQ(c.get("note"), "adamw");
  std::vector<std::string> names;
  for (const auto& [name, values] : c.state) {
    names.push_back(name);
    EXPECT_EQ(values, adamw.state_to_host(name)) << name;
  }
  EXPECT_EQ(names, adamw.state_names());
  EXPECT_EQ(names, (std::vector<std::string>{"exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"}));

  Mlp m2(ctx(), {6, 5, 3}, std::vector<Activation>{Activation::gelu, Activation::identity});
  AdamW adamw2(m2, opt);
  load_checkpoint(path, m2, &adamw2);
  EXPECT_EQ(m2.params_to_host(), m.params_to_host());
  EXPECT_EQ(adamw2.steps(), 3);
  for (const std::string& name : adamw.state_names()) {
    EXPECT_EQ(adamw2.state_to_host(name), adamw.state_to_host(name)) << name;
  }
}

}  // namespace
}  // namespace descent::test
