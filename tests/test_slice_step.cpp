// The CPU trainer's whole-network step over slices of rows (Backend::dense_slice_step, taken by
// Trainer::step for small fp32 networks with any of the three losses): its loss and gradients
// against the float64 oracle, its bits for any thread count, training against the
// layer-by-layer step (DESCENT_CPU_STEP=layers), and the models it leaves to that step.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "descent/descent.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

// Sets (or, with null, unsets) an environment variable for the scope, then restores it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value != nullptr) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

struct Case {
  std::vector<std::int64_t> widths;
  Activation hidden;
  std::int64_t batch;
  std::int64_t pad = 0;  // extra floats per row of x and the targets (ld > cols)
};

std::string describe(const Case& c) {
  std::ostringstream s;
  for (std::size_t i = 0; i < c.widths.size(); ++i) s << (i > 0 ? "-" : "") << c.widths[i];
  s << " " << to_string(c.hidden) << ", batch " << c.batch << ", pad " << c.pad;
  return s.str();
}

struct Inputs {
  std::vector<float> params, x, targets;  // x and targets with rows of cols + pad floats
  std::vector<std::int32_t> labels;       // one per row, in [0, outputs)
};

Inputs make_inputs(const Case& c, std::mt19937_64& rng) {
  Inputs in;
  for (std::size_t l = 0; l + 1 < c.widths.size(); ++l) {
    const float s = std::sqrt(3.0f / float(c.widths[l]));
    const std::vector<float> w =
        random_floats(rng, c.widths[l + 1] * c.widths[l], -1.5f * s, 1.5f * s);
    const std::vector<float> b = random_floats(rng, c.widths[l + 1], -0.3f, 0.3f);
    in.params.insert(in.params.end(), w.begin(), w.end());
    in.params.insert(in.params.end(), b.begin(), b.end());
  }
  in.x = random_floats(rng, c.batch * (c.widths.front() + c.pad));
  in.targets = random_floats(rng, c.batch * (c.widths.back() + c.pad));
  std::uniform_int_distribution<std::int32_t> label(0, std::int32_t(c.widths.back()) - 1);
  for (std::int64_t r = 0; r < c.batch; ++r) in.labels.push_back(label(rng));
  return in;
}

// The inputs with targets in [0, 1] (binary cross-entropy's).
Inputs unit_targets(Inputs in) {
  for (float& t : in.targets) t = 0.5f + 0.5f * t;
  return in;
}

oracle::LossKind oracle_loss(Loss loss) {
  switch (loss) {
    case Loss::softmax_cross_entropy:
      return oracle::LossKind::softmax_cross_entropy;
    case Loss::sigmoid_bce:
      return oracle::LossKind::sigmoid_bce;
    default:
      return oracle::LossKind::mse;
  }
}

struct StepResult {
  std::vector<float> grads;
  double loss = 0.0;
};

// One Trainer step with SGD at lr 0: the gradient and loss of the batch, parameters unchanged.
StepResult trainer_step(const Context& ctx, const Case& c, const Inputs& in, bool layers,
                        Loss loss = Loss::mse) {
  const ScopedEnv env("DESCENT_CPU_STEP", layers ? "layers" : "slices");  // slices for any batch
  Mlp model(ctx, c.widths, c.hidden);
  model.params_from_host(in.params);
  Sgd sgd(model, SgdOptions{0.0f});
  Trainer trainer(model, loss, sgd);
  const Buffer<float> x = upload(ctx, in.x), t = upload(ctx, in.targets);
  const Buffer<std::int32_t> labels(ctx, std::span<const std::int32_t>(in.labels));
  const std::int64_t in_cols = c.widths.front(), out = c.widths.back();
  Batch b;
  b.x = MatrixView<const float>(x.data(), c.batch, in_cols, ctx.device(), in_cols + c.pad);
  if (loss == Loss::softmax_cross_entropy) {
    b.labels = VectorView<const std::int32_t>(labels.data(), c.batch, ctx.device());
  } else {
    b.targets = MatrixView<const float>(t.data(), c.batch, out, ctx.device(), out + c.pad);
  }
  trainer.step(b);
  StepResult r;
  r.loss = trainer.take_train_loss();
  const VectorView<const float> g = std::as_const(model).grads();
  r.grads = to_host(ctx, MatrixView<const float>(g.data, 1, g.size, ctx.device()));
  return r;
}

