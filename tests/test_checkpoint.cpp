// Checkpoints: round trip, every corrupt-file case, a save that fails midway, and a resumed run
// that ends bit-identical to an uninterrupted one.
#include <signal.h>
#include <sys/resource.h>
#include <zlib.h>

#include <cstring>

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

// Trains `model` with `sgd` for `steps` steps of a fixed blobs dataset, continuing the optimizer's
// step count (so it can resume mid-epoch).
void train_steps(Trainer& t, BatchLoader& loader, std::int64_t steps) {
  for (std::int64_t i = 0; i < steps; ++i) {
    const std::int64_t k = t.optimizer().steps();
    if (i == 0 || k % loader.batches() == 0)
      loader.start_epoch(k / loader.batches(), k % loader.batches());
    Batch b;
    ASSERT_TRUE(loader.next(b));
    t.step(b);
  }
}

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

// Two epochs, a checkpoint, fresh objects loaded from it, two more epochs: the same weights, bit
// for bit, as four epochs in one go. Also from the middle of an epoch.
TEST_P(CheckpointTest, ResumedRunIsBitIdentical) {
  const Dataset data = blobs(90, 12, 4, seed_);
  const SgdOptions opt{0.05f, 0.9f, 0.0f, 1e-3f, true, false};
  const MlpOptions mo{Init::torch_default, 21, 16};
  const auto schedule = LrSchedule::cosine(4 * 6, 0.001f);
  const auto run = [&](std::vector<std::int64_t> segments) {
    std::vector<float> params;
    const std::string path = dir / "resume.ckpt";
    for (std::size_t s = 0; s < segments.size(); ++s) {
      Mlp m(ctx(), {12, 20, 4}, Activation::relu, mo);
      Sgd sgd(m, opt, schedule);
      if (s > 0) load_checkpoint(path, m, &sgd);
      Trainer t(m, Loss::softmax_cross_entropy, sgd);
      BatchLoader loader(ctx(), data, {16, true, 99});  // 6 batches, the last partial
      train_steps(t, loader, segments[s]);
      save_checkpoint(path, m, &sgd);
      params = m.params_to_host();
    }
    return params;
  };
  const std::vector<float> straight = run({24});
  const std::vector<float> at_epoch = run({12, 12});
  const std::vector<float> mid_epoch = run({5, 10, 9});
  for (std::size_t i = 0; i < straight.size(); ++i) {
    ASSERT_TRUE(same_bits(straight[i], at_epoch[i])) << "resumed at an epoch end, parameter " << i;
    ASSERT_TRUE(same_bits(straight[i], mid_epoch[i])) << "resumed mid-epoch, parameter " << i;
  }
}

DESCENT_INSTANTIATE_BACKENDS(CheckpointTest);

class CheckpointFiles : public ::testing::Test {
 protected:
  TempDir dir;
  Context ctx;
  Mlp model{ctx, {5, 4, 3}, Activation::relu, {Init::torch_default, 1, 4}};
  Sgd sgd{model, {0.1f, 0.9f}};
  std::string path = dir / "model.ckpt";
  void SetUp() override { save_checkpoint(path, model, &sgd); }
};

TEST_F(CheckpointFiles, OtherArchitectureIsRejectedNamingBoth) {
  Mlp other(ctx, {5, 6, 3});
  const std::vector<float> before = other.params_to_host();
  EXPECT_THROW_THAT(
      load_checkpoint(path, other), DataError,
      AllOf(HasSubstr("5-4-3 (relu, identity)"), HasSubstr("5-6-3 (relu, identity)")));
  EXPECT_EQ(other.params_to_host(), before) << "a failed load changed the model";
  Mlp tanh_model(ctx, {5, 4, 3}, Activation::tanh);
  EXPECT_THROW(load_checkpoint(path, tanh_model), DataError);
  Mlp same(ctx, {5, 4, 3});
  Sgd no_momentum(same, {0.1f});
  EXPECT_THROW_THAT(load_checkpoint(path, same, &no_momentum), DataError, HasSubstr("momentum"));
}

