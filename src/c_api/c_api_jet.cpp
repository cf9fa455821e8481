// The C API of losses on derivatives of the network: forward jets, PDE residuals, and the
// gradient of a plain mean squared error, composed term by term into one optimizer step.
#include <cmath>
#include <memory>

#include "c_api/c_api.hpp"
#include "kernels/backend.hpp"

using namespace descent;
using namespace descent::c_api;

struct descent_jet {
  descent_model* model;
  Jet jet;
  std::int64_t rows = 0;  // of the last forward pass (0: none yet)
  Buffer<float> x_stage, source_stage;
  Buffer<float> loss{};           // one float, on the model's device
  std::unique_ptr<JetF64> f64{};  // the float64 calls' (made by the first of them)
};

struct descent_lbfgs_f64 {
  LBfgsF64 opt;
};

namespace {

// (float weights promote exactly.)
void check_weight(double weight) {
  if (!(weight >= 0.0) || !std::isfinite(weight)) {
    throw ArgumentError("weight: expected a finite number >= 0, got " + std::to_string(weight));
  }
}

// `count` floats of the caller's host memory, each finite (empty for NULL).
std::vector<float> finite_floats(const float* p, std::int64_t count, const char* name) {
  if (p == nullptr) return {};
  std::vector<float> v(p, p + count);
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) {
      throw ArgumentError(std::string(name) + "[" + std::to_string(i) + "]: expected a finite " +
                          "number, got " + std::to_string(v[i]));
    }
  }
  return v;
}

// The rows of the caller's matrix are those of the jet's last forward pass.
void check_rows(const descent_jet& j, std::int64_t rows) {
  if (j.rows == 0) throw ArgumentError("jet: no forward pass yet (descent_jet_forward)");
  if (rows != j.rows) {
    throw ArgumentError("rows: expected " + std::to_string(j.rows) +
                        " (the last forward pass's), got " + std::to_string(rows));
  }
}

}  // namespace

