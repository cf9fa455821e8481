// LrSchedule's formula; the Optimizer base (step count, the per-step lr write); Sgd's momentum
// and Adam's moments.
#include "descent/optimizer.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>
#include <sstream>
#include <string>
#include <type_traits>

#include "descent/error.hpp"
#include "descent/model.hpp"
#include "enum_names.hpp"
#include "kernels/backend.hpp"

namespace descent {

namespace {
bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// A named state buffer of the model's parameter count, checked against `values`.
void check_state_count(const char* who, const std::string& name, std::int64_t expected,
                       std::size_t got) {
  if (static_cast<std::int64_t>(got) != expected) {
    throw ShapeError(std::string(who) + "::state_from_host: " + name + ": expected " +
                     std::to_string(expected) + " values, got " + std::to_string(got));
  }
}

[[noreturn]] void unknown_state(const char* who, const std::string& name,
                                const std::vector<std::string>& names) {
  std::string list;
  for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
  throw ArgumentError(std::string(who) + ": state '" + name + "': expected one of " +
                      (list.empty() ? std::string("(none)") : list));
}
}  // namespace

namespace {
constexpr detail::EnumName<OptimizerKind> kOptimizerNames[] = {{OptimizerKind::sgd, "sgd"},
                                                               {OptimizerKind::adam, "adam"},
                                                               {OptimizerKind::adamw, "adamw"},
                                                               {OptimizerKind::lbfgs, "lbfgs"}};
constexpr detail::EnumName<LrSchedule::Kind> kScheduleNames[] = {
    {LrSchedule::Kind::constant, "constant"},
    {LrSchedule::Kind::step, "step"},
    {LrSchedule::Kind::cosine, "cosine"}};
}  // namespace

const char* to_string(OptimizerKind kind) { return detail::name_of(kOptimizerNames, kind); }
OptimizerKind parse_optimizer(const char* text) {
  return detail::parse_enum(kOptimizerNames, text, "optimizer");
}
const char* to_string(LrSchedule::Kind kind) { return detail::name_of(kScheduleNames, kind); }

LrSchedule LrSchedule::step(std::int64_t every, float gamma) {
  LrSchedule s;
  s.kind = Kind::step;
  s.every = every;
  s.gamma = gamma;
  validate(s);
  return s;
}

LrSchedule LrSchedule::cosine(std::int64_t total, float min_lr) {
  LrSchedule s;
  s.kind = Kind::cosine;
  s.total = total;
  s.min_lr = min_lr;
  validate(s);
  return s;
}

float LrSchedule::at(float base_lr, std::int64_t k) const {
  switch (kind) {
    case Kind::constant:
      return base_lr;
    case Kind::step:
      return static_cast<float>(
          base_lr * std::pow(static_cast<double>(gamma), static_cast<double>(k / every)));
    case Kind::cosine: {
      const double t = static_cast<double>(std::min(k, total)) / static_cast<double>(total);
      return static_cast<float>(min_lr +
                                (base_lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * t)));
    }
  }
  return base_lr;
}

std::string LrSchedule::describe() const {
  std::ostringstream s;
  s << to_string(kind);
  if (kind == Kind::step) s << "(every=" << every << " steps, gamma=" << gamma << ")";
  if (kind == Kind::cosine) s << "(total=" << total << " steps, min_lr=" << min_lr << ")";
  return s.str();
}

void validate(const LrSchedule& s) {
  const auto bad = [](const char* field, const std::string& what) {
    throw ArgumentError(std::string("lr schedule: ") + field + ": " + what);
  };
  switch (s.kind) {
    case LrSchedule::Kind::constant:
      break;
    case LrSchedule::Kind::step:
      if (s.every < 1) bad("every", "must be >= 1 step, got " + std::to_string(s.every));
      if (!(s.gamma >= 0.0f) || !std::isfinite(s.gamma)) {
        bad("gamma", "must be a finite number >= 0, got " + std::to_string(s.gamma));
      }
      break;
    case LrSchedule::Kind::cosine:
      if (s.total < 1) bad("total", "must be >= 1 step, got " + std::to_string(s.total));
      if (!(s.min_lr >= 0.0f) || !std::isfinite(s.min_lr)) {
        bad("min_lr", "must be a finite number >= 0, got " + std::to_string(s.min_lr));
      }
      break;
    default:
      bad("kind", "unknown schedule kind " + std::to_string(static_cast<int>(s.kind)));
  }
}

