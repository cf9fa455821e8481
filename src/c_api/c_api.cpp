// The C API (include/descent/descent.h), part 1: status and errors, contexts, models,
// optimizers and checkpoints. Exceptions become status codes plus a thread-local message.
#include "c_api/c_api.hpp"

#include <functional>

#include "descent/version.hpp"
#include "kernels/backend.hpp"

using namespace descent;
using namespace descent::c_api;

namespace {

// The schedule of descent_optimizer_create and descent_optimizer_create_adam: NULL or
// "constant" (steps and factor ignored), "step" (StepLR: every schedule_steps, times factor) or
// "cosine" (CosineAnnealingLR: T_max = schedule_steps, eta_min = factor).
LrSchedule parse_schedule(const char* schedule, std::int64_t schedule_steps, float factor) {
  const std::string kind = schedule != nullptr ? schedule : "constant";
  LrSchedule s = LrSchedule::constant();
  if (kind == "step") {
    s = LrSchedule::step(schedule_steps, factor);
  } else if (kind == "cosine") {
    s = LrSchedule::cosine(schedule_steps, factor);
  } else if (kind != "constant") {
    throw ArgumentError("schedule: expected NULL, \"constant\", \"step\" or \"cosine\", got '" +
                        kind + "'");
  }
  validate(s);
  return s;
}

}  // namespace