extern "C" {

descent_status descent_model_mse_gradient(descent_model* model, const float* x, int64_t rows,
                                          int64_t cols, int64_t ld_x, const float* targets,
                                          int64_t ld_targets, descent_memory memory, float weight,
                                          double* loss) {
  return guarded("descent_model_mse_gradient", [&] {
    descent_model& m = need(model, "model");
    const Context& ctx = m.owner->ctx;
    check_matrix(x, "x", rows, cols, ld_x, "ld_x");
    need_ptr(targets, "targets");
    const std::int64_t outputs = m.mlp.outputs();
    check_ld(ld_targets, outputs, "ld_targets");
    check_weight(weight);
    check_inputs(m.mlp, cols);
    const Device where = memory_device(ctx, memory);
    const MatrixView<const float> xd = on_device(ctx, x, rows, cols, ld_x, where, m.x_stage);
    const MatrixView<const float> td =
        on_device(ctx, targets, rows, outputs, ld_targets, where, m.targets_stage);
    if (m.loss.size() == 0) m.loss = Buffer<float>(ctx, 1);
    const ForwardPass pass = m.mlp.forward(xd);
    LossOutput out;
    out.loss = m.loss.view();
    out.grad = pass.output_grad;
    out.grad_scale = weight;
    mse_loss(ctx, pass.output, td, out);
    m.mlp.backward(pass);
    if (loss != nullptr) *loss = double(weight) * double(m.loss.to_host(ctx)[0]);
  });
}

descent_status descent_optimizer_step(descent_optimizer* opt) {
  return guarded("descent_optimizer_step", [&] { need(opt, "opt").opt->step(); });
}

namespace {
// A status a caller's callback returned, as the exception the C API maps back to that status.
[[noreturn]] void throw_status(descent_status status, const std::string& message) {
  switch (status) {
    case DESCENT_ERROR_SHAPE:
      throw ShapeError(message);
    case DESCENT_ERROR_ARGUMENT:
      throw ArgumentError(message);
    case DESCENT_ERROR_DATA:
      throw DataError(message);
    case DESCENT_ERROR_DEVICE:
      throw DeviceError(message);
    case DESCENT_ERROR_OUT_OF_MEMORY:
      throw OutOfMemory(message);
    case DESCENT_ERROR_IO:
      throw IoError(message);
    case DESCENT_ERROR_NUMERIC:
      throw NumericError(message);
    default:
      throw Error(message);
  }
}
}  // namespace

descent_status descent_optimizer_lbfgs_step(descent_optimizer* opt, descent_loss_callback evaluate,
                                            void* user, float* loss) {
  return guarded("descent_optimizer_lbfgs_step", [&] {
    descent_optimizer& o = need(opt, "opt");
    need_ptr(reinterpret_cast<const void*>(evaluate), "evaluate");
    auto* lbfgs = dynamic_cast<LBfgs*>(o.opt.get());
    if (lbfgs == nullptr) {
      throw ArgumentError(
          std::string("opt: an optimizer of kind \"") + to_string(o.opt->kind()) +
          "\"; this step needs one of kind \"lbfgs\" (descent_optimizer_create_from)");
    }
    const float first = lbfgs->step([&] {
      float value = 0.0f;
      const descent_status status = evaluate(user, &value);
      if (status != DESCENT_OK) {
        // The callback's own message when it failed in a descent call, else its status alone.
        throw_status(status, "evaluate returned " + std::string(descent_status_string(status)) +
                                 (last_error.empty() ? std::string() : ": " + last_error));
      }
      return value;
    });
    if (loss != nullptr) *loss = first;
  });
}

namespace {

// x and dy [rows, cols or outputs] of the caller's memory packed on the host, in the network's
// units: x through the input scaling, dy times each output's scale (dℓ/dy' = dℓ/dy · s).
struct NetworkInputs {
  std::vector<float> x, dy;
};
NetworkInputs to_network_units(const Context& ctx, const Mlp& mlp, const float* x,
                               std::int64_t rows, std::int64_t ld_x, const float* dy,
                               std::int64_t ld_dy, Device where) {
  const std::int64_t cols = mlp.inputs(), outputs = mlp.outputs();
  const Scaling& s = mlp.scaling();
  NetworkInputs n;
  n.x = pack(to_host(ctx, x, extent(rows, cols, ld_x), where), rows, cols, ld_x);
  n.dy = pack(to_host(ctx, dy, extent(rows, outputs, ld_dy), where), rows, outputs, ld_dy);
  if (s.scales_inputs()) s.to_network_inputs(n.x, rows, cols);
  if (s.scales_outputs()) {
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t o = 0; o < outputs; ++o) n.dy[r * outputs + o] *= s.output_scale[o];
    }
  }
  return n;
}

}  // namespace

descent_status descent_model_input_gradient(descent_model* model, const float* x, int64_t rows,
                                            int64_t cols, int64_t ld_x, const float* dy,
                                            int64_t ld_dy, float* dx, int64_t ld_dx,
                                            descent_memory memory) {
  return guarded("descent_model_input_gradient", [&] {
    descent_model& m = need(model, "model");
    const Context& ctx = m.owner->ctx;
    check_matrix(x, "x", rows, cols, ld_x, "ld_x");
    need_ptr(dy, "dy");
    const std::int64_t outputs = m.mlp.outputs();
    check_ld(ld_dy, outputs, "ld_dy");
    check_matrix(dx, "dx", rows, cols, ld_dx, "ld_dx");
    check_inputs(m.mlp, cols);
    const Device where = memory_device(ctx, memory);
    // The answer goes to a buffer of its own, then to dx: dx may be x's or dy's memory.
    Buffer<float> grad(ctx, rows * cols);
    const Scaling& s = m.mlp.scaling();
    if (s.empty()) {
      input_gradient(m.mlp, on_device(ctx, x, rows, cols, ld_x, where, m.x_stage),
                     on_device(ctx, dy, rows, outputs, ld_dy, where, m.targets_stage),
                     grad.matrix(rows, cols));
    } else {
      // As descent_model_predict: the scaling on the host, the passes on the device.
      const NetworkInputs n = to_network_units(ctx, m.mlp, x, rows, ld_x, dy, ld_dy, where);
      const Buffer<float> xn(ctx, std::span<const float>(n.x));
      const Buffer<float> dyn(ctx, std::span<const float>(n.dy));
      input_gradient(m.mlp, xn.matrix(rows, cols), dyn.matrix(rows, outputs),
                     grad.matrix(rows, cols));
      if (s.scales_inputs()) {
        // dℓ/dx = dℓ/dx' / s for x' = (x − m) / s.
        std::vector<float> g = grad.to_host(ctx);
        for (std::int64_t r = 0; r < rows; ++r) {
          for (std::int64_t c = 0; c < cols; ++c) g[r * cols + c] /= s.input_scale[c];
        }
        grad.copy_from_host(ctx, g);
      }
    }
    const std::size_t f = sizeof(float);
    detail::copy_rows(ctx, dx, f * static_cast<std::size_t>(ld_dx), where, grad.data(),
                      f * static_cast<std::size_t>(cols), ctx.device(),
                      f * static_cast<std::size_t>(cols), static_cast<std::size_t>(rows));
    ctx.synchronize();
  });
}