// ---------------------------------------------------------------- Optimizer

Optimizer::Optimizer(Mlp& model, float base_lr, LrSchedule schedule)
    : model_(&model), base_lr_(base_lr), schedule_(schedule) {
  validate(schedule_);
  lr_ = Buffer<float>(model.context(), 1);
}

Optimizer::Optimizer(Optimizer&&) noexcept = default;
Optimizer& Optimizer::operator=(Optimizer&&) noexcept = default;
Optimizer::~Optimizer() = default;

const char* Optimizer::name() const {
  switch (kind()) {
    case OptimizerKind::sgd:
      return "Sgd";
    case OptimizerKind::adam:
      return "Adam";
    case OptimizerKind::adamw:
      return "AdamW";
    case OptimizerKind::lbfgs:
      return "LBfgs";
  }
  return "Optimizer";
}

void Optimizer::prepare() {
  const float value = lr();
  if (same_bits(value, lr_written_)) return;  // a constant rate is written once
  const Context& ctx = model_->context();
  detail::backend_of(ctx).store_float(ctx, lr_.data(), value);
  lr_written_ = value;
}

void Optimizer::step() {
  prepare();
  update(UpdateInputs{});
  advance();
}

void Optimizer::set_steps(std::int64_t steps) {
  if (steps < 0) {
    throw ArgumentError(std::string(name()) + "::set_steps: steps: must be >= 0, got " +
                        std::to_string(steps));
  }
  steps_ = steps;
}

// ---------------------------------------------------------------- options, listed once

namespace {

// Each optimizer's options, written down once: visit(name, field) for every number, then every
// flag, in the order checkpoints store them. Everything else (default_options, options_list,
// with_options and so checkpoints, the replica check, the C API and the command) goes through
// these two functions.
template <class Visit>
void for_each_option(SgdOptions& o, Visit&& visit) {
  visit("lr", o.lr);
  visit("momentum", o.momentum);
  visit("dampening", o.dampening);
  visit("weight_decay", o.weight_decay);
  visit("nesterov", o.nesterov);
  visit("maximize", o.maximize);
}

template <class Visit>
void for_each_option(AdamOptions& o, Visit&& visit) {
  visit("lr", o.lr);
  visit("beta1", o.beta1);
  visit("beta2", o.beta2);
  visit("eps", o.eps);
  visit("weight_decay", o.weight_decay);
  visit("amsgrad", o.amsgrad);
  visit("maximize", o.maximize);
}

template <class Visit>
void for_each_option(LbfgsOptions& o, Visit&& visit) {
  visit("lr", o.lr);
  visit("max_iter", o.max_iter);
  visit("max_eval", o.max_eval);
  visit("tolerance_grad", o.tolerance_grad);
  visit("tolerance_change", o.tolerance_change);
  visit("history_size", o.history_size);
  visit("strong_wolfe", o.strong_wolfe);
}

template <class Options>
std::vector<OptimizerOption> list_of(Options o) {
  std::vector<OptimizerOption> out;
  for_each_option(o, [&](const char* name, auto& field) {
    OptimizerOption opt;
    opt.name = name;
    if constexpr (std::is_same_v<std::decay_t<decltype(field)>, bool>) {
      opt.type = OptimizerOption::Type::flag;
      opt.flag = field;
    } else {
      opt.number = static_cast<float>(field);
    }
    out.push_back(opt);
  });
  return out;
}

// The options struct of a list (names checked against the kind's own).
template <class Options>
Options options_of(Options o, std::span<const OptimizerOption> list, const char* kind) {
  for (const OptimizerOption& given : list) {
    bool found = false;
    for_each_option(o, [&](const char* name, auto& field) {
      if (std::strcmp(name, given.name) != 0) return;
      found = true;
      constexpr bool is_flag = std::is_same_v<std::decay_t<decltype(field)>, bool>;
      if (is_flag != (given.type == OptimizerOption::Type::flag)) {
        throw ArgumentError(std::string(kind) + ": option " + name + ": is a " +
                            (is_flag ? "flag" : "number") + ", given as a " +
                            (is_flag ? "number" : "flag"));
      }
      if constexpr (is_flag) {
        field = given.flag;
      } else if constexpr (std::is_integral_v<std::decay_t<decltype(field)>>) {
        // A whole-number option: the float must be whole and within int32 (validate narrows).
        if (!(given.number == std::floor(given.number)) || std::fabs(given.number) > 2.0e9f) {
          throw ArgumentError(std::string(kind) + ": option " + name +
                              ": expected a whole number, got " + std::to_string(given.number));
        }
        field = static_cast<std::decay_t<decltype(field)>>(given.number);
      } else {
        field = given.number;
      }
    });
    if (!found) {
      std::string known;
      for (const OptimizerOption& k : list_of(o))
        known += std::string(known.empty() ? "" : ", ") + k.name;
      throw ArgumentError(std::string(kind) + ": unknown option '" + given.name + "'; " + kind +
                          " has " + known);
    }
  }
  return o;
}

AdamOptions adam_defaults(OptimizerKind kind) {
  return kind == OptimizerKind::adamw ? AdamW::adamw_defaults() : AdamOptions{};
}

}  // namespace

