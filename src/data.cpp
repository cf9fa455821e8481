// Dataset and the file loaders: IDX (MNIST, Fashion-MNIST; gzip or raw, through zlib) and CSV.
#include "descent/data.hpp"

#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

#include "descent/error.hpp"
#include "input_file.hpp"

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

// The class count when the caller gave none: the largest label + 1, unless most classes below
// it have no sample although the samples could fill them. A stray label (200 among the labels
// of a 10-class file) would otherwise make a 201-class model without a word.
std::int64_t inferred_classes(std::span<const std::int32_t> labels, const std::string& where) {
  std::int32_t max_label = 0;
  for (std::int32_t v : labels) {
    if (v < 0) {
      throw DataError(where + ": label " + std::to_string(v) + " is negative, expected >= 0");
    }
    max_label = std::max(max_label, v);
  }
  std::vector<std::int64_t> count(static_cast<std::size_t>(max_label) + 1, 0);
  for (std::int32_t v : labels) ++count[static_cast<std::size_t>(v)];
  std::int64_t missing = 0, first_missing = -1;
  for (std::size_t c = 0; c < count.size(); ++c) {
    if (count[c] > 0) continue;
    if (missing++ == 0) first_missing = static_cast<std::int64_t>(c);
  }
  // Only where absence means something: most classes empty although there are enough samples
  // to fill them (a small or --limit'ed file may miss a few classes honestly).
  const auto classes = static_cast<std::int64_t>(count.size());
  if (missing * 2 > classes && static_cast<std::int64_t>(labels.size()) >= classes) {
    std::int64_t rows_of_max = count.back();
    throw DataError(where + ": the labels go up to " + std::to_string(max_label) + " (" +
                    std::to_string(rows_of_max) + " sample" + (rows_of_max == 1 ? "" : "s") +
                    "), but " + std::to_string(missing) + " of the " +
                    std::to_string(count.size()) + " classes below that have no sample (class " +
                    std::to_string(first_missing) +
                    " first): a stray label? Give the class count (the classes option, "
                    "--classes N in the command) to train with absent classes; labels at or "
                    "above it are then refused");
  }
  return max_label + std::int64_t(1);
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

// Limits that keep a corrupt or hostile file from asking for unbounded memory.
constexpr std::uint64_t kMaxIdxBytes = std::uint64_t(1) << 32;  // an IDX file's header + data
// deflate cannot compress better than about 1032:1, so a gzip file of n bytes inflates to at most
// n * 1032 bytes: a header declaring more is a lie we can see before allocating.
constexpr std::uint64_t kMaxInflateRatio = 1032;
constexpr std::size_t kReadChunk = std::size_t(1) << 16;

// The bytes of an IDX file, raw or inflated from gzip, produced on demand so that a reader never
// inflates more than it asked for (a gzip bomb stops one byte past the declared size).
class IdxStream {
 public:
  explicit IdxStream(const std::string& path) : file_(path, "load_idx"), in_(kReadChunk) {
    gzip_ = ensure_input(2) && in_[0] == 0x1f && in_[1] == 0x8b;
    if (gzip_ && inflateInit2(&z_, 15 + 16) != Z_OK) {
      throw OutOfMemory("load_idx: zlib could not start inflating '" + path + "'");
    }
  }
  ~IdxStream() {
    if (gzip_) inflateEnd(&z_);
  }
  IdxStream(const IdxStream&) = delete;
  IdxStream& operator=(const IdxStream&) = delete;

  bool gzip() const { return gzip_; }
  std::uint64_t file_size() const { return file_.size(); }
  // The most bytes this file can hold once decoded.
  std::uint64_t bound() const {
    if (!gzip_) return file_.size();
    std::uint64_t b = 0;
    return detail::checked_mul(file_.size(), kMaxInflateRatio, b) ? b : ~std::uint64_t(0);
  }

  // Fills dst with up to n bytes; fewer only at the end of the data.
  std::size_t produce(std::uint8_t* dst, std::size_t n) {
    if (!gzip_) {
      const std::size_t buffered = std::min<std::size_t>(z_.avail_in, n);
      if (buffered > 0) std::memcpy(dst, z_.next_in, buffered);
      z_.next_in += buffered;
      z_.avail_in -= static_cast<uInt>(buffered);
      return buffered + (buffered < n ? file_.read(dst + buffered, n - buffered) : 0);
    }
    std::size_t done = 0;
    while (done < n && !finished_) {
      if (member_ended_) {
        // Another gzip member may follow (as gzip -c a b > c makes); anything else is garbage.
        if (!ensure_input(1)) {
          finished_ = true;
          break;
        }
        if (!ensure_input(2) || z_.next_in[0] != 0x1f || z_.next_in[1] != 0x8b) {
          throw DataError("'" + file_.path() +
                          "': trailing data after the end of the gzip stream, expected the end "
                          "of the file");
        }
        inflateReset(&z_);
        member_ended_ = false;
      }
      if (z_.avail_in == 0) ensure_input(1);
      z_.next_out = dst + done;
      z_.avail_out = static_cast<uInt>(std::min<std::size_t>(n - done, std::size_t(1) << 30));
      const uInt before = z_.avail_out;
      const int ret = inflate(&z_, Z_NO_FLUSH);
      done += before - z_.avail_out;
      if (ret == Z_STREAM_END) {
        member_ended_ = true;
      } else if (ret == Z_BUF_ERROR && z_.avail_in == 0 && eof_) {
        throw DataError("'" + file_.path() +
                        "': the gzip stream is truncated or corrupt (the file ends inside it)");
      } else if (ret != Z_OK && ret != Z_BUF_ERROR) {
        throw DataError("'" + file_.path() + "': the gzip stream is truncated or corrupt (zlib: " +
                        (z_.msg != nullptr ? z_.msg : zError(ret)) + ")");
      }
    }
    return done;
  }

 private:
  // Makes at least k unread bytes available; false when the file ends first.
  bool ensure_input(std::size_t k) {
    if (z_.avail_in >= k) return true;
    if (z_.avail_in > 0) std::memmove(in_.data(), z_.next_in, z_.avail_in);
    z_.next_in = in_.data();
    while (z_.avail_in < k && !eof_) {
      const std::size_t got = file_.read(in_.data() + z_.avail_in, in_.size() - z_.avail_in);
      if (got == 0) eof_ = true;
      z_.avail_in += static_cast<uInt>(got);
    }
    return z_.avail_in >= k;
  }

  detail::InputFile file_;
  std::vector<std::uint8_t> in_;
  z_stream z_{};
  bool gzip_ = false, eof_ = false, member_ended_ = false, finished_ = false;
};

std::uint32_t big_endian32(const std::uint8_t* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) |
         std::uint32_t(p[3]);
}

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// An IDX file's dimensions and the data after its header.
struct IdxFile {
  std::vector<std::int64_t> dims;
  std::vector<std::uint8_t> data;
};

