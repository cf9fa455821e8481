// Dataset and the file loaders: IDX (MNIST, Fashion-MNIST; gzip or raw, through zlib) and CSV.
#include "descent/data.hpp"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

#include "descent/error.hpp"

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

void check_labels(std::span<const std::int32_t> labels, std::int64_t classes,
                  const std::string& where) {
  if (classes < 1) {
    throw ArgumentError(where + ": classes: must be >= 1, got " + std::to_string(classes));
  }
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= classes) {
      throw DataError(where + ": label " + std::to_string(i) + " is " + std::to_string(labels[i]) +
                      ", outside [0, " + std::to_string(classes) +
                      ") (classes = " + std::to_string(classes) + ")");
    }
  }
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
  check_labels(labels, classes, "Dataset");
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
  check_labels(labels, classes, "Dataset");
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

// ---------------------------------------------------------------- IDX

namespace {

// The whole content of a file, inflated when it is gzip (zlib reads raw files as they are).
std::vector<std::uint8_t> read_maybe_gzip(const std::string& path) {
  std::FILE* probe = std::fopen(path.c_str(), "rb");
  if (probe == nullptr) {
    throw IoError("cannot open '" + path + "': " + std::strerror(errno));
  }
  std::fclose(probe);
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) throw IoError("cannot open '" + path + "' for reading");
  std::vector<std::uint8_t> out;
  std::vector<std::uint8_t> chunk(1 << 20);
  for (;;) {
    const int n = gzread(f, chunk.data(), static_cast<unsigned>(chunk.size()));
    if (n < 0) break;
    out.insert(out.end(), chunk.begin(), chunk.begin() + n);
    if (n == 0) break;
  }
  int err = Z_OK;
  const char* msg = gzerror(f, &err);
  const std::string message = msg != nullptr ? msg : "";
  gzclose(f);
  if (err != Z_OK && err != Z_STREAM_END) {
    throw DataError("'" + path + "': the gzip stream is truncated or corrupt (zlib: " + message +
                    ")");
  }
  return out;
}

std::uint32_t big_endian32(const std::uint8_t* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) |
         std::uint32_t(p[3]);
}

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// Checks an IDX header and returns its dimensions.
std::vector<std::int64_t> idx_dims(const std::vector<std::uint8_t>& bytes, const std::string& path,
                                   std::uint32_t expected_magic, const char* what) {
  if (bytes.size() < 4) {
    throw DataError(
        "'" + path + "': " + std::to_string(bytes.size()) +
        " bytes is too short for an IDX file (expected at least a 4-byte magic number)");
  }
  const std::uint32_t magic = big_endian32(bytes.data());
  if (magic != expected_magic) {
    throw DataError("'" + path + "': wrong IDX magic number " + hex32(magic) + ", expected " +
                    hex32(expected_magic) + " for an IDX " + what + " file (unsigned bytes, " +
                    std::to_string(expected_magic & 0xff) + " dimensions)");
  }
  const std::size_t ndims = expected_magic & 0xff;
  if (bytes.size() < 4 + 4 * ndims) {
    throw DataError("'" + path + "': truncated IDX header: expected " +
                    std::to_string(4 + 4 * ndims) + " bytes, the file has " +
                    std::to_string(bytes.size()));
  }
  std::vector<std::int64_t> dims;
  std::int64_t total = 1;
  for (std::size_t i = 0; i < ndims; ++i) {
    const std::int64_t d = big_endian32(bytes.data() + 4 + 4 * i);
    if (d < 1) {
      throw DataError("'" + path + "': IDX dimension " + std::to_string(i) + " is " +
                      std::to_string(d) + "; every dimension must be >= 1 (an empty dataset?)");
    }
    dims.push_back(d);
    total *= d;
  }
  const std::size_t expected = 4 + 4 * ndims + static_cast<std::size_t>(total);
  if (bytes.size() != expected) {
    std::string dim_text;
    for (std::size_t i = 0; i < dims.size(); ++i)
      dim_text += (i ? " x " : "") + std::to_string(dims[i]);
    throw DataError("'" + path + "': the IDX header says " + dim_text + " (" +
                    std::to_string(expected) + " bytes in all) but the data holds " +
                    std::to_string(bytes.size()) + " bytes");
  }
  return dims;
}

}  // namespace

Dataset load_idx(const std::string& images_path, const std::string& labels_path,
                 IdxOptions options) {
  if (options.classes < 0 || options.limit < 0) {
    throw ArgumentError("load_idx: classes and limit must be >= 0, got " +
                        std::to_string(options.classes) + " and " + std::to_string(options.limit));
  }
  const std::vector<std::uint8_t> images = read_maybe_gzip(images_path);
  const std::vector<std::int64_t> idims = idx_dims(images, images_path, 0x00000803u, "image");
  const std::vector<std::uint8_t> labels = read_maybe_gzip(labels_path);
  const std::vector<std::int64_t> ldims = idx_dims(labels, labels_path, 0x00000801u, "label");
  if (idims[0] != ldims[0]) {
    throw DataError("load_idx: '" + images_path + "' holds " + std::to_string(idims[0]) +
                    " images but '" + labels_path + "' holds " + std::to_string(ldims[0]) +
                    " labels; the counts must be equal");
  }
  std::int64_t count = idims[0];
  if (options.limit > 0) count = std::min(count, options.limit);
  const std::int64_t features = idims[1] * idims[2];
  std::vector<std::int32_t> label_values(static_cast<std::size_t>(count));
  std::int32_t max_label = 0;
  for (std::int64_t i = 0; i < count; ++i) {
    label_values[static_cast<std::size_t>(i)] = labels[8 + static_cast<std::size_t>(i)];
    max_label = std::max(max_label, label_values[static_cast<std::size_t>(i)]);
  }
  const std::int64_t classes = options.classes > 0 ? options.classes : std::int64_t(max_label) + 1;
  check_labels(label_values, classes, "load_idx: '" + labels_path + "'");
  const std::uint8_t* pixels = images.data() + 16;
  return Dataset::from_uint8(
      std::span<const std::uint8_t>(pixels, static_cast<std::size_t>(count * features)), features,
      label_values, classes);
}

