// Data: a Dataset in host memory, the IDX and CSV loaders, and BatchLoader, which feeds
// (optionally shuffled) mini-batches to a device.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "descent/buffer.hpp"
#include "descent/communicator.hpp"
#include "descent/context.hpp"
#include "descent/export.h"
#include "descent/scaling.hpp"

DESCENT_API_BEGIN

namespace descent {

// Samples in host memory: features [size, features] stored as uint8 (e.g. pixels; the value a
// model sees is byte * scale + shift) or as float, plus either integer class labels in
// [0, classes) or float regression targets [size, target_count]. Row-major, one sample a row.
class Dataset {
 public:
  Dataset() = default;

  // Copies user memory. Throws DataError for an empty dataset, sizes that disagree, a label
  // outside [0, classes) or a non-finite value; ArgumentError for classes < 1.
  static Dataset from_uint8(std::span<const std::uint8_t> features, std::int64_t feature_count,
                            std::span<const std::int32_t> labels, std::int64_t classes,
                            float scale = 1.0f / 255.0f, float shift = 0.0f);
  static Dataset from_floats(std::span<const float> features, std::int64_t feature_count,
                             std::span<const std::int32_t> labels, std::int64_t classes);
  static Dataset from_floats(std::span<const float> features, std::int64_t feature_count,
                             std::span<const float> targets, std::int64_t target_count);

  std::int64_t size() const { return size_; }
  std::int64_t features() const { return features_; }
  // Number of classes, or 0 for a regression dataset.
  std::int64_t classes() const { return classes_; }
  // Floats a target row holds (0 for a classification dataset).
  std::int64_t target_count() const { return target_count_; }
  bool has_labels() const { return classes_ > 0; }
  bool is_uint8() const { return !u8_.empty(); }
  float scale() const { return scale_; }
  float shift() const { return shift_; }
  // Changes the byte-to-float map of a uint8 dataset (e.g. to standardise); ArgumentError for a
  // float dataset or non-finite values.
  void set_normalization(float scale, float shift);
  // Mean and standard deviation over all feature values as the model sees them.
  std::pair<double, double> feature_stats() const;
  // Applies `s` in place to a float dataset's features and, for a regression dataset, its
  // targets: the data a model with that scaling trains on (standardization(*this) gives the
  // usual one). ArgumentError for a byte dataset or a scaling of other sizes; DataError when a
  // scaled value is not finite (nothing is changed then).
  void apply(const Scaling& s);

  std::span<const std::uint8_t> uint8_features() const { return u8_; }
  std::span<const float> float_features() const { return f32_; }
  std::span<const std::int32_t> labels() const { return labels_; }
  std::span<const float> targets() const { return targets_; }
  // Whether every target lies in [0, 1] (so that binary cross-entropy may train on them).
  bool targets_in_unit() const { return targets_in_unit_; }

  // Writes sample i's features, as the model sees them, to out[0 .. features).
  void copy_features(std::int64_t i, float* out) const;
  // The first n samples (all when n <= 0 or n >= size()).
  Dataset head(std::int64_t n) const;

