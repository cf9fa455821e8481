// The C API contract table, part 4: losses on derivatives of the network (forward jets, PDE
// residuals) and the gradients a step is built from term by term.
#include "c_api_contract.hpp"

namespace c_api_contract {

namespace {

constexpr std::int64_t kRows = World::kRows, kInputs = World::kInputs;
constexpr std::int64_t kOutputs = World::kOutputs;

descent_status create_jet(World& w, Call& c, std::int64_t directions, std::vector<float> vectors,
                          const float* weights, int second_order) {
  descent_jet* out = Call::fresh<descent_jet>();
  return c.made(descent_jet_create(c.arg("model", w.model), directions,
                                   c.arg("vectors", vectors.empty() ? nullptr : vectors.data()),
                                   c.arg("weights", weights), second_order, c.arg("out", &out)),
                out, descent_jet_destroy);
}

descent_status mse_gradient(World& w, Call& c, std::int64_t cols, std::int64_t ld_targets,
                            descent_memory memory, float weight) {
  double loss = 0;
  return descent_model_mse_gradient(c.arg("model", w.model), c.arg("x", w.x.data()), kRows, cols,
                                    cols, c.arg("targets", w.targets.data()), ld_targets, memory,
                                    weight, c.arg("loss", &loss));
}

descent_status input_gradient(World& w, Call& c, std::int64_t cols, std::int64_t ld_dy,
                              std::int64_t ld_dx, descent_memory memory) {
  std::vector<float> dx(static_cast<std::size_t>(kRows * kInputs), 0.0f);
  return descent_model_input_gradient(c.arg("model", w.model), c.arg("x", w.x.data()), kRows, cols,
                                      cols, c.arg("dy", w.targets.data()), ld_dy,
                                      c.arg("dx", dx.data()), ld_dx, memory);
}

descent_status read(World& w, Call& c, std::int64_t which, std::int64_t rows, std::int64_t ld,
                    descent_memory memory) {
  std::vector<float> out(static_cast<std::size_t>(kRows * 4), 0.0f);
  return descent_jet_read(c.arg("jet", w.jet), which, c.arg("out", out.data()), rows, ld, memory);
}

descent_status residual(World& w, Call& c, std::vector<float> b, float weight,
                        std::int64_t ld_source, descent_memory memory, std::int64_t rows = kRows) {
  const std::vector<float> d(kInputs, 0.5f), f(kRows * kOutputs, 0.25f);
  double loss = 0;
  return descent_jet_pde_residual(c.arg("jet", w.jet), 0.5f, c.arg("b", b.data()), -1.0f,
                                  c.arg("d", d.data()), c.arg("source", f.data()), rows, ld_source,
                                  memory, weight, 1, c.arg("loss", &loss));
}

descent_status residual_step(World& w, Call& c, std::vector<float> b, float weight,
                             std::int64_t ld_source, descent_memory memory,
                             std::int64_t cols = kInputs) {
  const std::vector<float> d(kInputs, 0.5f), f(kRows * kOutputs, 0.25f);
  double loss = 0;
  return descent_jet_pde_residual_step(c.arg("jet", w.jet), c.arg("x", w.x.data()), kRows, cols,
                                       kInputs, 0.5f, c.arg("b", b.data()), -1.0f,
                                       c.arg("d", d.data()), c.arg("source", f.data()), ld_source,
                                       memory, weight, 1, c.arg("loss", &loss));
}

// The loss of an L-BFGS step: the MSE of the World's model on its batch. user is the World, or
// NULL (a user pointer is the caller's to give or not): then the World of the running call.
thread_local World* running = nullptr;

descent_status mse_loss(void* user, float* loss) {
  World& w = user != nullptr ? *static_cast<World*>(user) : *running;
  double value = 0;
  const descent_status s =
      descent_model_mse_gradient(w.model, w.x.data(), kRows, kInputs, kInputs, w.targets.data(),
                                 kOutputs, kHost, 1.0f, &value);
  *loss = float(value);
  return s;
}

descent_status failing_loss(void*, float*) { return DESCENT_ERROR_IO; }

// (evaluate, a function pointer, is refused when NULL: tests/backends/test_c_api_jet.cpp.)
descent_status lbfgs_step(World& w, Call& c, descent_optimizer* opt, descent_loss_callback loss) {
  float first = 0;
  running = &w;
  return descent_optimizer_lbfgs_step(c.arg("opt", opt), loss, c.arg("user", &w),
                                      c.arg("loss", &first));
}

// The float64 calls' arrays: parameters near the World model's, a gradient, x and targets.
struct F64 {
  std::vector<double> params, grad, x, targets;
  explicit F64(const World& w)
      : params(static_cast<std::size_t>(w.params), 0.1),
        grad(params.size(), 0.0),
        x(w.x.begin(), w.x.end()),
        targets(w.targets.begin(), w.targets.end()) {}
};

descent_status residual_step_f64(World& w, Call& c, std::vector<float> b, double weight,
                                 std::int64_t ld_source, std::int64_t count,
                                 std::int64_t cols = kInputs, double x0 = 0.5) {
  F64 a(w);
  a.x[0] = x0;
  const std::vector<float> d(kInputs, 0.5f);
  const std::vector<double> f(kRows * kOutputs, 0.25);
  double loss = 0;
  return descent_jet_pde_residual_step_f64(c.arg("jet", w.jet), c.arg("params", a.params.data()),
                                           count, c.arg("x", a.x.data()), kRows, cols, kInputs,
                                           0.5f, c.arg("b", b.data()), -1.0f, c.arg("d", d.data()),
                                           c.arg("source", f.data()), ld_source, weight, 1,
                                           c.arg("grad", a.grad.data()), c.arg("loss", &loss));
}

descent_status mse_step_f64(World& w, Call& c, std::int64_t ld_targets, std::int64_t count,
                            std::int64_t cols = kInputs) {
  F64 a(w);
  double loss = 0;
  return descent_jet_mse_step_f64(c.arg("jet", w.jet), c.arg("params", a.params.data()), count,
                                  c.arg("x", a.x.data()), kRows, cols, kInputs,
                                  c.arg("targets", a.targets.data()), ld_targets, 1.0, 0,
                                  c.arg("grad", a.grad.data()), c.arg("loss", &loss));
}

descent_status set_params_f64(World& w, Call& c, std::int64_t count, double value) {
  std::vector<double> p(static_cast<std::size_t>(w.params), 0.125);
  p.back() = value;
  return descent_model_set_params_f64(c.arg("model", w.model), c.arg("params", p.data()), count);
}

// Σ (x_i − 1)², for descent_lbfgs_f64_step.
descent_status quadratic(void*, const double* x, double* g, int64_t count, double* loss) {
  *loss = 0;
  for (std::int64_t i = 0; i < count; ++i) {
    *loss += (x[i] - 1) * (x[i] - 1);
    g[i] = 2 * (x[i] - 1);
  }
  return DESCENT_OK;
}
descent_status failing_f64(void*, const double*, double*, int64_t, double*) {
  return DESCENT_ERROR_IO;
}

// (evaluate, a function pointer, is refused when NULL: tests/test_jet64.cpp.)
descent_status lbfgs_f64_step(World&, Call& c, std::int64_t count, descent_f64_callback evaluate,
                              double x0 = 0.0) {
  descent_lbfgs_f64* opt = nullptr;
  World::ok(descent_lbfgs_f64_create("max_iter=3", &opt));
  std::vector<double> x(3, x0);
  double first = 0;
  int user = 0;
  const descent_status s =
      descent_lbfgs_f64_step(c.arg("opt", opt), c.arg("x", x.data()), count, evaluate,
                             c.arg("user", &user), c.arg("loss", &first));
  descent_lbfgs_f64_destroy(opt);
  return s;
}

// A float64 L-BFGS state file of three parameters (one step of `quadratic` taken) in the
// world's folder, and save / load through the C calls.
std::string lbfgs_f64_state(World& w, const char* name = "state.lbd") {
  descent_lbfgs_f64* opt = nullptr;
  World::ok(descent_lbfgs_f64_create("max_iter=3", &opt));
  std::vector<double> x(3, 0.0);
  World::ok(descent_lbfgs_f64_step(opt, x.data(), 3, quadratic, nullptr, nullptr));
  const std::string path = (w.dir / name).string();
  World::ok(descent_lbfgs_f64_save(opt, path.c_str(), x.data(), 3));
  descent_lbfgs_f64_destroy(opt);
  return path;
}
descent_status lbfgs_f64_save(Call& c, const std::string& path, std::int64_t count,
                              double x0 = 0.5) {
  descent_lbfgs_f64* opt = nullptr;
  World::ok(descent_lbfgs_f64_create(nullptr, &opt));
  std::vector<double> x(3, x0);
  const descent_status s = descent_lbfgs_f64_save(c.arg("opt", opt), c.arg("path", path.c_str()),
                                                  c.arg("x", x.data()), count);
  descent_lbfgs_f64_destroy(opt);
  return s;
}
descent_status lbfgs_f64_load(Call& c, const std::string& path, std::int64_t count,
                              const char* options = nullptr, const char* problem = nullptr) {
  descent_lbfgs_f64* opt = nullptr;
  World::ok(descent_lbfgs_f64_create(options, &opt));
  if (problem != nullptr) World::ok(descent_lbfgs_f64_set_problem(opt, problem));
  std::vector<double> x(static_cast<std::size_t>(std::max<std::int64_t>(count, 1)), 0.0);
  const descent_status s = descent_lbfgs_f64_load(c.arg("opt", opt), c.arg("path", path.c_str()),
                                                  c.arg("x", x.data()), count);
  descent_lbfgs_f64_destroy(opt);
  return s;
}
descent_status lbfgs_f64_set_problem(Call& c, const char* problem) {
  descent_lbfgs_f64* opt = nullptr;
  World::ok(descent_lbfgs_f64_create(nullptr, &opt));
  const descent_status s =
      descent_lbfgs_f64_set_problem(c.arg("opt", opt), c.arg("problem", problem));
  descent_lbfgs_f64_destroy(opt);
  return s;
}

}  // namespace

std::vector<Entry> jet_entries() {
  const std::vector<float> b(kInputs, 1.0f);
  return {
      {"descent_model_mse_gradient",
       {"model", "x", "targets"},
       {"loss"},
       Effect::changes_state,
       [](World& w, Call& c) { return mse_gradient(w, c, kInputs, kOutputs, kHost, 1.0f); },
       {{"cols that are not the model's inputs", kShape,
         [](World& w, Call& c) { return mse_gradient(w, c, 2, kOutputs, kHost, 1.0f); }},
        {"ld_targets < outputs", kArgument,
         [](World& w, Call& c) { return mse_gradient(w, c, kInputs, 1, kHost, 1.0f); }},
        {"a NaN weight", kArgument,
         [](World& w, Call& c) { return mse_gradient(w, c, kInputs, kOutputs, kHost, kNaN); }},
        {"a negative weight", kArgument,
         [](World& w, Call& c) { return mse_gradient(w, c, kInputs, kOutputs, kHost, -1.0f); }},
        {"device memory on a cpu context", kDevice,
         [](World& w, Call& c) {
           return mse_gradient(w, c, kInputs, kOutputs, DESCENT_MEMORY_DEVICE, 1.0f);
         }}}},
      {"descent_model_input_gradient",
       {"model", "x", "dy", "dx"},
       {},
       Effect::none,
       [](World& w, Call& c) { return input_gradient(w, c, kInputs, kOutputs, kInputs, kHost); },
       {{"cols that are not the model's inputs", kShape,
         [](World& w, Call& c) { return input_gradient(w, c, 2, kOutputs, 2, kHost); }},
        {"ld_dy < outputs", kArgument,
         [](World& w, Call& c) { return input_gradient(w, c, kInputs, 1, kInputs, kHost); }},
        {"ld_dx < cols", kArgument,
         [](World& w, Call& c) { return input_gradient(w, c, kInputs, kOutputs, 1, kHost); }},
        {"device memory on a cpu context", kDevice,
         [](World& w, Call& c) {
           return input_gradient(w, c, kInputs, kOutputs, kInputs, DESCENT_MEMORY_DEVICE);
         }}}},
      {"descent_optimizer_step",
       {"opt"},
       {},
       Effect::changes_state,
       [](World& w, Call& c) { return descent_optimizer_step(c.arg("opt", w.opt)); }},
      {"descent_optimizer_lbfgs_step",
       {"opt"},
       {"user", "loss"},
       Effect::changes_state,
       [](World& w, Call& c) { return lbfgs_step(w, c, w.lbfgs, mse_loss); },
       {{"an optimizer of another kind", kArgument,
         [](World& w, Call& c) { return lbfgs_step(w, c, w.opt, mse_loss); }},
        {"a callback that fails", kIo,
         [](World& w, Call& c) { return lbfgs_step(w, c, w.lbfgs, failing_loss); }}}},
      {"descent_jet_create",
       {"model", "out"},
       {"vectors", "weights"},
       Effect::changes_state,
       [](World& w, Call& c) {
         const float weights[] = {1.0f, 0.5f};
         return create_jet(w, c, 2, {1, 0, 0, 0, 1, 0}, weights, 1);
       },
       {{"unit vectors of another count", kArgument,
         [](World& w, Call& c) { return create_jet(w, c, 2, {}, nullptr, 1); }},
        {"a negative count", kArgument,
         [](World& w, Call& c) { return create_jet(w, c, -1, {}, nullptr, 1); }},
        {"vectors with a count of 0", kArgument,
         [](World& w, Call& c) {
           return create_jet(w, c, 0, {1, 0, 0}, nullptr, 1);
         }},
        {"a NaN in the vectors", kArgument,
         [](World& w, Call& c) {
           return create_jet(w, c, 1, {1, kNaN, 0}, nullptr, 1);
         }},
        {"an infinite weight", kArgument,
         [](World& w, Call& c) {
           const float weights[] = {kInf};
           return create_jet(w, c, 1, {1, 0, 0}, weights, 1);
         }}}},
      {"descent_jet_destroy",
       {},
       {"jet"},
       Effect::destroys,
       [](World& w, Call& c) {
         descent_jet* j = nullptr;
         World::ok(descent_jet_create(w.model, 0, nullptr, nullptr, 0, &j));
         descent_jet_destroy(c.arg("jet", j));
         if (c.is_null("jet")) descent_jet_destroy(j);
         return DESCENT_OK;
       }},
      {"descent_jet_directions",
       {"jet", "directions"},
       {},
       Effect::none,
       [](World& w, Call& c) {
         std::int64_t k = 0;
         return descent_jet_directions(c.arg("jet", w.jet), c.arg("directions", &k));
       }},
      {"descent_jet_forward",
       {"jet", "x"},
       {},
       Effect::changes_state,
       [](World& w, Call& c) {
         return descent_jet_forward(c.arg("jet", w.jet), c.arg("x", w.x.data()), kRows, kInputs,
                                    kInputs, kHost);
       },
       {{"cols that are not the model's inputs", kShape,
         [](World& w, Call&) {
           return descent_jet_forward(w.jet, w.x.data(), kRows, 2, 2, kHost);
         }},
        {"0 rows", kArgument,
         [](World& w, Call&) {
           return descent_jet_forward(w.jet, w.x.data(), 0, kInputs, kInputs, kHost);
         }},
        {"device memory on a cpu context", kDevice,
         [](World& w, Call&) {
           return descent_jet_forward(w.jet, w.x.data(), kRows, kInputs, kInputs,
                                      DESCENT_MEMORY_DEVICE);
         }}}},
      {"descent_jet_read",
       {"jet", "out"},
       {},
       Effect::none,
       [](World& w, Call& c) { return read(w, c, kInputs + 1, kRows, kOutputs, kHost); },
       {{"a which past the second-order sum", kArgument,
         [](World& w, Call& c) { return read(w, c, kInputs + 2, kRows, kOutputs, kHost); }},
        {"a negative which", kArgument,
         [](World& w, Call& c) { return read(w, c, -1, kRows, kOutputs, kHost); }},
        {"rows that are not the last pass's", kArgument,
         [](World& w, Call& c) { return read(w, c, 0, kRows - 1, kOutputs, kHost); }},
        {"ld_out < outputs", kArgument,
         [](World& w, Call& c) { return read(w, c, 0, kRows, 1, kHost); }},
        {"device memory on a cpu context", kDevice,
         [](World& w, Call& c) { return read(w, c, 0, kRows, kOutputs, DESCENT_MEMORY_DEVICE); }}}},
      {"descent_jet_pde_residual",
       {"jet"},
       {"b", "d", "source", "loss"},
       Effect::changes_state,
       [b](World& w, Call& c) { return residual(w, c, b, 1.0f, kOutputs, kHost); },
       {{"a NaN weight", kArgument,
         [b](World& w, Call& c) { return residual(w, c, b, kNaN, kOutputs, kHost); }},
        {"an infinite b", kArgument,
         [](World& w, Call& c) {
           return residual(w, c, {1, kInf, 1}, 1.0f, kOutputs, kHost);
         }},
        {"source rows that are not the last pass's", kArgument,
         [b](World& w, Call& c) { return residual(w, c, b, 1.0f, kOutputs, kHost, kRows - 1); }},
        {"ld_source < outputs", kArgument,
         [b](World& w, Call& c) { return residual(w, c, b, 1.0f, 1, kHost); }},
        {"device memory on a cpu context", kDevice,
         [b](World& w, Call& c) {
           return residual(w, c, b, 1.0f, kOutputs, DESCENT_MEMORY_DEVICE);
         }}}},
      {"descent_jet_pde_residual_step",
       {"jet", "x"},
       {"b", "d", "source", "loss"},
       Effect::changes_state,
       [b](World& w, Call& c) { return residual_step(w, c, b, 1.0f, kOutputs, kHost); },
       {{"a NaN weight", kArgument,
         [b](World& w, Call& c) { return residual_step(w, c, b, kNaN, kOutputs, kHost); }},
        {"an infinite b", kArgument,
         [](World& w, Call& c) {
           return residual_step(w, c, {1, kInf, 1}, 1.0f, kOutputs, kHost);
         }},
        {"cols that are not the model's inputs", kShape,
         [b](World& w, Call& c) {
           return residual_step(w, c, b, 1.0f, kOutputs, kHost, kInputs - 1);
         }},
        {"ld_source < outputs", kArgument,
         [b](World& w, Call& c) { return residual_step(w, c, b, 1.0f, 1, kHost); }},
        {"device memory on a cpu context", kDevice,
         [b](World& w, Call& c) {
           return residual_step(w, c, b, 1.0f, kOutputs, DESCENT_MEMORY_DEVICE);
         }}}},
      {"descent_model_get_params_f64",
       {"model", "params"},
       {},
       Effect::none,
       [](World& w, Call& c) {
         std::vector<double> p(static_cast<std::size_t>(w.params));
         return descent_model_get_params_f64(c.arg("model", w.model), c.arg("params", p.data()),
                                             w.params);
       },
       {{"another count", kShape,
         [](World& w, Call& c) {
           std::vector<double> p(static_cast<std::size_t>(w.params) + 1);
           return descent_model_get_params_f64(c.arg("model", w.model), c.arg("params", p.data()),
                                               w.params + 1);
         }}}},
      {"descent_model_set_params_f64",
       {"model", "params"},
       {},
       Effect::changes_state,
       [](World& w, Call& c) { return set_params_f64(w, c, w.params, 0.5); },
       {{"another count", kShape,
         [](World& w, Call& c) { return set_params_f64(w, c, w.params - 1, 0.5); }},
        {"a value beyond the float range", kArgument,
         [](World& w, Call& c) { return set_params_f64(w, c, w.params, 1e300); }}}},
      {"descent_jet_pde_residual_step_f64",
       {"jet", "params", "x", "grad"},
       {"b", "d", "source", "loss"},
       Effect::none,
       [b](World& w, Call& c) { return residual_step_f64(w, c, b, 1.0, kOutputs, w.params); },
       {{"another count", kShape,
         [b](World& w, Call& c) { return residual_step_f64(w, c, b, 1.0, kOutputs, 3); }},
        {"cols that are not the model's inputs", kShape,
         [b](World& w, Call& c) {
           return residual_step_f64(w, c, b, 1.0, kOutputs, w.params, kInputs - 1);
         }},
        {"ld_source < outputs", kArgument,
         [b](World& w, Call& c) { return residual_step_f64(w, c, b, 1.0, 1, w.params); }},
        {"a NaN weight", kArgument,
         [b](World& w, Call& c) {
           return residual_step_f64(w, c, b, std::nan(""), kOutputs, w.params);
         }},
        {"a negative weight", kArgument,
         [b](World& w, Call& c) { return residual_step_f64(w, c, b, -1.0, kOutputs, w.params); }},
        {"an infinite x", kArgument,
         [b](World& w, Call& c) {
           return residual_step_f64(w, c, b, 1.0, kOutputs, w.params, kInputs, INFINITY);
         }},
        {"an infinite b", kArgument,
         [](World& w, Call& c) {
           return residual_step_f64(w, c, {1, kInf, 1}, 1.0, kOutputs, w.params);
         }}}},
      {"descent_jet_mse_step_f64",
       {"jet", "params", "x", "targets", "grad"},
       {"loss"},
       Effect::none,
       [](World& w, Call& c) { return mse_step_f64(w, c, kOutputs, w.params); },
       {{"another count", kShape,
         [](World& w, Call& c) { return mse_step_f64(w, c, kOutputs, w.params + 1); }},
        {"ld_targets < outputs", kArgument,
         [](World& w, Call& c) { return mse_step_f64(w, c, 1, w.params); }},
        {"cols that are not the model's inputs", kShape,
         [](World& w, Call& c) { return mse_step_f64(w, c, kOutputs, w.params, 2); }}}},
      {"descent_lbfgs_f64_create",
       {"out"},
       {"options"},
       Effect::changes_state,
       [](World&, Call& c) {
         descent_lbfgs_f64* out = Call::fresh<descent_lbfgs_f64>();
         return c.made(
             descent_lbfgs_f64_create(c.arg("options", "history_size=5"), c.arg("out", &out)), out,
             descent_lbfgs_f64_destroy);
       },
       {{"an unknown option", kArgument,
         [](World&, Call& c) {
           descent_lbfgs_f64* out = Call::fresh<descent_lbfgs_f64>();
           return c.made(descent_lbfgs_f64_create("momentum=0.9", c.arg("out", &out)), out,
                         descent_lbfgs_f64_destroy);
         }}}},
      {"descent_lbfgs_f64_destroy",
       {},
       {"opt"},
       Effect::destroys,
       [](World&, Call& c) {
         descent_lbfgs_f64* o = nullptr;
         World::ok(descent_lbfgs_f64_create(nullptr, &o));
         descent_lbfgs_f64_destroy(c.arg("opt", o));
         if (c.is_null("opt")) descent_lbfgs_f64_destroy(o);
         return DESCENT_OK;
       }},
      {"descent_lbfgs_f64_step",
       {"opt", "x"},
       {"user", "loss"},
       Effect::none,
       [](World& w, Call& c) { return lbfgs_f64_step(w, c, 3, quadratic); },
       {{"count < 1", kArgument,
         [](World& w, Call& c) { return lbfgs_f64_step(w, c, 0, quadratic); }},
        {"a NaN in x", kArgument,
         [](World& w, Call& c) { return lbfgs_f64_step(w, c, 3, quadratic, std::nan("")); }},
        {"a callback that fails", kIo,
         [](World& w, Call& c) { return lbfgs_f64_step(w, c, 3, failing_f64); }}}},
      {"descent_lbfgs_f64_progress",
       {"opt"},
       {"iterations", "evaluations", "stop_reason"},
       Effect::none,
       [](World&, Call& c) {
         descent_lbfgs_f64* o = nullptr;
         World::ok(descent_lbfgs_f64_create(nullptr, &o));
         std::int64_t iterations = 0, evaluations = 0;
         const char* reason = nullptr;
         const descent_status s = descent_lbfgs_f64_progress(
             c.arg("opt", o), c.arg("iterations", &iterations), c.arg("evaluations", &evaluations),
             c.arg("stop_reason", &reason));
         descent_lbfgs_f64_destroy(o);
         return s;
       }},
      {"descent_lbfgs_f64_set_problem",
       {"opt", "problem"},
       {},
       Effect::changes_state,
       [](World&, Call& c) { return lbfgs_f64_set_problem(c, "a fit of 3 parameters"); },
       {{"a text over 65536 bytes", kArgument,
         [](World&, Call& c) {
           return lbfgs_f64_set_problem(c, std::string(65537, 'p').c_str());
         }}}},
      {"descent_lbfgs_f64_save",
       {"opt", "path", "x"},
       {},
       Effect::changes_state,
       [](World& w, Call& c) { return lbfgs_f64_save(c, (w.dir / "saved.lbd").string(), 3); },
       {{"count < 1", kArgument,
         [](World& w, Call& c) { return lbfgs_f64_save(c, (w.dir / "saved.lbd").string(), 0); }},
        {"a NaN in x", kArgument,
         [](World& w, Call& c) {
           return lbfgs_f64_save(c, (w.dir / "saved.lbd").string(), 3, std::nan(""));
         }},
        {"a folder that does not exist", kIo,
         [](World& w, Call& c) { return lbfgs_f64_save(c, (w.dir / "no" / "s.lbd").string(), 3); }},
        {"a folder as the path", kIo,
         [](World& w, Call& c) { return lbfgs_f64_save(c, w.dir.string(), 3); }}}},
      {"descent_lbfgs_f64_load",
       {"opt", "path", "x"},
       {},
       Effect::changes_state,
       [](World& w, Call& c) { return lbfgs_f64_load(c, lbfgs_f64_state(w), 3); },
       {{"count < 1", kArgument,
         [](World& w, Call& c) { return lbfgs_f64_load(c, lbfgs_f64_state(w), 0); }},
        {"a missing file", kIo,
         [](World& w, Call& c) { return lbfgs_f64_load(c, (w.dir / "none.lbd").string(), 3); }},
        {"a checkpoint", kData,
         [](World& w, Call& c) { return lbfgs_f64_load(c, w.checkpoint, 3); }},
        {"a flipped byte", kData,
         [](World& w, Call& c) {
           std::string bytes = read_bytes(lbfgs_f64_state(w));
           bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x10);
           return lbfgs_f64_load(c, w.file("flipped.lbd", bytes), 3);
         }},
        {"another count", kData,
         [](World& w, Call& c) { return lbfgs_f64_load(c, lbfgs_f64_state(w), 4); }},
        {"another problem", kData,
         [](World& w, Call& c) {
           return lbfgs_f64_load(c, lbfgs_f64_state(w), 3, nullptr, "another fit");
         }}}},
  };
}

}  // namespace c_api_contract
