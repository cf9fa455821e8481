// descent export and descent import: a checkpoint to safetensors and ONNX, safetensors to a
// checkpoint.
#include <iostream>

#include "commands.hpp"
#include "common.hpp"

namespace descent::app {

namespace {

struct ExportArgs {
  std::string model, safetensors, onnx;
  std::string dtype = "fp32", head = "none";
};

struct ImportArgs {
  std::string safetensors, checkpoint;
  std::string activation = "auto";
};

const char* kExportSummary =
    "Writes a saved model as safetensors (loaded by torch.nn.Sequential's load_state_dict) "
    "and/or ONNX (opset 17, for ONNX Runtime).";
const char* kImportSummary =
    "Reads a safetensors file (written by descent export, PyTorch or NumPy) into a checkpoint "
    "that descent eval and the library load.";

void add_export_options(Parser& p, ExportArgs& a) {
  p.group("input");
  p.input("model", a.model, "PATH", "checkpoint written by descent train --checkpoint (required)");
  p.group("output");
  p.output("safetensors", a.safetensors, "write the model as safetensors to PATH");
  p.choice("dtype", a.dtype, {"fp32", "bf16"},
           "how the safetensors file stores the values (bf16: rounded to nearest even)");
  p.output("onnx", a.onnx, "write the model as ONNX (opset 17) to PATH");
  p.choice("head", a.head, {"none", "softmax", "sigmoid"},
           "what the ONNX graph applies to the outputs");
}

void add_import_options(Parser& p, ImportArgs& a) {
  p.group("input");
  p.input("safetensors", a.safetensors, "PATH",
          "safetensors file with tensors N.weight, N.bias of a torch.nn.Sequential (required)");
  p.choice("activation", a.activation, {"auto", "relu", "gelu", "tanh", "sigmoid", "identity"},
           "hidden activation of a file that does not name its own (auto: from the file's "
           "metadata; gelu is GELU(approximate='tanh'))");
  p.group("output");
  p.output("checkpoint", a.checkpoint,
           "write the model as a descent checkpoint to PATH (required)");
}

// Metadata keys that descent's own formats write for themselves.
bool reserved_key(const std::string& key) {
  return key == "format" || key.rfind("descent.", 0) == 0;
}

}  // namespace

std::vector<OptionSpec> export_option_table() {
  ExportArgs a;
  Parser p("export", kExportSummary);
  add_export_options(p, a);
  return p.table();
}

std::vector<OptionSpec> import_option_table() {
  ImportArgs a;
  Parser p("import", kImportSummary);
  add_import_options(p, a);
  return p.table();
}

int run_export(int argc, char** argv) {
  ExportArgs a;
  Parser p("export", kExportSummary);
  add_export_options(p, a);
  if (!p.parse(argc, argv)) return 0;
  if (a.model.empty()) throw UsageError("--model PATH is required");
  if (a.safetensors.empty() && a.onnx.empty()) {
    throw UsageError("nothing to write: give --safetensors PATH, --onnx PATH or both");
  }
  Output safetensors{"--safetensors", a.safetensors}, onnx{"--onnx", a.onnx};
  check_outputs({&safetensors, &onnx}, {{"--model", a.model}});
  const Checkpoint ck = [&] {
    try {
      return read_checkpoint(a.model);
    } catch (const Error&) {
      rethrow_naming_option({{"--model", a.model}});
    }
  }();
  Context ctx(Device::cpu(), {1});
  const Mlp model = make_model(ctx, ck);
  std::cout << "model " << model.describe() << " (" << a.model << ")\n";
  if (!a.safetensors.empty()) {
    SafetensorsOptions options;
    options.dtype = parse_precision(a.dtype.c_str());
    // What descent train recorded (loss, normalisation) travels with the tensors.
    for (const auto& [key, value] : ck.metadata) {
      if (!reserved_key(key)) options.metadata.emplace_back(key, value);
    }
    save_safetensors(a.safetensors, model, options);
    std::cout << "safetensors " << a.safetensors << " (" << a.dtype << ", "
              << torch_module(model.widths(), model.activations()) << ")\n";
  }
  if (!a.onnx.empty()) {
    save_onnx(a.onnx, model, {parse_onnx_head(a.head.c_str())});
    std::cout << "onnx " << a.onnx << " (opset 17, head " << a.head << ")\n";
  }
  return 0;
}

int run_import(int argc, char** argv) {
  ImportArgs a;
  Parser p("import", kImportSummary);
  add_import_options(p, a);
  if (!p.parse(argc, argv)) return 0;
  if (a.safetensors.empty()) throw UsageError("--safetensors PATH is required");
  if (a.checkpoint.empty()) throw UsageError("--checkpoint PATH is required");
  Output checkpoint{"--checkpoint", a.checkpoint};
  check_outputs({&checkpoint}, {{"--safetensors", a.safetensors}});
  const SafetensorsModel m = [&] {
    try {
      if (a.activation == "auto") return read_safetensors(a.safetensors);
      return read_safetensors(a.safetensors, parse_activation(a.activation.c_str()));
    } catch (const Error&) {
      rethrow_naming_option({{"--safetensors", a.safetensors}});
    }
  }();
  Context ctx(Device::cpu(), {1});
  Checkpoint c;
  c.widths = m.widths;
  c.activations = m.activations;
  c.params = m.params;
  const Mlp model = make_model(ctx, c);
  CheckpointMetadata metadata;
  for (const auto& [key, value] : m.metadata) {
    if (!reserved_key(key)) metadata.emplace_back(key, value);
  }
  save_checkpoint(a.checkpoint, model, nullptr, metadata);
  std::cout << "model " << model.describe() << " (" << a.safetensors << ")\n"
            << "checkpoint " << a.checkpoint << "\n";
  return 0;
}

}  // namespace descent::app