// ---------------------------------------------------------------- CSV

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return s;
}

std::vector<std::string_view> split(std::string_view line, char delim) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t at = line.find(delim, start);
    out.push_back(trim(
        line.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start)));
    if (at == std::string_view::npos) break;
    start = at + 1;
  }
  return out;
}

// Parses a whole field as a number (NaN and infinities included, so they can be reported).
bool parse_number(std::string_view s, double& v) {
  if (s.empty()) return false;
  if (s.front() == '+') s.remove_prefix(1);
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

Dataset load_csv(const std::string& path, CsvOptions options) {
  if (options.classes < 0 || options.limit < 0) {
    throw ArgumentError("load_csv: classes and limit must be >= 0, got " +
                        std::to_string(options.classes) + " and " + std::to_string(options.limit));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("cannot open '" + path + "': " + std::strerror(errno));
  std::string line;
  std::int64_t line_no = 0, columns = -1, label_col = -1;
  std::vector<std::string> names;
  std::vector<float> features, targets;
  std::vector<std::int32_t> labels;
  std::int64_t samples = 0;
  const auto where = [&](std::int64_t col) {
    std::string s = "'" + path + "' line " + std::to_string(line_no);
    if (col >= 0) {
      s += ", column " + std::to_string(col + 1);
      if (static_cast<std::size_t>(col) < names.size())
        s += " ('" + names[static_cast<std::size_t>(col)] + "')";
    }
    return s;
  };
  bool first = true;
  while (std::getline(in, line)) {
    ++line_no;
    if (trim(line).empty()) continue;
    const std::vector<std::string_view> fields = split(line, options.delimiter);
    if (first) {
      first = false;
      columns = static_cast<std::int64_t>(fields.size());
      if (columns < 2) {
        throw DataError(where(-1) + ": expected at least 2 columns (features and a label), got " +
                        std::to_string(columns) + "; is the delimiter '" +
                        std::string(1, options.delimiter) + "'?");
      }
      bool header = options.header == CsvOptions::Header::yes;
      if (options.header == CsvOptions::Header::detect) {
        double v;
        for (std::string_view f : fields) header = header || !parse_number(f, v);
      }
      if (header) {
        for (std::string_view f : fields) names.emplace_back(f);
      }
      if (!options.label_name.empty()) {
        if (!header) {
          throw ArgumentError("load_csv: label column '" + options.label_name +
                              "' is chosen by name but '" + path + "' has no header row");
        }
        const auto it = std::find(names.begin(), names.end(), options.label_name);
        if (it == names.end()) {
          std::string all;
          for (const std::string& n : names) all += (all.empty() ? "" : ", ") + n;
          throw ArgumentError("load_csv: no column named '" + options.label_name + "' in '" + path +
                              "' (columns: " + all + ")");
        }
        label_col = it - names.begin();
      } else {
        label_col = options.label_index < 0 ? columns + options.label_index : options.label_index;
        if (label_col < 0 || label_col >= columns) {
          throw ArgumentError("load_csv: label column index " +
                              std::to_string(options.label_index) + " is outside the " +
                              std::to_string(columns) + " columns of '" + path + "'");
        }
      }
      if (header) continue;
    }
    if (static_cast<std::int64_t>(fields.size()) != columns) {
      throw DataError(where(-1) + ": expected " + std::to_string(columns) + " fields, got " +
                      std::to_string(fields.size()));
    }
    for (std::int64_t c = 0; c < columns; ++c) {
      double v = 0.0;
      const std::string_view f = fields[static_cast<std::size_t>(c)];
      if (!parse_number(f, v)) {
        throw DataError(where(c) + ": '" + std::string(f) + "' is not a number");
      }
      if (!std::isfinite(v) || std::fabs(v) > std::numeric_limits<float>::max()) {
        throw DataError(where(c) + ": '" + std::string(f) +
                        "' is not a finite float; NaN and infinite values are not allowed");
      }
      if (c == label_col) {
        if (options.regression) {
          targets.push_back(static_cast<float>(v));
        } else {
          if (v != std::floor(v) || v < 0 || v > std::numeric_limits<std::int32_t>::max()) {
            throw DataError(where(c) + ": label '" + std::string(f) +
                            "' is not a class index (an integer >= 0)");
          }
          if (options.classes > 0 && v >= static_cast<double>(options.classes)) {
            throw DataError(where(c) + ": label " + std::string(f) + " is outside [0, " +
                            std::to_string(options.classes) +
                            ") (classes = " + std::to_string(options.classes) + ")");
          }
          labels.push_back(static_cast<std::int32_t>(v));
        }
      } else {
        features.push_back(static_cast<float>(v));
      }
    }
    ++samples;
    if (options.limit > 0 && samples >= options.limit) break;
  }
  if (in.bad()) throw IoError("error while reading '" + path + "'");
  if (samples == 0) throw DataError("load_csv: '" + path + "' holds no samples (an empty dataset)");
  if (options.regression) return Dataset::from_floats(features, columns - 1, targets, 1);
  std::int64_t classes = options.classes;
  if (classes == 0) classes = std::int64_t(*std::max_element(labels.begin(), labels.end())) + 1;
  return Dataset::from_floats(features, columns - 1, labels, classes);
}

}  // namespace descent
