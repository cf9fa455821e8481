// Device choice and dataset loading shared by the train and eval commands.
#include "common.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

namespace descent::app {

namespace {

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// DIR/name.gz, or DIR/name when only the uncompressed file is there.
std::string in_dir(const std::string& dir, const std::string& name) {
  const std::string gz = dir + "/" + name + ".gz";
  if (exists(gz) || !exists(dir + "/" + name)) return gz;
  return dir + "/" + name;
}

CsvOptions csv_options(const Options& o, std::int64_t classes) {
  CsvOptions c;
  const std::string header = o.str("csv-header");
  if (header == "yes")
    c.header = CsvOptions::Header::yes;
  else if (header == "no")
    c.header = CsvOptions::Header::no;
  else if (header != "auto")
    throw UsageError("--csv-header: expected auto, yes or no, got '" + header + "'");
  const std::string label = o.str("label-column");
  if (!label.empty()) {
    const bool digits = label.find_first_not_of("-0123456789") == std::string::npos;
    if (digits)
      c.label_index = o.integer("label-column");
    else
      c.label_name = label;
  }
  c.regression = o.flag("regression");
  c.classes = classes;
  return c;
}

std::int64_t limit_of(const Options& o, const char* name) {
  const std::int64_t n = o.integer(name);
  if (n < 0)
    throw UsageError(std::string("--") + name + ": must be >= 0, got " + std::to_string(n));
  return n;
}

}  // namespace

std::vector<OptionSpec> data_options(bool with_train) {
  std::vector<OptionSpec> v;
  v.push_back({"data", "DIR", kDefaultDataDir,
               "folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (MNIST layout)"});
  if (with_train) {
    v.push_back({"train-images", "PATH", "", "IDX training images (overrides --data)"});
    v.push_back({"train-labels", "PATH", "", "IDX training labels (overrides --data)"});
    v.push_back({"train-csv", "PATH", "", "CSV training set instead of IDX files"});
  }
  v.push_back({"test-images", "PATH", "", "IDX test images (overrides --data)"});
  v.push_back({"test-labels", "PATH", "", "IDX test labels (overrides --data)"});
  v.push_back({"test-csv", "PATH", "", "CSV test set instead of IDX files"});
  v.push_back({"label-column", "NAME|INDEX", "",
               "CSV label/target column by header name or 0-based index (default: last)"});
  v.push_back(
      {"csv-header", "auto|yes|no", "auto", "whether the CSV's first row names the columns"});
  v.push_back(
      {"regression", "", "", "CSV label column is a float regression target (use --loss mse)"});
  v.push_back(
      {"classes", "N", "0", "number of classes; labels must be < N (0: largest label + 1)"});
  if (with_train)
    v.push_back({"limit", "N", "0", "use only the first N training samples (0: all)"});
  v.push_back({"test-limit", "N", "0", "use only the first N test samples (0: all)"});
  return v;
}

std::vector<OptionSpec> device_options() {
  return {
      {"device", "auto|cpu|cuda:N", "auto",
       "where to run; auto = cuda:0 when a GPU is present, else cpu"},
      {"threads", "N", "0", "CPU threads (0: all cores)"},
      {"precision", "fp32|tf32|bf16", "fp32",
       "fp32; tf32: GPU matrix products on TF32 tensor cores; bf16: bf16 activations and weight "
       "copy with fp32 master weights (the CPU computes bf16 products in fp32)"},
  };
}

MlpOptions mlp_options(const Options& o) {
  MlpOptions mo;
  mo.precision = o.str("precision") == "bf16" ? Precision::bf16 : Precision::fp32;
  return mo;
}

Context make_context(const Options& o) {
  const std::string text = o.str("device");
  Device device = Device::cpu();
  if (text == "auto") {
    device = cuda_device_count() > 0 ? Device::cuda(0) : Device::cpu();
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
  const std::int64_t threads = o.integer("threads");
  if (threads < 0) throw UsageError("--threads: must be >= 0, got " + std::to_string(threads));
  co.threads = static_cast<int>(threads);
  const std::string precision = o.str("precision");
  if (precision == "tf32") {
    co.math = MathMode::tf32;
  } else if (precision != "fp32" && precision != "bf16") {
    throw UsageError("--precision: expected fp32, tf32 or bf16, got '" + precision + "'");
  }
  return Context(device, co);
}

bool has_test_data(const Options& o) {
  if (o.given("test-csv") || o.given("test-images")) return true;
  if (o.given("train-csv")) return false;
  return exists(in_dir(o.str("data"), "t10k-images-idx3-ubyte"));
}

Dataset load_train(const Options& o) {
  const std::int64_t classes = o.integer("classes");
  if (classes < 0) throw UsageError("--classes: must be >= 0, got " + std::to_string(classes));
  if (o.given("train-csv")) {
    CsvOptions c = csv_options(o, classes);
    c.limit = limit_of(o, "limit");
    return load_csv(o.str("train-csv"), c);
  }
  const std::string dir = o.str("data");
  const std::string images =
      o.given("train-images") ? o.str("train-images") : in_dir(dir, "train-images-idx3-ubyte");
  const std::string labels =
      o.given("train-labels") ? o.str("train-labels") : in_dir(dir, "train-labels-idx1-ubyte");
  return load_idx(images, labels, IdxOptions{classes, limit_of(o, "limit")});
}

Dataset load_test(const Options& o, std::int64_t classes) {
  if (o.given("test-csv")) {
    CsvOptions c = csv_options(o, classes);
    c.limit = limit_of(o, "test-limit");
    return load_csv(o.str("test-csv"), c);
  }
  const std::string dir = o.str("data");
  const std::string images =
      o.given("test-images") ? o.str("test-images") : in_dir(dir, "t10k-images-idx3-ubyte");
  const std::string labels =
      o.given("test-labels") ? o.str("test-labels") : in_dir(dir, "t10k-labels-idx1-ubyte");
  return load_idx(images, labels, IdxOptions{classes, limit_of(o, "test-limit")});
}

std::string describe_device(const Context& ctx) {
  if (ctx.device().is_cuda()) return ctx.device().str();
  return "cpu (" + cpu_gemm_name() + ", " + std::to_string(ctx.threads()) + " threads)";
}

void write_file_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw IoError("cannot write '" + tmp + "': " + std::strerror(errno));
    out << text;
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      throw IoError("writing '" + tmp + "' failed; '" + path + "' was left as it was");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw IoError("renaming '" + tmp + "' to '" + path + "' failed: " + why);
  }
}

}  // namespace descent::app