TEST_F(CheckpointFiles, EveryFlippedByteIsDetected) {
  const std::string good = read_bytes(path);
  for (std::size_t at = 0; at < good.size(); at += std::max<std::size_t>(1, good.size() / 97)) {
    std::string bad = good;
    bad[at] = static_cast<char>(bad[at] ^ 0x10);
    write_bytes(path, bad);
    EXPECT_THROW(read_checkpoint(path), DataError) << "flipped byte " << at;
  }
  std::string bad = good;
  bad[good.size() / 2] = static_cast<char>(bad[good.size() / 2] ^ 1);
  write_bytes(path, bad);
  EXPECT_THROW_THAT(read_checkpoint(path), DataError, HasSubstr("checksum mismatch"));
}

TEST_F(CheckpointFiles, NewerFormatVersionIsRejected) {
  std::string bytes = read_bytes(path);
  const std::uint32_t newer = kCheckpointVersion + 1;
  std::memcpy(bytes.data() + 8, &newer, 4);
  // A well-formed file of the newer version: its checksum is right.
  const auto crc = static_cast<std::uint32_t>(crc32(crc32(0L, Z_NULL, 0),
                                                    reinterpret_cast<const Bytef*>(bytes.data()),
                                                    static_cast<uInt>(bytes.size() - 4)));
  std::memcpy(bytes.data() + bytes.size() - 4, &crc, 4);
  write_bytes(path, bytes);
  EXPECT_THROW_THAT(read_checkpoint(path), DataError,
                    AllOf(HasSubstr("version " + std::to_string(newer)), HasSubstr("newer"),
                          HasSubstr("update descent")));
}

TEST_F(CheckpointFiles, TruncatedMissingAndForeignFiles) {
  const std::string good = read_bytes(path);
  write_bytes(path, good.substr(0, good.size() - 9));
  EXPECT_THROW(read_checkpoint(path), DataError);
  write_bytes(path, good.substr(0, 10));
  EXPECT_THROW_THAT(read_checkpoint(path), DataError, HasSubstr("truncated"));
  write_bytes(path, "hello, world");
  EXPECT_THROW_THAT(read_checkpoint(path), DataError, HasSubstr("not a descent checkpoint"));
  EXPECT_THROW_THAT(read_checkpoint(dir / "missing.ckpt"), IoError, HasSubstr("missing.ckpt"));
}

// A disk that fills up during the write (simulated with a file-size limit): IoError, and the
// previous checkpoint is untouched, with no temporary file left behind.
TEST_F(CheckpointFiles, FailedSaveLeavesThePreviousCheckpointIntact) {
  const std::string before = read_bytes(path);
  Mlp bigger(ctx, {50, 40, 3}, Activation::relu, {Init::torch_default, 2, 4});
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);  // a failed write, not a signal
  rlimit small = old;
  small.rlim_cur = 1000;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  bool threw = false;
  std::string message;
  try {
    save_checkpoint(path, bigger);
  } catch (const IoError& e) {
    threw = true;
    message = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);
  EXPECT_TRUE(threw);
  EXPECT_THAT(message, AllOf(HasSubstr("File too large"), HasSubstr("left as it was")));
  EXPECT_EQ(read_bytes(path), before);
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1) << "a temporary file was left behind";
  // A folder that does not exist.
  EXPECT_THROW_THAT(save_checkpoint(dir / "no/such/folder/x.ckpt", model), IoError,
                    HasSubstr("temporary file"));
}

// A checkpoint file with `from` (found exactly once) replaced by `to`, its checksum made right,
// as a file written by a program that saved a diverged model would be.
std::string with_float_replaced(std::string bytes, float from, float to) {
  char pattern[4], replacement[4];
  std::memcpy(pattern, &from, 4);
  std::memcpy(replacement, &to, 4);
  const std::size_t at = bytes.find(std::string(pattern, 4));
  EXPECT_NE(at, std::string::npos);
  EXPECT_EQ(bytes.find(std::string(pattern, 4), at + 1), std::string::npos) << "not unique";
  if (at == std::string::npos) return bytes;
  std::memcpy(bytes.data() + at, replacement, 4);
  const auto crc = static_cast<std::uint32_t>(crc32(crc32(0L, Z_NULL, 0),
                                                    reinterpret_cast<const Bytef*>(bytes.data()),
                                                    static_cast<uInt>(bytes.size() - 4)));
  std::memcpy(bytes.data() + bytes.size() - 4, &crc, 4);
  return bytes;
}

