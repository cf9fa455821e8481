// safetensors and ONNX export: round trips (fp32, bf16, every activation), the torch.nn.Sequential
// names, files written by other tools, and every malformed file refused cleanly, naming the file
// and the tensor. tests/exchange/check_exchange.py proves the files against the real Python tools.
#include <sys/stat.h>

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "descent/descent.hpp"
#include "test_support.hpp"
#include "train_support.hpp"

namespace descent::test {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// One header entry of a hand-made file.
struct Entry {
  std::string name, dtype, shape;
  std::uint64_t begin, end;
};

// A safetensors file: the 8-byte length, the JSON header, the data.
std::string file_bytes(const std::string& header, const std::string& data) {
  std::string b(8, '\0');
  const std::uint64_t n = header.size();
  std::memcpy(b.data(), &n, 8);
  return b + header + data;
}

std::string header_of(const std::vector<Entry>& entries, const std::string& metadata = "") {
  std::string h = "{";
  if (!metadata.empty()) h += "\"__metadata__\":" + metadata;
  for (const Entry& e : entries) {
    if (h.size() > 1) h += ",";
    h += "\"" + e.name + "\":{\"dtype\":\"" + e.dtype + "\",\"shape\":" + e.shape +
         ",\"data_offsets\":[" + std::to_string(e.begin) + "," + std::to_string(e.end) + "]}";
  }
  return h + "}";
}

std::string float_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// What PyTorch writes for Sequential(Linear(2, 3), <activation>, Linear(3, 1)): modules 0 and 2.
std::vector<Entry> torch_entries() {
  return {{"0.weight", "F32", "[3,2]", 0, 24},
          {"0.bias", "F32", "[3]", 24, 36},
          {"2.weight", "F32", "[1,3]", 36, 48},
          {"2.bias", "F32", "[1]", 48, 52}};
}
const std::vector<float> kTorchValues = {0.5f,  -1.0f, 0.25f, 2.0f,  -0.75f, 1.5f, 0.1f,
                                         -0.2f, 0.3f,  1.0f,  -2.0f, 0.5f,   0.05f};

class Safetensors : public ::testing::Test {
 protected:
  TempDir dir;
  Context ctx;
  std::string path = dir / "model.safetensors";