// Reads an IDX file, checking the header against the file before allocating the data.
IdxFile read_idx(const std::string& path, std::uint32_t expected_magic, const char* what) {
  IdxStream in(path);
  const std::size_t ndims = expected_magic & 0xff;
  const std::size_t header = 4 + 4 * ndims;
  std::uint8_t head[4 + 4 * 255];
  std::size_t got = in.produce(head, 4);
  if (got < 4) {
    throw DataError(
        "'" + path + "': " + std::to_string(got) +
        " bytes is too short for an IDX file (expected at least a 4-byte magic number)");
  }
  const std::uint32_t magic = big_endian32(head);
  if (magic != expected_magic) {
    throw DataError("'" + path + "': wrong IDX magic number " + hex32(magic) + ", expected " +
                    hex32(expected_magic) + " for an IDX " + what + " file (unsigned bytes, " +
                    std::to_string(ndims) + " dimensions)");
  }
  got += in.produce(head + 4, header - 4);
  if (got < header) {
    throw DataError("'" + path + "': truncated IDX header: expected " + std::to_string(header) +
                    " bytes, the " + (in.gzip() ? "inflated data has " : "file has ") +
                    std::to_string(got));
  }
  IdxFile f;
  std::string dim_text;
  std::uint64_t total = 1;
  bool overflow = false;
  for (std::size_t i = 0; i < ndims; ++i) {
    const std::uint32_t d = big_endian32(head + 4 + 4 * i);
    if (d < 1) {
      throw DataError("'" + path + "': IDX dimension " + std::to_string(i) + " is " +
                      std::to_string(d) + "; every dimension must be >= 1 (an empty dataset?)");
    }
    f.dims.push_back(d);
    dim_text += (i ? " x " : "") + std::to_string(d);
    overflow = overflow || !detail::checked_mul(total, d, total);
  }
  if (overflow || total > kMaxIdxBytes - header) {
    throw DataError("'" + path + "': the IDX header says " + dim_text +
                    ", more data than the limit of " + std::to_string(kMaxIdxBytes) +
                    " bytes an IDX file may hold");
  }
  const std::uint64_t expected = header + total;
  if (!in.gzip() && in.file_size() != expected) {
    throw DataError("'" + path + "': the IDX header says " + dim_text + " (" +
                    std::to_string(expected) + " bytes in all) but the data holds " +
                    std::to_string(in.file_size()) + " bytes");
  }
  if (expected > in.bound()) {
    throw DataError("'" + path + "': the IDX header says " + dim_text + " (" +
                    std::to_string(expected) + " bytes in all) but a gzip file of " +
                    std::to_string(in.file_size()) + " bytes inflates to at most " +
                    std::to_string(in.bound()));
  }
  f.data.resize(static_cast<std::size_t>(total));
  got = in.produce(f.data.data(), f.data.size());
  std::uint8_t extra = 0;
  const bool more = got == f.data.size() && in.produce(&extra, 1) != 0;
  if (got < f.data.size() || more) {
    throw DataError("'" + path + "': the IDX header says " + dim_text + " (" +
                    std::to_string(expected) + " bytes in all) but the data holds " +
                    (more ? "more" : std::to_string(header + got) + " bytes"));
  }
  return f;
}

}  // namespace