std::vector<OptimizerOption> default_options(OptimizerKind kind) {
  if (kind == OptimizerKind::sgd) return list_of(SgdOptions{});
  if (kind == OptimizerKind::lbfgs) return list_of(LbfgsOptions{});
  return list_of(adam_defaults(kind));
}

std::vector<OptimizerOption> with_options(OptimizerKind kind,
                                          std::span<const OptimizerOption> changes) {
  const char* name = to_string(kind);
  if (kind == OptimizerKind::sgd) {
    const SgdOptions o = options_of(SgdOptions{}, changes, name);
    validate(o);
    return list_of(o);
  }
  if (kind == OptimizerKind::lbfgs) {
    const LbfgsOptions o = options_of(LbfgsOptions{}, changes, name);
    validate(o);
    return list_of(o);
  }
  const AdamOptions o = options_of(adam_defaults(kind), changes, name);
  validate(o);
  return list_of(o);
}

LbfgsOptions lbfgs_options(std::span<const OptimizerOption> options) {
  const LbfgsOptions o = options_of(LbfgsOptions{}, options, "lbfgs");
  validate(o);
  return o;
}

std::vector<OptimizerOption> parse_optimizer_options(OptimizerKind kind, const std::string& text) {
  const std::vector<OptimizerOption> known = default_options(kind);
  const char* kind_name = to_string(kind);
  std::vector<OptimizerOption> out;
  std::size_t start = 0;
  const auto trim = [](std::string t) {
    const auto b = t.find_first_not_of(" \t"), e = t.find_last_not_of(" \t");
    return b == std::string::npos ? std::string() : t.substr(b, e - b + 1);
  };
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = trim(text.substr(start, comma - start));
    start = comma + 1;
    if (item.empty()) {
      if (comma == text.size()) break;
      throw ArgumentError(std::string(kind_name) + ": options '" + text + "': an empty entry");
    }
    const std::size_t eq = item.find('=');
    const std::string name = trim(item.substr(0, eq));
    const std::string value = eq == std::string::npos ? "" : trim(item.substr(eq + 1));
    const auto it = std::find_if(known.begin(), known.end(),
                                 [&](const OptimizerOption& k) { return name == k.name; });
    if (it == known.end()) {
      std::string names;
      for (const OptimizerOption& k : known)
        names += std::string(names.empty() ? "" : ", ") + k.name;
      throw ArgumentError(std::string(kind_name) + ": unknown option '" + name + "'; " + kind_name +
                          " has " + names);
    }
    OptimizerOption opt = *it;
    const std::string where = std::string(kind_name) + ": option " + name + ": ";
    if (opt.type == OptimizerOption::Type::flag) {
      if (value == "1" || value == "true") {
        opt.flag = true;
      } else if (value == "0" || value == "false") {
        opt.flag = false;
      } else {
        throw ArgumentError(where + "got '" + value + "', expected 0, 1, true or false");
      }
    } else {
      double x = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), x);
      const float f = static_cast<float>(x);
      if (value.empty() || ec != std::errc() || end != value.data() + value.size() ||
          !std::isfinite(x)) {
        throw ArgumentError(where + "got '" + value + "', expected a finite number");
      }
      if (!std::isfinite(f) || (x != 0 && std::fabs(f) < std::numeric_limits<float>::min())) {
        throw ArgumentError(where + "got " + value + ", which " +
                            (std::isfinite(f) ? "underflows to 0" : "overflows") +
                            " as a float (descent computes in single precision)");
      }
      opt.number = f;
    }
    out.push_back(opt);
  }
  with_options(kind, out);  // the validation of the whole set
  return out;
}

