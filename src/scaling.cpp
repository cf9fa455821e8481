// Scaling: its checks, its application to the caller's arrays, and standardisation from a
// dataset (sums in double, a fixed order).
#include "descent/scaling.hpp"

#include <cmath>
#include <limits>
#include <string>

#include "descent/data.hpp"
#include "descent/error.hpp"

namespace descent {

namespace {

void check_pair(const char* mean_name, const std::vector<float>& mean, const char* scale_name,
                const std::vector<float>& scale, std::int64_t expected, const char* what) {
  if (mean.empty() && scale.empty()) return;
  const auto fail = [](const std::string& message) { throw ArgumentError("Scaling: " + message); };
  if (mean.size() != scale.size() || static_cast<std::int64_t>(mean.size()) != expected) {
    fail(std::string(mean_name) + " and " + scale_name + ": expected " + std::to_string(expected) +
         " values each (the model's " + what + "), got " + std::to_string(mean.size()) + " and " +
         std::to_string(scale.size()));
  }
  for (std::size_t i = 0; i < mean.size(); ++i) {
    if (!std::isfinite(mean[i])) {
      fail(std::string(mean_name) + "[" + std::to_string(i) + "] is " + std::to_string(mean[i]) +
           ", expected a finite number");
    }
    // 1 / scale must be a finite float too: the network's inputs are divided by it.
    if (!(scale[i] > 0.0f) || !std::isfinite(scale[i]) || !std::isfinite(1.0f / scale[i])) {
      fail(std::string(scale_name) + "[" + std::to_string(i) + "] is " + std::to_string(scale[i]) +
           ", expected a finite number > 0 whose reciprocal is finite");
    }
  }
}

// Each column j of m [rows, cols] (leading dimension ld): v = (v − a[j]) · b[j] + c[j] style maps.
template <class F>
void each(std::span<float> m, std::int64_t rows, std::int64_t cols, std::int64_t ld, F&& f) {
  if (rows < 0 || ld < cols ||
      (rows > 0 && static_cast<std::int64_t>(m.size()) < (rows - 1) * ld + cols)) {
    throw ArgumentError("Scaling: " + std::to_string(rows) + " rows of " + std::to_string(cols) +
                        " (leading dimension " + std::to_string(ld) + ") do not fit " +
                        std::to_string(m.size()) + " values");
  }
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t j = 0; j < cols; ++j) {
      float& v = m[static_cast<std::size_t>(r * ld + j)];
      v = f(v, static_cast<std::size_t>(j));
    }
  }
}

// Per-column mean and population standard deviation of `n` rows of `cols` floats.
void column_stats(std::span<const float> v, std::int64_t n, std::int64_t cols,
                  std::vector<float>& mean, std::vector<float>& scale) {
  mean.assign(static_cast<std::size_t>(cols), 0.0f);
  scale.assign(static_cast<std::size_t>(cols), 1.0f);
  for (std::int64_t j = 0; j < cols; ++j) {
    double sum = 0.0;
    for (std::int64_t i = 0; i < n; ++i) sum += v[static_cast<std::size_t>(i * cols + j)];
    const double m = sum / static_cast<double>(n);
    double sq = 0.0;
    for (std::int64_t i = 0; i < n; ++i) {
      const double d = v[static_cast<std::size_t>(i * cols + j)] - m;
      sq += d * d;
    }
    const double sd = std::sqrt(sq / static_cast<double>(n));
    mean[static_cast<std::size_t>(j)] = static_cast<float>(m);
    // A constant column (or one whose spread a float cannot divide by) is left unscaled.
    const auto s = static_cast<float>(sd);
    scale[static_cast<std::size_t>(j)] = s > 0.0f && std::isfinite(1.0f / s) ? s : 1.0f;
  }
}

}  // namespace

void validate(const Scaling& s, std::int64_t inputs, std::int64_t outputs) {
  check_pair("input_mean", s.input_mean, "input_scale", s.input_scale, inputs, "inputs");
  check_pair("output_mean", s.output_mean, "output_scale", s.output_scale, outputs, "outputs");
}

void Scaling::to_network_inputs(std::span<float> x, std::int64_t rows, std::int64_t ld) const {
  if (!scales_inputs()) return;
  each(x, rows, static_cast<std::int64_t>(input_mean.size()), ld,
       [&](float v, std::size_t j) { return (v - input_mean[j]) / input_scale[j]; });
}

void Scaling::to_network_outputs(std::span<float> y, std::int64_t rows, std::int64_t ld) const {
  if (!scales_outputs()) return;
  each(y, rows, static_cast<std::int64_t>(output_mean.size()), ld,
       [&](float v, std::size_t j) { return (v - output_mean[j]) / output_scale[j]; });
}

void Scaling::from_network_outputs(std::span<float> y, std::int64_t rows, std::int64_t ld) const {
  if (!scales_outputs()) return;
  each(y, rows, static_cast<std::int64_t>(output_mean.size()), ld,
       [&](float v, std::size_t j) { return v * output_scale[j] + output_mean[j]; });
}

Scaling standardization(const Dataset& data) {
  if (data.is_uint8()) {
    throw ArgumentError(
        "standardization: a byte (IDX) dataset maps its bytes with one scale and shift "
        "(Dataset::set_normalization); per-feature scaling needs float features");
  }
  if (data.size() < 1) throw ArgumentError("standardization: the dataset is empty");
  Scaling s;
  column_stats(data.float_features(), data.size(), data.features(), s.input_mean, s.input_scale);
  if (!data.has_labels() && data.target_count() > 0) {
    column_stats(data.targets(), data.size(), data.target_count(), s.output_mean, s.output_scale);
  }
  return s;
}

}  // namespace descent
