// Sgd and LrSchedule: the schedule's formula, the momentum state and the per-step lr write.
#include "descent/optimizer.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>
#include <sstream>
#include <string>

#include "backend/backend.hpp"
#include "descent/error.hpp"
#include "descent/model.hpp"

namespace descent {

namespace {
bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }
}  // namespace

const char* to_string(LrSchedule::Kind kind) {
  switch (kind) {
    case LrSchedule::Kind::constant:
      return "constant";
    case LrSchedule::Kind::step:
      return "step";
    case LrSchedule::Kind::cosine:
      return "cosine";
  }
  return "unknown";
}

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

Sgd::Sgd(Mlp& model, SgdOptions options, LrSchedule schedule)
    : model_(&model), options_(options), schedule_(schedule) {
  validate(options_);
  validate(schedule_);
  const Context& ctx = model.context();
  if (options_.momentum != 0.0f) {
    momentum_ = Buffer<float>(ctx, model.parameter_count());
    // Zero, so that a first update skipped for a non-finite loss leaves a usable buffer.
    fill(ctx, momentum_.view(), 0.0f);
  }
  lr_ = Buffer<float>(ctx, 1);
}

Sgd::Sgd(Sgd&&) noexcept = default;
Sgd& Sgd::operator=(Sgd&&) noexcept = default;
Sgd::~Sgd() = default;

void Sgd::prepare() {
  const float value = lr();
  if (same_bits(value, lr_written_)) return;  // a constant rate is written once
  const Context& ctx = model_->context();
  detail::backend_of(ctx).store_float(ctx, lr_.data(), value);
  lr_written_ = value;
}

void Sgd::update(const std::int32_t* found_inf) {
  SgdStep s;
  s.first_step = steps_ == 0;
  s.found_inf = found_inf;
  s.lr_device = lr_.data();
  s.params_bf16 = model_->params_bf16();  // empty for an fp32 model
  sgd_update(model_->context(), model_->params(), model_->grads(), momentum_.view(), options_, s);
}

void Sgd::step() {
  prepare();
  update();
  advance();
}

void Sgd::set_steps(std::int64_t steps) {
  if (steps < 0)
    throw ArgumentError("Sgd::set_steps: steps: must be >= 0, got " + std::to_string(steps));
  steps_ = steps;
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
}

std::vector<float> Sgd::momentum_to_host() const {
  if (!has_momentum()) return {};
  return momentum_.to_host(model_->context());
}

}  // namespace descent
