// ONNX export of an Mlp (IR version 8, opset 17), written with a small protobuf encoder of its
// own.
//
// Why no ONNX or protobuf library: Debian 12 packages both (libonnx-dev 1.12, libprotobuf-dev
// 3.21), but linking them would make protobuf and libonnx link-time dependencies of every program
// that links a static descent, tie descent to one protobuf ABI, and add both to every machine
// that builds it (the GPU machine included) — all to write eight message types. Writing needs
// only the wire format (varints, 32-bit floats, length-delimited fields), encoded below field by
// field with the numbers of onnx.proto; reading ONNX is not offered. The files are proven by
// onnx.checker and ONNX Runtime in tests/exchange/check_exchange.py.
#include "descent/onnx.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "descent/error.hpp"
#include "descent/output.hpp"
#include "descent/version.hpp"
#include "enum_names.hpp"

namespace descent {

namespace {

constexpr detail::EnumName<OnnxHead> kHeadNames[] = {
    {OnnxHead::none, "none"}, {OnnxHead::softmax, "softmax"}, {OnnxHead::sigmoid, "sigmoid"}};

// What onnx.proto calls its fields and values (proto2; repeated scalars written unpacked).
constexpr std::int64_t kIrVersion = 8;  // ONNX 1.12, the first with opset 17
constexpr std::int64_t kOpset = 17;
constexpr std::uint64_t kFloat = 1;                    // TensorProto.DataType FLOAT
constexpr std::uint64_t kAttrFloat = 1, kAttrInt = 2;  // AttributeProto.AttributeType
// The constants of descent's tanh approximation of GELU (kernels/math/activation.hpp).
constexpr float kGeluC = 0.7978845608028654f;
constexpr float kGeluA = 0.044715f;

// One protobuf message being encoded.
class Message {
 public:
  Message& varint(int field, std::uint64_t v) {
    key(field, 0);
    raw(v);
    return *this;
  }
  Message& integer(int field, std::int64_t v) {
    return varint(field, static_cast<std::uint64_t>(v));
  }
  Message& fixed32(int field, float f) {
    key(field, 5);
    char b[4];
    std::memcpy(b, &f, 4);  // little-endian, as protobuf wants it (checked in safetensors.cpp)
    bytes_.append(b, 4);
    return *this;
  }
  Message& bytes(int field, std::string_view s) {
    key(field, 2);
    raw(s.size());
    bytes_.append(s);
    return *this;
  }
  Message& message(int field, const Message& m) { return bytes(field, m.bytes_); }
  const std::string& encoded() const { return bytes_; }

 private:
  void key(int field, int wire) { raw((static_cast<std::uint64_t>(field) << 3) | wire); }
  void raw(std::uint64_t v) {
    while (v >= 0x80) {
      bytes_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    bytes_.push_back(static_cast<char>(v));
  }
  std::string bytes_;
};

// TensorProto: dims 1, data_type 2, name 8, raw_data 9.
Message tensor(const std::string& name, const std::vector<std::int64_t>& dims, const float* values,
               std::size_t count) {
  Message t;
  for (std::int64_t d : dims) t.integer(1, d);
  t.varint(2, kFloat);
  t.bytes(8, name);
  t.bytes(9, std::string_view(reinterpret_cast<const char*>(values), count * sizeof(float)));
  return t;
}

// ValueInfoProto (name 1, type 2) of a float matrix [batch, cols]: TypeProto.tensor_type 1 ->
// elem_type 1, shape 2 -> dim 1 -> dim_param 2 ("batch") or dim_value 1.
Message matrix_info(const std::string& name, std::int64_t cols) {
  Message shape;
  shape.message(1, Message().bytes(2, "batch"));
  shape.message(1, Message().integer(1, cols));
  Message tensor_type;
  tensor_type.varint(1, kFloat).message(2, shape);
  Message info;
  info.bytes(1, name).message(2, Message().message(1, tensor_type));
  return info;
}

// The graph under construction: nodes and initializers.
class Graph {
 public:
  // NodeProto: input 1, output 2, name 3, op_type 4, attribute 5.
  Message& node(const std::string& op, const std::vector<std::string>& inputs,
                const std::string& output, const std::string& name) {
    Message& n = nodes_.emplace_back();
    for (const std::string& in : inputs) n.bytes(1, in);
    n.bytes(2, output).bytes(3, name).bytes(4, op);
    return n;
  }
  // AttributeProto: name 1, f 2, i 3, type 20.
  static void int_attribute(Message& node, const std::string& name, std::int64_t v) {
    node.message(5, Message().bytes(1, name).integer(3, v).varint(20, kAttrInt));
  }
  static void float_attribute(Message& node, const std::string& name, float v) {
    node.message(5, Message().bytes(1, name).fixed32(2, v).varint(20, kAttrFloat));
  }
  void initializer(Message t) { initializers_.push_back(std::move(t)); }
  // A scalar float constant, added once.
  std::string constant(const std::string& name, float v) {
    for (const std::string& c : constants_) {
      if (c == name) return name;
    }
    constants_.push_back(name);
    initializer(tensor(name, {}, &v, 1));
    return name;
  }
  // GraphProto: node 1, name 2, initializer 5, doc_string 10, input 11, output 12.
  Message encode(const std::string& name, const std::string& doc, std::int64_t inputs,
                 std::int64_t outputs) const {
    Message g;
    for (const Message& n : nodes_) g.message(1, n);
    g.bytes(2, name);
    for (const Message& t : initializers_) g.message(5, t);
    g.bytes(10, doc);
    g.message(11, matrix_info("input", inputs));
    g.message(12, matrix_info("output", outputs));
    return g;
  }

