// Checkpoints: the versioned binary format, its CRC-32, atomic writes (temp file + rename) and
// the checks a load makes before it changes anything.
#include "descent/checkpoint.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>

#include "descent/error.hpp"
#include "descent/output.hpp"
#include "framed_file.hpp"
#include "input_file.hpp"

namespace descent {

namespace {

constexpr char kMagic[8] = {'D', 'S', 'C', 'N', 'T', 'C', 'K', 'P'};
using detail::Reader;
using detail::Writer;

// The first value of a tensor that is not a finite number, named for the user: a checkpoint
// holding one would train or evaluate to NaN later, far from its cause. Empty when all are.
std::string first_non_finite(const std::vector<float>& values, const std::string& tensor,
                             const std::vector<std::int64_t>& widths) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (std::isfinite(values[i])) continue;
    const float v = values[i];
    return tensor + ": " +
           (std::isnan(v) ? "NaN"
            : v > 0       ? "+inf"
                          : "-inf") +
           " at " +
           (values.size() == 1 ? std::string("its only value")
                               : parameter_name(widths, static_cast<std::int64_t>(i))) +
           " (a checkpoint holds finite numbers only)";
  }
  return {};
}

// Every value a checkpoint carries, checked before anything is restored from it: parameters and
// optimizer state finite, the update count a whole number >= 0. Empty when all are good.
std::string check_values(const Checkpoint& c, const OptimizerState& state) {
  if (std::string bad = first_non_finite(c.params, "the parameters", c.widths); !bad.empty()) {
    return bad;
  }
  for (const auto& [name, values] : state) {
    const std::string tensor = "the optimizer state '" + name + "'";
    if (std::string bad = first_non_finite(values, tensor, c.widths); !bad.empty()) return bad;
    if (name == "step" && !values.empty() &&
        (values[0] < 0.0f || values[0] != std::floor(values[0]))) {
      return tensor + " (the update count) is " + std::to_string(values[0]) +
             ", expected a whole number >= 0";
    }
  }
  if (c.steps < 0) return "step count " + std::to_string(c.steps) + ", expected >= 0";
  return {};
}

// The scaling's metadata entries: floats as text with 9 significant digits, which read back to
// the same floats.
constexpr const char* kScalingKeys[4] = {"scaling.input_mean", "scaling.input_scale",
                                         "scaling.output_mean", "scaling.output_scale"};

std::vector<float>* scaling_field(Scaling& s, int i) {
  std::vector<float>* fields[4] = {&s.input_mean, &s.input_scale, &s.output_mean, &s.output_scale};
  return fields[i];
}

std::string floats_text(const std::vector<float>& v) {
  std::string out;
  char buf[32];
  for (float x : v) {
    std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(x));
    if (!out.empty()) out += ' ';
    out += buf;
  }
  return out;
}

// Parses floats_text's output; empty when the text is not a list of finite floats.
std::optional<std::vector<float>> parse_floats(const std::string& text) {
  std::vector<float> out;
  const char* p = text.data();
  const char* end = p + text.size();
  while (p < end) {
    if (*p == ' ') {
      ++p;
      continue;
    }
    float x = 0.0f;
    const auto [next, ec] = std::from_chars(p, end, x);
    if (ec != std::errc() || !std::isfinite(x)) return std::nullopt;
    out.push_back(x);
    p = next;
  }
  return out;
}

}  // namespace

const OptimizerOption& Checkpoint::option(const std::string& name) const {
  for (const OptimizerOption& o : options) {
    if (name == o.name) return o;
  }
  throw ArgumentError("Checkpoint::option: " + std::string(to_string(optimizer)) +
                      " has no option '" + name + "'");
}

std::string Checkpoint::get(const std::string& key, const std::string& fallback) const {
  for (const auto& [k, v] : metadata) {
    if (k == key) return v;
  }
  return fallback;
}

