// descent predict: a saved model's answers for new inputs (a CSV of features or IDX images),
// written as CSV in the data's own units.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "common.hpp"
#include "job.hpp"

namespace descent::app {

namespace {

struct PredictArgs {
  std::string model, input_csv, images, output;
  std::string drop_column, csv_header = "auto";
  std::int64_t batch = 1000, limit = 0;
  DeviceArgs dev;
};

const char* kPredictSummary =
    "Writes a saved model's predictions for new inputs as CSV: for a classifier the class and "
    "each class's probability, for a regression model its outputs in the targets' units.";

void add_predict_options(Parser& p, PredictArgs& a) {
  p.group("model");
  p.input("model", a.model, "PATH", "checkpoint written by descent train --checkpoint (required)");
  p.integer("batch", a.batch, 1, 1 << 30, "rows per forward pass");
  p.group("data");
  p.input("input-csv", a.input_csv, "PATH",
          "CSV of features, one sample a row (every column a feature unless --drop-column)");
  p.text("drop-column", a.drop_column, "NAME|INDEX",
         "CSV only: a column to leave out by header name or 0-based index (e.g. the label column "
         "of a test set)");
  p.choice("csv-header", a.csv_header, {"auto", "yes", "no"},
           "CSV only: whether the first row names the columns");
  p.input("images", a.images, "PATH", "IDX images instead of a CSV (MNIST layout)");
  p.integer("limit", a.limit, 0, std::int64_t(1) << 40, "only the first N samples (0: all)");
  p.group("output");
  p.output("output", a.output, "write the predictions to PATH as CSV (required)");
  add_device_options(p, a.dev);
}

// The samples to predict on, as floats [rows, features] in the data's own units.
struct Inputs {
  std::int64_t rows = 0, features = 0;
  std::vector<float> x;
};

Inputs read_csv_inputs(const PredictArgs& a) {
  CsvOptions c;
  if (a.csv_header == "yes") c.header = CsvOptions::Header::yes;
  if (a.csv_header == "no") c.header = CsvOptions::Header::no;
  c.limit = a.limit;
  const CsvTable t = load_csv_table(a.input_csv, c);
  std::int64_t drop = -1;
  if (!a.drop_column.empty()) {
    const ColumnChoice c = column_choice("drop-column", a.drop_column);
    try {
      drop = csv_column_index(t.names, t.columns, c.name, c.index, a.input_csv);
    } catch (const ArgumentError& e) {
      throw UsageError("--drop-column " + a.drop_column + ": " + e.what());
    }
    if (t.columns == 1) {
      throw UsageError("--drop-column " + a.drop_column + ": '" + a.input_csv +
                       "' has that one column only: no features would be left");
    }
  }
  Inputs in;
  in.rows = t.rows;
  in.features = t.columns - (drop >= 0 ? 1 : 0);
  in.x.reserve(static_cast<std::size_t>(in.rows * in.features));
  for (std::int64_t r = 0; r < t.rows; ++r) {
    for (std::int64_t c = 0; c < t.columns; ++c) {
      if (c != drop) in.x.push_back(t.values[static_cast<std::size_t>(r * t.columns + c)]);
    }
  }
  return in;
}

Inputs read_idx_inputs(const PredictArgs& a, const Checkpoint& ck) {
  const IdxImages images = load_idx_images(a.images, a.limit);
  // The byte-to-float map the model was trained with (descent train's --normalize).
  const float scale = metadata_number<float>(ck, a.model, "scale", "0.00392156863");
  const float shift = metadata_number<float>(ck, a.model, "shift", "0");
  Inputs in;
  in.rows = images.count;
  in.features = images.features;
  in.x.resize(images.pixels.size());
  for (std::size_t i = 0; i < images.pixels.size(); ++i) {
    in.x[i] = static_cast<float>(images.pixels[i]) * scale + shift;
  }
  return in;
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// One CSV row of predictions from the model's outputs y[0 .. n): for softmax cross-entropy the
// most probable class and every class's probability, for binary cross-entropy each output's
// probability, for mse the outputs as they are.
void append_row(std::string& csv, Loss loss, const float* y, std::int64_t n) {
  if (loss == Loss::softmax_cross_entropy) {
    const float top = *std::max_element(y, y + n);
    double sum = 0;
    for (std::int64_t j = 0; j < n; ++j) sum += std::exp(static_cast<double>(y[j]) - top);
    csv += std::to_string(std::max_element(y, y + n) - y);
    for (std::int64_t j = 0; j < n; ++j) {
      csv += "," + number(std::exp(static_cast<double>(y[j]) - top) / sum);
    }
  } else {
    for (std::int64_t j = 0; j < n; ++j) {
      const double v = loss == Loss::sigmoid_bce
                           ? 1.0 / (1.0 + std::exp(-static_cast<double>(y[j])))
                           : static_cast<double>(y[j]);
      csv += (j ? "," : "") + number(v);
    }
  }
  csv += "\n";
}

std::string header_row(Loss loss, std::int64_t n) {
  const char* name = loss == Loss::mse ? "y" : "p";
  std::string h = loss == Loss::softmax_cross_entropy ? "class" : "";
  for (std::int64_t j = 0; j < n; ++j) {
    if (!h.empty()) h += ",";
    h += name + (n > 1 || loss == Loss::softmax_cross_entropy ? std::to_string(j) : "");
  }
  return h + "\n";
}

}  // namespace

std::vector<OptionSpec> predict_option_table() {
  PredictArgs a;
  Parser p("predict", kPredictSummary);
  add_predict_options(p, a);
  return p.table();
}

int run_predict(int argc, char** argv) {
  PredictArgs a;
  Parser p("predict", kPredictSummary);
  add_predict_options(p, a);
  if (!p.parse(argc, argv)) return 0;
  if (a.model.empty()) throw UsageError("--model PATH is required");
  if (a.output.empty()) throw UsageError("--output PATH is required");
  if (a.input_csv.empty() == a.images.empty()) {
    throw UsageError("give the inputs as --input-csv PATH or --images PATH (one of them)");
  }
  if (!a.images.empty() && (p.given("drop-column") || p.given("csv-header"))) {
    throw UsageError(std::string(p.given("drop-column") ? "--drop-column" : "--csv-header") +
                     " applies to --input-csv, not to IDX --images");
  }
  check_device_options(a.dev);
  const Job& j = job();
  if (j.size() > 1) {
    throw UsageError("descent predict runs on one process, not on " +
                     counted(j.size(), "MPI rank") + "; run it without mpirun");
  }
  const std::vector<std::pair<std::string, std::string>> inputs = {
      {"--model", a.model},
      {a.images.empty() ? "--input-csv" : "--images", a.images.empty() ? a.input_csv : a.images}};
  Output output{"--output", a.output};
  check_outputs({&output}, inputs);
  const Checkpoint ck = [&] {
    try {
      return read_checkpoint(a.model);
    } catch (const Error&) {
      rethrow_naming_option({{"--model", a.model}});
    }
  }();
  Loss loss = Loss::softmax_cross_entropy;
  try {
    loss = parse_loss(ck.get("loss", "softmax_cross_entropy").c_str());
  } catch (const ArgumentError& e) {
    throw DataError("the model '" + a.model + "': metadata " + e.what());
  }
  const Inputs in = [&] {
    try {
      return a.images.empty() ? read_csv_inputs(a) : read_idx_inputs(a, ck);
    } catch (const Error&) {
      rethrow_naming_option(inputs);
    }
  }();
  if (in.features != ck.widths.front()) {
    throw DataError("the model '" + a.model + "' takes " + counted(ck.widths.front(), "feature") +
                    " per sample but " + (a.images.empty() ? "--input-csv" : "--images") +
                    " gives " + std::to_string(in.features) +
                    (a.images.empty() && a.drop_column.empty()
                         ? " (a label column to leave out? --drop-column NAME|INDEX)"
                         : ""));
  }
  Context ctx = make_context(a.dev);
  MlpOptions mo = mlp_options(a.dev);
  mo.max_batch = std::min(a.batch, in.rows);
  Mlp model = make_model(ctx, ck, mo);
  const std::int64_t outputs = model.widths().back();
  std::string csv = header_row(loss, outputs);
  for (std::int64_t r = 0; r < in.rows; r += mo.max_batch) {
    const std::int64_t rows = std::min(mo.max_batch, in.rows - r);
    const std::vector<float> y = model.predict(
        std::span<const float>(in.x).subspan(static_cast<std::size_t>(r * in.features),
                                             static_cast<std::size_t>(rows * in.features)),
        rows);
    for (std::int64_t i = 0; i < rows; ++i) {
      const float* row = y.data() + i * outputs;
      if (!std::all_of(row, row + outputs, [](float v) { return std::isfinite(v); })) {
        // A NaN or an overflow in the file would read as an answer: nothing is written.
        throw DataError("the model's output for sample " + std::to_string(r + i) +
                        " (0-based) is not finite: its inputs are far outside what the model was "
                        "trained on, or not numbers the model can take; nothing was written");
      }
      append_row(csv, loss, row, outputs);
    }
  }
  write_file_atomic(a.output, csv, "--output");
  // A stream (/dev/stdout, a pipe) holds the predictions alone.
  if (output.kind == OutputKind::stream) return 0;
  std::cout << "model " << model.describe() << " (" << a.model
            << "): " << counted(in.rows, "prediction") << " written to " << a.output << std::endl;
  return 0;
}

}  // namespace descent::app