Dataset load_idx(const std::string& images_path, const std::string& labels_path,
                 IdxOptions options) {
  if (options.classes < 0 || options.limit < 0) {
    throw ArgumentError("load_idx: classes and limit must be >= 0, got " +
                        std::to_string(options.classes) + " and " + std::to_string(options.limit));
  }
  const IdxFile images = read_idx(images_path, 0x00000803u, "image");
  const IdxFile labels = read_idx(labels_path, 0x00000801u, "label");
  const std::vector<std::int64_t>& idims = images.dims;
  const std::vector<std::int64_t>& ldims = labels.dims;
  if (idims[0] != ldims[0]) {
    throw DataError("load_idx: '" + images_path + "' holds " + std::to_string(idims[0]) +
                    " images but '" + labels_path + "' holds " + std::to_string(ldims[0]) +
                    " labels; the counts must be equal");
  }
  std::int64_t count = idims[0];
  if (options.limit > 0) count = std::min(count, options.limit);
  const std::int64_t features = idims[1] * idims[2];
  std::vector<std::int32_t> label_values(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) {
    label_values[static_cast<std::size_t>(i)] = labels.data[static_cast<std::size_t>(i)];
  }
  const std::int64_t classes =
      options.classes > 0 ? options.classes
                          : inferred_classes(label_values, "load_idx: '" + labels_path + "'");
  check_labels(label_values, classes, "load_idx: '" + labels_path + "'");
  return Dataset::from_uint8(
      std::span<const std::uint8_t>(images.data.data(), static_cast<std::size_t>(count * features)),
      features, label_values, classes);
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

// Longest line a CSV file may have: far more than any real row (a 28x28 image is ~3 KiB), small
// enough that a file without line breaks cannot take unbounded memory.
constexpr std::size_t kMaxCsvLine = std::size_t(16) << 20;

// A field as an error message shows it: quoted, and cut short when long.
std::string shown(std::string_view f) {
  constexpr std::size_t kMax = 40;
  return "'" + std::string(f.substr(0, kMax)) + (f.size() > kMax ? "...'" : "'");
}

// The lines of a file, read in chunks; a line longer than kMaxCsvLine is a DataError.
class LineReader {
 public:
  explicit LineReader(const std::string& path)
      : file_(path, "load_csv"),
        chunk_(
            static_cast<std::size_t>(std::clamp<std::uint64_t>(file_.size() + 1, 4096, kChunk))) {}
  bool next(std::string_view& line, std::int64_t line_no) {
    for (;;) {
      const std::size_t nl = buf_.find('\n', pos_);
      if (nl != std::string::npos && nl - pos_ <= kMaxCsvLine) {
        line = std::string_view(buf_).substr(pos_, nl - pos_);
        pos_ = nl + 1;
        return true;
      }
      if (buf_.size() - pos_ > kMaxCsvLine) {
        throw DataError("'" + file_.path() + "' line " + std::to_string(line_no) +
                        ": longer than " + std::to_string(kMaxCsvLine) +
                        " bytes, the longest line a CSV file may have");
      }
      if (eof_) {
        if (pos_ == buf_.size()) return false;
        line = std::string_view(buf_).substr(pos_);
        pos_ = buf_.size();
        return true;
      }
      buf_.erase(0, pos_);
      pos_ = 0;
      const std::size_t old = buf_.size();
      buf_.resize(old + chunk_);
      const std::size_t got = file_.read(buf_.data() + old, chunk_);
      buf_.resize(old + got);
      eof_ = got == 0;
    }
  }

 private:
  static constexpr std::size_t kChunk = std::size_t(1) << 20;
  detail::InputFile file_;
  std::size_t chunk_;  // the file's size when smaller than kChunk: small files are common
  std::string buf_;
  std::size_t pos_ = 0;
  bool eof_ = false;
};

}  // namespace