void save_checkpoint(const std::string& path, const Mlp& model, const Optimizer* optimizer,
                     const CheckpointMetadata& metadata) {
  if (optimizer != nullptr && &optimizer->model() != &model) {
    throw ArgumentError("save_checkpoint: optimizer: it was built for another Mlp");
  }
  Writer w(kMagic, kCheckpointVersion);
  w.put<std::uint32_t>(static_cast<std::uint32_t>(model.layers()));
  for (std::int64_t width : model.widths()) w.put<std::int64_t>(width);
  for (Activation a : model.activations()) w.put<std::uint32_t>(static_cast<std::uint32_t>(a));
  // A diverged model is refused before anything is written: its file would replace a good
  // checkpoint with one that no load accepts.
  const std::vector<float> params = model.params_to_host();
  if (std::string bad = first_non_finite(params, "the parameters", model.widths()); !bad.empty()) {
    throw NumericError("save_checkpoint: '" + path + "': " + bad + "; nothing was written");
  }
  w.put_values(params);
  w.put<std::uint8_t>(optimizer != nullptr ? 1 : 0);
  if (optimizer != nullptr) {
    w.put<std::uint32_t>(static_cast<std::uint32_t>(optimizer->kind()));
    for (const OptimizerOption& o : optimizer->options_list()) {
      if (o.type == OptimizerOption::Type::flag) {
        w.put<std::uint8_t>(o.flag ? 1 : 0);
      } else {
        w.put<float>(o.number);
      }
    }
    const LrSchedule& s = optimizer->schedule();
    w.put<std::uint32_t>(static_cast<std::uint32_t>(s.kind));
    w.put<std::int64_t>(s.every);
    w.put<float>(s.gamma);
    w.put<std::int64_t>(s.total);
    w.put<float>(s.min_lr);
    w.put<std::int64_t>(optimizer->steps());
    const std::vector<std::string> names = optimizer->state_names();
    w.put<std::uint32_t>(static_cast<std::uint32_t>(names.size()));
    for (const std::string& name : names) {
      const std::vector<float> values = optimizer->state_to_host(name);
      if (std::string bad =
              first_non_finite(values, "the optimizer state '" + name + "'", model.widths());
          !bad.empty()) {
        throw NumericError("save_checkpoint: '" + path + "': " + bad + "; nothing was written");
      }
      w.put_string(name);
      w.put_values(values);
    }
  }
  CheckpointMetadata entries = metadata;
  for (const auto& [k, v] : metadata) {
    if (k.rfind("scaling.", 0) == 0) {
      throw ArgumentError("save_checkpoint: metadata key '" + k +
                          "': keys starting with \"scaling.\" hold the model's scaling");
    }
  }
  Scaling scaling = model.scaling();
  for (int i = 0; i < 4; ++i) {
    if (!scaling_field(scaling, i)->empty()) {
      entries.emplace_back(kScalingKeys[i], floats_text(*scaling_field(scaling, i)));
    }
  }
  w.put<std::uint32_t>(static_cast<std::uint32_t>(entries.size()));
  for (const auto& [k, v] : entries) {
    w.put_string(k);
    w.put_string(v);
  }
  write_file_atomic(path, w.finish(), "save_checkpoint");
}