descent_status descent_jet_create(descent_model* model, int64_t directions, const float* vectors,
                                  const float* weights, int second_order, descent_jet** out) {
  if (out != nullptr) *out = nullptr;
  return guarded("descent_jet_create", [&] {
    descent_model& m = need(model, "model");
    need_ptr(out, "out");
    const std::int64_t inputs = m.mlp.inputs();
    if (directions < 0 || (vectors == nullptr && directions != 0 && directions != inputs) ||
        (vectors != nullptr && directions == 0) || directions > (1 << 20)) {
      throw ArgumentError("directions: expected " +
                          (vectors == nullptr ? "0 or " + std::to_string(inputs) +
                                                    " (the model's inputs) with the unit vectors"
                                              : std::string("at least 1 with vectors")) +
                          ", got " + std::to_string(directions));
    }
    const std::int64_t k = directions == 0 ? inputs : directions;
    JetOptions options;
    options.directions = finite_floats(vectors, k * inputs, "vectors");
    options.weights = finite_floats(weights, k, "weights");
    options.second_order = second_order != 0;
    *out = new descent_jet{&m, Jet(m.mlp, std::move(options)), 0, {}, {}, {}};
  });
}

void descent_jet_destroy(descent_jet* jet) { delete jet; }

descent_status descent_jet_directions(const descent_jet* jet, int64_t* directions) {
  return guarded("descent_jet_directions", [&] {
    const descent_jet& j = need(jet, "jet");
    need_ptr(directions, "directions");
    *directions = j.jet.directions();
  });
}

descent_status descent_jet_forward(descent_jet* jet, const float* x, int64_t rows, int64_t cols,
                                   int64_t ld_x, descent_memory memory) {
  return guarded("descent_jet_forward", [&] {
    descent_jet& j = need(jet, "jet");
    descent_model& m = *j.model;
    const Context& ctx = m.owner->ctx;
    check_matrix(x, "x", rows, cols, ld_x, "ld_x");
    check_inputs(m.mlp, cols);
    const Device where = memory_device(ctx, memory);
    const MatrixView<const float> xd = on_device(ctx, x, rows, cols, ld_x, where, j.x_stage);
    j.rows = 0;  // a pass that fails leaves none to read
    jet_forward(m.mlp, xd, j.jet);
    j.rows = rows;
  });
}