 private:
  std::int64_t size_ = 0, features_ = 0, classes_ = 0, target_count_ = 0;
  float scale_ = 1.0f, shift_ = 0.0f;
  bool targets_in_unit_ = false;
  std::vector<std::uint8_t> u8_;
  std::vector<float> f32_;
  std::vector<std::int32_t> labels_;
  std::vector<float> targets_;
};

struct IdxOptions {
  std::int64_t classes = 0;  // labels must lie in [0, classes); 0: max label + 1
  std::int64_t limit = 0;    // keep only the first `limit` samples; 0: all
};

// Loads an IDX image file (magic 0x00000803, uint8, [count, rows, cols]) and its IDX label file
// (magic 0x00000801, [count]), as MNIST and Fashion-MNIST ship them. Either file may be
// gzip-compressed (read through zlib) or raw. Pixels map to [0, 1] (scale 1/255). Throws IoError
// for a missing or unreadable file or a path that is not a regular file (a folder, a FIFO), and
// DataError (naming the file) for a truncated or corrupt gzip stream, data after its end, a wrong
// magic number, dimensions that disagree with the data or exceed 4 GiB in all, counts that differ
// or a label out of range. The header's dimensions are checked before anything is allocated, and
// a gzip file is inflated no further than its header declares.
Dataset load_idx(const std::string& images_path, const std::string& labels_path,
                 IdxOptions options = {});

// The images of an IDX image file alone, read and checked as load_idx reads them: what a model
// predicts on. `limit` keeps the first `limit` images (0: all); ArgumentError when negative.
struct IdxImages {
  std::int64_t count = 0, features = 0;  // images, and the bytes of one (rows x columns)
  std::vector<std::uint8_t> pixels;      // [count, features], row-major
};
IdxImages load_idx_images(const std::string& path, std::int64_t limit = 0);

struct CsvOptions {
  enum class Header { detect, yes, no };
  // detect: the first row is a header when any of its fields is not a number.
  Header header = Header::detect;
  // The label (or regression target) column: by name (needs a header) when label_name is set,
  // else by 0-based index; a negative index counts from the end (-1: the last column).
  std::string label_name;
  std::int64_t label_index = -1;
  // false: the label column holds integer classes; true: it holds a float regression target.
  bool regression = false;
  std::int64_t classes = 0;  // classification: labels must lie in [0, classes); 0: max + 1
  char delimiter = ',';
  std::int64_t limit = 0;  // keep only the first `limit` samples; 0: all
};

// Loads a CSV file of numbers, one sample per line; every column but the label column is a
// feature. A UTF-8 byte-order mark at the start is skipped. Throws IoError for a missing or
// unreadable file or a path that is not a regular file, and DataError naming the line and column
// for a field that is not a number, a NaN or infinity, a ragged row, a bad label, a line longer
// than 16 MiB or an empty file.
Dataset load_csv(const std::string& path, CsvOptions options = {});

// Every column of a CSV file of numbers, as floats: the inputs of a model to predict on.
struct CsvTable {
  std::int64_t rows = 0, columns = 0;
  std::vector<std::string> names;  // the header row's fields; empty when the file has none
  std::vector<float> values;       // [rows, columns], row-major
};

// Loads a CSV file as load_csv does (options.header, delimiter and limit apply; the label options
// do not: every column is kept), with the same errors; one column is enough.
CsvTable load_csv_table(const std::string& path, CsvOptions options = {});

// The 0-based index of one column of a CSV file (`path` only names it in messages) with these
// header names (empty: no header row) and this many columns, chosen by `name` when it is not
// empty, else by `index` (negative: from the end, -1 the last). load_csv picks its label column
// this way. Throws ArgumentError naming what is wrong: a name without a header row, a name not in
// it (the columns listed), an index outside the columns.
std::int64_t csv_column_index(const std::vector<std::string>& names, std::int64_t columns,
                              const std::string& name, std::int64_t index, const std::string& path);

// One mini-batch on a device: x [rows, features], and labels [rows] (classification) or
// targets [rows, target_count] (regression).
struct Batch {
  MatrixView<const float> x{};
  VectorView<const std::int32_t> labels{};
  MatrixView<const float> targets{};
  // Data parallel: the rows of the global batch this batch is one rank's shard of (a sharded
  // BatchLoader sets it; a shard may hold 0 rows when the global batch has fewer rows than there
  // are ranks). 0: x.rows on one process; on N ranks, N · x.rows (every rank holds as many).
  std::int64_t global_rows = 0;
  // What is already known of the values (a BatchLoader sets both from its Dataset, checked when
  // it was made): the labels lie in [0, labels_below) (0: unknown); every target lies in [0, 1].
  // Trainer::step and evaluate scan what is not known (binary cross-entropy needs targets in
  // [0, 1], cross-entropy labels below the model's outputs); on a GPU a scan reads its answer
  // back, so it waits for the work queued before it.
  std::int64_t labels_below = 0;
  bool targets_in_unit = false;
  std::int64_t rows() const { return x.rows; }
};

struct LoaderOptions {
  std::int64_t batch_size = 128;
  bool shuffle = true;
  std::uint64_t seed = 0;
  bool drop_last = false;  // false: the last batch of an epoch may hold fewer rows
  // GPU only: a dataset whose device copy takes more bytes than this streams from pinned host
  // memory through double buffers instead of staying resident. 0: half the free device memory.
  std::size_t device_budget = 0;
};

// Cuts a Dataset into mini-batches on the Context's device. The order of epoch e is a seeded
// permutation that depends only on (seed, e), so a resumed run sees the same batches.
//
// On the CPU each batch is gathered and converted into one buffer owned by the loader. On a GPU
// a dataset that fits the budget is copied once (uint8 stays uint8) and each batch is gathered
// and normalised by a kernel; a larger one streams through pinned host buffers on a copy stream,
// overlapped with compute. Either way next() allocates nothing and the batch buffers keep their
// addresses, so a captured training step can replay on them.
//
// Data parallel (a Communicator of N ranks): every rank holds the whole dataset and draws the
// same permutation; batch_size is the global batch, and each rank's next() gathers only its
// slice of it (shard_of: consecutive rows, sizes differing by at most one), with
// Batch::global_rows set to the global batch's rows. The N shards of a batch are exactly the
// rows one process would train on in that batch.
//
// The Dataset must outlive the loader; the loader holds a handle of the Context, which may go
// first. A batch stays valid until the next call of next() or start_epoch().
class BatchLoader {
 public:
  // Throws ArgumentError for batch_size < 1 and DataError for an empty dataset.
  BatchLoader(const Context& ctx, const Dataset& data, LoaderOptions options = {});
  // Sharded over the ranks of `comm`. Collective: every rank calls it, and ArgumentError (on
  // every rank) names the ranks whose dataset shape or options differ from rank 0's.
  BatchLoader(const Context& ctx, const Dataset& data, LoaderOptions options,
              const Communicator& comm);
  BatchLoader(BatchLoader&&) noexcept;
  BatchLoader& operator=(BatchLoader&&) noexcept;
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;
  ~BatchLoader();