Dataset load_csv(const std::string& path, CsvOptions options) {
  if (options.classes < 0 || options.limit < 0) {
    throw ArgumentError("load_csv: classes and limit must be >= 0, got " +
                        std::to_string(options.classes) + " and " + std::to_string(options.limit));
  }
  if (options.delimiter == '\n' || options.delimiter == '\r' || options.delimiter == '"') {
    throw ArgumentError("load_csv: delimiter: a line break or quote cannot separate fields");
  }
  LineReader in(path);
  std::string_view line;
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
        s += " (" + shown(names[static_cast<std::size_t>(col)]) + ")";
    }
    return s;
  };
  bool first = true;
  while (in.next(line, line_no + 1)) {
    ++line_no;
    // A UTF-8 byte-order mark (as spreadsheet programs write) is not part of the first field.
    if (line_no == 1 && line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);
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
          for (const std::string& n : names) {
            all += (all.empty() ? "" : ", ") + n;
            if (all.size() > 400) {
              all += ", ...";
              break;
            }
          }
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
        throw DataError(where(c) + ": " + shown(f) + " is not a number");
      }
      if (!std::isfinite(v) || std::fabs(v) > std::numeric_limits<float>::max()) {
        throw DataError(where(c) + ": " + shown(f) +
                        " is not a finite float; NaN and infinite values are not allowed");
      }
      if (c == label_col) {
        if (options.regression) {
          targets.push_back(static_cast<float>(v));
        } else {
          if (v != std::floor(v) || v < 0 || v > std::numeric_limits<std::int32_t>::max()) {
            throw DataError(where(c) + ": label " + shown(f) +
                            " is not a class index (an integer >= 0)");
          }
          if (options.classes > 0 && v >= static_cast<double>(options.classes)) {
            throw DataError(where(c) + ": label " + std::string(f.substr(0, 40)) +
                            " is outside [0, " + std::to_string(options.classes) +
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
  if (samples == 0) throw DataError("load_csv: '" + path + "' holds no samples (an empty dataset)");
  if (options.regression) return Dataset::from_floats(features, columns - 1, targets, 1);
  std::int64_t classes = options.classes;
  if (classes == 0) classes = inferred_classes(labels, "load_csv: '" + path + "'");
  return Dataset::from_floats(features, columns - 1, labels, classes);
}

}  // namespace descent
