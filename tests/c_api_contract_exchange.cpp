// The C API contract table, part 3: the exchange formats (safetensors both ways, ONNX export).
#include "c_api_contract.hpp"

namespace c_api_contract {

namespace {

// A safetensors file of `model` (the world's by default) in the world's folder.
std::string safetensors_of(World& w, const std::string& name, descent_model* model = nullptr) {
  const std::string path = (w.dir / name).string();
  World::ok(
      descent_model_save_safetensors(model != nullptr ? model : w.model, path.c_str(), nullptr));
  return path;
}

// The world's model as safetensors, cut in half.
std::string truncated_safetensors(World& w) {
  const std::string bytes = read_bytes(safetensors_of(w, "whole.safetensors"));
  return w.file("truncated.safetensors", bytes.substr(0, bytes.size() / 2));
}

// The world's model as safetensors with its last value (the last bias, fp32) made NaN.
std::string nan_safetensors(World& w) {
  std::string bytes = read_bytes(safetensors_of(w, "whole.safetensors"));
  std::memcpy(bytes.data() + bytes.size() - 4, &kNaN, 4);
  return w.file("nan.safetensors", bytes);
}

descent_status load_model(World& w, Call& c, const std::string& path) {
  descent_model* out = Call::fresh<descent_model>();
  return c.made(descent_model_load_safetensors(c.arg("ctx", w.ctx), c.arg("path", path.c_str()),
                                               c.arg("out", &out)),
                out, descent_model_destroy);
}

descent_status load_into(World& w, Call& c, const std::string& path) {
  return descent_model_load_safetensors_into(c.arg("model", w.model), c.arg("path", path.c_str()));
}

descent_status save(World& w, Call& c, const std::string& path, const char* dtype) {
  return descent_model_save_safetensors(c.arg("model", w.model), c.arg("path", path.c_str()),
                                        c.arg("dtype", dtype));
}

descent_status save_onnx(World& w, Call& c, const std::string& path, const char* head) {
  return descent_model_save_onnx(c.arg("model", w.model), c.arg("path", path.c_str()),
                                 c.arg("head", head));
}

}  // namespace

std::vector<Entry> exchange_entries() {
  return {
      {"descent_model_save_safetensors",
       {"model", "path"},
       {"dtype"},
       Effect::changes_state,
       [](World& w, Call& c) { return save(w, c, (w.dir / "out.safetensors").string(), "bf16"); },
       {{"an unknown dtype", kArgument,
         [](World& w, Call& c) { return save(w, c, (w.dir / "out.safetensors").string(), "f16"); }},
        {"a folder as the path", kIo,
         [](World& w, Call& c) { return save(w, c, w.dir.string(), "fp32"); }},
        {"a folder that does not exist", kIo,
         [](World& w, Call& c) {
           return save(w, c, (w.dir / "no" / "such.safetensors").string(), nullptr);
         }}}},
      {"descent_model_load_safetensors",
       {"ctx", "path", "out"},
       {},
       Effect::changes_state,
       [](World& w, Call& c) { return load_model(w, c, safetensors_of(w, "m.safetensors")); },
       {{"a missing file", kIo,
         [](World& w, Call& c) { return load_model(w, c, (w.dir / "none").string()); }},
        {"a folder", kIo, [](World& w, Call& c) { return load_model(w, c, w.dir.string()); }},
        {"an empty file", kData,
         [](World& w, Call& c) { return load_model(w, c, w.file("empty", "")); }},
        {"a truncated file", kData,
         [](World& w, Call& c) { return load_model(w, c, truncated_safetensors(w)); }},
        {"a checkpoint", kData, [](World& w, Call& c) { return load_model(w, c, w.checkpoint); }},
        {"a NaN value", kData,
         [](World& w, Call& c) { return load_model(w, c, nan_safetensors(w)); }}}},
      {"descent_model_load_safetensors_into",
       {"model", "path"},
       {},
       Effect::changes_state,
       [](World& w, Call& c) { return load_into(w, c, safetensors_of(w, "m.safetensors")); },
       {{"a missing file", kIo,
         [](World& w, Call& c) { return load_into(w, c, (w.dir / "none").string()); }},
        {"a folder", kIo, [](World& w, Call& c) { return load_into(w, c, w.dir.string()); }},
        {"a truncated file", kData,
         [](World& w, Call& c) { return load_into(w, c, truncated_safetensors(w)); }},
        {"another architecture", kData,
         [](World& w, Call& c) {
           return load_into(w, c, safetensors_of(w, "other.safetensors", w.other_model));
         }},
        {"a NaN value", kData,
         [](World& w, Call& c) { return load_into(w, c, nan_safetensors(w)); }}}},
      {"descent_model_save_onnx",
       {"model", "path"},
       {"head"},
       Effect::changes_state,
       [](World& w, Call& c) { return save_onnx(w, c, (w.dir / "m.onnx").string(), "softmax"); },
       {{"an unknown head", kArgument,
         [](World& w, Call& c) { return save_onnx(w, c, (w.dir / "m.onnx").string(), "relu"); }},
        {"a folder as the path", kIo,
         [](World& w, Call& c) { return save_onnx(w, c, w.dir.string(), nullptr); }}}},
  };
}

}  // namespace c_api_contract