 private:
  std::vector<Message> nodes_, initializers_;
  std::vector<std::string> constants_;
};

// Appends act(z) as nodes named after `prefix`, writing `y`.
void activation(Graph& g, Activation act, const std::string& z, const std::string& y,
                const std::string& prefix) {
  switch (act) {
    case Activation::relu:
      g.node("Relu", {z}, y, prefix + "relu");
      return;
    case Activation::tanh:
      g.node("Tanh", {z}, y, prefix + "tanh");
      return;
    case Activation::sigmoid:
      g.node("Sigmoid", {z}, y, prefix + "sigmoid");
      return;
    case Activation::gelu: {
      // 0.5 z (1 + tanh(c (z + a z^3))), in the order descent's kernels compute it.
      const std::string a = g.constant("gelu.a", kGeluA), c = g.constant("gelu.c", kGeluC);
      const std::string one = g.constant("gelu.one", 1.0f), half = g.constant("gelu.half", 0.5f);
      const std::string p = prefix + "gelu.";
      g.node("Mul", {a, z}, p + "az", p + "mul_a");
      g.node("Mul", {p + "az", z}, p + "az2", p + "mul_z2");
      g.node("Mul", {p + "az2", z}, p + "az3", p + "mul_z3");
      g.node("Add", {z, p + "az3"}, p + "inner", p + "add_z");
      g.node("Mul", {c, p + "inner"}, p + "scaled", p + "mul_c");
      g.node("Tanh", {p + "scaled"}, p + "tanh", p + "tanh");
      g.node("Add", {one, p + "tanh"}, p + "one_plus", p + "add_one");
      g.node("Mul", {half, z}, p + "half_z", p + "mul_half");
      g.node("Mul", {p + "half_z", p + "one_plus"}, y, p + "mul_out");
      return;
    }
    case Activation::identity:
      g.node("Identity", {z}, y, prefix + "identity");
      return;
  }
}

}  // namespace

const char* to_string(OnnxHead head) { return detail::name_of(kHeadNames, head); }
OnnxHead parse_onnx_head(const char* text) {
  return detail::parse_enum(kHeadNames, text, "onnx head");
}

void save_onnx(const std::string& path, const Mlp& model, const OnnxOptions& options) {
  if (options.head != OnnxHead::none && options.head != OnnxHead::softmax &&
      options.head != OnnxHead::sigmoid) {
    throw ArgumentError("save_onnx: head: expected none, softmax or sigmoid, got " +
                        std::to_string(static_cast<int>(options.head)));
  }
  const std::vector<float> params =
      model.params_with_scaling_folded();  // answers in the caller's units
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (!std::isfinite(params[i])) {
      throw NumericError("save_onnx: '" + path + "': " + (std::isnan(params[i]) ? "NaN" : "inf") +
                         " at " + parameter_name(model.widths(), static_cast<std::int64_t>(i)) +
                         "; nothing was written");
    }
  }
  Graph g;
  std::string h = "input";
  std::size_t module = 0;  // the Sequential index, as the safetensors names count
  for (int l = 0; l < model.layers(); ++l) {
    const std::int64_t in = model.widths()[l], out = model.widths()[l + 1];
    const Activation act = model.activations()[l];
    const std::string w = std::to_string(module) + ".weight", b = std::to_string(module) + ".bias";
    const float* p = params.data() + model.weight_offset(l);
    g.initializer(tensor(w, {out, in}, p, static_cast<std::size_t>(out * in)));
    g.initializer(tensor(b, {out}, p + out * in, static_cast<std::size_t>(out)));
    const bool last = l + 1 == model.layers();
    const std::string prefix = "layer" + std::to_string(l) + ".";
    const std::string y = last && options.head == OnnxHead::none ? "output" : prefix + "y";
    const std::string z = act == Activation::identity ? y : prefix + "z";
    Graph::int_attribute(g.node("Gemm", {h, w, b}, z, prefix + "gemm"), "transB", 1);
    if (act != Activation::identity) activation(g, act, z, y, prefix);
    h = y;
    module += act == Activation::identity ? 1 : 2;
  }
  if (options.head == OnnxHead::softmax) {
    Graph::int_attribute(g.node("Softmax", {h}, "output", "head.softmax"), "axis", 1);
  } else if (options.head == OnnxHead::sigmoid) {
    g.node("Sigmoid", {h}, "output", "head.sigmoid");
  }
  const std::string doc = "descent MLP " + model.describe() + ", head " + to_string(options.head);
  // ModelProto: ir_version 1, producer_name 2, producer_version 3, doc_string 6, graph 7,
  // opset_import 8 (domain 1, version 2), metadata_props 14 (key 1, value 2).
  Message m;
  m.integer(1, kIrVersion).bytes(2, "descent").bytes(3, version()).bytes(6, doc);
  m.message(7, g.encode("descent_mlp", doc, model.inputs(), model.outputs()));
  m.message(8, Message().bytes(1, "").integer(2, kOpset));
  std::string widths, activations;
  for (std::int64_t w : model.widths()) {
    if (!widths.empty()) widths += ',';
    widths += std::to_string(w);
  }
  for (Activation a : model.activations()) {
    if (!activations.empty()) activations += ',';
    activations += to_string(a);
  }
  for (const auto& [key, value] : {std::pair<std::string, std::string>{"descent.widths", widths},
                                   {"descent.activations", activations},
                                   {"descent.head", to_string(options.head)}}) {
    m.message(14, Message().bytes(1, key).bytes(2, value));
  }
  write_file_atomic(path, m.encoded(), "save_onnx");
}

}  // namespace descent