extern "C" {

// ---------------------------------------------------------------- status and errors

const char* descent_last_error(void) { return last_error.c_str(); }

const char* descent_status_string(descent_status status) {
  switch (status) {
    case DESCENT_OK:
      return "DESCENT_OK";
    case DESCENT_ERROR_SHAPE:
      return "DESCENT_ERROR_SHAPE";
    case DESCENT_ERROR_ARGUMENT:
      return "DESCENT_ERROR_ARGUMENT";
    case DESCENT_ERROR_DATA:
      return "DESCENT_ERROR_DATA";
    case DESCENT_ERROR_DEVICE:
      return "DESCENT_ERROR_DEVICE";
    case DESCENT_ERROR_OUT_OF_MEMORY:
      return "DESCENT_ERROR_OUT_OF_MEMORY";
    case DESCENT_ERROR_IO:
      return "DESCENT_ERROR_IO";
    case DESCENT_ERROR_NUMERIC:
      return "DESCENT_ERROR_NUMERIC";
    case DESCENT_ERROR_UNKNOWN:
      return "DESCENT_ERROR_UNKNOWN";
    case DESCENT_STATUS_INT_:
      break;
  }
  return "unknown status";
}

const char* descent_version(void) { return version(); }

int descent_built_with_cuda(void) { return built_with_cuda() ? 1 : 0; }

int descent_cuda_device_count(void) {
  try {
    return cuda_device_count();
  } catch (...) {
    return 0;
  }
}

// ---------------------------------------------------------------- context

descent_status descent_context_create(const char* device, int threads, descent_context** out) {
  if (out != nullptr) *out = nullptr;
  return guarded("descent_context_create", [&] {
    need_ptr(out, "out");
    need_ptr(device, "device");
    const Device d = Device::parse(device);
    ContextOptions o;
    o.threads = threads;
    *out = new descent_context{Context(d, o), d.str()};
  });
}

void descent_context_destroy(descent_context* ctx) { delete ctx; }

descent_status descent_context_device(const descent_context* ctx, const char** name) {
  return guarded("descent_context_device", [&] {
    const descent_context& c = need(ctx, "ctx");
    need_ptr(name, "name");
    *name = c.name.c_str();
  });
}

descent_status descent_context_set_stream(descent_context* ctx, void* stream) {
  return guarded("descent_context_set_stream", [&] { need(ctx, "ctx").ctx.set_stream(stream); });
}

descent_status descent_context_get_stream(const descent_context* ctx, void** stream) {
  return guarded("descent_context_get_stream", [&] {
    const descent_context& c = need(ctx, "ctx");
    need_ptr(stream, "stream");
    *stream = c.ctx.stream();
  });
}

descent_status descent_context_synchronize(const descent_context* ctx) {
  return guarded("descent_context_synchronize", [&] { need(ctx, "ctx").ctx.synchronize(); });
}

// ---------------------------------------------------------------- model

descent_status descent_model_create(descent_context* ctx, const int64_t* widths, int n_widths,
                                    const char* activation, uint64_t seed, descent_model** out) {
  if (out != nullptr) *out = nullptr;
  return guarded("descent_model_create", [&] {
    descent_context& c = need(ctx, "ctx");
    need_ptr(out, "out");
    need_ptr(widths, "widths");
    if (n_widths < 2) {
      throw ArgumentError("n_widths: expected >= 2 (inputs and outputs), got " +
                          std::to_string(n_widths));
    }
    std::vector<std::int64_t> w(widths, widths + n_widths);
    for (int i = 0; i < n_widths; ++i) {
      if (w[static_cast<std::size_t>(i)] < 1) {
        throw ShapeError("widths[" + std::to_string(i) + "]: expected >= 1, got " +
                         std::to_string(w[static_cast<std::size_t>(i)]));
      }
    }
    const Activation act = parse_activation(activation);
    MlpOptions o;
    o.seed = seed;
    *out = new descent_model{&c, Mlp(c.ctx, std::move(w), act, o), {}, {}, {}, {}};
  });
}

descent_status descent_model_load(descent_context* ctx, const char* path, descent_model** out) {
  if (out != nullptr) *out = nullptr;
  return guarded("descent_model_load", [&] {
    descent_context& c = need(ctx, "ctx");
    need_ptr(out, "out");
    need_ptr(path, "path");
    *out = new descent_model{&c, make_model(c.ctx, read_checkpoint(path)), {}, {}, {}, {}};
  });
}

void descent_model_destroy(descent_model* model) { delete model; }

descent_status descent_model_shape(const descent_model* model, int64_t* inputs, int64_t* outputs) {
  return guarded("descent_model_shape", [&] {
    const descent_model& m = need(model, "model");
    if (inputs != nullptr) *inputs = m.mlp.inputs();
    if (outputs != nullptr) *outputs = m.mlp.outputs();
  });
}

descent_status descent_model_parameter_count(const descent_model* model, int64_t* count) {
  return guarded("descent_model_parameter_count", [&] {
    const descent_model& m = need(model, "model");
    need_ptr(count, "count");
    *count = m.mlp.parameter_count();
  });
}

descent_status descent_model_get_params(const descent_model* model, float* params, int64_t count) {
  return guarded("descent_model_get_params", [&] {
    const descent_model& m = need(model, "model");
    need_ptr(params, "params");
    check_parameter_count(m.mlp, count);
    const std::vector<float> host = m.mlp.params_to_host();
    std::memcpy(params, host.data(), sizeof(float) * host.size());
  });
}

descent_status descent_model_set_params(descent_model* model, const float* params, int64_t count) {
  return guarded("descent_model_set_params", [&] {
    descent_model& m = need(model, "model");
    need_ptr(params, "params");
    check_parameter_count(m.mlp, count);
    m.mlp.params_from_host(std::span<const float>(params, static_cast<std::size_t>(count)));
  });
}

descent_status descent_model_set_scaling(descent_model* model, const float* input_mean,
                                         const float* input_scale, const float* output_mean,
                                         const float* output_scale) {
  return guarded("descent_model_set_scaling", [&] {
    descent_model& m = need(model, "model");
    if ((input_mean == nullptr) != (input_scale == nullptr) ||
        (output_mean == nullptr) != (output_scale == nullptr)) {
      throw ArgumentError(
          "a mean and its scale are given together or both NULL (input_mean and input_scale, "
          "output_mean and output_scale)");
    }
    const auto n_in = static_cast<std::size_t>(m.mlp.inputs());
    const auto n_out = static_cast<std::size_t>(m.mlp.outputs());
    Scaling s;
    if (input_mean != nullptr) {
      s.input_mean.assign(input_mean, input_mean + n_in);
      s.input_scale.assign(input_scale, input_scale + n_in);
    }
    if (output_mean != nullptr) {
      s.output_mean.assign(output_mean, output_mean + n_out);
      s.output_scale.assign(output_scale, output_scale + n_out);
    }
    m.mlp.set_scaling(std::move(s));
  });
}

descent_status descent_model_scale(const descent_model* model, float* x, int64_t rows, int64_t ld_x,
                                   float* targets, int64_t ld_targets) {
  return guarded("descent_model_scale", [&] {
    const descent_model& m = need(model, "model");
    const std::int64_t inputs = m.mlp.inputs(), outputs = m.mlp.outputs();
    check_matrix(x, "x", rows, inputs, ld_x, "ld_x");
    if (targets != nullptr) check_ld(ld_targets, outputs, "ld_targets");
    const Scaling& s = m.mlp.scaling();
    s.to_network_inputs(std::span<float>(x, static_cast<std::size_t>((rows - 1) * ld_x + inputs)),
                        rows, ld_x);
    if (targets != nullptr) {
      s.to_network_outputs(
          std::span<float>(targets, static_cast<std::size_t>((rows - 1) * ld_targets + outputs)),
          rows, ld_targets);
    }
  });
}

descent_status descent_dataset_standardize(descent_dataset* data, descent_model* model) {
  return guarded("descent_dataset_standardize", [&] {
    descent_dataset& d = need(data, "data");
    descent_model& m = need(model, "model");
    Scaling s = standardization(d.data);
    validate(s, m.mlp.inputs(), m.mlp.outputs());  // before anything changes
    d.data.apply(s);
    m.mlp.set_scaling(std::move(s));
  });
}

descent_status descent_model_predict(descent_model* model, const float* x, int64_t rows,
                                     int64_t cols, int64_t ld_x, float* out, int64_t ld_out,
                                     descent_memory memory) {
  return guarded("descent_model_predict", [&] {
    descent_model& m = need(model, "model");
    const Context& ctx = m.owner->ctx;
    check_matrix(x, "x", rows, cols, ld_x, "ld_x");
    need_ptr(out, "out");
    const std::int64_t outputs = m.mlp.outputs();
    check_ld(ld_out, outputs, "ld_out");
    check_inputs(m.mlp, cols);
    const Device where = memory_device(ctx, memory);
    if (!m.mlp.scaling().empty()) {
      // The scaling is applied on the host: x gathered there, the answer put back where out is.
      const auto f = sizeof(float);
      std::vector<float> packed(static_cast<std::size_t>(rows * cols));
      detail::copy_rows(ctx, packed.data(), f * static_cast<std::size_t>(cols), Device::cpu(), x,
                        f * static_cast<std::size_t>(ld_x), where,
                        f * static_cast<std::size_t>(cols), static_cast<std::size_t>(rows));
      const std::vector<float> y = m.mlp.predict(packed, rows);
      detail::copy_rows(ctx, out, f * static_cast<std::size_t>(ld_out), where, y.data(),
                        f * static_cast<std::size_t>(outputs), Device::cpu(),
                        f * static_cast<std::size_t>(outputs), static_cast<std::size_t>(rows));
      ctx.synchronize();
      return;
    }
    const MatrixView<const float> y =
        m.mlp.forward(on_device(ctx, x, rows, cols, ld_x, where, m.x_stage));
    // One strided copy into the caller's rows, wherever they are; the output is ready on return.
    detail::copy_rows(ctx, out, sizeof(float) * static_cast<std::size_t>(ld_out), where, y.data,
                      sizeof(float) * static_cast<std::size_t>(y.ld), y.device,
                      sizeof(float) * static_cast<std::size_t>(outputs),
                      static_cast<std::size_t>(rows));
    ctx.synchronize();
  });
}

// ---------------------------------------------------------------- optimizer

namespace {

// The one way the C API makes an optimizer: its kind through the library's parser, its options
// as the library's option list.
descent_status create_optimizer(
    const char* function, descent_model* model, const char* kind,
    const std::function<std::vector<OptimizerOption>(OptimizerKind)>& options, const char* schedule,
    int64_t schedule_steps, float factor, descent_optimizer** out) {
  if (out != nullptr) *out = nullptr;
  return guarded(function, [&] {
    descent_model& m = need(model, "model");
    need_ptr(out, "out");
    need_ptr(kind, "kind");
    OptimizerKind k = OptimizerKind::sgd;
    try {
      k = parse_optimizer(kind);
    } catch (const ArgumentError& e) {
      throw ArgumentError(std::string("kind: ") + e.what());
    }
    const std::vector<OptimizerOption> list = options(k);
    const LrSchedule s = parse_schedule(schedule, schedule_steps, factor);
    *out = new descent_optimizer{&m, make_optimizer(m.mlp, k, list, s)};
  });
}

OptimizerOption number(const char* name, float value) {
  OptimizerOption o;
  o.name = name;
  o.number = value;
  return o;
}

OptimizerOption flag(const char* name, int value) {
  OptimizerOption o;
  o.name = name;
  o.type = OptimizerOption::Type::flag;
  o.flag = value != 0;
  return o;
}

}  // namespace

descent_status descent_optimizer_create(descent_model* model, float lr, float momentum,
                                        float weight_decay, int nesterov, const char* schedule,
                                        int64_t schedule_steps, float factor,
                                        descent_optimizer** out) {
  return create_optimizer(
      "descent_optimizer_create", model, "sgd",
      [&](OptimizerKind k) {
        const OptimizerOption o[] = {number("lr", lr), number("momentum", momentum),
                                     number("weight_decay", weight_decay),
                                     flag("nesterov", nesterov)};
        return with_options(k, o);
      },
      schedule, schedule_steps, factor, out);
}

descent_status descent_optimizer_create_adam(descent_model* model, const char* kind, float lr,
                                             float beta1, float beta2, float eps,
                                             float weight_decay, int amsgrad, const char* schedule,
                                             int64_t schedule_steps, float factor,
                                             descent_optimizer** out) {
  return create_optimizer(
      "descent_optimizer_create_adam", model, kind,
      [&](OptimizerKind k) {
        if (k != OptimizerKind::adam && k != OptimizerKind::adamw) {
          throw ArgumentError(std::string("kind: expected \"adam\" or \"adamw\", got '") +
                              to_string(k) +
                              "' (the other kinds are made by descent_optimizer_create_from)");
        }
        const OptimizerOption o[] = {number("lr", lr),
                                     number("beta1", beta1),
                                     number("beta2", beta2),
                                     number("eps", eps),
                                     number("weight_decay", weight_decay),
                                     flag("amsgrad", amsgrad)};
        return with_options(k, o);
      },
      schedule, schedule_steps, factor, out);
}

descent_status descent_optimizer_create_from(descent_model* model, const char* kind,
                                             const char* options, const char* schedule,
                                             int64_t schedule_steps, float factor,
                                             descent_optimizer** out) {
  return create_optimizer(
      "descent_optimizer_create_from", model, kind,
      [&](OptimizerKind k) {
        return with_options(k, parse_optimizer_options(k, options != nullptr ? options : ""));
      },
      schedule, schedule_steps, factor, out);
}

void descent_optimizer_destroy(descent_optimizer* opt) { delete opt; }

descent_status descent_optimizer_kind(const descent_optimizer* opt, const char** kind) {
  return guarded("descent_optimizer_kind", [&] {
    const descent_optimizer& o = need(opt, "opt");
    need_ptr(kind, "kind");
    *kind = to_string(o.opt->kind());
  });
}

descent_status descent_optimizer_lr(const descent_optimizer* opt, float* lr) {
  return guarded("descent_optimizer_lr", [&] {
    const descent_optimizer& o = need(opt, "opt");
    need_ptr(lr, "lr");
    *lr = o.opt->lr();
  });
}

descent_status descent_optimizer_steps(const descent_optimizer* opt, int64_t* steps) {
  return guarded("descent_optimizer_steps", [&] {
    const descent_optimizer& o = need(opt, "opt");
    need_ptr(steps, "steps");
    *steps = o.opt->steps();
  });
}

// ---------------------------------------------------------------- checkpoints

descent_status descent_checkpoint_save(const char* path, const descent_model* model,
                                       const descent_optimizer* opt) {
  return guarded("descent_checkpoint_save", [&] {
    need_ptr(path, "path");
    const descent_model& m = need(model, "model");
    if (opt != nullptr && opt->model != &m) {
      throw ArgumentError("opt: the optimizer was made for another model");
    }
    save_checkpoint(path, m.mlp, opt != nullptr ? opt->opt.get() : nullptr);
  });
}

descent_status descent_checkpoint_load(const char* path, descent_model* model,
                                       descent_optimizer* opt) {
  return guarded("descent_checkpoint_load", [&] {
    need_ptr(path, "path");
    descent_model& m = need(model, "model");
    if (opt != nullptr && opt->model != &m) {
      throw ArgumentError("opt: the optimizer was made for another model");
    }
    load_checkpoint(path, m.mlp, opt != nullptr ? opt->opt.get() : nullptr);
  });
}

}  // extern "C"