Checkpoint read_checkpoint(const std::string& path) {
  // No larger than a model this library could hold (16 Gi floats and their momentum).
  constexpr std::uint64_t kMaxCheckpointBytes = std::uint64_t(1) << 37;
  const detail::Frame frame =
      detail::read_frame(path, kMagic, kCheckpointVersion, kMaxCheckpointBytes,
                         "descent checkpoint", "checkpoint", "a checkpoint", "read_checkpoint");
  const std::uint32_t version = frame.version;
  Reader r(frame.bytes, frame.begin, frame.end, "checkpoint '" + path + "'");
  Checkpoint c;
  c.version = version;
  const auto layers = r.get<std::uint32_t>("layer count");
  // Each layer takes a width (8 bytes) and an activation (4 bytes).
  if (layers < 1 || layers > 1000000 || layers > r.remaining() / 12)
    r.fail("layer count " + std::to_string(layers));
  for (std::uint32_t i = 0; i <= layers; ++i) {
    c.widths.push_back(r.get<std::int64_t>("widths"));
    if (c.widths.back() < 1) r.fail("width " + std::to_string(c.widths.back()));
  }
  for (std::uint32_t i = 0; i < layers; ++i) {
    const auto a = r.get<std::uint32_t>("activations");
    if (a > static_cast<std::uint32_t>(Activation::gelu))
      r.fail("activation id " + std::to_string(a));
    c.activations.push_back(static_cast<Activation>(a));
  }
  c.params = r.get_values<float>("parameters");
  // Overflow-checked: the widths come from the file and may be anything >= 1.
  std::uint64_t expected = 0;
  bool overflow = false;
  for (std::size_t l = 0; l < layers && !overflow; ++l) {
    std::uint64_t weights = 0;
    const auto in = static_cast<std::uint64_t>(c.widths[l]);
    const auto out = static_cast<std::uint64_t>(c.widths[l + 1]);
    overflow = !detail::checked_mul(in, out, weights) ||
               __builtin_add_overflow(expected, weights, &expected) ||
               __builtin_add_overflow(expected, out, &expected);
  }
  if (overflow || c.params.size() != expected) {
    r.fail(std::to_string(c.params.size()) + " parameters for an architecture that has " +
           (overflow ? std::string("more than 2^64") : std::to_string(expected)));
  }
  if (std::string bad = first_non_finite(c.params, "the parameters", c.widths); !bad.empty()) {
    r.fail(bad);
  }
  c.has_optimizer = r.get<std::uint8_t>("optimizer flag") != 0;
  if (c.has_optimizer) {
    if (version >= 2) {
      const auto kind = r.get<std::uint32_t>("optimizer kind");
      if (kind > static_cast<std::uint32_t>(OptimizerKind::lbfgs))
        r.fail("optimizer kind " + std::to_string(kind));
      c.optimizer = static_cast<OptimizerKind>(kind);
    }
    c.options = default_options(c.optimizer);
    for (OptimizerOption& o : c.options) {
      if (o.type == OptimizerOption::Type::flag) {
        o.flag = r.get<std::uint8_t>(o.name) != 0;
      } else {
        o.number = r.get<float>(o.name);
      }
    }
    const auto kind = r.get<std::uint32_t>("schedule kind");
    if (kind > static_cast<std::uint32_t>(LrSchedule::Kind::cosine))
      r.fail("schedule kind " + std::to_string(kind));
    c.schedule.kind = static_cast<LrSchedule::Kind>(kind);
    c.schedule.every = r.get<std::int64_t>("schedule every");
    c.schedule.gamma = r.get<float>("schedule gamma");
    c.schedule.total = r.get<std::int64_t>("schedule total");
    c.schedule.min_lr = r.get<float>("schedule min_lr");
    c.steps = r.get<std::int64_t>("step count");
    if (c.steps < 0) r.fail("step count " + std::to_string(c.steps));
    if (version == 1) {
      std::vector<float> momentum = r.get_values<float>("momentum");
      if (!momentum.empty()) c.state.emplace_back("momentum", std::move(momentum));
    } else {
      const auto count = r.get<std::uint32_t>("optimizer state count");
      // Each entry takes at least a 4-byte name length and an 8-byte value count.
      if (count > r.remaining() / 12) r.fail("optimizer state count " + std::to_string(count));
      for (std::uint32_t i = 0; i < count; ++i) {
        std::string name = r.get_string("optimizer state name");
        std::vector<float> values = r.get_values<float>("optimizer state values");
        c.state.emplace_back(std::move(name), std::move(values));
      }
    }
    if (c.optimizer == OptimizerKind::lbfgs) {
      const std::string bad =
          detail::check_lbfgs_state(c.options, c.state, static_cast<std::int64_t>(c.params.size()));
      if (!bad.empty()) r.fail(bad);
    }
    for (const auto& [name, values] : c.state) {
      const std::size_t expected = name == "step" ? 1 : c.params.size();
      if (c.optimizer != OptimizerKind::lbfgs && values.size() != expected) {
        r.fail(std::to_string(values.size()) + " values of optimizer state '" + name +
               "', expected " + std::to_string(expected));
      }
      if (name == "momentum") c.momentum = values;
    }
    if (std::string bad = check_values(c, c.state); !bad.empty()) r.fail(bad);
    try {
      with_options(c.optimizer, c.options);
      validate(c.schedule);
    } catch (const ArgumentError& e) {
      r.fail(e.what());
    }
  }
  const auto entries = r.get<std::uint32_t>("metadata count");
  // Each entry takes at least its two 4-byte lengths.
  if (entries > r.remaining() / 8) r.fail("metadata count " + std::to_string(entries));
  for (std::uint32_t i = 0; i < entries; ++i) {
    std::string k = r.get_string("metadata key");
    std::string v = r.get_string("metadata value");
    c.metadata.emplace_back(std::move(k), std::move(v));
  }
  if (!r.done()) r.fail("bytes left over after the last field");
  for (const auto& [k, v] : c.metadata) {
    for (int i = 0; i < 4; ++i) {
      if (k != kScalingKeys[i]) continue;
      std::optional<std::vector<float>> values = parse_floats(v);
      if (!values) r.fail("metadata '" + k + "': not a list of finite floats");
      *scaling_field(c.scaling, i) = std::move(*values);
    }
  }
  try {
    validate(c.scaling, c.widths.front(), c.widths.back());
  } catch (const ArgumentError& e) {
    r.fail(e.what());
  }
  return c;
}