oracle::MlpGrads oracle_grads(const Case& c, const Inputs& in, Loss loss = Loss::mse) {
  oracle::Mlp net;
  net.hidden = c.hidden;
  std::size_t at = 0;
  for (std::size_t l = 0; l + 1 < c.widths.size(); ++l) {
    oracle::Mat w(c.widths[l + 1], c.widths[l]);
    for (double& v : w.v) v = in.params[at++];
    oracle::Vec b(static_cast<std::size_t>(c.widths[l + 1]));
    for (double& v : b) v = in.params[at++];
    net.w.push_back(std::move(w));
    net.b.push_back(std::move(b));
  }
  const std::int64_t n_in = c.widths.front(), n_out = c.widths.back();
  oracle::Mat x(c.batch, n_in);
  oracle::MlpTargets t;
  t.target = oracle::Mat(c.batch, n_out);
  for (std::int64_t r = 0; r < c.batch; ++r) {
    for (std::int64_t j = 0; j < n_in; ++j) x.at(r, j) = in.x[r * (n_in + c.pad) + j];
    for (std::int64_t j = 0; j < n_out; ++j)
      t.target.at(r, j) = in.targets[r * (n_out + c.pad) + j];
  }
  t.labels = in.labels;
  return oracle::mlp_backward(net, x, oracle_loss(loss), t);
}

// The oracle's gradient in the model's flat layout (per layer W [out, in], then b).
std::vector<double> flat(const oracle::MlpGrads& g) {
  std::vector<double> v;
  for (std::size_t l = 0; l < g.dw.size(); ++l) {
    v.insert(v.end(), g.dw[l].v.begin(), g.dw[l].v.end());
    v.insert(v.end(), g.db[l].begin(), g.db[l].end());
  }
  return v;
}

