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
  EXPECT_EQ(c.sgd.dampening, 0.1f);
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

}  // namespace
}  // namespace descent::test
