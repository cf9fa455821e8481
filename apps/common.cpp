// Device choice, dataset options and loading, and the output checks shared by the train and eval
// commands.
#include "common.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <thread>

namespace descent::app {

namespace {

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// DIR/name.gz, or DIR/name when only the uncompressed file is there.
std::string in_dir(const std::string& dir, const std::string& name) {
  const std::string gz = dir + "/" + name + ".gz";
  if (exists(gz) || !exists(dir + "/" + name)) return gz;
  return dir + "/" + name;
}

}  // namespace

ColumnChoice column_choice(const char* option, const std::string& text) {
  ColumnChoice c;
  if (text.find_first_not_of("0123456789") == std::string::npos) {
    c.index = parse_integer_list(option, text, 0, 1 << 30).at(0);
  } else {
    c.name = text;
  }
  return c;
}

namespace {

CsvOptions csv_options(const DataArgs& d, std::int64_t classes) {
  CsvOptions c;
  if (d.csv_header == "yes")
    c.header = CsvOptions::Header::yes;
  else if (d.csv_header == "no")
    c.header = CsvOptions::Header::no;
  if (!d.label_column.empty()) {
    const ColumnChoice choice = column_choice("label-column", d.label_column);
    c.label_name = choice.name;
    c.label_index = choice.index;
  }
  c.regression = d.regression;
  c.classes = classes;
  return c;
}

unsigned cores() {
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<unsigned>(n) : std::max(1u, std::thread::hardware_concurrency());
}

// The IDX files of one split: the explicit pair, or --data's.
std::pair<std::string, std::string> idx_pair(const DataArgs& d, bool train) {
  const std::string& images = train ? d.train_images : d.test_images;
  const std::string& labels = train ? d.train_labels : d.test_labels;
  const char* prefix = train ? "train" : "t10k";
  return {images.empty() ? in_dir(d.data, std::string(prefix) + "-images-idx3-ubyte") : images,
          labels.empty() ? in_dir(d.data, std::string(prefix) + "-labels-idx1-ubyte") : labels};
}

}  // namespace

void rethrow_naming_option(const std::vector<std::pair<std::string, std::string>>& inputs) {
  try {
    throw;
  } catch (const Error& e) {
    const std::string what = e.what();
    for (const auto& [option, path] : inputs) {
      if (path.empty() || what.find(path) == std::string::npos) continue;
      const std::string named = option + ": " + what;
      // The same kind of error, so that the exit status and any handler stay as they were.
      if (dynamic_cast<const IoError*>(&e) != nullptr) throw IoError(named);
      if (dynamic_cast<const DataError*>(&e) != nullptr) throw DataError(named);
      if (dynamic_cast<const OutOfMemory*>(&e) != nullptr) throw OutOfMemory(named);
      if (dynamic_cast<const ArgumentError*>(&e) != nullptr) throw ArgumentError(named);
      break;
    }
    throw;
  }
}

namespace {

// The input options behind a dataset load, as (option, path), for rethrow_naming_option.
std::vector<std::pair<std::string, std::string>> data_inputs(const DataArgs& d, bool train) {
  const std::string& csv = train ? d.train_csv : d.test_csv;
  if (!csv.empty()) return {{train ? "--train-csv" : "--test-csv", csv}};
  const auto [images, labels] = idx_pair(d, train);
  const std::string& given_images = train ? d.train_images : d.test_images;
  const std::string& given_labels = train ? d.train_labels : d.test_labels;
  return {{given_labels.empty() ? "--data"
           : train              ? "--train-labels"
                                : "--test-labels",
           labels},
          {given_images.empty() ? "--data"
           : train              ? "--train-images"
                                : "--test-images",
           images}};
}

}  // namespace

void add_data_options(Parser& p, DataArgs& d, bool with_train) {
  p.group("data");
  p.input("data", d.data, "DIR",
          "folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (MNIST layout)");
  if (with_train) {
    p.input("train-images", d.train_images, "PATH",
            "IDX training images (overrides --data; needs --train-labels)");
    p.input("train-labels", d.train_labels, "PATH",
            "IDX training labels (overrides --data; needs --train-images)");
    p.input("train-csv", d.train_csv, "PATH", "CSV training set instead of IDX files");
  }
  p.input("test-images", d.test_images, "PATH",
          "IDX test images (overrides --data; needs --test-labels)");
  p.input("test-labels", d.test_labels, "PATH",
          "IDX test labels (overrides --data; needs --test-images)");
  p.input("test-csv", d.test_csv, "PATH", "CSV test set instead of IDX files");
  p.text("label-column", d.label_column, "NAME|INDEX",
         "CSV only: label/target column by header name or 0-based index (default: last)");
  p.choice("csv-header", d.csv_header, {"auto", "yes", "no"},
           "CSV only: whether the first row names the columns");
  p.flag("regression", d.regression,
         with_train ? "CSV only: the label column is a float regression target (use --loss mse)"
                    : "CSV only: the label column is a float regression target (not needed: the "
                      "model says whether it was trained for regression)");
  p.integer("classes", d.classes, 0, 1 << 24,
            "number of classes; labels must be < N (0: largest label + 1)");
  if (with_train) {
    p.integer("limit", d.limit, 0, std::numeric_limits<std::int64_t>::max(),
              "use only the first N training samples (0: all)");
  }
  p.integer("test-limit", d.test_limit, 0, std::numeric_limits<std::int64_t>::max(),
            "use only the first N test samples (0: all)");
}

void add_device_options(Parser& p, DeviceArgs& d) {
  p.group("device");
  p.text("device", d.device, "auto|cpu|cuda|cuda:N",
         "where to run; auto = cuda:0 when a GPU is present, else cpu (under mpirun, auto and "
         "cuda give each rank on a node its own GPU in turn)");
  const std::string limit = std::to_string(4 * cores());
  p.integer("threads", d.threads, 0, 1 << 16,
            "CPU threads (0: all cores; under mpirun, the node's cores shared among its ranks); at "
            "most 4 x cores (" +
                limit + " here) unless --force-threads");
  p.flag("force-threads", d.force_threads, "allow --threads above 4 x cores");
  p.choice("precision", d.precision, {"fp32", "tf32", "bf16"},
           "fp32; tf32: GPU matrix products on TF32 tensor cores; bf16: bf16 activations and "
           "weight copy with fp32 master weights (the CPU computes bf16 products in fp32)");
}

void check_data_options(const Parser& p, const DataArgs& d, bool with_train) {
  // The first CSV and the first IDX option given, to name both in the message.
  std::string csv, idx;
  for (const char* o : {"train-csv", "test-csv"}) {
    if (csv.empty() && p.given(o)) csv = std::string("--") + o;
  }
  for (const char* o : {"train-images", "train-labels", "test-images", "test-labels", "data"}) {
    if (idx.empty() && p.given(o)) idx = std::string("--") + o;
  }
  if (!csv.empty() && !idx.empty()) {
    throw UsageError(csv + " and " + idx +
                     " given together: CSV and IDX data cannot be mixed; give --train-csv/"
                     "--test-csv, or IDX files (--data, or --train-images/--train-labels/"
                     "--test-images/--test-labels)");
  }
  const auto pair = [&](const char* images, const char* labels) {
    if (p.given(images) != p.given(labels)) {
      const std::string has = p.given(images) ? images : labels;
      const std::string lacks = p.given(images) ? labels : images;
      throw UsageError("--" + has + " given without --" + lacks +
                       ": IDX images and labels come in pairs; give both");
    }
  };
  if (with_train) pair("train-images", "train-labels");
  pair("test-images", "test-labels");
  // train reads CSV when --train-csv is given; eval reads only a test set.
  const bool csv_data = with_train ? !d.train_csv.empty() : !d.test_csv.empty();
  if (!csv_data) {
    if (with_train && !d.test_csv.empty()) {
      throw UsageError(
          "--test-csv given with IDX training data (--data by default): CSV and IDX data cannot "
          "be mixed; give --train-csv too, or IDX test files");
    }
    for (const char* o : {"regression", "label-column", "csv-header"}) {
      if (p.given(o)) {
        throw UsageError(std::string("--") + o + " applies to CSV data only, but the " +
                         (with_train ? "training" : "test") +
                         " data here is IDX (class labels); give --" +
                         (with_train ? "train" : "test") + "-csv PATH, or drop --" + o);
      }
    }
  }
}

void check_device_options(const DeviceArgs& d) {
  const std::int64_t limit = 4 * static_cast<std::int64_t>(cores());
  if (d.threads > limit && !d.force_threads) {
    throw UsageError("--threads: got " + std::to_string(d.threads) + ", expected at most " +
                     std::to_string(limit) + " (4 x the " + std::to_string(cores()) +
                     " cores here): more threads than that only slow training down; use "
                     "--threads 0 (all cores), or add --force-threads");
  }
}

MlpOptions mlp_options(const DeviceArgs& d) {
  MlpOptions mo;
  mo.precision = d.precision == "bf16" ? Precision::bf16 : Precision::fp32;
  return mo;
}

Context make_context(const DeviceArgs& d, int local_rank, int local_size) {
  const std::string& text = d.device;
  Device device = Device::cpu();
  // Several ranks on a node take its GPUs in turn ("cuda:N" names one for every rank).
  const int count_here = text == "auto" || text == "cuda" ? cuda_device_count() : 0;
  if (text == "auto") {
    device = count_here > 0 ? Device::cuda(local_rank % count_here) : Device::cpu();
  } else if (text == "cuda" && count_here > 0) {
    device = Device::cuda(local_rank % count_here);
  } else {
    try {
      device = Device::parse(text);
    } catch (const ArgumentError& e) {
      throw UsageError(std::string("--device: ") + e.what());
    }
  }
  if (device.is_cuda()) {
    const int count = cuda_device_count();
    if (!built_with_cuda()) {
      throw DeviceError("--device " + text +
                        ": this descent was built without CUDA; use --device cpu");
    }
    if (device.index >= count) {
      throw DeviceError(
          "--device " + text + ": no such GPU (" + std::to_string(count) +
          " CUDA device(s) found); use --device cpu" +
          (count > 0 ? " or cuda:0 .. cuda:" + std::to_string(count - 1) : std::string()));
    }
  }
  ContextOptions co;
  co.threads = static_cast<int>(d.threads);
  if (co.threads == 0 && local_size > 1 && device.is_cpu()) {
    // The node's cores shared among its ranks, rather than every rank taking all of them.
    co.threads = std::max(1, Context(Device::cpu()).threads() / local_size);
  }
  if (d.precision == "tf32") co.math = MathMode::tf32;
  return Context(device, co);
}

bool has_test_data(const DataArgs& d) {
  if (!d.test_csv.empty() || !d.test_images.empty()) return true;
  if (!d.train_csv.empty()) return false;
  return exists(idx_pair(d, false).first);
}

Dataset load_train(const DataArgs& d) try {
  if (!d.train_csv.empty()) {
    CsvOptions c = csv_options(d, d.classes);
    c.limit = d.limit;
    return load_csv(d.train_csv, c);
  }
  const auto [images, labels] = idx_pair(d, true);
  return load_idx(images, labels, IdxOptions{d.classes, d.limit});
} catch (const Error&) {
  rethrow_naming_option(data_inputs(d, true));
}

Dataset load_test(const DataArgs& d, std::int64_t classes) try {
  if (!d.test_csv.empty()) {
    CsvOptions c = csv_options(d, classes);
    c.limit = d.test_limit;
    return load_csv(d.test_csv, c);
  }
  const auto [images, labels] = idx_pair(d, false);
  return load_idx(images, labels, IdxOptions{classes, d.test_limit});
} catch (const Error&) {
  rethrow_naming_option(data_inputs(d, false));
}

std::vector<std::pair<std::string, std::string>> input_files(const DataArgs& d, bool with_train) {
  std::vector<std::pair<std::string, std::string>> v;
  const auto add = [&](const std::string& option, const std::string& path) {
    if (!path.empty() && exists(path)) v.emplace_back(option, path);
  };
  if (with_train) {
    if (!d.train_csv.empty()) {
      add("--train-csv", d.train_csv);
    } else {
      const auto [images, labels] = idx_pair(d, true);
      add(d.train_images.empty() ? "--data" : "--train-images", images);
      add(d.train_labels.empty() ? "--data" : "--train-labels", labels);
    }
  }
  if (!d.test_csv.empty()) {
    add("--test-csv", d.test_csv);
  } else if (!with_train || d.train_csv.empty()) {
    const auto [images, labels] = idx_pair(d, false);
    add(d.test_images.empty() ? "--data" : "--test-images", images);
    add(d.test_labels.empty() ? "--data" : "--test-labels", labels);
  }
  return v;
}

std::string counted(std::int64_t n, const std::string& noun, const std::string& plural) {
  std::string s = std::to_string(n);
  s += ' ';
  if (n == 1) {
    s += noun;
  } else if (plural.empty()) {
    s += noun;
    s += 's';
  } else {
    s += plural;
  }
  return s;
}

std::string describe_device(const Context& ctx, bool bf16) {
  if (ctx.device().is_cuda()) return ctx.device().str();
  std::string s = "cpu (";
  s += cpu_gemm_name();
  if (bf16) {
    s += "; bf16 products: ";
    s += cpu_bf16_gemm_name();
  }
  s += ", ";
  s += counted(ctx.threads(), "thread");
  s += ')';
  return s;
}

void check_outputs(std::vector<Output*> outputs,
                   const std::vector<std::pair<std::string, std::string>>& inputs) {
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const Output& o = *outputs[i];
    if (o.path.empty()) continue;
    for (const auto& [option, path] : inputs) {
      if (same_file(o.path, path)) {
        throw UsageError(o.option + " " + o.path + ": the same file as the input " + option + " " +
                         path +
                         "; writing it would destroy the input; choose another "
                         "output path");
      }
    }
    for (std::size_t j = 0; j < i; ++j) {
      const Output& other = *outputs[j];
      if (!other.path.empty() && same_file(o.path, other.path)) {
        throw UsageError(o.option + " " + o.path + ": the same file as " + other.option + " " +
                         other.path + "; each output needs its own path");
      }
    }
  }
  for (Output* o : outputs) {
    if (!o->path.empty()) o->kind = check_output_location(o->path, o->option);
  }
}

std::string describe_scaling(const Scaling& s) {
  const auto shown = [](float v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4g", static_cast<double>(v));
    return std::string(buf);
  };
  if (s.empty()) return "none";
  std::string out;
  if (s.scales_inputs()) {
    out = counted(static_cast<std::int64_t>(s.input_mean.size()), "feature") + " standardised";
  }
  if (s.scales_outputs()) {
    if (!out.empty()) out += ", ";
    if (s.output_mean.size() == 1) {
      out += "the target standardised (mean " + shown(s.output_mean[0]) + ", sd " +
             shown(s.output_scale[0]) + ")";
    } else {
      out += counted(static_cast<std::int64_t>(s.output_mean.size()), "target") + " standardised";
    }
  }
  return out;
}

bool same_scaling(const Scaling& a, const Scaling& b) {
  const auto same = [](const std::vector<float>& x, const std::vector<float>& y) {
    return x.size() == y.size() &&
           (x.empty() || std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0);
  };
  return same(a.input_mean, b.input_mean) && same(a.input_scale, b.input_scale) &&
         same(a.output_mean, b.output_mean) && same(a.output_scale, b.output_scale);
}

}  // namespace descent::app
