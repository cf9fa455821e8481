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

// The rows of a CSV file of numbers: the first non-empty row is a header (declared, or detected
// when one of its fields is not a number) or the first data row; every data row has the first
// row's field count and only finite float values.
class CsvRows {
 public:
  CsvRows(const std::string& path, const CsvOptions& options, std::int64_t min_columns,
          const char* expected)
      : path_(path), delimiter_(options.delimiter), in_((check(options), path)) {
    if (!read_fields())
      throw DataError("load_csv: '" + path + "' holds no samples (an empty dataset)");
    columns_ = static_cast<std::int64_t>(fields_.size());
    if (columns_ < min_columns) {
      throw DataError(where(-1) + ": expected at least " + std::to_string(min_columns) + " column" +
                      (min_columns == 1 ? "" : "s") + " (" + expected + "), got " +
                      std::to_string(columns_) + "; is the delimiter '" +
                      std::string(1, delimiter_) + "'?");
    }
    bool header = options.header == CsvOptions::Header::yes;
    if (options.header == CsvOptions::Header::detect) {
      double v;
      for (std::string_view f : fields_) header = header || !parse_number(f, v);
    }
    if (header) {
      for (std::string_view f : fields_) names_.emplace_back(f);
    }
    pending_ = !header;
  }

  const std::string& path() const { return path_; }
  std::int64_t columns() const { return columns_; }
  // The header's fields; empty when the file has no header row.
  const std::vector<std::string>& names() const { return names_; }

  // The next data row's values, false after the last; DataError naming the line and column for
  // a ragged row or a field that is not a finite float.
  bool next(std::vector<double>& values) {
    if (!pending_ && !read_fields()) return false;
    pending_ = false;
    if (static_cast<std::int64_t>(fields_.size()) != columns_) {
      throw DataError(where(-1) + ": expected " + std::to_string(columns_) + " fields, got " +
                      std::to_string(fields_.size()));
    }
    values.resize(fields_.size());
    for (std::int64_t c = 0; c < columns_; ++c) {
      double& v = values[static_cast<std::size_t>(c)];
      const std::string_view f = field(c);
      if (!parse_number(f, v)) throw DataError(where(c) + ": " + shown(f) + " is not a number");
      if (!std::isfinite(v) || std::fabs(v) > std::numeric_limits<float>::max()) {
        throw DataError(where(c) + ": " + shown(f) +
                        " is not a finite float; NaN and infinite values are not allowed");
      }
    }
    return true;
  }

  // Field `col` of the current row as written.
  std::string_view field(std::int64_t col) const { return fields_[static_cast<std::size_t>(col)]; }
  // "'PATH' line N, column C ('name')" for messages (the column left out when col < 0).
  std::string where(std::int64_t col) const {
    std::string s = "'" + path_ + "' line " + std::to_string(line_no_);
    if (col >= 0) {
      s += ", column " + std::to_string(col + 1);
      if (static_cast<std::size_t>(col) < names_.size())
        s += " (" + shown(names_[static_cast<std::size_t>(col)]) + ")";
    }
    return s;
  }

 private:
  // The options, before the file is opened: an ArgumentError comes before any IoError.
  static void check(const CsvOptions& options) {
    if (options.classes < 0 || options.limit < 0) {
      throw ArgumentError("load_csv: classes and limit must be >= 0, got " +
                          std::to_string(options.classes) + " and " +
                          std::to_string(options.limit));
    }
    if (options.delimiter == '\n' || options.delimiter == '\r' || options.delimiter == '"') {
      throw ArgumentError("load_csv: delimiter: a line break or quote cannot separate fields");
    }
  }

  // The next non-empty line's fields; false at the end of the file.
  bool read_fields() {
    std::string_view line;
    while (in_.next(line, line_no_ + 1)) {
      ++line_no_;
      // A UTF-8 byte-order mark (as spreadsheet programs write) is not part of the first field.
      if (line_no_ == 1 && line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);
      if (trim(line).empty()) continue;
      fields_ = split(line, delimiter_);
      return true;
    }
    return false;
  }

  std::string path_;
  char delimiter_;
  LineReader in_;
  std::int64_t line_no_ = 0, columns_ = 0;
  std::vector<std::string> names_;
  std::vector<std::string_view> fields_;  // views into in_'s buffer, valid until the next read
  bool pending_ = false;                  // the first row is data not yet handed out
};

}  // namespace

Dataset load_csv(const std::string& path, CsvOptions options) {
  CsvRows rows(path, options, 2, "features and a label");
  const std::int64_t columns = rows.columns();
  const std::vector<std::string>& names = rows.names();
  const std::int64_t label_col =
      csv_column_index(names, columns, options.label_name, options.label_index, path);
  std::vector<float> features, targets;
  std::vector<std::int32_t> labels;
  std::vector<double> values;
  std::int64_t samples = 0;
  while (rows.next(values)) {
    for (std::int64_t c = 0; c < columns; ++c) {
      const double v = values[static_cast<std::size_t>(c)];
      if (c != label_col) {
        features.push_back(static_cast<float>(v));
      } else if (options.regression) {
        targets.push_back(static_cast<float>(v));
      } else {
        const std::string_view f = rows.field(c);
        if (v != std::floor(v) || v < 0 || v > std::numeric_limits<std::int32_t>::max()) {
          throw DataError(rows.where(c) + ": label " + shown(f) +
                          " is not a class index (an integer >= 0)");
        }
        if (options.classes > 0 && v >= static_cast<double>(options.classes)) {
          throw DataError(rows.where(c) + ": label " + std::string(f.substr(0, 40)) +
                          " is outside [0, " + std::to_string(options.classes) +
                          ") (classes = " + std::to_string(options.classes) + ")");
        }
        labels.push_back(static_cast<std::int32_t>(v));
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

std::int64_t csv_column_index(const std::vector<std::string>& names, std::int64_t columns,
                              const std::string& name, std::int64_t index,
                              const std::string& path) {
  if (!name.empty()) {
    if (names.empty()) {
      throw ArgumentError("load_csv: column '" + name + "' is chosen by name but '" + path +
                          "' has no header row");
    }
    const auto it = std::find(names.begin(), names.end(), name);
    if (it == names.end()) {
      std::string all;
      for (const std::string& n : names) {
        all += (all.empty() ? "" : ", ") + n;
        if (all.size() > 400) {
          all += ", ...";
          break;
        }
      }
      throw ArgumentError("load_csv: no column named '" + name + "' in '" + path +
                          "' (columns: " + all + ")");
    }
    return it - names.begin();
  }
  const std::int64_t col = index < 0 ? columns + index : index;
  if (col < 0 || col >= columns) {
    throw ArgumentError("load_csv: column index " + std::to_string(index) + " is outside the " +
                        std::to_string(columns) + " columns of '" + path + "'");
  }
  return col;
}

CsvTable load_csv_table(const std::string& path, CsvOptions options) {
  CsvRows rows(path, options, 1, "a value");
  CsvTable t;
  t.columns = rows.columns();
  t.names = rows.names();
  std::vector<double> values;
  while (rows.next(values)) {
    for (const double v : values) t.values.push_back(static_cast<float>(v));
    ++t.rows;
    if (options.limit > 0 && t.rows >= options.limit) break;
  }
  if (t.rows == 0) throw DataError("load_csv: '" + path + "' holds no samples (an empty dataset)");
  return t;
}

}  // namespace descent