void restore(const Checkpoint& c, Mlp& model, Optimizer* optimizer, const std::string& what) {
  if (c.widths != model.widths() || c.activations != model.activations()) {
    throw DataError(what + ": architecture " + describe_architecture(c.widths, c.activations) +
                    " does not match the model's " +
                    describe_architecture(model.widths(), model.activations()));
  }
  // The state to restore: the Checkpoint's list, or (a Checkpoint built by hand with only the
  // SGD momentum set) its momentum.
  OptimizerState state = c.state;
  if (state.empty() && !c.momentum.empty()) state.emplace_back("momentum", c.momentum);
  if (optimizer != nullptr) {
    if (&optimizer->model() != &model) {
      throw ArgumentError("load_checkpoint: optimizer: it was built for another Mlp");
    }
    if (!c.has_optimizer) {
      throw DataError(what + ": holds no optimizer state (it was saved without an optimizer)");
    }
    if (c.optimizer != optimizer->kind()) {
      throw DataError(what + ": holds the state of " + to_string(c.optimizer) +
                      " but the optimizer is " + to_string(optimizer->kind()));
    }
    std::vector<std::string> names;
    for (const auto& entry : state) names.push_back(entry.first);
    const std::vector<std::string> expected = optimizer->state_names();
    if (names != expected) {
      const auto join = [](const std::vector<std::string>& v) {
        std::string s;
        for (const std::string& n : v) s += (s.empty() ? "" : ", ") + n;
        return s.empty() ? std::string("none") : s;
      };
      throw DataError(what + ": holds the optimizer state " + join(names) +
                      " but the optimizer keeps " + join(expected) + " (with its options " +
                      describe_options(optimizer->options_list()) +
                      "; an option that adds state, such as SGD's momentum or Adam's amsgrad, "
                      "must match)");
    }
  }
  // A Checkpoint built by hand may disagree with its own architecture: check every size before
  // changing anything, so that a failed restore leaves model and optimizer as they were.
  if (static_cast<std::int64_t>(c.params.size()) != model.parameter_count()) {
    throw DataError(what + ": holds " + std::to_string(c.params.size()) + " parameters, expected " +
                    std::to_string(model.parameter_count()) + " for its architecture " +
                    describe_architecture(c.widths, c.activations));
  }
  if (optimizer != nullptr && optimizer->kind() == OptimizerKind::lbfgs) {
    const std::string bad =
        detail::check_lbfgs_state(optimizer->options_list(), state, model.parameter_count());
    if (!bad.empty()) throw DataError(what + ": " + bad);
  } else if (optimizer != nullptr) {
    for (const auto& [name, values] : state) {
      const std::int64_t expected = name == "step" ? 1 : model.parameter_count();
      if (static_cast<std::int64_t>(values.size()) != expected) {
        throw DataError(what + ": holds " + std::to_string(values.size()) + " " +
                        (name == "momentum" ? std::string("momentum") : "'" + name + "'") +
                        " values, expected " +
                        (name == "step" ? std::string("1")
                                        : "one per parameter (" +
                                              std::to_string(model.parameter_count()) + ")"));
      }
    }
  }
  if (std::string bad = check_values(c, optimizer != nullptr ? state : OptimizerState{});
      !bad.empty()) {
    throw DataError(what + ": " + bad);
  }
  try {
    validate(c.scaling, model.inputs(), model.outputs());
  } catch (const ArgumentError& e) {
    throw DataError(what + ": " + e.what());
  }
  // Every check passed; what remains can still fail (device memory, an optimizer refusing a
  // value), so the old contents are kept and put back: a failed restore changes nothing.
  const std::vector<float> old_params = model.params_to_host();
  const Scaling old_scaling = model.scaling();
  OptimizerState old_state;
  const std::int64_t old_steps = optimizer != nullptr ? optimizer->steps() : 0;
  if (optimizer != nullptr) {
    for (const std::string& name : optimizer->state_names()) {
      old_state.emplace_back(name, optimizer->state_to_host(name));
    }
  }
  try {
    model.params_from_host(c.params);
    model.set_scaling(c.scaling);
    if (optimizer != nullptr) {
      for (const auto& [name, values] : state) optimizer->state_from_host(name, values);
      optimizer->set_steps(c.steps);
    }
  } catch (...) {
    model.params_from_host(old_params);
    model.set_scaling(old_scaling);
    if (optimizer != nullptr) {
      for (const auto& [name, values] : old_state) optimizer->state_from_host(name, values);
      optimizer->set_steps(old_steps);
    }
    throw;
  }
}

void load_checkpoint(const std::string& path, Mlp& model, Optimizer* optimizer) {
  restore(read_checkpoint(path), model, optimizer, "checkpoint '" + path + "'");
}

Mlp make_model(const Context& ctx, const Checkpoint& c, MlpOptions options) {
  Mlp model(ctx, c.widths, c.activations, options);
  model.params_from_host(c.params);
  model.set_scaling(c.scaling);
  return model;
}

}  // namespace descent
