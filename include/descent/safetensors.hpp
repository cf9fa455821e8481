// safetensors, both ways: an Mlp written so that torch.nn.Sequential loads it in one line, and
// such a file (descent's, or one written by PyTorch or NumPy) read back into an Mlp.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "descent/context.hpp"
#include "descent/export.h"
#include "descent/model.hpp"

DESCENT_API_BEGIN

namespace descent {

// The file's layout: an 8-byte little-endian header length N, N bytes of JSON (one entry per
// tensor: {"dtype", "shape", "data_offsets": [begin, end]} relative to the data section, and an
// optional "__metadata__" object of strings), then the raw little-endian tensor data.
//
// Tensor names follow torch.nn.Sequential of Linear and activation modules: each layer is a
// Linear module followed by its activation module, except that an identity activation adds no
// module. So {784, 512, 10} with relu hidden (the last layer identity) is
// Sequential(Linear(784, 512), ReLU(), Linear(512, 10)) with the tensors "0.weight" [512, 784],
// "0.bias" [512], "2.weight" [10, 512], "2.bias" [10]: module index of layer l = l + the number
// of non-identity activations before it. The modules: relu ReLU(), tanh Tanh(), sigmoid
// Sigmoid(), gelu GELU(approximate='tanh') (descent's gelu is the tanh approximation; the
// default nn.GELU() is the exact erf form and differs by up to ~1e-3). torch_module() gives the
// expression, also stored in the metadata.
//
// The metadata descent writes (all strings, as the format requires):
//   "format": "pt"                          the tensors are PyTorch's layout
//   "descent.format": "sequential-mlp-1"    the naming rule above, version 1
//   "descent.version": "0.1.0"              descent::version() of the writer
//   "descent.widths": "784,512,10"
//   "descent.activations": "relu,identity"  one per layer, as to_string(Activation) names them
//   "descent.module": "Sequential(Linear(784, 512), ReLU(), Linear(512, 10))"
// plus the caller's own entries. A reader rebuilds the model from the file alone.

// The value of "descent.format": the naming rule's version.
inline constexpr const char* kSafetensorsFormat = "sequential-mlp-1";

struct SafetensorsOptions {
  // How the values are stored: fp32 ("F32") exactly, or bf16 ("BF16") rounded to nearest even
  // as descent's to_bf16 does.
  Precision dtype = Precision::fp32;
  // Extra "__metadata__" entries (e.g. the data normalisation); keys must be non-empty, unique
  // and not one descent writes ("format" and "descent.*").
  std::vector<std::pair<std::string, std::string>> metadata;
};

// Writes the model with write_file_atomic (descent/output.hpp): a failure never leaves half a
// file, and a previous file at `path` stays intact. NumericError, with nothing written, when a
// parameter is NaN or infinite (or becomes infinite rounded to bf16); ArgumentError for bad
// metadata; IoError when the file cannot be written.
void save_safetensors(const std::string& path, const Mlp& model,
                      const SafetensorsOptions& options = {});

// Everything an MLP's safetensors file holds, in host memory.
struct SafetensorsModel {
  std::vector<std::int64_t> widths;
  std::vector<Activation> activations;
  std::vector<float> params;  // Mlp's flat layout; bf16 values widened to fp32
  // "__metadata__" as the file holds it (sorted by key).
  std::vector<std::pair<std::string, std::string>> metadata;
  // The metadata value of `key`, or `fallback`.
  std::string get(const std::string& key, const std::string& fallback = "") const;
};

// Reads and checks a whole file, as read_checkpoint does: IoError for a missing or unreadable
// path or one that is not a regular file (a folder, a FIFO: refused without blocking); DataError,
// naming the file and the tensor, for a header length beyond the file or above 100 MB, JSON that
// does not parse, a key given twice, an unknown dtype (F32 and BF16 are read), a size that is not
// the dtype's size times the shape's product, offsets outside the data section, tensors that
// overlap or leave bytes of the data section unused, names other than "N.weight" and "N.bias",
// shapes that do not chain into an MLP, module indices that skip more than one activation
// module, a NaN or infinite value, or metadata that contradicts the tensors.
//
// The activations come from "descent.activations". A file without it (written by PyTorch or
// NumPy) takes `activations` (one per layer) when given; else its layers are identity where no
// activation module sits between two Linear modules, and anything else is a DataError that asks
// for the activations. Given `activations` and metadata must agree.
SafetensorsModel read_safetensors(const std::string& path,
                                  const std::vector<Activation>& activations = {});
// The same with `hidden` for every layer but the last, which is the identity (the models
// descent train makes).
SafetensorsModel read_safetensors(const std::string& path, Activation hidden);

// A model with the file's architecture and parameters on ctx.
Mlp load_safetensors(const Context& ctx, const std::string& path, MlpOptions options = {},
                     const std::vector<Activation>& activations = {});

// Replaces the parameters of a model of the same architecture (the model's activations stand in
// for a file without "descent.activations"). DataError naming both architectures when they
// differ; nothing is changed when it throws.
void load_safetensors_into(Mlp& model, const std::string& path);

// "Sequential(Linear(784, 512), ReLU(), Linear(512, 10))": the torch.nn module the tensor names
// and shapes fit.
std::string torch_module(const std::vector<std::int64_t>& widths,
                         const std::vector<Activation>& activations);

}  // namespace descent

DESCENT_API_END