  // Writes a hand-made file and returns its path.
  std::string write(const std::string& bytes, const std::string& name = "made.safetensors") {
    write_bytes(dir / name, bytes);
    return dir / name;
  }
  std::string torch_file(const std::vector<Entry>& entries = torch_entries(),
                         const std::string& metadata = "") {
    return write(file_bytes(header_of(entries, metadata), float_bytes(kTorchValues)));
  }
  // read_safetensors(file) must throw E with a message naming the file and containing `what`.
  template <class E = DataError>
  void expect_refused(const std::string& file, const std::string& what) {
    EXPECT_THROW_THAT(read_safetensors(file), E, AllOf(HasSubstr(file), HasSubstr(what)));
  }
  std::vector<float> forward(Mlp& m, const std::vector<float>& x, std::int64_t rows) {
    Buffer<float> xb(ctx, rows * m.inputs());
    xb.copy_from_host(ctx, x);
    MatrixView<const float> y =
        m.forward(MatrixView<const float>(xb.data(), rows, m.inputs(), ctx.device()));
    std::vector<float> out(static_cast<std::size_t>(rows * m.outputs()));
    for (std::int64_t r = 0; r < rows; ++r) {
      detail::copy_bytes(ctx, out.data() + r * m.outputs(), Device::cpu(), y.data + r * y.ld,
                         ctx.device(), m.outputs() * sizeof(float));
    }
    return out;
  }
};

TEST_F(Safetensors, Fp32RoundTripIsExactForEveryActivation) {
  for (Activation act : kAllActivations) {
    SCOPED_TRACE(to_string(act));
    Mlp model(ctx, {5, 7, 4, 3}, act, {Init::torch_default, 11});
    save_safetensors(path, model);
    const SafetensorsModel m = read_safetensors(path);
    EXPECT_EQ(m.widths, model.widths());
    EXPECT_EQ(m.activations, model.activations());
    EXPECT_EQ(m.params, model.params_to_host());
    EXPECT_EQ(m.get("descent.version"), version());
    EXPECT_EQ(m.get("descent.format"), kSafetensorsFormat);
    EXPECT_EQ(m.get("format"), "pt");
    Mlp loaded = load_safetensors(ctx, path);
    EXPECT_EQ(loaded.describe(), model.describe());
    const std::vector<float> x = {0.1f,  -0.2f, 0.3f,  0.9f, -1.1f, 0.0f, 2.0f, 1.5f,
                                  -0.5f, 0.7f,  0.05f, 0.4f, -3.f,  0.2f, 1.f};
    EXPECT_EQ(forward(loaded, x, 3), forward(model, x, 3));
  }
}

TEST_F(Safetensors, Bf16RoundsLikeToBf16AndWidensBack) {
  Mlp model(ctx, {6, 9, 2}, Activation::gelu, {Init::torch_default, 3});
  save_safetensors(path, model, {Precision::bf16, {}});
  const std::vector<float> params = model.params_to_host();
  std::vector<float> expected;
  for (float p : params) expected.push_back(to_float(to_bf16(p)));
  const SafetensorsModel m = read_safetensors(path);
  EXPECT_EQ(m.params, expected);
  EXPECT_THAT(read_bytes(path), HasSubstr("\"dtype\":\"BF16\""));
  // Half the bytes of fp32 for the values.
  save_safetensors(dir / "fp32.safetensors", model);
  EXPECT_LT(read_bytes(path).size(), read_bytes(dir / "fp32.safetensors").size());
}

TEST_F(Safetensors, NamesFollowTorchSequentialAndIdentityAddsNoModule) {
  Mlp relu(ctx, {784, 512, 10}, Activation::relu);
  save_safetensors(path, relu);
  // The header only (the values would fill a failure message).
  const auto header = [](const std::string& file) {
    const std::string bytes = read_bytes(file);
    std::uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    return bytes.substr(8, n);
  };
  const std::string bytes = header(path);
  for (const char* expected : {"\"0.weight\":{\"dtype\":\"F32\",\"shape\":[512,784]",
                               "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[512]",
                               "\"2.weight\":{\"dtype\":\"F32\",\"shape\":[10,512]",
                               "\"2.bias\":{\"dtype\":\"F32\",\"shape\":[10]",
                               "Sequential(Linear(784, 512), ReLU(), Linear(512, 10))"}) {
    EXPECT_THAT(bytes, HasSubstr(expected));
  }
  Mlp mixed(ctx, {3, 4, 5, 2}, {Activation::identity, Activation::gelu, Activation::sigmoid});
  save_safetensors(path, mixed);
  const std::string m = header(path);
  EXPECT_THAT(m, HasSubstr("\"1.weight\""));
  EXPECT_THAT(m, HasSubstr("\"3.weight\""));
  EXPECT_THAT(m, Not(HasSubstr("\"2.weight\"")));
  EXPECT_THAT(m, HasSubstr("Sequential(Linear(3, 4), Linear(4, 5), GELU(approximate='tanh'), "
                           "Linear(5, 2), Sigmoid())"));
  EXPECT_EQ(read_safetensors(path).activations, mixed.activations());
  // The data section starts 8-byte aligned.
  EXPECT_EQ(m.size() % 8, 0u);
}

TEST_F(Safetensors, ExtraMetadataIsKeptAndReservedKeysRefused) {
  Mlp model(ctx, {2, 3, 1});
  save_safetensors(path, model, {Precision::fp32, {{"scale", "0.5"}, {"note", "x\"y"}}});
  const SafetensorsModel m = read_safetensors(path);
  EXPECT_EQ(m.get("scale"), "0.5");
  EXPECT_EQ(m.get("note"), "x\"y");
  const std::string before = read_bytes(path);
  for (const char* key : {"format", "descent.widths", ""}) {
    EXPECT_THROW(save_safetensors(path, model, {Precision::fp32, {{key, "1"}}}), ArgumentError)
        << key;
  }
  EXPECT_THROW(save_safetensors(path, model, {Precision::fp32, {{"a", "1"}, {"a", "2"}}}),
               ArgumentError);
  EXPECT_THROW(save_safetensors(path, model, {Precision::fp32, {{"bad", "\xff"}}}), ArgumentError);
  EXPECT_EQ(read_bytes(path), before) << "a refused save changed the file";
}

TEST_F(Safetensors, NonFiniteModelIsRefusedAndNothingWritten) {
  Mlp model(ctx, {2, 3, 1});
  save_safetensors(path, model);
  const std::string before = read_bytes(path);
  std::vector<float> p = model.params_to_host();
  p[4] = std::numeric_limits<float>::quiet_NaN();
  model.params_from_host(p);
  EXPECT_THROW_THAT(save_safetensors(path, model), NumericError,
                    AllOf(HasSubstr("0.weight"), HasSubstr("NaN at [2, 0]")));
  EXPECT_THROW(save_onnx(dir / "m.onnx", model), NumericError);
  EXPECT_FALSE(std::filesystem::exists(dir / "m.onnx"));
  p[4] = 3.4e38f;  // finite in fp32, beyond bf16's largest finite value after rounding
  model.params_from_host(p);
  EXPECT_THROW_THAT(save_safetensors(path, model, {Precision::bf16, {}}), NumericError,
                    HasSubstr("bf16"));
  EXPECT_EQ(read_bytes(path), before);
}

TEST_F(Safetensors, TorchFileWithoutMetadataNeedsItsActivations) {
  const std::string file = torch_file();
  expect_refused(file, "give the activations");
  const SafetensorsModel m = read_safetensors(file, {Activation::tanh, Activation::identity});
  EXPECT_EQ(m.widths, (std::vector<std::int64_t>{2, 3, 1}));
  EXPECT_EQ(m.params, kTorchValues);
  // A model of that architecture takes it as is.
  Mlp model(ctx, {2, 3, 1}, Activation::tanh);
  load_safetensors_into(model, file);
  EXPECT_EQ(model.params_to_host(), kTorchValues);
  // A model whose activation adds no module does not fit the file's indices.
  Mlp linear(ctx, {2, 3, 1}, Activation::identity);
  const std::vector<float> before = linear.params_to_host();
  EXPECT_THROW(load_safetensors_into(linear, file), DataError);
  EXPECT_EQ(linear.params_to_host(), before);
  // With the metadata a NumPy writer can add, the file alone suffices.
  const std::string named =
      torch_file(torch_entries(), "{\"descent.activations\":\"sigmoid,identity\"}");
  EXPECT_EQ(read_safetensors(named).activations,
            (std::vector<Activation>{Activation::sigmoid, Activation::identity}));
  EXPECT_THROW(read_safetensors(named, {Activation::tanh, Activation::identity}), DataError);
  // Consecutive Linear modules: identity, no metadata needed.
  std::vector<Entry> linear_entries = torch_entries();
  linear_entries[2].name = "1.weight";
  linear_entries[3].name = "1.bias";
  EXPECT_EQ(read_safetensors(torch_file(linear_entries)).activations,
            (std::vector<Activation>{Activation::identity, Activation::identity}));
}

TEST_F(Safetensors, LoadIntoAnotherArchitectureChangesNothing) {
  Mlp saved(ctx, {4, 5, 2}, Activation::relu, {Init::torch_default, 1});
  save_safetensors(path, saved);
  Mlp other(ctx, {4, 6, 2}, Activation::relu, {Init::torch_default, 2});
  const std::vector<float> before = other.params_to_host();
  EXPECT_THROW_THAT(
      load_safetensors_into(other, path), DataError,
      AllOf(HasSubstr("4-5-2 (relu, identity)"), HasSubstr("4-6-2 (relu, identity)")));
  EXPECT_EQ(other.params_to_host(), before);
  Mlp deeper(ctx, {4, 5, 5, 2}, Activation::relu);
  EXPECT_THROW(load_safetensors_into(deeper, path), DataError);
  Mlp same(ctx, {4, 5, 2}, Activation::relu, {Init::torch_default, 9});
  load_safetensors_into(same, path);
  EXPECT_EQ(same.params_to_host(), saved.params_to_host());
}

TEST_F(Safetensors, NonRegularPathsAreRefusedWithoutBlocking) {
  EXPECT_THROW_THAT(read_safetensors(dir.path().string()), IoError, HasSubstr("a folder"));
  const std::string fifo = dir / "pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_THROW_THAT(read_safetensors(fifo), IoError, HasSubstr("FIFO"));
  EXPECT_THROW(read_safetensors(dir / "missing"), IoError);
  EXPECT_THROW(load_safetensors(ctx, dir / "missing"), IoError);
}

TEST_F(Safetensors, TruncatedAndLyingLengthsAreRefused) {
  Mlp model(ctx, {3, 4, 2});
  save_safetensors(path, model);
  const std::string good = read_bytes(path);
  expect_refused(write(good.substr(0, 5)), "truncated");
  expect_refused(write(""), "truncated");
  for (std::size_t cut : {good.size() / 4, good.size() / 2, good.size() - 1}) {
    EXPECT_THROW(read_safetensors(write(good.substr(0, cut))), DataError) << "cut at " << cut;
  }
  std::string beyond = good;
  const std::uint64_t too_long = good.size();
  std::memcpy(beyond.data(), &too_long, 8);
  expect_refused(write(beyond), "runs past the end of the file");
  std::string huge = good;
  const std::uint64_t big = std::uint64_t(1) << 40;
  std::memcpy(huge.data(), &big, 8);
  expect_refused(write(huge), "above the 100000000 bytes");
  expect_refused(write(file_bytes("{\"0.weight\": [", "")), "not valid JSON");
  expect_refused(write(file_bytes("[1, 2]", "")), "expected an object");
  expect_refused(write(file_bytes("{}", "")), "holds no tensors");
  // Trailing bytes after the last tensor.
  expect_refused(write(good + "xxxx"), "belong to no tensor");
}

TEST_F(Safetensors, InconsistentHeadersAreRefusedNamingTheTensor) {
  const auto with = [&](auto change) {
    std::vector<Entry> e = torch_entries();
    change(e);
    return torch_file(e, "{\"descent.activations\":\"relu,identity\"}");
  };
  expect_refused(with([](auto& e) { e[3].end = 60; }), "'2.bias': data_offsets [48, 60] runs past");
  expect_refused(with([](auto& e) { e[3].begin = 52, e[3].end = 48; }), "ends before it begins");
  expect_refused(with([](auto& e) { e[0].shape = "[3,3]"; }), "'0.weight': data_offsets [0, 24]");
  expect_refused(with([](auto& e) { e[1].begin = 20, e[1].end = 32; }), "overlap");
  expect_refused(with([](auto& e) { e[0].shape = "[6]"; }), "'0.weight': shape [6]");
  expect_refused(with([](auto& e) { e[1].shape = "[2]", e[1].end = 32; }), "belong to no tensor");
  expect_refused(with([](auto& e) {
                   e[2].shape = "[1,4]", e[2].end = 52, e[3].begin = 52, e[3].end = 52,
                   e[3].shape = "[0]";
                 }),
                 "'2.bias': shape [0]");
  expect_refused(with([](auto& e) { e[0].dtype = "F16"; }), "'0.weight': dtype 'F16'");
  expect_refused(with([](auto& e) { e[0].shape = "[3,-2]"; }), "'0.weight': shape");
  expect_refused(with([](auto& e) { e[0].shape = "[3,2.0]"; }), "'0.weight': shape");
  expect_refused(with([](auto& e) { e[0].name = "layer.weight"; }), "'layer.weight'");
  expect_refused(with([](auto& e) { e[0].name = "00.weight"; }), "'00.weight'");
  expect_refused(with([](auto& e) { e[2].name = "5.weight", e[3].name = "5.bias"; }),
                 "one activation module at most");
  expect_refused(with([](auto& e) { e[0].name = "1.weight", e[1].name = "1.bias"; }),
                 "expected module 0 first");
  expect_refused(with([](auto& e) { e[3].name = "3.bias"; }), "no '2.bias'");
  // Weights that do not chain: 2.weight takes 2 inputs where 0.weight gives 3.
  std::vector<Entry> e = torch_entries();
  e[2].shape = "[1,2]", e[2].end = 44, e[3].begin = 44, e[3].end = 48;
  std::vector<float> v = kTorchValues;
  v.resize(12);
  expect_refused(write(file_bytes(header_of(e, "{\"descent.activations\":\"relu,identity\"}"),
                                  float_bytes(v))),
                 "'2.weight': shape [1, 2] takes 2 inputs");
  // Duplicate names: the JSON library would keep the last one.
  std::string dup = header_of(torch_entries());
  dup.insert(dup.size() - 1,
             ",\"0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[24,36]}");
  expect_refused(write(file_bytes(dup, float_bytes(kTorchValues))), "'0.bias' appears twice");
  // Unknown fields and metadata that is not strings, or contradicts the tensors.
  std::string field = header_of(torch_entries());
  field.insert(field.find("\"dtype\""), "\"offset\":3,");
  expect_refused(write(file_bytes(field, float_bytes(kTorchValues))), "unknown field 'offset'");
  expect_refused(torch_file(torch_entries(), "{\"descent.activations\":7}"), "expected a string");
  expect_refused(torch_file(torch_entries(), "{\"descent.activations\":\"relu\"}"),
                 "1 activations for 2 layers");
  expect_refused(torch_file(torch_entries(), "{\"descent.activations\":\"identity,identity\"}"),
                 "activation is identity but the file has an activation module");
  expect_refused(torch_file(torch_entries(), "{\"descent.activations\":\"swish,identity\"}"),
                 "swish");
  expect_refused(
      torch_file(torch_entries(),
                 "{\"descent.activations\":\"relu,identity\",\"descent.widths\":\"2,4,1\"}"),
      "descent.widths '2,4,1'");
}

TEST_F(Safetensors, NonFiniteValuesAreRefusedNamingTheTensor) {
  std::vector<float> v = kTorchValues;
  v[7] = std::numeric_limits<float>::quiet_NaN();  // 0.bias[1]
  expect_refused(
      write(file_bytes(header_of(torch_entries(), "{\"descent.activations\":\"relu,identity\"}"),
                       float_bytes(v))),
      "'0.bias': NaN at [1]");
  v = kTorchValues;
  v[12] = -std::numeric_limits<float>::infinity();
  expect_refused(
      write(file_bytes(header_of(torch_entries(), "{\"descent.activations\":\"relu,identity\"}"),
                       float_bytes(v))),
      "'2.bias': -inf at [0]");
  Mlp model(ctx, {2, 2, 1}, Activation::relu);
  save_safetensors(path, model, {Precision::bf16, {}});
  std::string bytes = read_bytes(path);
  bytes[bytes.size() - 1] = '\x7f';  // the last bf16 value: exponent all ones
  bytes[bytes.size() - 2] = '\xc0';
  expect_refused(write(bytes), "'2.bias': NaN at [0]");
}

TEST_F(Safetensors, OnnxIsWrittenWithTheGraphItPromises) {
  Mlp model(ctx, {4, 6, 3}, Activation::gelu);
  save_onnx(path, model, {OnnxHead::softmax});
  const std::string bytes = read_bytes(path);
  for (const char* s : {"Gemm", "transB", "Softmax", "Tanh", "0.weight", "2.bias", "input",
                        "output", "batch", "descent"}) {
    EXPECT_THAT(bytes, HasSubstr(s));
  }
  EXPECT_EQ(parse_onnx_head("sigmoid"), OnnxHead::sigmoid);
  EXPECT_THROW(parse_onnx_head("relu"), ArgumentError);
  EXPECT_THROW(save_onnx(dir.path().string(), model), IoError);
}

}  // namespace
}  // namespace descent::test
