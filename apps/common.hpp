// What the train and eval commands share: device choice, dataset options and loading.
#pragma once

#include <string>
#include <vector>

#include "descent/descent.hpp"
#include "options.hpp"

namespace descent::app {

inline const char* kDefaultDataDir = "/usr/share/datasets/fashion-mnist";

// The data options both commands accept, appended to a command's own.
std::vector<OptionSpec> data_options(bool with_train);
std::vector<OptionSpec> device_options();

// --device auto|cpu|cuda:N and --threads, --precision; DeviceError when the device is missing.
Context make_context(const Options& o);
// The model options --precision implies (bf16 storage, or fp32).
MlpOptions mlp_options(const Options& o);

// Loads the training (with_train) or test set. classes: required class count (0: from data).
Dataset load_train(const Options& o);
Dataset load_test(const Options& o, std::int64_t classes);
bool has_test_data(const Options& o);

// How the command names a device for the user: "cpu (oneDNN ... dnnl_sgemm, 2 threads)".
std::string describe_device(const Context& ctx);

// Writes `text` to path.tmp then renames it over path, so a reader never sees half a file.
void write_file_atomic(const std::string& path, const std::string& text);

}  // namespace descent::app
