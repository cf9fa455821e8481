// safetensors: the writer (torch.nn.Sequential names, descent's metadata, fp32 or bf16 values,
// atomic) and the reader, bounded by the file's size and checked like a checkpoint before any
// model sees a value. The JSON header goes through nlohmann/json.
#include "descent/safetensors.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <map>
#include <new>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "descent/bf16.hpp"
#include "descent/checkpoint.hpp"
#include "descent/error.hpp"
#include "descent/output.hpp"
#include "descent/version.hpp"
#include "input_file.hpp"

namespace descent {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian values, copied here as they are in memory");

namespace {

using nlohmann::json;

// A header larger than this is no MLP's (the reference implementation's limit is the same).
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
// As for checkpoints: no larger than a model this library could hold.
constexpr std::uint64_t kMaxFileBytes = std::uint64_t(1) << 37;

// The torch.nn module of an activation; nullptr for identity, which adds no module.
const char* module_of(Activation a) {
  switch (a) {
    case Activation::relu:
      return "ReLU()";
    case Activation::sigmoid:
      return "Sigmoid()";
    case Activation::tanh:
      return "Tanh()";
    case Activation::gelu:
      return "GELU(approximate='tanh')";
    case Activation::identity:
      return nullptr;
  }
  return nullptr;
}

// The Sequential index of each layer's Linear module.
std::vector<std::uint64_t> module_indices(const std::vector<Activation>& activations) {
  std::vector<std::uint64_t> out;
  std::uint64_t index = 0;
  for (Activation a : activations) {
    out.push_back(index);
    index += a == Activation::identity ? 1 : 2;
  }
  return out;
}

std::string join_widths(const std::vector<std::int64_t>& widths) {
  std::string s;
  for (std::int64_t w : widths) {
    if (!s.empty()) s += ',';
    s += std::to_string(w);
  }
  return s;
}

std::string join_activations(const std::vector<Activation>& activations) {
  std::string s;
  for (Activation a : activations) {
    if (!s.empty()) s += ',';
    s += to_string(a);
  }
  return s;
}

std::string shape_text(const std::vector<std::uint64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// The first value that is not a finite number, as "NaN at [r, c]"; empty when all are.
std::string first_non_finite(const float* values, std::uint64_t rows, std::uint64_t cols) {
  for (std::uint64_t i = 0; i < rows * cols; ++i) {
    if (std::isfinite(values[i])) continue;
    std::string at = "[";
    if (cols == 1) {
      at += std::to_string(i);
    } else {
      at += std::to_string(i / cols);
      at += ", ";
      at += std::to_string(i % cols);
    }
    at += "]";
    return std::string(std::isnan(values[i]) ? "NaN"
                       : values[i] > 0       ? "+inf"
                                             : "-inf") +
           " at " + at;
  }
  return {};
}

[[noreturn]] void fail(const std::string& where, const std::string& why) {
  throw DataError(where + ": " + why);
}

// One entry of the header.
struct Tensor {
  std::string name;
  bool bf16 = false;
  std::vector<std::uint64_t> shape;
  std::uint64_t begin = 0, end = 0;
};

// The value of an unsigned JSON integer, or false.
bool unsigned_of(const json& v, std::uint64_t& out) {
  if (!v.is_number_unsigned()) return false;
  out = v.get<std::uint64_t>();
  return true;
}

Tensor parse_tensor(const std::string& where, const std::string& name, const json& entry,
                    std::uint64_t data_size) {
  const std::string t = "tensor '" + name + "'";
  if (!entry.is_object()) {
    fail(where, t + ": is a JSON " + std::string(entry.type_name()) +
                    ", expected an object with dtype, shape and data_offsets");
  }
  for (const auto& item : entry.items()) {
    if (item.key() != "dtype" && item.key() != "shape" && item.key() != "data_offsets") {
      fail(where, t + ": unknown field '" + item.key() + "' (expected dtype, shape, data_offsets)");
    }
  }
  Tensor out;
  out.name = name;
  const auto dtype = entry.find("dtype");
  if (dtype == entry.end() || !dtype->is_string()) {
    fail(where, t + ": no dtype string");
  }
  const std::string d = dtype->get<std::string>();
  if (d != "F32" && d != "BF16") {
    fail(where, t + ": dtype '" + d + "' is not one descent reads (F32 or BF16)");
  }
  out.bf16 = d == "BF16";
  const auto shape = entry.find("shape");
  if (shape == entry.end() || !shape->is_array()) fail(where, t + ": no shape array");
  std::uint64_t elements = 1;
  for (const json& dim : *shape) {
    std::uint64_t n = 0;
    if (!unsigned_of(dim, n) || n > std::uint64_t(INT64_MAX)) {
      fail(where, t + ": shape " + shape->dump() + " holds " + dim.dump() +
                      ", expected whole numbers >= 0");
    }
    out.shape.push_back(n);
    if (!detail::checked_mul(elements, n, elements)) {
      fail(where, t + ": shape " + shape->dump() + " has more than 2^64 elements");
    }
  }
  const auto offsets = entry.find("data_offsets");
  if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2 ||
      !unsigned_of((*offsets)[0], out.begin) || !unsigned_of((*offsets)[1], out.end)) {
    fail(where, t + ": data_offsets " + (offsets == entry.end() ? "missing" : offsets->dump()) +
                    ", expected [begin, end], two whole numbers >= 0");
  }
  const std::string range =
      "data_offsets [" + std::to_string(out.begin) + ", " + std::to_string(out.end) + "]";
  if (out.end < out.begin) fail(where, t + ": " + range + " ends before it begins");
  if (out.end > data_size) {
    fail(where, t + ": " + range + " runs past the data section's " + std::to_string(data_size) +
                    " bytes");
  }
  std::uint64_t bytes = 0;
  if (!detail::checked_mul(elements, out.bf16 ? 2 : 4, bytes) || bytes != out.end - out.begin) {
    fail(where,
         t + ": " + range + " hold " + std::to_string(out.end - out.begin) + " bytes, but dtype " +
             d + " and shape " + shape_text(out.shape) + " take " +
             (bytes == 0 && elements != 0 ? std::string("more than 2^64") : std::to_string(bytes)));
  }
  return out;
}

// Parses the JSON header; a key given twice in any object is refused (nlohmann/json would keep
// the last one silently, and the reference reader refuses it).
json parse_header(const std::string& where, const char* first, const char* last) {
  std::vector<std::set<std::string>> keys;  // of each object open at this point
  std::string duplicate;
  const json::parser_callback_t callback = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second &&
            duplicate.empty()) {
          duplicate = parsed.get<std::string>();
        }
        break;
      default:
        break;
    }
    return true;
  };
  json doc;
  try {
    doc = json::parse(first, last, callback);
  } catch (const json::exception& e) {
    fail(where, std::string("the header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) fail(where, "the key '" + duplicate + "' appears twice in the header");
  if (!doc.is_object()) {
    fail(where, "the header is a JSON " + std::string(doc.type_name()) + ", expected an object");
  }
  return doc;
}

// Reads the file; `given` activations (or, when `hidden` is set, that activation for every layer
// but the last, which is the identity) are a fallback for a file without descent's metadata when
// `fallback_only`, else they must agree with it.
SafetensorsModel read(const std::string& path, const std::vector<Activation>& given,
                      bool fallback_only, const Activation* hidden = nullptr) {
  detail::InputFile file(path, "read_safetensors");
  std::string bytes;
  try {
    bytes = file.read_all(kMaxFileBytes, "a safetensors file");
  } catch (const std::bad_alloc&) {
    throw OutOfMemory("read_safetensors: cannot hold the " + std::to_string(file.size()) +
                      " bytes of '" + path + "' in host memory");
  }
  const std::string where = "safetensors file '" + path + "'";
  if (bytes.size() < 8) {
    fail(where, "truncated: " + std::to_string(bytes.size()) +
                    " bytes, shorter than the 8-byte header length");
  }
  std::uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  if (header > kMaxHeaderBytes) {
    fail(where, "header length " + std::to_string(header) + " is above the " +
                    std::to_string(kMaxHeaderBytes) + " bytes a header may have");
  }
  if (header > bytes.size() - 8) {
    fail(where, "header length " + std::to_string(header) + " runs past the end of the file (" +
                    std::to_string(bytes.size() - 8) + " bytes follow it): truncated?");
  }
  const json doc = parse_header(where, bytes.data() + 8, bytes.data() + 8 + header);
  const char* data = bytes.data() + 8 + header;
  const std::uint64_t data_size = bytes.size() - 8 - header;

  SafetensorsModel m;
  std::vector<Tensor> tensors;
  for (const auto& item : doc.items()) {
    if (item.key() == "__metadata__") {
      if (!item.value().is_object()) {
        fail(where, "__metadata__ is a JSON " + std::string(item.value().type_name()) +
                        ", expected an object of strings");
      }
      for (const auto& entry : item.value().items()) {
        if (!entry.value().is_string()) {
          fail(where, "__metadata__ '" + entry.key() + "' is a JSON " +
                          std::string(entry.value().type_name()) + ", expected a string");
        }
        m.metadata.emplace_back(entry.key(), entry.value().get<std::string>());
      }
      continue;
    }
    tensors.push_back(parse_tensor(where, item.key(), item.value(), data_size));
  }

  // The data section: every byte in exactly one tensor.
  std::vector<const Tensor*> by_offset;
  for (const Tensor& t : tensors) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const Tensor* a, const Tensor* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  std::uint64_t covered = 0;
  const Tensor* previous = nullptr;
  for (const Tensor* t : by_offset) {
    if (t->begin < covered) {
      fail(where, "tensors '" + previous->name + "' and '" + t->name + "' overlap (bytes " +
                      std::to_string(t->begin) + " to " + std::to_string(covered) +
                      " of the data section)");
    }
    if (t->begin > covered) {
      fail(where, "bytes " + std::to_string(covered) + " to " + std::to_string(t->begin) +
                      " of the data section belong to no tensor");
    }
    covered = t->end;
    previous = t;
  }
  if (covered != data_size) {
    fail(where, "the last " + std::to_string(data_size - covered) +
                    " bytes of the data section belong to no tensor");
  }

  // Names: "N.weight" and "N.bias" of Linear modules N of a torch.nn.Sequential.
  struct Module {
    const Tensor* weight = nullptr;
    const Tensor* bias = nullptr;
  };
  std::map<std::uint64_t, Module> modules;
  for (const Tensor& t : tensors) {
    const std::size_t dot = t.name.find('.');
    const std::string index = t.name.substr(0, dot);
    const std::string field = dot == std::string::npos ? "" : t.name.substr(dot + 1);
    const bool number = !index.empty() && index.size() <= 9 &&
                        index.find_first_not_of("0123456789") == std::string::npos &&
                        (index == "0" || index[0] != '0');
    if (!number || (field != "weight" && field != "bias")) {
      fail(where, "tensor '" + t.name +
                      "': an MLP's file holds only 'N.weight' and 'N.bias' (the Linear modules "
                      "of a torch.nn.Sequential)");
    }
    Module& mod = modules[std::stoull(index)];
    (field == "weight" ? mod.weight : mod.bias) = &t;
  }
  if (modules.empty()) fail(where, "holds no tensors, expected 0.weight and 0.bias at least");
  std::vector<std::uint64_t> indices;
  for (const auto& [index, mod] : modules) {
    const std::string n = std::to_string(index);
    if (mod.weight == nullptr) fail(where, "tensor '" + n + ".bias' has no '" + n + ".weight'");
    if (mod.bias == nullptr) {
      fail(where, "tensor '" + n + ".weight' has no '" + n + ".bias' (descent's layers have one)");
    }
    const auto& w = mod.weight->shape;
    const auto& b = mod.bias->shape;
    if (w.size() != 2 || w[0] < 1 || w[1] < 1) {
      fail(where, "tensor '" + n + ".weight': shape " + shape_text(w) +
                      ", expected [out, in] with out, in >= 1");
    }
    if (b.size() != 1 || b[0] != w[0]) {
      fail(where, "tensor '" + n + ".bias': shape " + shape_text(b) + ", expected [" +
                      std::to_string(w[0]) + "] (the rows of '" + n + ".weight')");
    }
    if (indices.empty() ? index != 0 : index - indices.back() > 2) {
      fail(where, "tensor '" + n + ".weight': module " + n + " follows " +
                      (indices.empty() ? std::string("nothing, expected module 0 first")
                                       : "module " + std::to_string(indices.back()) +
                                             "; descent's layers have one activation module at "
                                             "most between two Linear modules"));
    }
    if (!indices.empty()) {
      const auto& prev = modules[indices.back()].weight->shape;
      if (w[1] != prev[0]) {
        fail(where, "tensor '" + n + ".weight': shape " + shape_text(w) + " takes " +
                        std::to_string(w[1]) + " inputs but '" + std::to_string(indices.back()) +
                        ".weight' " + shape_text(prev) + " gives " + std::to_string(prev[0]));
      }
    }
    if (indices.empty()) m.widths.push_back(static_cast<std::int64_t>(w[1]));
    m.widths.push_back(static_cast<std::int64_t>(w[0]));
    indices.push_back(index);
  }
  const std::size_t layers = indices.size();
  std::vector<Activation> activations = given;
  if (hidden != nullptr) {
    activations.assign(layers - 1, *hidden);
    activations.push_back(Activation::identity);
  }

  // The metadata descent writes, checked against the tensors.
  if (const std::string f = m.get("descent.format"); !f.empty() && f != kSafetensorsFormat) {
    fail(where, "descent.format '" + f + "' is not the naming this descent reads (" +
                    kSafetensorsFormat + ")");
  }
  if (const std::string w = m.get("descent.widths"); !w.empty() && w != join_widths(m.widths)) {
    fail(where,
         "descent.widths '" + w + "' does not match the tensors' widths " + join_widths(m.widths));
  }
  std::vector<Activation> stored;
  if (const std::string text = m.get("descent.activations"); !text.empty()) {
    std::size_t start = 0;
    for (;;) {
      const std::size_t comma = text.find(',', start);
      const std::string name = text.substr(start, comma - start);
      try {
        stored.push_back(parse_activation(name.c_str()));
      } catch (const ArgumentError& e) {
        fail(where, "descent.activations '" + text + "': " + e.what());
      }
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    if (stored.size() != layers) {
      fail(where, "descent.activations '" + text + "' names " + std::to_string(stored.size()) +
                      " activations for " + std::to_string(layers) + " layers");
    }
  }
  if (fallback_only && activations.size() != layers) {
    fail(where, "holds " + std::to_string(layers) + " layers (widths " + join_widths(m.widths) +
                    "), the model " + std::to_string(activations.size()));
  }
  if (!activations.empty() && activations.size() != layers) {
    throw ArgumentError("read_safetensors: activations: " + std::to_string(activations.size()) +
                        " given, expected one per layer of " + where + " (" +
                        std::to_string(layers) + ")");
  }
  if (!stored.empty() && !activations.empty() && !fallback_only && stored != activations) {
    fail(where, "descent.activations '" + join_activations(stored) +
                    "' differs from the activations given (" + join_activations(activations) + ")");
  }
  if (!stored.empty()) {
    m.activations = stored;
  } else if (!activations.empty()) {
    m.activations = activations;
  } else {
    for (std::size_t l = 0; l < layers; ++l) {
      if (l + 1 < layers && indices[l + 1] - indices[l] == 2) {
        fail(where, "module " + std::to_string(indices[l] + 1) +
                        " is an activation the file does not name (no descent.activations "
                        "metadata): give the activations (descent import --activation)");
      }
      m.activations.push_back(Activation::identity);
    }
  }
  for (std::size_t l = 0; l + 1 < layers; ++l) {
    const bool has_module = indices[l + 1] - indices[l] == 2;
    if (has_module != (m.activations[l] != Activation::identity)) {
      fail(where, "layer " + std::to_string(l) + "'s activation is " + to_string(m.activations[l]) +
                      " but the file has " + (has_module ? "an activation module" : "no module") +
                      " between '" + std::to_string(indices[l]) + ".weight' and '" +
                      std::to_string(indices[l + 1]) + ".weight'");
    }
  }

  // The values, into the flat layout (bounded by the file: at least 2 bytes each).
  std::uint64_t count = 0;
  for (std::size_t l = 0; l < layers; ++l) {
    const Module& mod = modules[indices[l]];
    count += mod.weight->shape[0] * mod.weight->shape[1] + mod.bias->shape[0];
  }
  m.params.resize(count);
  float* out = m.params.data();
  for (std::size_t l = 0; l < layers; ++l) {
    const Module& mod = modules[indices[l]];
    for (const Tensor* t : {mod.weight, mod.bias}) {
      const std::uint64_t n = t->shape.size() == 2 ? t->shape[0] * t->shape[1] : t->shape[0];
      const char* src = data + t->begin;
      if (t->bf16) {
        for (std::uint64_t i = 0; i < n; ++i) {
          bf16 v;
          std::memcpy(&v.bits, src + 2 * i, 2);
          out[i] = to_float(v);
        }
      } else if (n > 0) {
        std::memcpy(out, src, 4 * n);
      }
      const std::uint64_t cols = t->shape.size() == 2 ? t->shape[1] : 1;
      if (std::string bad = first_non_finite(out, n / cols, cols); !bad.empty()) {
        fail(where, "tensor '" + t->name + "': " + bad + " (a model holds finite numbers only)");
      }
      out += n;
    }
  }
  return m;
}

}  // namespace

std::string SafetensorsModel::get(const std::string& key, const std::string& fallback) const {
  for (const auto& [k, v] : metadata) {
    if (k == key) return v;
  }
  return fallback;
}

std::string torch_module(const std::vector<std::int64_t>& widths,
                         const std::vector<Activation>& activations) {
  std::string s = "Sequential(";
  for (std::size_t l = 0; l < activations.size() && l + 1 < widths.size(); ++l) {
    if (l > 0) s += ", ";
    s += "Linear(" + std::to_string(widths[l]) + ", " + std::to_string(widths[l + 1]) + ")";
    if (const char* m = module_of(activations[l])) s += std::string(", ") + m;
  }
  return s + ")";
}

void save_safetensors(const std::string& path, const Mlp& model,
                      const SafetensorsOptions& options) {
  const std::string what = "save_safetensors: '" + path + "'";
  std::map<std::string, std::string> metadata = {
      {"format", "pt"},
      {"descent.format", kSafetensorsFormat},
      {"descent.version", version()},
      {"descent.widths", join_widths(model.widths())},
      {"descent.activations", join_activations(model.activations())},
      {"descent.module", torch_module(model.widths(), model.activations())},
  };
  for (const auto& [key, value] : options.metadata) {
    if (key.empty()) throw ArgumentError("save_safetensors: metadata: a key is empty");
    if (key == "format" || key.rfind("descent.", 0) == 0) {
      throw ArgumentError("save_safetensors: metadata: '" + key +
                          "' is written by descent itself; choose another key");
    }
    if (!metadata.emplace(key, value).second) {
      throw ArgumentError("save_safetensors: metadata: the key '" + key + "' is given twice");
    }
  }
  const bool bf16_values = options.dtype == Precision::bf16;
  const std::uint64_t size = bf16_values ? 2 : 4;
  const std::vector<float> params =
      model.params_with_scaling_folded();  // answers in the caller's units
  // In the order written: the metadata, then each layer's weight and bias.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  header["__metadata__"] = metadata;
  std::string data;
  data.reserve(params.size() * size);
  const std::vector<std::uint64_t> indices = module_indices(model.activations());
  const float* p = params.data();
  for (int l = 0; l < model.layers(); ++l) {
    const auto in = static_cast<std::uint64_t>(model.widths()[l]);
    const auto out = static_cast<std::uint64_t>(model.widths()[l + 1]);
    for (const bool is_weight : {true, false}) {
      const std::string name = std::to_string(indices[l]) + (is_weight ? ".weight" : ".bias");
      const std::uint64_t rows = out, cols = is_weight ? in : 1;
      std::vector<float> stored(p, p + rows * cols);
      std::string bad = first_non_finite(stored.data(), rows, cols);
      if (!bad.empty()) {
        throw NumericError(what + ": tensor '" + name + "': " + bad + "; nothing was written");
      }
      const std::uint64_t begin = data.size();
      if (bf16_values) {
        for (float& v : stored) {
          const bf16 b = to_bf16(v);
          v = to_float(b);
          data.append(reinterpret_cast<const char*>(&b.bits), 2);
        }
        bad = first_non_finite(stored.data(), rows, cols);
        if (!bad.empty()) {
          throw NumericError(what + ": tensor '" + name + "': rounded to bf16, " + bad +
                             " (beyond bf16's range); nothing was written");
        }
      } else {
        data.append(reinterpret_cast<const char*>(stored.data()), rows * cols * 4);
      }
      nlohmann::ordered_json entry = nlohmann::ordered_json::object();
      entry["dtype"] = bf16_values ? "BF16" : "F32";
      entry["shape"] =
          is_weight ? std::vector<std::uint64_t>{out, in} : std::vector<std::uint64_t>{out};
      entry["data_offsets"] = std::vector<std::uint64_t>{begin, data.size()};
      header[name] = std::move(entry);
      p += rows * cols;
    }
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    throw ArgumentError("save_safetensors: metadata: " + std::string(e.what()) +
                        " (keys and values must be UTF-8)");
  }
  // Padded with spaces so that the data section starts 8-byte aligned, as the reference writer
  // does.
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string bytes(8, '\0');
  const std::uint64_t n = text.size();
  std::memcpy(bytes.data(), &n, 8);
  bytes += text;
  bytes += data;
  write_file_atomic(path, bytes, "save_safetensors");
}

SafetensorsModel read_safetensors(const std::string& path,
                                  const std::vector<Activation>& activations) {
  return read(path, activations, false);
}

SafetensorsModel read_safetensors(const std::string& path, Activation hidden) {
  return read(path, {}, false, &hidden);
}

Mlp load_safetensors(const Context& ctx, const std::string& path, MlpOptions options,
                     const std::vector<Activation>& activations) {
  SafetensorsModel m = read(path, activations, false);
  Mlp model(ctx, m.widths, m.activations, options);
  model.params_from_host(m.params);
  return model;
}

void load_safetensors_into(Mlp& model, const std::string& path) {
  SafetensorsModel m = read(path, model.activations(), true);
  Checkpoint c;
  c.widths = std::move(m.widths);
  c.activations = std::move(m.activations);
  c.params = std::move(m.params);
  restore(c, model, nullptr, "safetensors file '" + path + "'");
}

}  // namespace descent