std::string describe_options(std::span<const OptimizerOption> options) {
  std::ostringstream s;
  for (const OptimizerOption& o : options) {
    if (o.type == OptimizerOption::Type::flag) {
      if (o.flag) s << (s.tellp() > 0 ? " " : "") << o.name;
    } else {
      s << (s.tellp() > 0 ? " " : "") << o.name << " " << o.number;
    }
  }
  return s.str();
}

std::unique_ptr<Optimizer> make_optimizer(Mlp& model, OptimizerKind kind,
                                          std::span<const OptimizerOption> options,
                                          LrSchedule schedule) {
  const char* name = to_string(kind);
  switch (kind) {
    case OptimizerKind::sgd:
      return std::make_unique<Sgd>(model, options_of(SgdOptions{}, options, name), schedule);
    case OptimizerKind::adam:
      return std::make_unique<Adam>(model, options_of(AdamOptions{}, options, name), schedule);
    case OptimizerKind::adamw:
      return std::make_unique<AdamW>(model, options_of(AdamW::adamw_defaults(), options, name),
                                     schedule);
    case OptimizerKind::lbfgs:
      return std::make_unique<LBfgs>(model, options_of(LbfgsOptions{}, options, name), schedule);
  }
  throw ArgumentError("make_optimizer: kind: unknown id " + std::to_string(static_cast<int>(kind)));
}

std::vector<OptimizerOption> Sgd::options_list() const { return list_of(options_); }
std::vector<OptimizerOption> Adam::options_list() const { return list_of(options_); }
std::vector<OptimizerOption> LBfgs::options_list() const { return list_of(options_); }

// ---------------------------------------------------------------- Sgd

Sgd::Sgd(Mlp& model, SgdOptions options, LrSchedule schedule)
    : Optimizer(model, (validate(options), options.lr), schedule), options_(options) {
  const Context& ctx = model.context();
  if (options_.momentum != 0.0f) {
    momentum_ = Buffer<float>(ctx, model.parameter_count());
    // Zero, so that a first update skipped for a non-finite loss leaves a usable buffer.
    fill(ctx, momentum_.view(), 0.0f);
    started_ = Buffer<std::int32_t>(ctx, 2);
    const std::int32_t none[2] = {0, 0};
    started_.copy_from_host(ctx, std::span<const std::int32_t>(none, 2));
  }
}

Sgd::Sgd(Sgd&&) noexcept = default;
Sgd& Sgd::operator=(Sgd&&) noexcept = default;
Sgd::~Sgd() = default;

void Sgd::update(const UpdateInputs& inputs) {
  SgdStep s;
  // Torch's first update is the first one applied, not step 0: a step skipped for a non-finite
  // loss (found_inf, known on the device only) leaves it to the next, so the device decides.
  s.first_step = steps() == 0;
  s.momentum_started = has_momentum() ? started_.data() : nullptr;
  s.found_inf = inputs.found_inf;
  s.grad_scale_device = inputs.grad_scale;
  s.lr_device = lr_device();
  s.params_bf16 = model_->params_bf16();  // empty for an fp32 model
  sgd_update(model_->context(), model_->params(), model_->grads(), momentum_.view(), options_, s);
}

void Sgd::momentum_from_host(std::span<const float> host) {
  if (!has_momentum()) {
    if (host.empty()) return;
    throw ShapeError("Sgd::momentum_from_host: this optimizer has no momentum buffer (momentum 0)");
  }
  if (static_cast<std::int64_t>(host.size()) != momentum_.size()) {
    throw ShapeError("Sgd::momentum_from_host: expected " + std::to_string(momentum_.size()) +
                     " values, got " + std::to_string(host.size()));
  }
  momentum_.copy_from_host(model_->context(), host);
  bool applied = false;
  for (float v : host) applied = applied || v != 0.0f;
  const std::int32_t started[2] = {applied ? 1 : 0, 0};
  started_.copy_from_host(model_->context(), std::span<const std::int32_t>(started, 2));
}

std::vector<float> Sgd::momentum_to_host() const {
  if (!has_momentum()) return {};
  return momentum_.to_host(model_->context());
}

std::vector<std::string> Sgd::state_names() const {
  if (!has_momentum()) return {};
  return {"momentum"};
}

std::vector<float> Sgd::state_to_host(const std::string& name) const {
  if (name != "momentum" || !has_momentum()) unknown_state("Sgd", name, state_names());
  return momentum_to_host();
}