const float kNonFinite[] = {std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()};

// Parameters that are not finite, in an otherwise valid file: refused at load naming the tensor
// and the position, and the model and optimizer loaded into are unchanged.
TEST_F(CheckpointFiles, NonFiniteParametersAreRefusedNamingTheTensor) {
  const std::string good = read_bytes(path);
  const std::vector<float> params = model.params_to_host();
  // Layout {5, 4, 3}: layer 0 weight [4, 5] (20), bias [4], layer 1 weight [3, 4], bias [3].
  const std::pair<std::size_t, const char*> where[] = {{7, "layer 0 weight [1, 2]"},
                                                       {21, "layer 0 bias [1]"},
                                                       {35, "layer 1 weight [2, 3]"},
                                                       {38, "layer 1 bias [2]"}};
  for (const auto& [index, name] : where) {
    for (float bad : kNonFinite) {
      write_bytes(path, with_float_replaced(good, params[index], bad));
      EXPECT_THROW_THAT(read_checkpoint(path), DataError,
                        AllOf(HasSubstr("the parameters"), HasSubstr(name),
                              HasSubstr(std::isnan(bad) ? "NaN" : "inf")));
      Mlp other(ctx, {5, 4, 3}, Activation::relu, {Init::torch_default, 9, 4});
      Sgd other_sgd(other, {0.1f, 0.9f});
      const std::vector<float> before = other.params_to_host();
      EXPECT_THROW(load_checkpoint(path, other, &other_sgd), DataError);
      EXPECT_EQ(other.params_to_host(), before) << "a refused load changed the model";
    }
  }
}

TEST_F(CheckpointFiles, NonFiniteOptimizerStateIsRefusedNamingTheTensor) {
  std::vector<float> momentum(static_cast<std::size_t>(model.parameter_count()));
  for (std::size_t i = 0; i < momentum.size(); ++i) momentum[i] = 1000.0f + static_cast<float>(i);
  sgd.momentum_from_host(momentum);
  save_checkpoint(path, model, &sgd);
  const std::string good = read_bytes(path);
  for (float bad : kNonFinite) {
    write_bytes(path, with_float_replaced(good, momentum[22], bad));
    EXPECT_THROW_THAT(
        read_checkpoint(path), DataError,
        AllOf(HasSubstr("optimizer state 'momentum'"), HasSubstr("layer 0 bias [2]")));
    Sgd other_sgd(model, {0.1f, 0.9f});
    EXPECT_THROW(load_checkpoint(path, model, &other_sgd), DataError);
    EXPECT_EQ(other_sgd.momentum_to_host(), std::vector<float>(momentum.size(), 0.0f));
  }
  // Adam's update count is a float state: NaN or inf there is refused too.
  Adam adam(model, {});
  adam.state_from_host("step", std::vector<float>{3.0f});
  save_checkpoint(path, model, &adam);
  const std::string adam_good = read_bytes(path);
  for (float bad : kNonFinite) {
    write_bytes(path, with_float_replaced(adam_good, 3.0f, bad));
    EXPECT_THROW_THAT(read_checkpoint(path), DataError,
                      AllOf(HasSubstr("optimizer state 'step'"), HasSubstr("its only value")));
  }
  write_bytes(path, with_float_replaced(adam_good, 3.0f, 2.5f));
  EXPECT_THROW_THAT(read_checkpoint(path), DataError, HasSubstr("whole number"));
}

// A Checkpoint built or edited in memory is checked the same way before anything changes.
TEST_F(CheckpointFiles, RestoringNonFiniteValuesChangesNothing) {
  Checkpoint c = read_checkpoint(path);
  c.params[3] = std::numeric_limits<float>::quiet_NaN();
  Mlp other(ctx, {5, 4, 3}, Activation::relu, {Init::torch_default, 9, 4});
  const std::vector<float> before = other.params_to_host();
  EXPECT_THROW_THAT(restore(c, other, nullptr, "edited"), DataError,
                    AllOf(HasSubstr("edited"), HasSubstr("layer 0 weight [0, 3]")));
  EXPECT_EQ(other.params_to_host(), before);
}

