// ONNX export: an Mlp as an ONNX model (opset 17) that ONNX Runtime runs.
#pragma once

#include <string>

#include "descent/export.h"
#include "descent/model.hpp"

DESCENT_API_BEGIN

namespace descent {

// What the exported graph appends to the last layer's output.
enum class OnnxHead {
  none,     // the model's outputs as they are (logits, for a classifier)
  softmax,  // Softmax over the outputs of each row (class probabilities)
  sigmoid,  // Sigmoid of each output (probabilities of a sigmoid_bce model)
};
// "none", "softmax", "sigmoid".
const char* to_string(OnnxHead head);
OnnxHead parse_onnx_head(const char* text);

struct OnnxOptions {
  OnnxHead head = OnnxHead::none;
};

// Writes the model as ONNX (IR version 8, opset 17) with write_file_atomic (never half a file).
// The graph: input "input" [batch, inputs] float (batch a dynamic dimension named "batch"), per
// layer a Gemm (transB = 1, the weight kept [out, in]) and its activation (Relu, Tanh, Sigmoid;
// gelu, descent's tanh approximation, composed of Mul, Add and Tanh since opset 17 has no Gelu),
// then the head, into output "output" [batch, outputs] float. The weights are fp32 initializers
// named as in the safetensors file ("0.weight", "0.bias", ...). NumericError, with nothing
// written, for a NaN or infinite parameter; IoError when the file cannot be written.
void save_onnx(const std::string& path, const Mlp& model, const OnnxOptions& options = {});

}  // namespace descent

DESCENT_API_END
