// The C API contract tests' shared parts (tests/test_c_api_contract.cpp says what they check):
// the world every call works on, how a call is described in the table, and checkpoint files
// made wrong on purpose. The table itself: c_api_contract_setup.cpp (status, contexts, models,
// optimizers, datasets), c_api_contract_training.cpp (communicators, trainers, checkpoints) and
// c_api_contract_exchange.cpp (safetensors, ONNX).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "descent/descent.h"

namespace c_api_contract {

namespace fs = std::filesystem;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

inline std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A big-endian u32, as IDX headers store them.
inline std::string be32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

// Everything the calls work on: a cpu context, a model {3, 5, 2} with SGD (momentum, a step
// schedule) and a softmax cross-entropy trainer (clipping on) that has taken two steps, so its
// momentum, loss, gradient norm and learning rate are all past their initial values; datasets;
// a checkpoint of model and optimizer; IDX files; a second model {3, 4, 2} with its own
// optimizer. Two worlds built alike are alike to the bit (one thread, seeded).
struct World {
  static constexpr std::int64_t kRows = 4, kInputs = 3, kOutputs = 2;

  fs::path dir;
  descent_context* ctx = nullptr;
  descent_model* model = nullptr;
  descent_optimizer* opt = nullptr;
  descent_trainer* trainer = nullptr;
  descent_dataset* data = nullptr;          // 8 samples, 3 features, 2 classes
  descent_dataset* targets_data = nullptr;  // 8 samples, 3 features, 2 float targets
  descent_dataset* wide_data = nullptr;     // 8 samples, 4 features, 2 classes
  descent_communicator* single = nullptr;
  descent_model* other_model = nullptr;  // {3, 4, 2}
  descent_optimizer* other_opt = nullptr;
  descent_optimizer* lbfgs = nullptr;  // kind "lbfgs" on model, max_iter 3
  descent_jet* jet = nullptr;     // unit directions over model, second order, one forward pass done
  std::vector<float> x, targets;  // a batch [kRows, kInputs], targets [kRows, kOutputs]
  std::vector<std::int32_t> labels;
  std::int64_t params = 0;
  std::string checkpoint, images, idx_labels;

  World() {
    static int made = 0;
    dir = fs::temp_directory_path() /
          ("descent-c-api-contract-" + std::to_string(::getpid()) + "-" + std::to_string(made++));
    fs::remove_all(dir);
    fs::create_directories(dir);
    ok(descent_context_create("cpu", 1, &ctx));
    const std::int64_t widths[] = {kInputs, 5, kOutputs};
    ok(descent_model_create(ctx, widths, 3, "tanh", 7, &model));
    ok(descent_optimizer_create(model, 0.1f, 0.9f, 0.01f, 0, "step", 2, 0.5f, &opt));
    ok(descent_trainer_create(model, opt, "softmax_cross_entropy", &trainer));
    ok(descent_trainer_set_clip_grad_norm(trainer, 10.0f, 2.0f));
    ok(descent_model_parameter_count(model, &params));
    for (std::int64_t i = 0; i < kRows * kInputs; ++i) x.push_back(std::sin(0.7f * float(i) + 1));
    for (std::int64_t i = 0; i < kRows * kOutputs; ++i) targets.push_back(0.25f * float(i % 3));
    labels = {0, 1, 1, 0};
    ok(descent_trainer_step(trainer, x.data(), kRows, kInputs, kInputs, labels.data(), nullptr, 0,
                            DESCENT_MEMORY_HOST));
    ok(descent_trainer_step(trainer, x.data(), kRows, kInputs, kInputs, labels.data(), nullptr, 0,
                            DESCENT_MEMORY_HOST));
    std::vector<float> f(8 * 4), t(8 * kOutputs);
    for (std::size_t i = 0; i < f.size(); ++i) f[i] = std::cos(0.3f * float(i));
    for (std::size_t i = 0; i < t.size(); ++i) t[i] = 0.1f * float(i);
    const std::int32_t l[] = {0, 1, 0, 1, 1, 0, 0, 1};
    ok(descent_dataset_create_labels(f.data(), 8, 3, 4, l, 2, &data));
    ok(descent_dataset_create_targets(f.data(), 8, 3, 4, t.data(), 2, 2, &targets_data));
    ok(descent_dataset_create_labels(f.data(), 8, 4, 4, l, 2, &wide_data));
    ok(descent_communicator_create_single(&single));
    const std::int64_t other_widths[] = {kInputs, 4, kOutputs};
    ok(descent_model_create(ctx, other_widths, 3, "tanh", 9, &other_model));
    ok(descent_optimizer_create(other_model, 0.1f, 0.9f, 0, 0, nullptr, 0, 0, &other_opt));
    ok(descent_optimizer_create_from(model, "lbfgs", "max_iter=3", nullptr, 0, 0, &lbfgs));
    ok(descent_jet_create(model, 0, nullptr, nullptr, 1, &jet));
    ok(descent_jet_forward(jet, x.data(), kRows, kInputs, kInputs, DESCENT_MEMORY_HOST));
    checkpoint = (dir / "model.ckpt").string();
    ok(descent_checkpoint_save(checkpoint.c_str(), model, opt));
    images = (dir / "images.idx").string();
    idx_labels = (dir / "labels.idx").string();
    write_bytes(images, be32(0x803) + be32(4) + be32(1) + be32(3) + std::string(12, '\x40'));
    write_bytes(idx_labels, be32(0x801) + be32(4) + std::string("\x00\x01\x01\x00", 4));
  }

