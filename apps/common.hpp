// What the train and eval commands share: device choice, dataset options and loading, and the
// checks of input and output paths made before any work starts.
#pragma once

#include <charconv>
#include <cmath>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "descent/descent.hpp"
#include "descent/output.hpp"
#include "options.hpp"

namespace descent::app {

inline const char* kDefaultDataDir = "/usr/share/datasets/fashion-mnist";

// The dataset options (IDX or CSV, limits, classes).
struct DataArgs {
  std::string data = kDefaultDataDir;
  std::string train_images, train_labels, train_csv;
  std::string test_images, test_labels, test_csv;
  std::string label_column, csv_header = "auto";
  bool regression = false;
  std::int64_t classes = 0, limit = 0, test_limit = 0;
};

// --device, --threads, --precision.
struct DeviceArgs {
  std::string device = "auto";
  std::int64_t threads = 0;
  bool force_threads = false;
  std::string precision = "fp32";
};

void add_data_options(Parser& p, DataArgs& d, bool with_train);
void add_device_options(Parser& p, DeviceArgs& d);

// UsageError for a combination that cannot mean anything: CSV and IDX paths together, half of an
// images/labels pair, --regression (or another CSV-only option) with IDX data; and --threads
// above 4 x the cores without --force-threads.
void check_data_options(const Parser& p, const DataArgs& d, bool with_train);
void check_device_options(const DeviceArgs& d);

// --device auto|cpu|cuda|cuda:N and --threads, --precision; DeviceError when the device is
// missing. Rank local_rank of the local_size ranks on a node (under mpirun) takes GPU local_rank
// modulo the GPUs there for auto and cuda, and its share of the cores when --threads is 0.
Context make_context(const DeviceArgs& d, int local_rank = 0, int local_size = 1);
// The model options --precision implies (bf16 storage, or fp32).
MlpOptions mlp_options(const DeviceArgs& d);

// Inside a catch block: rethrows the descent::Error being handled, of the same kind, with the
// option whose path (of `inputs`, (option, path) pairs) its message names put in front
// ("--train-images: load_idx: ..."), or unchanged when it names none.
[[noreturn]] void rethrow_naming_option(
    const std::vector<std::pair<std::string, std::string>>& inputs);

// Loads the training or test set. classes: required class count (0: from data).
Dataset load_train(const DataArgs& d);
Dataset load_test(const DataArgs& d, std::int64_t classes);
bool has_test_data(const DataArgs& d);

// The files a command will read, as (option, path): the IDX/CSV files (those --data implies
// included) that exist.
std::vector<std::pair<std::string, std::string>> input_files(const DataArgs& d, bool with_train);

// "1 epoch", "3 epochs": a count and its noun, in the plural (noun + "s" unless given) when the
// count is not 1.
std::string counted(std::int64_t n, const std::string& noun, const std::string& plural = "");

// A CSV column as an option names it (--label-column, --drop-column): digits are a 0-based
// index, anything else a header name. For csv_column_index (descent/data.hpp).
struct ColumnChoice {
  std::string name;         // empty: by index
  std::int64_t index = -1;  // -1 (the last column) when by name, unused then
};
ColumnChoice column_choice(const char* option, const std::string& text);

// A number stored in the checkpoint's metadata (written by descent train); a checkpoint written
// by other code may hold anything there, so a bad value is a DataError naming it.
template <class T>
T metadata_number(const Checkpoint& ck, const std::string& path, const char* key,
                  const std::string& fallback) {
  const std::string text = ck.get(key, fallback);
  T v{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() ||
      (std::is_floating_point_v<T> && !std::isfinite(static_cast<double>(v)))) {
    throw DataError("the model '" + path + "': metadata '" + key + "' is '" + text +
                    "', expected a finite number");
  }
  return v;
}

// How the command describes a model's scaling: "none", "3 features standardised, the target
// standardised (mean 12.5, sd 40.1)".
std::string describe_scaling(const Scaling& s);
// Whether two scalings are the same, bit for bit.
bool same_scaling(const Scaling& a, const Scaling& b);

// How the command names a device for the user: "cpu (oneDNN ... dnnl_sgemm, 2 threads)"; with
// bf16, also what runs the CPU's bf16 products (its bf16 units, or fp32 on widened copies).
std::string describe_device(const Context& ctx, bool bf16);

// An output of a command: the option that names it and its path ("" when not wanted).
struct Output {
  std::string option;
  std::string path;
  OutputKind kind = OutputKind::file;
};

// Before any work: each output is refused when it is the same file as an input or as another
// output (UsageError), and its location is proven writable by creating and removing a temporary
// file there (IoError). Fills in each output's kind.
void check_outputs(std::vector<Output*> outputs,
                   const std::vector<std::pair<std::string, std::string>>& inputs);

}  // namespace descent::app