// Every element within 1e-4 of the largest magnitude of the oracle's gradient (sums of up to
// thousands of float products).
::testing::AssertionResult gradients_close(const std::vector<float>& got,
                                           const std::vector<double>& want) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << got.size() << " values, want " << want.size();
  }
  double scale = 0.0;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!(std::fabs(got[i] - want[i]) <= 1e-4 * scale)) {
      return ::testing::AssertionFailure()
             << "gradient[" << i << "] = " << got[i] << ", the oracle's " << want[i] << " (largest "
             << scale << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

const Case kCases[] = {
    {{5, 7, 6, 3}, Activation::relu, 1},
    {{5, 7, 6, 3}, Activation::tanh, 63},
    {{13, 33, 17, 1}, Activation::sigmoid, 65},
    {{9, 20, 20, 2}, Activation::identity, 3000},  // several tasks, a partial last slice
    {{64, 64, 64, 16}, Activation::relu, 1000},
    {{3, 128, 5}, Activation::tanh, 200, 3},  // the widest layer it takes; rows ld > cols
    {{1, 8, 1}, Activation::relu, 130, 1},
    {{6, 24, 16, 4}, Activation::gelu, 700},  // gelu keeps its pre-activation
    {{7, 3}, Activation::identity, 100},      // one layer: linear regression
};

TEST(SliceStep, LossAndGradientsMatchTheFloat64Oracle) {
  std::mt19937_64 rng(seed_for_current_test());
  const Context ctx(Device::cpu());
  for (const Case& c : kCases) {
    for (const Loss loss : {Loss::mse, Loss::softmax_cross_entropy, Loss::sigmoid_bce}) {
      if (loss == Loss::softmax_cross_entropy && c.widths.back() < 2) continue;  // two classes
      SCOPED_TRACE(describe(c) + ", " + to_string(loss));
      const Inputs in = unit_targets(make_inputs(c, rng));
      const oracle::MlpGrads want = oracle_grads(c, in, loss);
      const StepResult sliced = trainer_step(ctx, c, in, false, loss);
      EXPECT_TRUE(close_to(sliced.loss, want.loss, 1e-5 * std::max(1.0, want.loss)));
      EXPECT_TRUE(gradients_close(sliced.grads, flat(want)));
      // The layer-by-layer step, for comparison, meets the same bound.
      const StepResult layered = trainer_step(ctx, c, in, true, loss);
      EXPECT_TRUE(close_to(layered.loss, want.loss, 1e-5 * std::max(1.0, want.loss)));
      EXPECT_TRUE(gradients_close(layered.grads, flat(want)));
    }
  }
}

TEST(SliceStep, IsTakenAndDiffersFromTheLayerByLayerStepOnlyInRounding) {
  // Proof that the slice step runs, for each loss: its sums run in another order, so some bits
  // differ; the loss's value comes from the same row functions.
  std::mt19937_64 rng(seed_for_current_test());
  const Context ctx(Device::cpu());
  const Case c{{64, 64, 64, 16}, Activation::relu, 1000};
  const Inputs in = unit_targets(make_inputs(c, rng));
  for (const Loss loss : {Loss::mse, Loss::softmax_cross_entropy, Loss::sigmoid_bce}) {
    SCOPED_TRACE(to_string(loss));
    const StepResult sliced = trainer_step(ctx, c, in, false, loss);
    const StepResult layered = trainer_step(ctx, c, in, true, loss);
    EXPECT_GT(count_bit_differences(sliced.grads, layered.grads), 0);
    EXPECT_TRUE(gradients_close(sliced.grads, flat(oracle_grads(c, in, loss))));
  }  // gelu, whose derivative needs the pre-activation, takes it too.
  const Case g{{16, 32, 32, 4}, Activation::gelu, 1000};
  const Inputs gi = make_inputs(g, rng);
  EXPECT_GT(count_bit_differences(trainer_step(ctx, g, gi, false).grads,
                                  trainer_step(ctx, g, gi, true).grads),
            0);
}

TEST(SliceStep, SameBitsForAnyThreadCount) {
  std::mt19937_64 rng(seed_for_current_test());
  for (const auto& [c, loss] :
       {std::pair{Case{{64, 64, 64, 16}, Activation::relu, 1000}, Loss::mse},
        std::pair{Case{{9, 20, 20, 2}, Activation::tanh, 5000}, Loss::mse},
        std::pair{Case{{9, 20, 20, 10}, Activation::relu, 3000}, Loss::softmax_cross_entropy},
        std::pair{Case{{9, 20, 3}, Activation::sigmoid, 3000}, Loss::sigmoid_bce},
        std::pair{Case{{9, 20, 20, 2}, Activation::gelu, 3000}, Loss::mse}}) {
    SCOPED_TRACE(describe(c) + ", " + to_string(loss));
    const Inputs in = unit_targets(make_inputs(c, rng));
    const StepResult one =
        trainer_step(Context(Device::cpu(), ContextOptions{1}), c, in, false, loss);
    for (int threads : {2, 3}) {
      const StepResult more =
          trainer_step(Context(Device::cpu(), ContextOptions{threads}), c, in, false, loss);
      EXPECT_TRUE(bit_identical(more.grads, one.grads)) << threads << " threads";
      EXPECT_EQ(more.loss, one.loss) << threads << " threads";
    }
  }
}

// Without DESCENT_CPU_STEP, batches below 2048 rows take the layer-by-layer step (their
// activations fit in cache anyway), batches of 2048 and more the slice step.
TEST(SliceStep, TakenByDefaultFrom2048Rows) {
  std::mt19937_64 rng(seed_for_current_test());
  const Context ctx(Device::cpu());
  for (const std::int64_t rows : {2047, 2048}) {
    const Case c{{16, 64, 64, 4}, Activation::relu, rows};
    const Inputs in = make_inputs(c, rng);
    StepResult automatic;
    {
      const ScopedEnv unset("DESCENT_CPU_STEP", nullptr);
      Mlp model(ctx, c.widths, c.hidden);
      model.params_from_host(in.params);
      Sgd sgd(model, SgdOptions{0.0f});
      Trainer trainer(model, Loss::mse, sgd);
      const Buffer<float> x = upload(ctx, in.x), t = upload(ctx, in.targets);
      trainer.step(Batch{x.matrix(rows, 16), {}, t.matrix(rows, 4)});
      const VectorView<const float> g = std::as_const(model).grads();
      automatic.grads = to_host(ctx, MatrixView<const float>(g.data, 1, g.size, ctx.device()));
    }
    const StepResult layered = trainer_step(ctx, c, in, true);
    const StepResult sliced = trainer_step(ctx, c, in, false);
    if (rows < 2048) {
      EXPECT_TRUE(bit_identical(automatic.grads, layered.grads)) << rows << " rows";
    } else {
      EXPECT_TRUE(bit_identical(automatic.grads, sliced.grads)) << rows << " rows";
    }
    EXPECT_GT(count_bit_differences(sliced.grads, layered.grads), 0) << rows << " rows";
  }
}

// Models outside its scope take the layer-by-layer step: the same bits with it turned off.
TEST(SliceStep, LeavesOtherModelsToTheLayerByLayerStep) {
  std::mt19937_64 rng(seed_for_current_test());
  const Context ctx(Device::cpu());
  for (const Case& c : {Case{{6, 129, 4}, Activation::relu, 300}}) {  // wider than it takes
    SCOPED_TRACE(describe(c));
    const Inputs in = make_inputs(c, rng);
    EXPECT_TRUE(
        bit_identical(trainer_step(ctx, c, in, false).grads, trainer_step(ctx, c, in, true).grads));
  }
}

// 20 epochs of SGD with momentum on `data`, once with the slice step and once layer by layer:
// both learn (the loss falls below `fall` of its first epoch's), their last losses agree and
// they end at parameters within rounding of each other.
void expect_training_alike(const Context& ctx, const Dataset& data, std::int64_t in,
                           std::int64_t out, Loss loss, double fall) {
  std::vector<std::vector<float>> params;
  std::vector<double> first, last;
  for (bool layers : {false, true}) {
    const ScopedEnv env("DESCENT_CPU_STEP", layers ? "layers" : "slices");
    Mlp model(ctx, {in, 32, 32, out}, Activation::tanh, {Init::torch_default, 5, 256});
    Sgd sgd(model, SgdOptions{0.02f, 0.9f});
    Trainer trainer(model, loss, sgd);
    BatchLoader loader(ctx, data, {256, true, 11});
    for (std::int64_t epoch = 0; epoch < 20; ++epoch) {
      for (const Batch& b : loader.epoch(epoch)) trainer.step(b);
      const double l = trainer.take_train_loss();
      if (epoch == 0) first.push_back(l);
      if (epoch == 19) last.push_back(l);
    }
    params.push_back(model.params_to_host());
  }
  EXPECT_LT(last[0], fall * first[0])
      << "the slice step's training did not learn: " << first[0] << " -> " << last[0]
      << " (layer by layer " << first[1] << " -> " << last[1] << ")";
  EXPECT_NEAR(last[0], last[1], 1e-3 * last[1]);
  double largest = 0.0, diff = 0.0;
  for (std::size_t i = 0; i < params[0].size(); ++i) {
    largest = std::max(largest, double(std::fabs(params[1][i])));
    diff = std::max(diff, double(std::fabs(params[0][i] - params[1][i])));
  }
  EXPECT_LT(diff, 1e-3 * largest);
}

TEST(SliceStep, TrainsAsTheLayerByLayerStepDoes) {
  std::mt19937_64 rng(seed_for_current_test());
  const Context ctx(Device::cpu());
  const std::int64_t rows = 2048, in = 8, out = 4;
  std::vector<float> x = random_floats(rng, rows * in), y(static_cast<std::size_t>(rows * out));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t j = 0; j < out; ++j) {
      y[r * out + j] = 0.5f * x[r * in + j] - x[r * in + j + 4];
    }
  }
  expect_training_alike(ctx, Dataset::from_floats(x, in, y, out), in, out, Loss::mse, 0.1);
}