  ~World() {
    descent_jet_destroy(jet);
    descent_trainer_destroy(trainer);
    descent_optimizer_destroy(other_opt);
    descent_optimizer_destroy(lbfgs);
    descent_optimizer_destroy(opt);
    descent_model_destroy(other_model);
    descent_model_destroy(model);
    descent_dataset_destroy(data);
    descent_dataset_destroy(targets_data);
    descent_dataset_destroy(wide_data);
    descent_communicator_destroy(single);
    descent_context_destroy(ctx);
    std::error_code ec;
    fs::remove_all(dir, ec);
  }

  World(const World&) = delete;
  World& operator=(const World&) = delete;

  static void ok(descent_status s) {
    if (s != DESCENT_OK) {
      ADD_FAILURE() << "setting up: " << descent_status_string(s) << ": " << descent_last_error();
    }
  }

  // A file in the world's folder holding `bytes`.
  std::string file(const std::string& name, const std::string& bytes) const {
    write_bytes(dir / name, bytes);
    return (dir / name).string();
  }

  // A checkpoint of a new model {3, 5, 2} or `widths` (and optimizer, when `optimizer` is not
  // NULL: "sgd", "sgd0" without momentum, "adam").
  std::string saved(const std::string& name, const char* optimizer,
                    const std::vector<std::int64_t>& widths = {kInputs, 5, kOutputs}) const {
    descent_model* m = nullptr;
    descent_optimizer* o = nullptr;
    ok(descent_model_create(ctx, widths.data(), int(widths.size()), "tanh", 3, &m));
    if (optimizer != nullptr && std::string(optimizer) == "adam") {
      ok(descent_optimizer_create_adam(m, "adam", 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 0, nullptr, 0, 0,
                                       &o));
    } else if (optimizer != nullptr) {
      const float momentum = std::string(optimizer) == "sgd0" ? 0.0f : 0.9f;
      ok(descent_optimizer_create(m, 0.1f, momentum, 0, 0, nullptr, 0, 0, &o));
    }
    const std::string path = (dir / name).string();
    ok(descent_checkpoint_save(path.c_str(), m, o));
    descent_optimizer_destroy(o);
    descent_model_destroy(m);
    return path;
  }
};

// Exact text of a float (hex), so that observations compare bit for bit and NaN equals NaN.
inline std::string exact(double v) {
  char text[64];
  std::snprintf(text, sizeof text, "%a", v);
  return text;
}

template <class T>
std::string exact_all(const std::vector<T>& values) {
  std::string s;
  for (const T& v : values)
    s += (std::is_floating_point_v<T> ? exact(double(v)) : std::to_string(v)) + " ";
  return s;
}

// One call of an entry: its pointer arguments pass through arg(), which turns the one named
// `null` into NULL and records every name it is asked for (checked against descent.h).
class Call {
 public:
  explicit Call(std::string null = "") : null_(std::move(null)) {}

  template <class T>
  T* arg(const std::string& name, T* p) {
    used_.insert(name);
    return name == null_ ? nullptr : p;
  }

  // A handle made through `out` (called as made(status, out, destroy) with the local `out`
  // pre-set by fresh(); read by reference, after the call): destroyed on success; on failure it
  // must have been set to NULL (unless `out` itself was the NULL argument).
  template <class T>
  descent_status made(descent_status s, T* const& p, void (*destroy)(T*)) {
    if (s == DESCENT_OK) {
      destroy(p);
    } else if (null_ != "out" && p != nullptr) {
      out_left_set_ = true;
    }
    return s;
  }

  template <class T>
  static T* fresh() {
    return reinterpret_cast<T*>(std::uintptr_t{16});  // never a valid handle
  }

