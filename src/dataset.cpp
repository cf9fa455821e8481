// Dataset: features (float, or bytes with a scale and shift) with labels or targets, checked when
// made; the file loaders are src/idx.cpp and src/csv.cpp.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

#include "descent/data.hpp"
#include "descent/error.hpp"
#include "labels.hpp"

namespace descent {

// ---------------------------------------------------------------- Dataset

namespace {

void check_shape(const char* what, std::size_t values, std::int64_t per_sample,
                 std::int64_t samples) {
  if (per_sample < 1) {
    throw ArgumentError(std::string("Dataset: ") + what + ": count per sample must be >= 1, got " +
                        std::to_string(per_sample));
  }
  if (static_cast<std::int64_t>(values) != per_sample * samples) {
    throw DataError(std::string("Dataset: ") + what + ": expected " +
                    std::to_string(per_sample * samples) + " values (" + std::to_string(samples) +
                    " samples x " + std::to_string(per_sample) + "), got " +
                    std::to_string(values));
  }
}

std::int64_t samples_of(std::size_t values, std::int64_t per_sample, const char* what) {
  if (per_sample < 1) {
    throw ArgumentError(std::string("Dataset: ") + what + ": must be >= 1, got " +
                        std::to_string(per_sample));
  }
  if (values == 0) throw DataError("Dataset: the dataset is empty (0 samples)");
  if (values % static_cast<std::size_t>(per_sample) != 0) {
    throw DataError(std::string("Dataset: features: ") + std::to_string(values) +
                    " values is not a whole number of samples of " + std::to_string(per_sample) +
                    " features");
  }
  return static_cast<std::int64_t>(values / static_cast<std::size_t>(per_sample));
}

void check_finite(std::span<const float> v, std::int64_t per_sample, const char* what) {
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) {
      throw DataError(std::string("Dataset: ") + what + ": sample " +
                      std::to_string(i / static_cast<std::size_t>(per_sample)) + ", column " +
                      std::to_string(i % static_cast<std::size_t>(per_sample)) + " is " +
                      std::to_string(v[i]) + "; values must be finite");
    }
  }
}

}  // namespace

Dataset Dataset::from_uint8(std::span<const std::uint8_t> features, std::int64_t feature_count,
                            std::span<const std::int32_t> labels, std::int64_t classes, float scale,
                            float shift) {
  Dataset d;
  d.size_ = samples_of(features.size(), feature_count, "feature_count");
  check_shape("labels", labels.size(), 1, d.size_);
  detail::check_labels(labels, classes, "Dataset");
  d.features_ = feature_count;
  d.classes_ = classes;
  d.u8_.assign(features.begin(), features.end());
  d.labels_.assign(labels.begin(), labels.end());
  d.set_normalization(scale, shift);
  return d;
}

Dataset Dataset::from_floats(std::span<const float> features, std::int64_t feature_count,
                             std::span<const std::int32_t> labels, std::int64_t classes) {
  Dataset d;
  d.size_ = samples_of(features.size(), feature_count, "feature_count");
  check_shape("labels", labels.size(), 1, d.size_);
  detail::check_labels(labels, classes, "Dataset");
  check_finite(features, feature_count, "features");
  d.features_ = feature_count;
  d.classes_ = classes;
  d.f32_.assign(features.begin(), features.end());
  d.labels_.assign(labels.begin(), labels.end());
  return d;
}

Dataset Dataset::from_floats(std::span<const float> features, std::int64_t feature_count,
                             std::span<const float> targets, std::int64_t target_count) {
  Dataset d;
  d.size_ = samples_of(features.size(), feature_count, "feature_count");
  check_shape("targets", targets.size(), target_count, d.size_);
  check_finite(features, feature_count, "features");
  check_finite(targets, target_count, "targets");
  d.features_ = feature_count;
  d.target_count_ = target_count;
  d.f32_.assign(features.begin(), features.end());
  d.targets_.assign(targets.begin(), targets.end());
  d.targets_in_unit_ =
      std::all_of(targets.begin(), targets.end(), [](float t) { return t >= 0.0f && t <= 1.0f; });
  return d;
}

