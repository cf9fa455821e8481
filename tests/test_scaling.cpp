// Scaling kept with a model (descent/scaling.hpp): its checks, and datasets standardised in double
// (with a model on every backend: tests/backends/test_scaling.cpp).
#include <cmath>

#include "descent/checkpoint.hpp"
#include "descent/descent.h"
#include "descent/descent.hpp"
#include "test_support.hpp"
#include "train_support.hpp"

namespace descent::test {
namespace {

TEST(Scaling, RefusesWhatDoesNotFitNamingTheField) {
  const auto refused = [](Scaling s, const char* says) {
    try {
      validate(s, 2, 1);
      ADD_FAILURE() << "accepted; expected a refusal saying " << says;
    } catch (const ArgumentError& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  EXPECT_NO_THROW(validate(example_scaling(), 2, 1));
  EXPECT_NO_THROW(validate(Scaling{}, 2, 1));
  Scaling s = example_scaling();
  s.input_scale.pop_back();
  refused(s, "input_mean and input_scale: expected 2 values each");
  s = example_scaling();
  s.output_scale[0] = 0.0f;
  refused(s, "output_scale[0]");
  s.output_scale[0] = 1e-40f;  // > 0, but 1 / scale overflows a float
  refused(s, "output_scale[0]");
  s = example_scaling();
  s.input_mean[1] = nan_f();
  refused(s, "input_mean[1]");
  s = example_scaling();
  s.output_mean.clear();
  refused(s, "output_mean and output_scale");
}

TEST(Scaling, StandardizationOfADatasetInDouble) {
  // Column 0: 1000 + i (mean 1000 + 49.5, population sd √((100² − 1) / 12)); column 1 constant.
  std::vector<float> f, t;
  for (int i = 0; i < 100; ++i) {
    f.push_back(1000.0f + float(i));
    f.push_back(7.0f);
    t.push_back(-50.0f + 0.5f * float(i));
  }
  Dataset d = Dataset::from_floats(f, 2, t, 1);
  const Scaling s = standardization(d);
  EXPECT_EQ(s.input_mean[0], 1049.5f);
  EXPECT_FLOAT_EQ(s.input_scale[0], float(std::sqrt((100.0 * 100.0 - 1.0) / 12.0)));
  EXPECT_EQ(s.input_mean[1], 7.0f);
  EXPECT_EQ(s.input_scale[1], 1.0f) << "a constant feature is left unscaled";
  EXPECT_FLOAT_EQ(s.output_mean[0], -25.25f);
  d.apply(s);
  double sum = 0, sq = 0;
  for (int i = 0; i < 100; ++i) {
    sum += d.float_features()[2 * i];
    sq += double(d.float_features()[2 * i]) * d.float_features()[2 * i];
    EXPECT_EQ(d.float_features()[2 * i + 1], 0.0f);
  }
  EXPECT_NEAR(sum / 100, 0.0, 1e-6);
  EXPECT_NEAR(sq / 100, 1.0, 1e-5);
  EXPECT_FALSE(d.targets_in_unit()) << "recomputed after scaling: targets now lie around 0";
  const std::vector<std::uint8_t> bytes = {1, 2, 3, 4};
  const std::vector<std::int32_t> labels = {0, 1};
  const Dataset idx = Dataset::from_uint8(bytes, 2, labels, 2);
  EXPECT_THROW(standardization(idx), ArgumentError);
}

}  // namespace
}  // namespace descent::test
