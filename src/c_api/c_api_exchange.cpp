// The C API of the exchange formats: safetensors both ways and ONNX export.
#include "c_api.hpp"

using namespace descent;
using namespace descent::c_api;

extern "C" {

descent_status descent_model_save_safetensors(const descent_model* model, const char* path,
                                              const char* dtype) {
  return guarded("descent_model_save_safetensors", [&] {
    const descent_model& m = need(model, "model");
    need_ptr(path, "path");
    SafetensorsOptions options;
    if (dtype != nullptr) {
      try {
        options.dtype = parse_precision(dtype);
      } catch (const ArgumentError&) {
        throw ArgumentError(std::string("dtype: expected fp32 or bf16, got '") + dtype + "'");
      }
    }
    save_safetensors(path, m.mlp, options);
  });
}

descent_status descent_model_load_safetensors(descent_context* ctx, const char* path,
                                              descent_model** out) {
  if (out != nullptr) *out = nullptr;
  return guarded("descent_model_load_safetensors", [&] {
    descent_context& c = need(ctx, "ctx");
    need_ptr(out, "out");
    need_ptr(path, "path");
    *out = new descent_model{&c, load_safetensors(c.ctx, path), {}, {}, {}, {}};
  });
}

descent_status descent_model_load_safetensors_into(descent_model* model, const char* path) {
  return guarded("descent_model_load_safetensors_into", [&] {
    descent_model& m = need(model, "model");
    need_ptr(path, "path");
    load_safetensors_into(m.mlp, path);
  });
}

descent_status descent_model_save_onnx(const descent_model* model, const char* path,
                                       const char* head) {
  return guarded("descent_model_save_onnx", [&] {
    const descent_model& m = need(model, "model");
    need_ptr(path, "path");
    OnnxOptions options;
    if (head != nullptr) {
      try {
        options.head = parse_onnx_head(head);
      } catch (const ArgumentError&) {
        throw ArgumentError(std::string("head: expected none, softmax or sigmoid, got '") + head +
                            "'");
      }
    }
    save_onnx(path, m.mlp, options);
  });
}

}  // extern "C"