TEST(SliceStep, TrainsAClassifierAsTheLayerByLayerStepDoes) {
  std::mt19937_64 rng(seed_for_current_test());
  const Context ctx(Device::cpu());
  const std::int64_t rows = 2048, in = 8, classes = 4;
  const std::vector<float> x = random_floats(rng, rows * in);
  std::vector<std::int32_t> labels;  // the quadrant of two sums of features
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* f = x.data() + r * in;
    labels.push_back((f[0] + f[1] - f[2] > 0.0f ? 1 : 0) + (f[3] - f[4] + f[5] > 0.0f ? 2 : 0));
  }
  expect_training_alike(ctx, Dataset::from_floats(x, in, labels, classes), in, classes,
                        Loss::softmax_cross_entropy, 0.3);
}

TEST(SliceStep, NonFiniteLossIsANumericErrorAndChangesNothing) {
  std::mt19937_64 rng(seed_for_current_test());
  const Context ctx(Device::cpu());
  const Case c{{5, 16, 3}, Activation::tanh, 100};
  Inputs in = make_inputs(c, rng);
  const ScopedEnv env("DESCENT_CPU_STEP", "slices");
  Mlp model(ctx, c.widths, c.hidden);
  model.params_from_host(in.params);
  Sgd sgd(model, SgdOptions{0.1f, 0.9f});
  Trainer trainer(model, Loss::mse, sgd);
  const Buffer<float> good = upload(ctx, in.x), t = upload(ctx, in.targets);
  in.x[17] = std::numeric_limits<float>::quiet_NaN();
  const Buffer<float> bad = upload(ctx, in.x);
  const Batch good_batch{good.matrix(c.batch, 5), {}, t.matrix(c.batch, 3)};
  const Batch bad_batch{bad.matrix(c.batch, 5), {}, t.matrix(c.batch, 3)};
  trainer.step(good_batch);
  const std::vector<float> before = model.params_to_host();
  EXPECT_THROW_THAT(trainer.step(bad_batch), NumericError,
                    ::testing::AllOf(::testing::HasSubstr("step 2"), ::testing::HasSubstr("nan")));
  EXPECT_TRUE(bit_identical(model.params_to_host(), before)) << "the bad step changed the weights";
}

}  // namespace
}  // namespace descent::test
