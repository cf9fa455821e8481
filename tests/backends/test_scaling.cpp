// Scaling kept with a model (descent/scaling.hpp) on every backend: predict in the caller's units
// against the forward pass on hand-scaled inputs, checkpoints that keep it exactly, and a
// regression in raw units far from 0 that trains through it, from C++ and from C.
#include <cmath>

#include "descent/checkpoint.hpp"
#include "descent/descent.h"
#include "descent/descent.hpp"
#include "test_support.hpp"
#include "train_support.hpp"

namespace descent::test {
namespace {

class ScalingTest : public BackendTest {
 protected:
  TempDir dir;
};

TEST_P(ScalingTest, PredictAnswersInTheCallersUnits) {
  Mlp model(ctx(), {2, 5, 1}, Activation::tanh);
  model.set_scaling(example_scaling());
  const std::vector<float> x = {110.0f, -2.5f, 80.0f, -3.75f, 100.0f, -3.0f};
  const std::vector<float> got = model.predict(x, 3);
  std::vector<float> scaled = x;
  for (int r = 0; r < 3; ++r) {
    scaled[2 * r] = (x[2 * r] - 100.0f) / 20.0f;
    scaled[2 * r + 1] = (x[2 * r + 1] + 3.0f) / 0.5f;
  }
  const Buffer<float> xs = upload(ctx(), scaled);
  const std::vector<float> raw = to_host(ctx(), model.forward(xs.matrix(3, 2)).output);
  ASSERT_EQ(got.size(), 3u);
  for (int r = 0; r < 3; ++r) EXPECT_EQ(got[r], raw[r] * 4.0f + 50.0f) << "row " << r;
  EXPECT_THROW(model.predict(x, 2), ArgumentError) << "6 values are not 2 rows of 2 inputs";
  Scaling wrong = example_scaling();
  wrong.input_scale[0] = -1.0f;
  EXPECT_THROW(model.set_scaling(wrong), ArgumentError);
  EXPECT_EQ(model.scaling().input_scale[0], 20.0f) << "a refused scaling leaves the old one";
}

TEST_P(ScalingTest, CheckpointsKeepTheScalingExactly) {
  Mlp model(ctx(), {2, 5, 1}, Activation::tanh);
  Scaling s = example_scaling();
  s.input_scale[1] = 0.1f + 1e-7f;  // not short in decimal: the text must still read back exactly
  model.set_scaling(s);
  const std::string path = dir / "scaled.ckpt";
  save_checkpoint(path, model, nullptr, {{"note", "kept"}});
  const Checkpoint c = read_checkpoint(path);
  EXPECT_TRUE(same_bits(c.scaling.input_scale, s.input_scale));
  EXPECT_TRUE(same_bits(c.scaling.output_mean, s.output_mean));
  EXPECT_EQ(c.get("note"), "kept");
  Mlp loaded = make_model(ctx(), c);
  const std::vector<float> x = {90.0f, -2.0f};
  EXPECT_TRUE(same_bits(loaded.predict(x, 1), model.predict(x, 1)));
  Mlp plain(ctx(), {2, 5, 1}, Activation::tanh);
  load_checkpoint(path, plain);
  EXPECT_TRUE(same_bits(plain.scaling().input_mean, s.input_mean));
  // A checkpoint without scaling clears a model's.
  Mlp unscaled(ctx(), {2, 5, 1}, Activation::tanh);
  save_checkpoint(dir / "plain.ckpt", unscaled);
  load_checkpoint(dir / "plain.ckpt", plain);
  EXPECT_TRUE(plain.scaling().empty());
  // The keys are the library's; a scaling that does not fit the architecture is refused and
  // leaves the model as it was.
  EXPECT_THROW(save_checkpoint(dir / "x.ckpt", model, nullptr, {{"scaling.input_mean", "1 2"}}),
               ArgumentError);
  Checkpoint bad = c;
  bad.scaling.input_mean = {1.0f};
  const std::vector<float> before = plain.params_to_host();
  EXPECT_THROW(restore(bad, plain), DataError);
  EXPECT_TRUE(plain.scaling().empty());
  EXPECT_TRUE(same_bits(plain.params_to_host(), before));
}

// ONNX and safetensors carry the scaling folded into the first and last layers: a plain network
// with those parameters answers as predict does, to float rounding.
TEST_P(ScalingTest, FoldedParametersAnswerAsPredictDoes) {
  Mlp model(ctx(), {2, 5, 1}, Activation::tanh);
  model.set_scaling(example_scaling());
  Mlp plain(ctx(), {2, 5, 1}, Activation::tanh);
  plain.params_from_host(model.params_with_scaling_folded());
  const std::vector<float> x = {110.0f, -2.5f, 80.0f, -3.75f, 123.0f, -1.0f};
  const std::vector<float> want = model.predict(x, 3), got = plain.predict(x, 3);
  for (int r = 0; r < 3; ++r) EXPECT_NEAR(got[r], want[r], 1e-4 * std::abs(want[r])) << r;
  Mlp one_layer(ctx(), {2, 1}, Activation::identity);  // both folds in the same layer
  one_layer.set_scaling(example_scaling());
  Mlp one_plain(ctx(), {2, 1}, Activation::identity);
  one_plain.params_from_host(one_layer.params_with_scaling_folded());
  const std::vector<float> w1 = one_layer.predict(x, 3), g1 = one_plain.predict(x, 3);
  for (int r = 0; r < 3; ++r) EXPECT_NEAR(g1[r], w1[r], 1e-4 * std::abs(w1[r])) << r;
  Mlp squashed(ctx(), {2, 3, 1}, std::vector<Activation>{Activation::tanh, Activation::sigmoid});
  squashed.set_scaling(example_scaling());
  EXPECT_THROW(squashed.params_with_scaling_folded(), ArgumentError)
      << "an output scaling cannot pass through a sigmoid";
  EXPECT_THROW(save_onnx(dir / "squashed.onnx", squashed), ArgumentError);
  EXPECT_FALSE(std::filesystem::exists(dir / "squashed.onnx"));
}

// Targets around 1000 with inputs around -500: trained on the standardised data, the model
// predicts in the original units; from C, descent_dataset_standardize and descent_model_predict.
TEST_P(ScalingTest, ARegressionFarFromZeroTrainsThroughTheScalingFromC) {
  std::vector<float> f, t;
  for (int i = 0; i < 64; ++i) {
    const float a = -500.0f + 3.0f * float(i % 16), b = 40.0f * float(i / 16);
    f.push_back(a);
    f.push_back(b);
    t.push_back(1000.0f + 2.0f * (a + 500.0f) - 0.5f * b);
  }
  const std::string device = GetParam().str();
  descent_context* cctx = nullptr;
  descent_model* model = nullptr;
  descent_optimizer* opt = nullptr;
  descent_trainer* trainer = nullptr;
  descent_dataset* data = nullptr;
  ASSERT_EQ(descent_context_create(device.c_str(), 1, &cctx), DESCENT_OK) << descent_last_error();
  const std::int64_t widths[] = {2, 16, 1};
  ASSERT_EQ(descent_model_create(cctx, widths, 3, "tanh", 1, &model), DESCENT_OK);
  ASSERT_EQ(descent_dataset_create_targets(f.data(), 64, 2, 2, t.data(), 1, 1, &data), DESCENT_OK);
  ASSERT_EQ(descent_dataset_standardize(data, model), DESCENT_OK) << descent_last_error();
  ASSERT_EQ(descent_optimizer_create_from(model, "adam", "lr=0.01", nullptr, 0, 0, &opt),
            DESCENT_OK);
  ASSERT_EQ(descent_trainer_create(model, opt, "mse", &trainer), DESCENT_OK);
  // Steps from the caller's own arrays, scaled by the model first.
  std::vector<float> xs = f, ys = t;
  ASSERT_EQ(descent_model_scale(model, xs.data(), 64, 2, ys.data(), 1), DESCENT_OK);
  for (int step = 0; step < 400; ++step) {
    ASSERT_EQ(descent_trainer_step(trainer, xs.data(), 64, 2, 2, nullptr, ys.data(), 1,
                                   DESCENT_MEMORY_HOST),
              DESCENT_OK)
        << descent_last_error();
  }
  std::vector<float> got(64);
  ASSERT_EQ(descent_model_predict(model, f.data(), 64, 2, 2, got.data(), 1, DESCENT_MEMORY_HOST),
            DESCENT_OK);
  double err = 0;
  for (int i = 0; i < 64; ++i) err = std::max(err, std::abs(double(got[i]) - t[i]));
  EXPECT_LT(err, 5.0) << "targets span 940–1090 (3 % of their range): the answer is in their "
                         "units";
  const std::string path = dir / "regression.ckpt";
  ASSERT_EQ(descent_checkpoint_save(path.c_str(), model, nullptr), DESCENT_OK);
  descent_model* loaded = nullptr;
  ASSERT_EQ(descent_model_load(cctx, path.c_str(), &loaded), DESCENT_OK) << descent_last_error();
  std::vector<float> again(64);
  ASSERT_EQ(descent_model_predict(loaded, f.data(), 64, 2, 2, again.data(), 1, DESCENT_MEMORY_HOST),
            DESCENT_OK);
  EXPECT_EQ(again, got) << "a loaded model answers the same, scaling included";
  descent_model_destroy(loaded);
  descent_trainer_destroy(trainer);
  descent_optimizer_destroy(opt);
  descent_dataset_destroy(data);
  descent_model_destroy(model);
  descent_context_destroy(cctx);
}

DESCENT_INSTANTIATE_BACKENDS(ScalingTest);

}  // namespace
}  // namespace descent::test