// Saving a diverged model is refused and keeps the good checkpoint already there.
TEST_F(CheckpointFiles, SavingNonFiniteValuesKeepsThePreviousCheckpoint) {
  const std::string before = read_bytes(path);
  std::vector<float> params = model.params_to_host();
  params[38] = std::numeric_limits<float>::infinity();
  model.params_from_host(params);
  EXPECT_THROW_THAT(save_checkpoint(path, model, &sgd), NumericError,
                    AllOf(HasSubstr("layer 1 bias [2]"), HasSubstr("nothing was written")));
  EXPECT_EQ(read_bytes(path), before);
}

// ---------------------------------------------------------------- Adam, AdamW; format 1

AdamOptions adam_options(float lr, float weight_decay, bool amsgrad, bool decoupled) {
  AdamOptions o;
  o.lr = lr;
  o.weight_decay = weight_decay;
  o.amsgrad = amsgrad;
  o.decoupled_weight_decay = decoupled;
  return o;
}

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

// A model with an Adam optimizer that has taken one step (its state is not all zero).
struct StepTaken {
  Mlp model;
  Adam adam;
  StepTaken(const Context& ctx, AdamOptions opt, std::uint64_t seed)
      : model(ctx, {5, 4, 3}, Activation::relu, {Init::torch_default, seed, 4}), adam(model, opt) {
    Buffer<float> g = upload(ctx, std::vector<float>(std::size_t(model.parameter_count()), 0.25f));
    detail::copy_bytes(ctx, model.grads().data, model.grads().device, g.data(), g.device(),
                       std::size_t(model.parameter_count()) * sizeof(float));
    adam.step();
  }
};

TEST(AdamCheckpointFiles, AnotherOptimizerIsADataErrorNamingBoth) {
  TempDir dir;
  Context ctx;
  const std::string adam_path = dir / "adam.ckpt", ams_path = dir / "amsgrad.ckpt",
                    sgd_path = dir / "sgd.ckpt", bare_path = dir / "bare.ckpt";
  StepTaken saved(ctx, adam_options(0.01f, 0.0f, false, false), 1);
  save_checkpoint(adam_path, saved.model, &saved.adam);
  StepTaken saved_ams(ctx, adam_options(0.01f, 0.0f, true, false), 1);
  save_checkpoint(ams_path, saved_ams.model, &saved_ams.adam);
  save_checkpoint(bare_path, saved.model);
  {
    Mlp m(ctx, {5, 4, 3});
    Sgd sgd(m, {0.1f, 0.9f});
    save_checkpoint(sgd_path, m, &sgd);
  }

  Mlp m(ctx, {5, 4, 3}, Activation::relu, {Init::torch_default, 7, 4});
  const std::vector<float> params = m.params_to_host();
  Sgd sgd(m, {0.1f, 0.9f});
  EXPECT_THROW_THAT(load_checkpoint(adam_path, m, &sgd), DataError,
                    AllOf(HasSubstr("state of adam "), HasSubstr("optimizer is sgd")));
  EXPECT_EQ(m.params_to_host(), params) << "a failed load changed the model";
  EXPECT_EQ(sgd.steps(), 0);

  // The targets have state of their own, which a failed load must leave alone.
  StepTaken adamw(ctx, adam_options(0.01f, 0.01f, false, true), 7);
  StepTaken adam(ctx, adam_options(0.01f, 0.0f, false, false), 7);
  StepTaken ams(ctx, adam_options(0.01f, 0.0f, true, false), 7);
  const auto unchanged = [&](StepTaken& t) {
    EXPECT_EQ(t.model.params_to_host(), params);
    EXPECT_EQ(t.adam.steps(), 1);
    EXPECT_EQ(t.adam.state_to_host("step"), std::vector<float>{1.0f});
    EXPECT_NE(t.adam.state_to_host("exp_avg"), std::vector<float>(params.size(), 0.0f));
  };
  for (StepTaken* t : {&adamw, &adam, &ams}) t->model.params_from_host(params);
  EXPECT_THROW_THAT(load_checkpoint(adam_path, adamw.model, &adamw.adam), DataError,
                    AllOf(HasSubstr("state of adam "), HasSubstr("optimizer is adamw")));
  unchanged(adamw);
  EXPECT_THROW_THAT(load_checkpoint(sgd_path, adam.model, &adam.adam), DataError,
                    AllOf(HasSubstr("state of sgd"), HasSubstr("optimizer is adam")));
  unchanged(adam);
  // amsgrad on one side only: the state lists differ by max_exp_avg_sq.
  EXPECT_THROW_THAT(load_checkpoint(adam_path, ams.model, &ams.adam), DataError,
                    AllOf(HasSubstr("amsgrad"), HasSubstr("max_exp_avg_sq")));
  unchanged(ams);
  EXPECT_THROW_THAT(load_checkpoint(ams_path, adam.model, &adam.adam), DataError,
                    AllOf(HasSubstr("amsgrad"), HasSubstr("max_exp_avg_sq")));
  unchanged(adam);
  EXPECT_THROW_THAT(load_checkpoint(bare_path, adam.model, &adam.adam), DataError,
                    HasSubstr("no optimizer state"));
  unchanged(adam);
  // The same kinds load.
  EXPECT_NO_THROW(load_checkpoint(ams_path, ams.model, &ams.adam));
  EXPECT_EQ(ams.model.params_to_host(), saved_ams.model.params_to_host());
  EXPECT_EQ(ams.adam.state_to_host("max_exp_avg_sq"),
            saved_ams.adam.state_to_host("max_exp_avg_sq"));
}

