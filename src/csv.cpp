// The CSV loader: a header detected or declared, the label or target column by name or index,
// every value a finite number, lines bounded.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

#include "descent/data.hpp"
#include "descent/error.hpp"
#include "input_file.hpp"
#include "labels.hpp"

namespace descent {

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
  if (classes == 0) classes = detail::inferred_classes(labels, "load_csv: '" + path + "'");
  return Dataset::from_floats(features, columns - 1, labels, classes);
}

}  // namespace descent
