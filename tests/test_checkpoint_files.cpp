// Checkpoint files: every corrupt-file case, a save that fails midway, non-finite values, an
// Adam checkpoint loaded into another optimizer, and format-1 files.
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

// A Checkpoint made in memory that does not fit the model: refused, and nothing changes.
TEST(CheckpointRestore, AHandMadeCheckpointThatDisagreesChangesNothing) {
  Context ctx;
  Mlp model(ctx, {3, 2}, Activation::identity, {Init::torch_default, 1, 4});
  Sgd sgd(model, {0.1f, 0.9f});
  const std::vector<float> before = model.params_to_host();
  Checkpoint c;
  c.widths = {3, 2};
  c.activations = {Activation::identity};
  c.has_optimizer = true;
  c.params.assign(8, 0.5f);  // a 3-2 layer has 8 parameters
  c.momentum.assign(5, 0.0f);
  EXPECT_THROW_THAT(restore(c, model, &sgd), DataError, HasSubstr("5 momentum values"));
  EXPECT_EQ(model.params_to_host(), before) << "a failed restore changed the parameters";
  c.momentum.assign(8, 0.0f);
  c.steps = -1;
  EXPECT_THROW_THAT(restore(c, model, &sgd), DataError, HasSubstr("step count -1"));
  EXPECT_EQ(model.params_to_host(), before) << "a failed restore changed the parameters";
  c.params.assign(7, 0.5f);
  EXPECT_THROW_THAT(restore(c, model), DataError, HasSubstr("7 parameters, expected 8"));
}

// ---------------------------------------------------------------- Adam, AdamW; format 1

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