// A format-1 file (descent before Adam: SGD only, no optimizer kind, the momentum as one float
// array after the step count), written byte by byte as that version's writer did.
std::string format1_checkpoint(const Mlp& model, const SgdOptions* sgd, const LrSchedule& sched,
                               std::int64_t steps, const std::vector<float>& momentum,
                               const CheckpointMetadata& metadata) {
  std::string b("DSCNTCKP", 8);
  const auto put = [&b](auto v) { b.append(reinterpret_cast<const char*>(&v), sizeof v); };
  const auto put_floats = [&](const std::vector<float>& v) {
    put(std::uint64_t(v.size()));
    b.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  };
  const auto put_string = [&](const std::string& s) {
    put(std::uint32_t(s.size()));
    b += s;
  };
  put(std::uint32_t(1));  // version
  put(std::uint64_t(0));  // payload size, patched below
  put(std::uint32_t(model.layers()));
  for (std::int64_t w : model.widths()) put(std::int64_t(w));
  for (Activation a : model.activations()) put(std::uint32_t(a));
  put_floats(model.params_to_host());
  put(std::uint8_t(sgd != nullptr ? 1 : 0));
  if (sgd != nullptr) {
    put(sgd->lr);
    put(sgd->momentum);
    put(sgd->dampening);
    put(sgd->weight_decay);
    put(std::uint8_t(sgd->nesterov));
    put(std::uint8_t(sgd->maximize));
    put(std::uint32_t(sched.kind));
    put(std::int64_t(sched.every));
    put(sched.gamma);
    put(std::int64_t(sched.total));
    put(sched.min_lr);
    put(std::int64_t(steps));
    put_floats(momentum);
  }
  put(std::uint32_t(metadata.size()));
  for (const auto& [k, v] : metadata) {
    put_string(k);
    put_string(v);
  }
  const std::uint64_t payload = b.size() - 20;
  std::memcpy(b.data() + 12, &payload, sizeof payload);
  put(static_cast<std::uint32_t>(
      crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(b.data()), uInt(b.size()))));
  return b;
}

