// A resumed SGD run on every backend ends bit-identical to an uninterrupted one, resumed at an
// epoch end and mid-epoch.
#include "descent/descent.hpp"
#include "test_support.hpp"
#include "train_support.hpp"

namespace descent::test {
namespace {

class CheckpointTest : public BackendTest {
 protected:
  TempDir dir;
};

DESCENT_INSTANTIATE_BACKENDS(CheckpointTest);

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

}  // namespace
}  // namespace descent::test
