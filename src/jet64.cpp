// JetF64: residual and value losses of an Mlp's jets in float64 on the host (the CPU backend's
// jet_residual_step_f64), for float64 parameters the caller holds; params_f64 and
// params_from_f64 move a model's parameters between the two precisions.
#include <cmath>
#include <string>
#include <utility>

#include "descent/error.hpp"
#include "descent/jet.hpp"
#include "jet_check.hpp"
#include "kernels/backend.hpp"

namespace descent {

namespace {

[[noreturn]] void refuse(const char* op, const char* arg, const std::string& what) {
  throw ArgumentError(std::string(op) + ": " + arg + ": " + what);
}

// Every value of `values` finite, or ArgumentError naming the first that is not.
void check_finite(const char* op, const char* arg, std::span<const double> values) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      refuse(op, arg,
             "value " + std::to_string(i) + " is " + std::to_string(values[i]) +
                 ", expected a finite number");
    }
  }
}

// The host context the float64 pass runs on: the model's when it is a CPU one (its threads),
// else a CPU context of all threads.
Context host_context(const Mlp& model) {
  return model.context().device().kind == DeviceKind::cpu ? model.context() : Context();
}

}  // namespace

JetF64::JetF64(const Mlp& model, JetOptions options)
    : ctx_(host_context(model)),
      options_(detail::complete_jet_options(model, std::move(options))),
      widths_(model.widths()),
      parameters_(model.parameter_count()) {
  directions_ = static_cast<int>(options_.weights.size());
  v_.assign(options_.directions.begin(), options_.directions.end());
  c_.assign(options_.weights.begin(), options_.weights.end());
}

double JetF64::run(const char* op, std::span<const double> params, std::span<const double> x,
                   bool jets, const std::vector<double>& coefficients,
                   std::span<const double> source, double* grad, std::size_t grad_size,
                   double weight, bool accumulate, double* y) const {
  const auto count = static_cast<std::int64_t>(params.size());
  if (count != parameters_) {
    refuse(op, "params",
           "holds " + std::to_string(count) + " values, expected the model's " +
               std::to_string(parameters_));
  }
  const std::int64_t in = inputs(), out = outputs();
  const auto n = static_cast<std::int64_t>(x.size());
  if (n == 0 || n % in != 0) {
    refuse(op, "x",
           "holds " + std::to_string(n) + " values, expected rows × inputs() = rows × " +
               std::to_string(in) + " with at least one row");
  }
  const std::int64_t rows = n / in;
  if (!source.empty() && static_cast<std::int64_t>(source.size()) != rows * out) {
    refuse(op, jets ? "source" : "target",
           "holds " + std::to_string(source.size()) + " values, expected rows × outputs() = " +
               std::to_string(rows) + " × " + std::to_string(out) + (jets ? " (or none)" : ""));
  }
  if (grad != nullptr && static_cast<std::int64_t>(grad_size) != parameters_) {
    refuse(op, "grad",
           "holds " + std::to_string(grad_size) + " values, expected the model's " +
               std::to_string(parameters_));
  }
  if (!std::isfinite(weight)) refuse(op, "weight", "must be finite, got " + std::to_string(weight));
  check_finite(op, "params", params);
  check_finite(op, "x", x);
  check_finite(op, jets ? "source" : "target", source);

  const detail::Backend& backend = detail::backend_of(ctx_);
  detail::JetStepF64 s;
  s.layers = static_cast<int>(widths_.size()) - 1;
  s.widths = widths_.data();
  s.acts = options_.activations.data();
  s.params = params.data();
  s.grad = grad;
  s.accumulate = accumulate;
  s.directions = jets ? directions_ : 0;
  s.second_order = jets && options_.second_order;
  s.v = v_.data();
  s.cweights = c_.data();
  s.coefficients = coefficients.data();
  s.batch = rows;
  s.x = x.data();
  s.source = source.empty() ? nullptr : source.data();
  s.weight = weight;
  s.y = y;
  return backend.jet_residual_step_f64(ctx_, s);
}

double JetF64::pde_residual_step(std::span<const double> params, std::span<const double> x,
                                 const PdeResidual& residual, std::span<const double> source,
                                 std::span<double> grad, double weight, bool accumulate) const {
  const char* op = "JetF64::pde_residual_step";
  JetBlocks blocks;
  blocks.batch = 1;  // (the check asks for a forward pass; this call is one)
  blocks.directions = directions_;
  blocks.second_order = options_.second_order;
  detail::check_pde_residual(op, ctx_, blocks, residual, 1.0f);
  std::vector<double> coefficients(static_cast<std::size_t>(2 + 2 * directions_), 0.0);
  coefficients[0] = residual.a;
  coefficients[1] = residual.c;
  std::copy(residual.b.begin(), residual.b.end(), coefficients.begin() + 2);
  std::copy(residual.d.begin(), residual.d.end(), coefficients.begin() + 2 + directions_);
  return run(op, params, x, true, coefficients, source, grad.data(), grad.size(), weight,
             accumulate, nullptr);
}

double JetF64::mse_step(std::span<const double> params, std::span<const double> x,
                        std::span<const double> target, std::span<double> grad, double weight,
                        bool accumulate) const {
  const char* op = "JetF64::mse_step";
  if (target.empty()) refuse(op, "target", "is empty, expected rows × outputs() values");
  // (u − target)² is the residual a·u − f with a = 1 and f = target, on the value block alone.
  return run(op, params, x, false, {1.0, 0.0}, target, grad.data(), grad.size(), weight, accumulate,
             nullptr);
}

std::vector<double> JetF64::predict(std::span<const double> params,
                                    std::span<const double> x) const {
  std::vector<double> u(x.size() / static_cast<std::size_t>(inputs()) *
                        static_cast<std::size_t>(outputs()));
  run("JetF64::predict", params, x, false, {1.0, 0.0}, {}, nullptr, 0, 0.0, false, u.data());
  return u;
}

std::vector<double> params_f64(const Mlp& model) {
  const std::vector<float> p = model.params_to_host();
  return {p.begin(), p.end()};
}

void params_from_f64(Mlp& model, std::span<const double> params) {
  const char* op = "params_from_f64";
  if (static_cast<std::int64_t>(params.size()) != model.parameter_count()) {
    refuse(op, "params",
           "holds " + std::to_string(params.size()) + " values, expected the model's " +
               std::to_string(model.parameter_count()));
  }
  std::vector<float> p(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    p[i] = static_cast<float>(params[i]);
    if (!std::isfinite(p[i])) {
      refuse(op, "params",
             "value " + std::to_string(i) + " is " + std::to_string(params[i]) +
                 ", which is not a finite float");
    }
  }
  model.params_from_host(p);
}

}  // namespace descent