void Dataset::set_normalization(float scale, float shift) {
  if (!is_uint8()) {
    throw ArgumentError("Dataset::set_normalization: only a uint8 dataset has a byte-to-float map");
  }
  if (!std::isfinite(scale) || !std::isfinite(shift)) {
    throw ArgumentError("Dataset::set_normalization: scale and shift must be finite, got " +
                        std::to_string(scale) + " and " + std::to_string(shift));
  }
  scale_ = scale;
  shift_ = shift;
}

void Dataset::apply(const Scaling& s) {
  if (is_uint8()) {
    throw ArgumentError(
        "Dataset::apply: a byte (IDX) dataset maps its bytes with one scale and shift "
        "(set_normalization); per-feature scaling needs float features");
  }
  const bool regression = !has_labels() && target_count_ > 0;
  validate(s, features_, regression ? target_count_ : 0);
  if (s.scales_outputs() && !regression) {
    throw ArgumentError("Dataset::apply: output scaling on a dataset without float targets");
  }
  std::vector<float> f = f32_, t = targets_;
  s.to_network_inputs(f, size_, features_);
  if (regression) s.to_network_outputs(t, size_, target_count_);
  for (const std::vector<float>* v : {&f, &t}) {
    for (std::size_t i = 0; i < v->size(); ++i) {
      if (!std::isfinite((*v)[i])) {
        throw DataError("Dataset::apply: " + std::string(v == &f ? "feature" : "target") +
                        " value " + std::to_string(i) + " becomes " + std::to_string((*v)[i]) +
                        " when scaled");
      }
    }
  }
  f32_ = std::move(f);
  targets_ = std::move(t);
  targets_in_unit_ =
      std::all_of(targets_.begin(), targets_.end(), [](float v) { return v >= 0.0f && v <= 1.0f; });
}

std::pair<double, double> Dataset::feature_stats() const {
  double sum = 0.0, sum2 = 0.0;
  const double n = static_cast<double>(size_) * static_cast<double>(features_);
  if (is_uint8()) {
    // A byte histogram is exact and fast.
    std::vector<std::int64_t> hist(256, 0);
    for (std::uint8_t v : u8_) ++hist[v];
    for (int v = 0; v < 256; ++v) {
      const double x = static_cast<double>(v) * scale_ + shift_;
      sum += x * static_cast<double>(hist[static_cast<std::size_t>(v)]);
      sum2 += x * x * static_cast<double>(hist[static_cast<std::size_t>(v)]);
    }
  } else {
    for (float v : f32_) {
      sum += v;
      sum2 += static_cast<double>(v) * v;
    }
  }
  const double mean = n > 0 ? sum / n : 0.0;
  const double var = n > 0 ? std::max(0.0, sum2 / n - mean * mean) : 0.0;
  return {mean, std::sqrt(var)};
}

void Dataset::copy_features(std::int64_t i, float* out) const {
  if (is_uint8()) {
    const std::uint8_t* row = u8_.data() + i * features_;
    for (std::int64_t j = 0; j < features_; ++j)
      out[j] = static_cast<float>(row[j]) * scale_ + shift_;
  } else {
    std::memcpy(out, f32_.data() + i * features_,
                sizeof(float) * static_cast<std::size_t>(features_));
  }
}

Dataset Dataset::head(std::int64_t n) const {
  if (n <= 0 || n >= size_) return *this;
  Dataset d = *this;
  d.size_ = n;
  const auto rows = static_cast<std::size_t>(n);
  const auto f = static_cast<std::size_t>(features_);
  if (is_uint8()) d.u8_.resize(rows * f);
  if (!d.f32_.empty()) d.f32_.resize(rows * f);
  if (!d.labels_.empty()) d.labels_.resize(rows);
  if (!d.targets_.empty()) d.targets_.resize(rows * static_cast<std::size_t>(target_count_));
  return d;
}

}  // namespace descent