TEST(CheckpointFormat1, SgdCheckpointStillLoads) {
  TempDir dir;
  Context ctx;
  const Dataset data = blobs(40, 5, 3, 17);
  Mlp m(ctx, {5, 4, 3}, Activation::relu, {Init::torch_default, 3, 8});
  const SgdOptions opt{0.05f, 0.9f, 0.1f, 1e-3f, false, false};
  const LrSchedule sched = LrSchedule::step(7, 0.5f);
  Sgd sgd(m, opt, sched);
  Trainer t(m, Loss::softmax_cross_entropy, sgd);
  BatchLoader loader(ctx, data, {8, true, 2});
  train_steps(t, loader, 3);
  const std::string v1 = dir / "v1.ckpt", v2 = dir / "v2.ckpt";
  write_bytes(v1, format1_checkpoint(m, &opt, sched, sgd.steps(), sgd.momentum_to_host(),
                                     {{"loss", "ce"}}));
  save_checkpoint(v2, m, &sgd, {{"loss", "ce"}});

  const Checkpoint c = read_checkpoint(v1);
  EXPECT_EQ(c.version, 1u);
  EXPECT_EQ(c.widths, m.widths());
  EXPECT_EQ(c.params, m.params_to_host());
  EXPECT_TRUE(c.has_optimizer);
  EXPECT_EQ(c.optimizer, OptimizerKind::sgd);
  EXPECT_EQ(c.option("lr").number, 0.05f);
  EXPECT_EQ(c.option("dampening").number, 0.1f);
  EXPECT_EQ(c.schedule.kind, LrSchedule::Kind::step);
  EXPECT_EQ(c.schedule.every, 7);
  EXPECT_EQ(c.steps, 3);
  EXPECT_EQ(c.momentum, sgd.momentum_to_host());
  ASSERT_EQ(c.state.size(), 1u);
  EXPECT_EQ(c.state[0].first, "momentum");
  EXPECT_EQ(c.get("loss"), "ce");

  // Loaded into fresh objects, the format-1 file and the format-2 one of the same state give the
  // same next steps, bit for bit.
  std::vector<std::vector<float>> after;
  for (const std::string& path : {v1, v2}) {
    Mlp m2(ctx, {5, 4, 3}, Activation::relu);
    Sgd sgd2(m2, opt, sched);
    load_checkpoint(path, m2, &sgd2);
    EXPECT_EQ(m2.params_to_host(), m.params_to_host()) << path;
    EXPECT_EQ(sgd2.momentum_to_host(), sgd.momentum_to_host()) << path;
    EXPECT_EQ(sgd2.steps(), 3) << path;
    Trainer t2(m2, Loss::softmax_cross_entropy, sgd2);
    train_steps(t2, loader, 4);
    after.push_back(m2.params_to_host());
  }
  EXPECT_EQ(after[0], after[1]);

  // A format-1 file holds SGD state: not Adam's.
  Mlp m3(ctx, {5, 4, 3}, Activation::relu);
  Adam adam(m3);
  EXPECT_THROW_THAT(load_checkpoint(v1, m3, &adam), DataError,
                    AllOf(HasSubstr("state of sgd"), HasSubstr("optimizer is adam")));
  // Without momentum the array is empty; with no optimizer the flag is 0.
  const SgdOptions plain{0.1f};
  write_bytes(v1, format1_checkpoint(m, &plain, LrSchedule::constant(), 5, {}, {}));
  Mlp m4(ctx, {5, 4, 3}, Activation::relu);
  Sgd sgd4(m4, plain);
  load_checkpoint(v1, m4, &sgd4);
  EXPECT_EQ(sgd4.steps(), 5);
  EXPECT_EQ(m4.params_to_host(), m.params_to_host());
  Sgd with_momentum(m4, {0.1f, 0.9f});
  EXPECT_THROW_THAT(load_checkpoint(v1, m4, &with_momentum), DataError, HasSubstr("momentum"));
  write_bytes(v1, format1_checkpoint(m, nullptr, {}, 0, {}, {}));
  EXPECT_FALSE(read_checkpoint(v1).has_optimizer);
  Mlp m5(ctx, {5, 4, 3}, Activation::relu);
  load_checkpoint(v1, m5);
  EXPECT_EQ(m5.params_to_host(), m.params_to_host());
}

}  // namespace
}  // namespace descent::test