descent_status descent_jet_read(const descent_jet* jet, int64_t which, float* out, int64_t rows,
                                int64_t ld_out, descent_memory memory) {
  return guarded("descent_jet_read", [&] {
    const descent_jet& j = need(jet, "jet");
    need_ptr(out, "out");
    const Context& ctx = j.model->owner->ctx;
    const std::int64_t outputs = j.model->mlp.outputs(), k = j.jet.directions();
    check_rows(j, rows);
    check_ld(ld_out, outputs, "ld_out");
    const std::int64_t last = j.jet.second_order() ? k + 1 : k;
    if (which < 0 || which > last) {
      throw ArgumentError("which: expected 0 (the value) .. " + std::to_string(last) + " (" +
                          (j.jet.second_order() ? "the second-order sum" : "the last derivative") +
                          "), got " + std::to_string(which));
    }
    const MatrixView<const float> block = which == 0   ? j.jet.value()
                                          : which <= k ? j.jet.derivative(int(which - 1))
                                                       : j.jet.second();
    const Device where = memory_device(ctx, memory);
    detail::copy_rows(ctx, out, sizeof(float) * static_cast<std::size_t>(ld_out), where, block.data,
                      sizeof(float) * static_cast<std::size_t>(block.ld), block.device,
                      sizeof(float) * static_cast<std::size_t>(outputs),
                      static_cast<std::size_t>(rows));
    ctx.synchronize();
  });
}

namespace {

// descent_jet_pde_residual's and descent_jet_pde_residual_step's coefficients, checked.
PdeResidual residual_of(const descent_jet& j, float a, const float* b, float c, const float* d) {
  const std::int64_t k = j.jet.directions();
  PdeResidual residual;
  residual.a = a;
  residual.b = finite_floats(b, k, "b");
  residual.c = c;
  residual.d = finite_floats(d, k, "d");
  return residual;
}

}  // namespace

descent_status descent_jet_pde_residual(descent_jet* jet, float a, const float* b, float c,
                                        const float* d, const float* source, int64_t rows,
                                        int64_t ld_source, descent_memory memory, float weight,
                                        int accumulate, double* loss) {
  return guarded("descent_jet_pde_residual", [&] {
    descent_jet& j = need(jet, "jet");
    descent_model& m = *j.model;
    const Context& ctx = m.owner->ctx;
    if (j.rows == 0) throw ArgumentError("jet: no forward pass yet (descent_jet_forward)");
    check_weight(weight);
    const std::int64_t outputs = m.mlp.outputs();
    const PdeResidual residual = residual_of(j, a, b, c, d);
    MatrixView<const float> f;
    const Device where = memory_device(ctx, memory);
    if (source != nullptr) {
      check_rows(j, rows);
      check_ld(ld_source, outputs, "ld_source");
      f = on_device(ctx, source, j.rows, outputs, ld_source, where, j.source_stage);
    }
    if (j.loss.size() == 0) j.loss = Buffer<float>(ctx, 1);
    // Checked (and the loss written) before any gradient: a refused residual changes nothing.
    JetAdjoints adjoints = pde_residual_loss(j.jet, residual, f, j.loss.view(), weight);
    adjoints.accumulate = accumulate != 0;
    jet_backward(m.mlp, j.jet, adjoints);
    if (loss != nullptr) *loss = double(j.loss.to_host(ctx)[0]);
  });
}

descent_status descent_jet_pde_residual_step(descent_jet* jet, const float* x, int64_t rows,
                                             int64_t cols, int64_t ld_x, float a, const float* b,
                                             float c, const float* d, const float* source,
                                             int64_t ld_source, descent_memory memory, float weight,
                                             int accumulate, double* loss) {
  return guarded("descent_jet_pde_residual_step", [&] {
    descent_jet& j = need(jet, "jet");
    descent_model& m = *j.model;
    const Context& ctx = m.owner->ctx;
    check_matrix(x, "x", rows, cols, ld_x, "ld_x");
    check_inputs(m.mlp, cols);
    check_weight(weight);
    const std::int64_t outputs = m.mlp.outputs();
    const PdeResidual residual = residual_of(j, a, b, c, d);
    const Device where = memory_device(ctx, memory);
    MatrixView<const float> f;
    if (source != nullptr) {
      check_ld(ld_source, outputs, "ld_source");
      f = on_device(ctx, source, rows, outputs, ld_source, where, j.source_stage);
    }
    const MatrixView<const float> xd = on_device(ctx, x, rows, cols, ld_x, where, j.x_stage);
    if (j.loss.size() == 0) j.loss = Buffer<float>(ctx, 1);
    // Every check comes before anything changes (pde_residual_step's own, then the pass).
    pde_residual_step(m.mlp, xd, j.jet, residual, f, j.loss.view(), weight, accumulate != 0);
    j.rows = rows;
    if (loss != nullptr) *loss = double(j.loss.to_host(ctx)[0]);
  });
}

}  // extern "C"

