// The C API contract table, part 1: status and errors, contexts, models, optimizers, datasets.
#include "c_api_contract.hpp"

namespace c_api_contract {

namespace {

descent_status load_model(World& w, Call& c, const std::string& path) {
  descent_model* out = Call::fresh<descent_model>();
  return c.made(
      descent_model_load(c.arg("ctx", w.ctx), c.arg("path", path.c_str()), c.arg("out", &out)), out,
      descent_model_destroy);
}

descent_status create_sgd(World& w, Call& c, float lr, float momentum, int nesterov,
                          const char* schedule, std::int64_t steps) {
  descent_optimizer* out = Call::fresh<descent_optimizer>();
  return c.made(
      descent_optimizer_create(c.arg("model", w.model), lr, momentum, 0, nesterov,
                               c.arg("schedule", schedule), steps, 0.5f, c.arg("out", &out)),
      out, descent_optimizer_destroy);
}

descent_status create_adam(World& w, Call& c, const char* kind, float beta1, float eps) {
  descent_optimizer* out = Call::fresh<descent_optimizer>();
  return c.made(descent_optimizer_create_adam(c.arg("model", w.model), c.arg("kind", kind), 1e-3f,
                                              beta1, 0.999f, eps, 0, 0, c.arg("schedule", "cosine"),
                                              10, 0, c.arg("out", &out)),
                out, descent_optimizer_destroy);
}

descent_status create_from(World& w, Call& c, const char* kind, const char* options) {
  descent_optimizer* out = Call::fresh<descent_optimizer>();
  return c.made(descent_optimizer_create_from(
                    c.arg("model", w.model), c.arg("kind", kind), c.arg("options", options),
                    c.arg("schedule", "cosine"), 10, 0, c.arg("out", &out)),
                out, descent_optimizer_destroy);
}

descent_status create_model(World& w, Call& c, std::vector<std::int64_t> widths,
                            const char* activation) {
  descent_model* out = Call::fresh<descent_model>();
  return c.made(
      descent_model_create(c.arg("ctx", w.ctx), c.arg("widths", widths.data()), int(widths.size()),
                           c.arg("activation", activation), 1, c.arg("out", &out)),
      out, descent_model_destroy);
}

descent_status create_context(Call& c, const char* device, int threads) {
  descent_context* out = Call::fresh<descent_context>();
  return c.made(descent_context_create(c.arg("device", device), threads, c.arg("out", &out)), out,
                descent_context_destroy);
}

descent_status create_labels(Call& c, std::vector<float> f, std::int64_t rows, std::int64_t ld,
                             std::vector<std::int32_t> l, std::int64_t classes) {
  descent_dataset* out = Call::fresh<descent_dataset>();
  return c.made(
      descent_dataset_create_labels(c.arg("features", f.data()), rows, 3, ld,
                                    c.arg("labels", l.data()), classes, c.arg("out", &out)),
      out, descent_dataset_destroy);
}

descent_status create_targets(Call& c, std::vector<float> t, std::int64_t target_cols) {
  const std::vector<float> f = {1, 2, 3, 4, 5, 6};
  descent_dataset* out = Call::fresh<descent_dataset>();
  return c.made(descent_dataset_create_targets(c.arg("features", f.data()), 2, 3, 3,
                                               c.arg("targets", t.data()), target_cols, target_cols,
                                               c.arg("out", &out)),
                out, descent_dataset_destroy);
}

descent_status load_idx(World& w, Call& c, const std::string& images, std::int64_t limit) {
  descent_dataset* out = Call::fresh<descent_dataset>();
  return c.made(descent_dataset_load_idx(c.arg("images_path", images.c_str()),
                                         c.arg("labels_path", w.idx_labels.c_str()), limit,
                                         c.arg("out", &out)),
                out, descent_dataset_destroy);
}

}  // namespace

std::vector<Entry> setup_entries() {
  return {
      // ---------------------------------------------------------- status and errors
      {"descent_last_error",
       {},
       {},
       Effect::none,
       [](World&, Call&) {
         EXPECT_NE(descent_last_error(), nullptr);
         return DESCENT_OK;
       }},
      {"descent_status_string",
       {},
       {},
       Effect::none,
       [](World&, Call&) {
         EXPECT_STREQ(descent_status_string(static_cast<descent_status>(99)), "unknown status");
         return DESCENT_OK;
       }},
      {"descent_version",
       {},
       {},
       Effect::none,
       [](World&, Call&) {
         EXPECT_NE(descent_version(), nullptr);
         return DESCENT_OK;
       }},
      {"descent_built_with_cuda",
       {},
       {},
       Effect::none,
       [](World&, Call&) {
         EXPECT_LE(descent_built_with_cuda(), 1);
         return DESCENT_OK;
       }},
      {"descent_cuda_device_count",
       {},
       {},
       Effect::none,
       [](World&, Call&) {
         EXPECT_GE(descent_cuda_device_count(), 0);
         return DESCENT_OK;
       }},
      {"descent_built_with_mpi",
       {},
       {},
       Effect::none,
       [](World&, Call&) {
         EXPECT_LE(descent_built_with_mpi(), 1);
         return DESCENT_OK;
       }},
      // ---------------------------------------------------------- context
      {"descent_context_create",
       {"device", "out"},
       {},
       Effect::changes_state,
       [](World&, Call& c) { return create_context(c, "cpu", 1); },
       {{"an unknown device", kArgument,
         [](World&, Call& c) { return create_context(c, "tpu", 1); }},
        {"a device name with junk", kArgument,
         [](World&, Call& c) { return create_context(c, "cpu:0x", 1); }},
        {"threads < 0", kArgument, [](World&, Call& c) { return create_context(c, "cpu", -1); }}}},
      {"descent_context_destroy",
       {},
       {"ctx"},
       Effect::destroys,
       [](World&, Call& c) {
         descent_context* ctx = nullptr;
         World::ok(descent_context_create("cpu", 1, &ctx));
         descent_context_destroy(c.arg("ctx", ctx));
         if (c.is_null("ctx")) descent_context_destroy(ctx);
         return DESCENT_OK;
       }},
      {"descent_context_device",
       {"ctx", "name"},
       {},
       Effect::none,
       [](World& w, Call& c) {
         const char* name = nullptr;
         return descent_context_device(c.arg("ctx", w.ctx), c.arg("name", &name));
       }},
      {"descent_context_set_stream",
       {"ctx"},
       {"stream"},
       Effect::changes_state,
       [](World& w, Call& c) {
         return descent_context_set_stream(c.arg("ctx", w.ctx), c.arg("stream", (void*)nullptr));
       },
       {{"a stream on a cpu context", kArgument,
         [](World& w, Call&) {
           static int not_a_stream;
           return descent_context_set_stream(w.ctx, &not_a_stream);
         }}}},
      {"descent_context_get_stream",
       {"ctx", "stream"},
       {},
       Effect::none,
       [](World& w, Call& c) {
         void* stream = nullptr;
         return descent_context_get_stream(c.arg("ctx", w.ctx), c.arg("stream", &stream));
       }},
      {"descent_context_synchronize",
       {"ctx"},
       {},
       Effect::none,
       [](World& w, Call& c) { return descent_context_synchronize(c.arg("ctx", w.ctx)); }},
      // ---------------------------------------------------------- model
      {"descent_model_create",
       {"ctx", "widths", "activation", "out"},
       {},
       Effect::changes_state,
       [](World& w, Call& c) {
         return create_model(w, c, {3, 7, 2}, "relu");
       },
       {{"one width", kArgument, [](World& w, Call& c) { return create_model(w, c, {3}, "relu"); }},
        {"a width of 0", kShape,
         [](World& w, Call& c) {
           return create_model(w, c, {3, 0, 2}, "relu");
         }},
        {"a negative width", kShape,
         [](World& w, Call& c) {
           return create_model(w, c, {3, -5, 2}, "relu");
         }},
        {"an unknown activation", kArgument,
         [](World& w, Call& c) {
           return create_model(w, c, {3, 2}, "swish");
         }}}},
      {"descent_model_load",
       {"ctx", "path", "out"},
       {},
       Effect::changes_state,
       [](World& w, Call& c) { return load_model(w, c, w.checkpoint); },
       {{"a missing file", kIo,
         [](World& w, Call& c) { return load_model(w, c, w.checkpoint + ".no"); }},
        {"a folder", kIo, [](World& w, Call& c) { return load_model(w, c, w.dir.string()); }},
        {"a truncated file", kData,
         [](World& w, Call& c) { return load_model(w, c, truncated(w)); }},
        {"a flipped byte", kData, [](World& w, Call& c) { return load_model(w, c, flipped(w)); }},
        {"an empty file", kData,
         [](World& w, Call& c) { return load_model(w, c, w.file("empty", "")); }},
        {"a NaN parameter", kData,
         [](World& w, Call& c) { return load_model(w, c, non_finite(w, kNaN)); }}}},
      {"descent_model_destroy",
       {},
       {"model"},
       Effect::destroys,
       [](World& w, Call& c) {
         descent_model* m = nullptr;
         const std::int64_t widths[] = {2, 2};
         World::ok(descent_model_create(w.ctx, widths, 2, "relu", 1, &m));
         descent_model_destroy(c.arg("model", m));
         if (c.is_null("model")) descent_model_destroy(m);
         return DESCENT_OK;
       }},
      {"descent_model_shape",
       {"model"},
       {"inputs", "outputs"},
       Effect::none,
       [](World& w, Call& c) {
         std::int64_t in = 0, out = 0;
         return descent_model_shape(c.arg("model", w.model), c.arg("inputs", &in),
                                    c.arg("outputs", &out));
       }},
      {"descent_model_parameter_count",
       {"model", "count"},
       {},
       Effect::none,
       [](World& w, Call& c) {
         std::int64_t n = 0;
         return descent_model_parameter_count(c.arg("model", w.model), c.arg("count", &n));
       }},
      {"descent_model_get_params",
       {"model", "params"},
       {},
       Effect::none,
       [](World& w, Call& c) {
         std::vector<float> p(static_cast<std::size_t>(w.params));
         return descent_model_get_params(c.arg("model", w.model), c.arg("params", p.data()),
                                         w.params);
       },
       {{"a count one short", kShape,
         [](World& w, Call&) {
           std::vector<float> p(static_cast<std::size_t>(w.params));
           return descent_model_get_params(w.model, p.data(), w.params - 1);
         }}}},
      {"descent_model_set_scaling",
       {"model"},
       {"input_mean", "input_scale", "output_mean", "output_scale"},
       Effect::changes_state,
       [](World& w, Call& c) {
         // A mean and its scale go together: with one of a pair NULL, both are left out.
         const float im[] = {0.5f, -1, 2}, is[] = {2, 1, 0.5f}, om[] = {1, 2}, os[] = {3, 4};
         const bool in = !c.is_null("input_mean") && !c.is_null("input_scale");
         const bool out = !c.is_null("output_mean") && !c.is_null("output_scale");
         c.arg("input_mean", im);
         c.arg("input_scale", is);
         c.arg("output_mean", om);
         c.arg("output_scale", os);
         return descent_model_set_scaling(c.arg("model", w.model), in ? im : nullptr,
                                          in ? is : nullptr, out ? om : nullptr,
                                          out ? os : nullptr);
       },
       {{"a mean without its scale", kArgument,
         [](World& w, Call&) {
           const float im[] = {0.5f, -1, 2};
           return descent_model_set_scaling(w.model, im, nullptr, nullptr, nullptr);
         }},
        {"a zero scale", kArgument,
         [](World& w, Call&) {
           const float im[] = {0.5f, -1, 2}, is[] = {2, 0, 0.5f};
           return descent_model_set_scaling(w.model, im, is, nullptr, nullptr);
         }},
        {"a NaN mean", kArgument,
         [](World& w, Call&) {
           const float om[] = {kNaN, 2}, os[] = {3, 4};
           return descent_model_set_scaling(w.model, nullptr, nullptr, om, os);
         }}}},
      {"descent_model_scale",
       {"model", "x"},
       {"targets"},
       Effect::changes_state,
       [](World& w, Call& c) {
         std::vector<float> x = w.x, t = w.targets;
         return descent_model_scale(c.arg("model", w.model), c.arg("x", x.data()), World::kRows,
                                    World::kInputs, c.arg("targets", t.data()), World::kOutputs);
       },
       {{"ld_x < inputs", kArgument,
         [](World& w, Call&) {
           std::vector<float> x = w.x;
           return descent_model_scale(w.model, x.data(), World::kRows, World::kInputs - 1, nullptr,
                                      0);
         }},
        {"rows < 1", kArgument,
         [](World& w, Call&) {
           std::vector<float> x = w.x;
           return descent_model_scale(w.model, x.data(), 0, World::kInputs, nullptr, 0);
         }}}},
      {"descent_dataset_standardize",
       {"data", "model"},
       {},
       Effect::changes_state,
       [](World& w, Call& c) {
         return descent_dataset_standardize(c.arg("data", w.targets_data), c.arg("model", w.model));
       },
       {{"a dataset of another width", kArgument,
         [](World& w, Call&) { return descent_dataset_standardize(w.wide_data, w.model); }}}},
      {"descent_model_set_params",
       {"model", "params"},
       {},
       Effect::changes_state,
       [](World& w, Call& c) {
         std::vector<float> p(static_cast<std::size_t>(w.params), 0.25f);
         return descent_model_set_params(c.arg("model", w.model), c.arg("params", p.data()),
                                         w.params);
       },
       {{"a count one short", kShape,
         [](World& w, Call&) {
           std::vector<float> p(static_cast<std::size_t>(w.params) + 1, 0.25f);
           return descent_model_set_params(w.model, p.data(), w.params - 1);
         }},
        {"a count one over", kShape,
         [](World& w, Call&) {
           std::vector<float> p(static_cast<std::size_t>(w.params) + 1, 0.25f);
           return descent_model_set_params(w.model, p.data(), w.params + 1);
         }},
        {"a negative count", kShape,
         [](World& w, Call&) {
           std::vector<float> p(static_cast<std::size_t>(w.params), 0.25f);
           return descent_model_set_params(w.model, p.data(), -1);
         }}}},
      {"descent_model_predict",
       {"model", "x", "out"},
       {},
       Effect::none,
       [](World& w, Call& c) {
         std::vector<float> out(8);
         return descent_model_predict(c.arg("model", w.model), c.arg("x", kBatch.data()), 4, 3, 3,
                                      c.arg("out", out.data()), 2, kHost);
       },
       {{"cols that are not the model's inputs", kShape,
         [](World& w, Call&) {
           std::vector<float> out(8);
           return descent_model_predict(w.model, kBatch.data(), 3, 4, 4, out.data(), 2, kHost);
         }},
        {"ld_out < outputs", kArgument,
         [](World& w, Call&) {
           std::vector<float> out(8);
           return descent_model_predict(w.model, kBatch.data(), 4, 3, 3, out.data(), 1, kHost);
         }},
        {"device memory on a cpu context", kDevice,
         [](World& w, Call&) {
           std::vector<float> out(8);
           return descent_model_predict(w.model, kBatch.data(), 4, 3, 3, out.data(), 2,
                                        DESCENT_MEMORY_DEVICE);
         }}}},
      // ---------------------------------------------------------- optimizer
      {"descent_optimizer_create",
       {"model", "out"},
       {"schedule"},
       Effect::changes_state,
       [](World& w, Call& c) { return create_sgd(w, c, 0.1f, 0.9f, 1, "cosine", 5); },
       {{"a NaN lr", kArgument,
         [](World& w, Call& c) { return create_sgd(w, c, kNaN, 0.9f, 0, nullptr, 0); }},
        {"a negative lr", kArgument,
         [](World& w, Call& c) { return create_sgd(w, c, -1, 0.9f, 0, nullptr, 0); }},
        {"an infinite momentum", kArgument,
         [](World& w, Call& c) { return create_sgd(w, c, 0.1f, kInf, 0, nullptr, 0); }},
        {"nesterov without momentum", kArgument,
         [](World& w, Call& c) { return create_sgd(w, c, 0.1f, 0, 1, nullptr, 0); }},
        {"an unknown schedule", kArgument,
         [](World& w, Call& c) { return create_sgd(w, c, 0.1f, 0.9f, 0, "linear", 5); }},
        {"a step schedule of 0 steps", kArgument,
         [](World& w, Call& c) { return create_sgd(w, c, 0.1f, 0.9f, 0, "step", 0); }}}},
      {"descent_optimizer_create_adam",
       {"model", "out"},
       {"kind", "schedule"},
       Effect::changes_state,
       [](World& w, Call& c) { return create_adam(w, c, "adamw", 0.9f, 1e-8f); },
       {{"kind sgd", kArgument,
         [](World& w, Call& c) { return create_adam(w, c, "sgd", 0.9f, 1e-8f); }},
        {"kind NULL", kArgument,
         [](World& w, Call& c) { return create_adam(w, c, nullptr, 0.9f, 1e-8f); }},
        {"beta1 = 1", kArgument,
         [](World& w, Call& c) { return create_adam(w, c, "adam", 1, 1e-8f); }},
        {"a NaN eps", kArgument,
         [](World& w, Call& c) { return create_adam(w, c, "adam", 0.9f, kNaN); }}}},
      {"descent_optimizer_create_from",
       {"model", "kind", "out"},
       {"options", "schedule"},
       Effect::changes_state,
       [](World& w, Call& c) { return create_from(w, c, "sgd", "lr=0.05, momentum=0.9"); },
       {{"kind adamax", kArgument,
         [](World& w, Call& c) { return create_from(w, c, "adamax", ""); }},
        {"an unknown option", kArgument,
         [](World& w, Call& c) { return create_from(w, c, "adam", "momentum=0.9"); }},
        {"a beta that is 1 as a float", kArgument,
         [](World& w, Call& c) { return create_from(w, c, "adam", "beta2=0.999999999"); }},
        {"an lr that underflows to 0", kArgument,
         [](World& w, Call& c) { return create_from(w, c, "sgd", "lr=1e-50"); }},
        {"a flag given a number", kArgument,
         [](World& w, Call& c) { return create_from(w, c, "sgd", "nesterov=0.5"); }},
        {"NaN", kArgument, [](World& w, Call& c) { return create_from(w, c, "sgd", "lr=nan"); }}}},
      {"descent_optimizer_destroy",
       {},
       {"opt"},
       Effect::destroys,
       [](World& w, Call& c) {
         descent_optimizer* o = nullptr;
         World::ok(descent_optimizer_create(w.model, 0.1f, 0, 0, 0, nullptr, 0, 0, &o));
         descent_optimizer_destroy(c.arg("opt", o));
         if (c.is_null("opt")) descent_optimizer_destroy(o);
         return DESCENT_OK;
       }},
      {"descent_optimizer_kind",
       {"opt", "kind"},
       {},
       Effect::none,
       [](World& w, Call& c) {
         const char* kind = nullptr;
         return descent_optimizer_kind(c.arg("opt", w.opt), c.arg("kind", &kind));
       }},
      {"descent_optimizer_lr",
       {"opt", "lr"},
       {},
       Effect::none,
       [](World& w, Call& c) {
         float lr = 0;
         return descent_optimizer_lr(c.arg("opt", w.opt), c.arg("lr", &lr));
       }},
      {"descent_optimizer_steps",
       {"opt", "steps"},
       {},
       Effect::none,
       [](World& w, Call& c) {
         std::int64_t steps = 0;
         return descent_optimizer_steps(c.arg("opt", w.opt), c.arg("steps", &steps));
       }},
      // ---------------------------------------------------------- datasets
      {"descent_dataset_create_labels",
       {"features", "labels", "out"},
       {},
       Effect::changes_state,
       [](World&, Call& c) {
         return create_labels(c, {1, 2, 3, 0, 4, 5, 6}, 2, 4, {0, 1}, 2);
       },
       {{"a label out of range", kData,
         [](World&, Call& c) {
           return create_labels(c, {1, 2, 3, 0, 4, 5, 6}, 2, 4, {0, 2}, 2);
         }},
        {"a negative label", kData,
         [](World&, Call& c) {
           return create_labels(c, {1, 2, 3, 0, 4, 5, 6}, 2, 4, {-1, 0}, 2);
         }},
        {"a NaN feature", kData,
         [](World&, Call& c) {
           return create_labels(c, {1, 2, 3, 0, 4, kNaN, 6}, 2, 4, {0, 1}, 2);
         }},
        {"ld < cols", kArgument,
         [](World&, Call& c) {
           return create_labels(c, {1, 2, 3, 0, 4, 5, 6}, 2, 2, {0, 1}, 2);
         }},
        {"no rows", kArgument,
         [](World&, Call& c) {
           return create_labels(c, {1, 2, 3, 0, 4, 5, 6}, 0, 4, {0, 1}, 2);
         }},
        {"no classes", kArgument,
         [](World&, Call& c) {
           return create_labels(c, {1, 2, 3, 0, 4, 5, 6}, 2, 4, {0, 0}, 0);
         }}}},
      {"descent_dataset_create_targets",
       {"features", "targets", "out"},
       {},
       Effect::changes_state,
       [](World&, Call& c) {
         return create_targets(c, {0.5f, 1.5f}, 1);
       },
       {{"an infinite target", kData,
         [](World&, Call& c) {
           return create_targets(c, {0.5f, kInf}, 1);
         }},
        {"no target columns", kArgument,
         [](World&, Call& c) {
           return create_targets(c, {0.5f, 1}, 0);
         }}}},
      {"descent_dataset_load_idx",
       {"images_path", "labels_path", "out"},
       {},
       Effect::changes_state,
       [](World& w, Call& c) { return load_idx(w, c, w.images, 0); },
       {{"a missing file", kIo,
         [](World& w, Call& c) { return load_idx(w, c, w.images + ".no", 0); }},
        {"a truncated file", kData,
         [](World& w, Call& c) {
           return load_idx(w, c, w.file("short.idx", read_bytes(w.images).substr(0, 20)), 0);
         }},
        {"a negative limit", kArgument,
         [](World& w, Call& c) { return load_idx(w, c, w.images, -1); }}}},
      {"descent_dataset_destroy",
       {},
       {"data"},
       Effect::destroys,
       [](World&, Call& c) {
         descent_dataset* d = nullptr;
         const float f[] = {1, 2};
         const std::int32_t l[] = {0};
         World::ok(descent_dataset_create_labels(f, 1, 2, 2, l, 1, &d));
         descent_dataset_destroy(c.arg("data", d));
         if (c.is_null("data")) descent_dataset_destroy(d);
         return DESCENT_OK;
       }},
      {"descent_dataset_shape",
       {"data"},
       {"rows", "features", "classes"},
       Effect::none,
       [](World& w, Call& c) {
         std::int64_t r = 0, f = 0, k = 0;
         return descent_dataset_shape(c.arg("data", w.data), c.arg("rows", &r),
                                      c.arg("features", &f), c.arg("classes", &k));
       }},
      {"descent_dataset_copy",
       {"data"},
       {"features", "labels"},
       Effect::none,
       [](World& w, Call& c) {
         std::vector<float> f(12);
         std::vector<std::int32_t> l(3);
         return descent_dataset_copy(c.arg("data", w.data), 2, 3, c.arg("features", f.data()), 4,
                                     c.arg("labels", l.data()));
       },
       {{"a range past the end", kArgument,
         [](World& w, Call&) {
           std::vector<float> f(30);
           return descent_dataset_copy(w.data, 6, 3, f.data(), 3, nullptr);
         }},
        {"ld < features", kArgument,
         [](World& w, Call&) {
           std::vector<float> f(30);
           return descent_dataset_copy(w.data, 0, 3, f.data(), 2, nullptr);
         }},
        {"labels of a regression dataset", kArgument,
         [](World& w, Call&) {
           std::vector<float> f(9, 42.0f);
           std::vector<std::int32_t> l(3);
           const descent_status s =
               descent_dataset_copy(w.targets_data, 0, 3, f.data(), 3, l.data());
           for (float v : f) EXPECT_EQ(v, 42.0f) << "the failed copy wrote features";
           return s;
         }}}},
  };
}

}  // namespace c_api_contract