void Sgd::state_from_host(const std::string& name, std::span<const float> values) {
  if (name != "momentum" || !has_momentum()) unknown_state("Sgd", name, state_names());
  momentum_from_host(values);
}

// ---------------------------------------------------------------- Adam, AdamW

Adam::Adam(Mlp& model, AdamOptions options, LrSchedule schedule)
    : Optimizer(model, (validate(options), options.lr), schedule), options_(options) {
  const Context& ctx = model.context();
  const std::int64_t n = model.parameter_count();
  exp_avg_ = Buffer<float>(ctx, n);
  exp_avg_sq_ = Buffer<float>(ctx, n);
  fill(ctx, exp_avg_.view(), 0.0f);
  fill(ctx, exp_avg_sq_.view(), 0.0f);
  if (options_.amsgrad) {
    max_exp_avg_sq_ = Buffer<float>(ctx, n);
    fill(ctx, max_exp_avg_sq_.view(), 0.0f);
  }
  scalars_ = Buffer<float>(ctx, detail::kAdamScalarFloats);
  fill(ctx, scalars_.view(), 0.0f);
}

Adam::Adam(Adam&&) noexcept = default;
Adam& Adam::operator=(Adam&&) noexcept = default;
Adam::~Adam() = default;

void Adam::update(const UpdateInputs& inputs) {
  AdamStep s;
  s.found_inf = inputs.found_inf;
  s.grad_scale_device = inputs.grad_scale;
  s.lr_device = lr_device();
  s.scalars = scalars_.data();
  s.params_bf16 = model_->params_bf16();
  adam_update(model_->context(), model_->params(), model_->grads(), exp_avg_.view(),
              exp_avg_sq_.view(), max_exp_avg_sq_.view(), options_, s);
}

std::vector<std::string> Adam::state_names() const {
  std::vector<std::string> names{"exp_avg", "exp_avg_sq"};
  if (options_.amsgrad) names.emplace_back("max_exp_avg_sq");
  names.emplace_back("step");
  return names;
}

std::vector<float> Adam::state_to_host(const std::string& state) const {
  const Context& ctx = model_->context();
  if (state == "exp_avg") return exp_avg_.to_host(ctx);
  if (state == "exp_avg_sq") return exp_avg_sq_.to_host(ctx);
  if (state == "max_exp_avg_sq" && options_.amsgrad) return max_exp_avg_sq_.to_host(ctx);
  if (state == "step") return {scalars_.to_host(ctx)[0]};
  unknown_state(Optimizer::name(), state, state_names());
}

void Adam::state_from_host(const std::string& state, std::span<const float> values) {
  const Context& ctx = model_->context();
  const std::int64_t n = model_->parameter_count();
  Buffer<float>* target = nullptr;
  if (state == "exp_avg") target = &exp_avg_;
  if (state == "exp_avg_sq") target = &exp_avg_sq_;
  if (state == "max_exp_avg_sq" && options_.amsgrad) target = &max_exp_avg_sq_;
  if (target != nullptr) {
    check_state_count(Optimizer::name(), state, n, values.size());
    target->copy_from_host(ctx, values);
    return;
  }
  if (state == "step") {
    check_state_count(Optimizer::name(), state, 1, values.size());
    if (!(values[0] >= 0.0f) || !std::isfinite(values[0]) || values[0] != std::floor(values[0])) {
      throw DataError(std::string(Optimizer::name()) +
                      "::state_from_host: step: expected a whole " + "number >= 0, got " +
                      std::to_string(values[0]));
    }
    // The scalars after `step` updates: the next update recomputes the rest from the count.
    const float scalars[4] = {values[0], 0.0f, 1.0f, 0.0f};
    scalars_.copy_from_host(ctx, std::span<const float>(scalars, 4));
    return;
  }
  unknown_state(Optimizer::name(), state, state_names());
}

AdamW::AdamW(Mlp& model, AdamOptions options, LrSchedule schedule)
    : Adam(model, (options.decoupled_weight_decay = true, options), schedule) {}

std::string Adam::non_finite_cause() const {
  if (options_.eps != 0.0f) return {};
  return std::string(to_string(kind())) +
         " with eps 0 divides 0 by 0 for a parameter whose gradient has been exactly 0 so far (a "
         "constant input feature, a unit that never activates); give eps > 0 (1e-8 is torch's "
         "default)";
}

}  // namespace descent