  const Dataset& dataset() const;
  const Context& context() const;
  const LoaderOptions& options() const;
  const Communicator& communicator() const;
  // The global batch size (each rank's batches hold about batch_size() / ranks rows).
  std::int64_t batch_size() const;
  // Batches in one epoch, and the samples they cover.
  std::int64_t batches() const;
  std::int64_t samples_per_epoch() const;
  // "cpu", "resident" or "streaming": how batches reach the device.
  const char* mode() const;

  // Begins epoch `epoch` at batch `first_batch` (to resume in the middle of an epoch).
  void start_epoch(std::int64_t epoch, std::int64_t first_batch = 0);
  // The next batch of the current epoch; false when the epoch is over.
  bool next(Batch& batch);

  // for (const Batch& b : loader.epoch(e)) { ... }
  class Range {
   public:
    class iterator {
     public:
      using iterator_category = std::input_iterator_tag;
      using value_type = Batch;
      using difference_type = std::ptrdiff_t;
      using pointer = const Batch*;
      using reference = const Batch&;
      iterator() = default;
      explicit iterator(BatchLoader* loader) : loader_(loader) { advance(); }
      const Batch& operator*() const { return batch_; }
      const Batch* operator->() const { return &batch_; }
      iterator& operator++() {
        advance();
        return *this;
      }
      void operator++(int) { advance(); }
      friend bool operator==(const iterator& a, const iterator& b) {
        return a.loader_ == b.loader_;
      }

     private:
      void advance() {
        if (loader_ != nullptr && !loader_->next(batch_)) loader_ = nullptr;
      }
      BatchLoader* loader_ = nullptr;
      Batch batch_{};
    };
    explicit Range(BatchLoader& loader) : loader_(&loader) {}
    iterator begin() { return iterator(loader_); }
    iterator end() { return iterator(); }

   private:
    BatchLoader* loader_;
  };
  Range epoch(std::int64_t epoch, std::int64_t first_batch = 0) {
    start_epoch(epoch, first_batch);
    return Range(*this);
  }

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace descent

DESCENT_API_END