// ---------------------------------------------------------------- float64 on the CPU

namespace {

// A float64 matrix [rows, cols] (leading dimension ld) of the caller's host memory, packed.
std::vector<double> host_rows(const double* p, std::int64_t rows, std::int64_t cols,
                              std::int64_t ld) {
  return pack(std::vector<double>(p, p + extent(rows, cols, ld)), rows, cols, ld);
}

// What the two float64 steps share: the arguments checked, x packed, the jet's float64 twin
// (made by the first call), and the step into grad (JetF64 checks everything before it writes,
// so a refused call leaves grad as it was).
template <class Step>
void f64_step(descent_jet& j, const double* params, std::int64_t count, const double* x,
              std::int64_t rows, std::int64_t cols, std::int64_t ld_x, double* grad, double* loss,
              Step&& step) {
  need_ptr(params, "params");
  need_ptr(grad, "grad");
  check_matrix(x, "x", rows, cols, ld_x, "ld_x");
  check_inputs(j.model->mlp, cols);
  check_parameter_count(j.model->mlp, count);
  if (j.f64 == nullptr) j.f64 = std::make_unique<JetF64>(j.model->mlp, j.jet.options());
  const auto n = static_cast<std::size_t>(count);
  const double value = step(*j.f64, std::span<const double>(params, n),
                            host_rows(x, rows, cols, ld_x), std::span<double>(grad, n));
  if (loss != nullptr) *loss = value;
}

}  // namespace