  bool is_null(const std::string& name) const { return name == null_; }
  const std::set<std::string>& used() const { return used_; }
  bool out_left_set() const { return out_left_set_; }

 private:
  std::string null_;
  std::set<std::string> used_;
  bool out_left_set_ = false;
};

using Body = std::function<descent_status(World&, Call&)>;

enum class Effect {
  none,           // reads only (or writes only to the caller's outputs)
  changes_state,  // changes a handle's state, makes a handle, or writes a file
  destroys,       // a destroy function: NULL is a no-op
  ends_process,   // never returns with valid arguments (called with NULL ones only)
};

struct Failure {
  std::string what;
  descent_status expected;
  Body call;
};

struct Entry {
  std::string name;
  std::vector<std::string> required;  // pointer arguments that may not be NULL
  std::vector<std::string> nullable;  // pointer arguments NULL is valid for (with this world)
  Effect effect;
  Body call;  // with valid arguments, except the one Call names
  std::vector<Failure> failures;
  // The status of the valid call (not OK where this process cannot do it), and why.
  descent_status valid;
  std::string why_not_ok;

  Entry(std::string name_, std::vector<std::string> required_, std::vector<std::string> nullable_,
        Effect effect_, Body call_, std::vector<Failure> failures_ = {},
        descent_status valid_ = DESCENT_OK, std::string why_not_ok_ = "")
      : name(std::move(name_)),
        required(std::move(required_)),
        nullable(std::move(nullable_)),
        effect(effect_),
        call(std::move(call_)),
        failures(std::move(failures_)),
        valid(valid_),
        why_not_ok(std::move(why_not_ok_)) {}
};

// Shorthands for the table.
constexpr descent_memory kHost = DESCENT_MEMORY_HOST;
constexpr auto kShape = DESCENT_ERROR_SHAPE;
constexpr auto kArgument = DESCENT_ERROR_ARGUMENT;
constexpr auto kData = DESCENT_ERROR_DATA;
constexpr auto kDevice = DESCENT_ERROR_DEVICE;
constexpr auto kIo = DESCENT_ERROR_IO;

// A batch of 4 rows of the model's 3 inputs.
inline const std::vector<float> kBatch = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f,
                                          0.7f, 0.8f, 0.9f, 1.0f, 1.1f, 1.2f};

// The first half of a good checkpoint, and one with a byte flipped in its middle.
inline std::string truncated(const World& w) {
  const std::string bytes = read_bytes(w.checkpoint);
  return w.file("truncated.ckpt", bytes.substr(0, bytes.size() / 2));
}
inline std::string flipped(const World& w) {
  std::string bytes = read_bytes(w.checkpoint);
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x10);
  return w.file("flipped.ckpt", bytes);
}
// CRC-32 (zlib's polynomial), as the checkpoint's last four bytes hold it.
inline std::uint32_t crc32(const std::string& bytes) {
  std::uint32_t crc = 0xffffffffu;
  for (const char ch : bytes) {
    crc ^= static_cast<unsigned char>(ch);
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

// The world's checkpoint with one parameter made `value` (NaN, infinite) and a checksum that
// matches again, so only the value is wrong: found by the parameters' bytes, which the file
// holds as they are (little-endian floats).
inline std::string non_finite(World& w, float value) {
  std::vector<float> p(static_cast<std::size_t>(w.params));
  World::ok(descent_model_get_params(w.model, p.data(), w.params));
  std::string bytes = read_bytes(w.checkpoint);
  const std::string params(reinterpret_cast<const char*>(p.data()), sizeof(float) * p.size());
  const std::size_t at = bytes.find(params);
  if (at == std::string::npos) {
    ADD_FAILURE() << "the checkpoint does not hold the parameters as little-endian floats";
    return w.checkpoint;
  }
  std::memcpy(bytes.data() + at + sizeof(float) * (p.size() / 3), &value, sizeof value);
  bytes.resize(bytes.size() - 4);
  const std::uint32_t crc = crc32(bytes);
  for (int k = 0; k < 4; ++k) bytes.push_back(static_cast<char>(crc >> (8 * k)));
  return w.file("non-finite.ckpt", bytes);
}

// The table, in four parts: status, contexts, models, optimizers and datasets; then
// communicators, trainers and checkpoints; then the exchange formats (safetensors, ONNX); then
// the losses on derivatives (jets, PDE residuals, gradients term by term).
std::vector<Entry> setup_entries();
std::vector<Entry> training_entries();
std::vector<Entry> exchange_entries();
std::vector<Entry> jet_entries();

}  // namespace c_api_contract