extern "C" {

descent_status descent_model_get_params_f64(const descent_model* model, double* params,
                                            int64_t count) {
  return guarded("descent_model_get_params_f64", [&] {
    const descent_model& m = need(model, "model");
    need_ptr(params, "params");
    check_parameter_count(m.mlp, count);
    const std::vector<double> p = params_f64(m.mlp);
    std::copy(p.begin(), p.end(), params);
  });
}

descent_status descent_model_set_params_f64(descent_model* model, const double* params,
                                            int64_t count) {
  return guarded("descent_model_set_params_f64", [&] {
    descent_model& m = need(model, "model");
    need_ptr(params, "params");
    check_parameter_count(m.mlp, count);
    params_from_f64(m.mlp, std::span<const double>(params, static_cast<std::size_t>(count)));
  });
}

descent_status descent_jet_pde_residual_step_f64(descent_jet* jet, const double* params,
                                                 int64_t count, const double* x, int64_t rows,
                                                 int64_t cols, int64_t ld_x, float a,
                                                 const float* b, float c, const float* d,
                                                 const double* source, int64_t ld_source,
                                                 double weight, int accumulate, double* grad,
                                                 double* loss) {
  return guarded("descent_jet_pde_residual_step_f64", [&] {
    descent_jet& j = need(jet, "jet");
    check_weight(weight);
    const std::int64_t outputs = j.model->mlp.outputs();
    if (source != nullptr) check_ld(ld_source, outputs, "ld_source");
    const PdeResidual residual = residual_of(j, a, b, c, d);
    f64_step(j, params, count, x, rows, cols, ld_x, grad, loss,
             [&](const JetF64& f64, std::span<const double> p, const std::vector<double>& xs,
                 std::span<double> g) {
               const std::vector<double> fs = source != nullptr
                                                  ? host_rows(source, rows, outputs, ld_source)
                                                  : std::vector<double>();
               return f64.pde_residual_step(p, xs, residual, fs, g, weight, accumulate != 0);
             });
  });
}

descent_status descent_jet_mse_step_f64(descent_jet* jet, const double* params, int64_t count,
                                        const double* x, int64_t rows, int64_t cols, int64_t ld_x,
                                        const double* targets, int64_t ld_targets, double weight,
                                        int accumulate, double* grad, double* loss) {
  return guarded("descent_jet_mse_step_f64", [&] {
    descent_jet& j = need(jet, "jet");
    check_weight(weight);
    need_ptr(targets, "targets");
    const std::int64_t outputs = j.model->mlp.outputs();
    check_ld(ld_targets, outputs, "ld_targets");
    f64_step(j, params, count, x, rows, cols, ld_x, grad, loss,
             [&](const JetF64& f64, std::span<const double> p, const std::vector<double>& xs,
                 std::span<double> g) {
               return f64.mse_step(p, xs, host_rows(targets, rows, outputs, ld_targets), g, weight,
                                   accumulate != 0);
             });
  });
}

descent_status descent_lbfgs_f64_create(const char* options, descent_lbfgs_f64** out) {
  if (out != nullptr) *out = nullptr;
  return guarded("descent_lbfgs_f64_create", [&] {
    need_ptr(out, "out");
    const LbfgsOptions o = lbfgs_options(
        parse_optimizer_options(OptimizerKind::lbfgs, options != nullptr ? options : ""));
    *out = new descent_lbfgs_f64{LBfgsF64(o)};
  });
}

void descent_lbfgs_f64_destroy(descent_lbfgs_f64* opt) { delete opt; }

descent_status descent_lbfgs_f64_step(descent_lbfgs_f64* opt, double* x, int64_t count,
                                      descent_f64_callback evaluate, void* user, double* loss) {
  return guarded("descent_lbfgs_f64_step", [&] {
    descent_lbfgs_f64& o = need(opt, "opt");
    need_ptr(x, "x");
    need_ptr(reinterpret_cast<const void*>(evaluate), "evaluate");
    if (count < 1) throw ArgumentError("count: expected >= 1, got " + std::to_string(count));
    const double first = o.opt.step(
        std::span<double>(x, static_cast<std::size_t>(count)),
        [&](std::span<const double> point, std::span<double> g) {
          double value = 0.0;
          const descent_status status = evaluate(user, point.data(), g.data(), count, &value);
          if (status != DESCENT_OK) {
            throw_status(status, "evaluate returned " + std::string(descent_status_string(status)) +
                                     (last_error.empty() ? std::string() : ": " + last_error));
          }
          return value;
        });
    if (loss != nullptr) *loss = first;
  });
}

descent_status descent_lbfgs_f64_progress(const descent_lbfgs_f64* opt, int64_t* iterations,
                                          int64_t* evaluations, const char** stop_reason) {
  return guarded("descent_lbfgs_f64_progress", [&] {
    const descent_lbfgs_f64& o = need(opt, "opt");
    if (iterations != nullptr) *iterations = o.opt.iterations();
    if (evaluations != nullptr) *evaluations = o.opt.evaluations();
    if (stop_reason != nullptr) *stop_reason = o.opt.stop_reason().c_str();
  });
}

descent_status descent_lbfgs_f64_set_problem(descent_lbfgs_f64* opt, const char* problem) {
  return guarded("descent_lbfgs_f64_set_problem", [&] {
    descent_lbfgs_f64& o = need(opt, "opt");
    need_ptr(problem, "problem");
    o.opt.set_problem(problem);
  });
}

descent_status descent_lbfgs_f64_save(const descent_lbfgs_f64* opt, const char* path,
                                      const double* x, int64_t count) {
  return guarded("descent_lbfgs_f64_save", [&] {
    const descent_lbfgs_f64& o = need(opt, "opt");
    need_ptr(path, "path");
    need_ptr(x, "x");
    if (count < 1) throw ArgumentError("count: expected >= 1, got " + std::to_string(count));
    o.opt.save(path, std::span<const double>(x, static_cast<std::size_t>(count)));
  });
}

descent_status descent_lbfgs_f64_load(descent_lbfgs_f64* opt, const char* path, double* x,
                                      int64_t count) {
  return guarded("descent_lbfgs_f64_load", [&] {
    descent_lbfgs_f64& o = need(opt, "opt");
    need_ptr(path, "path");
    need_ptr(x, "x");
    if (count < 1) throw ArgumentError("count: expected >= 1, got " + std::to_string(count));
    o.opt.load(path, std::span<double>(x, static_cast<std::size_t>(count)));
  });
}

}  // extern "C"
