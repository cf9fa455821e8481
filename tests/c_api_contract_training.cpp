// The C API contract table, part 2: communicators, trainers, checkpoints.
#include "c_api_contract.hpp"

namespace c_api_contract {

namespace {

descent_status step_with(World& w, Call& c, const std::vector<float>& x, std::int64_t rows,
                         std::int64_t cols, std::int64_t ld, const std::int32_t* labels,
                         const float* targets, descent_memory memory = kHost) {
  return descent_trainer_step(c.arg("trainer", w.trainer), c.arg("x", x.data()), rows, cols, ld,
                              c.arg("labels", labels), c.arg("targets", targets), 2, memory);
}

descent_status evaluate_with(World& w, Call& c, const std::vector<float>& x, std::int64_t cols,
                             const std::int32_t* labels, const float* targets = nullptr) {
  double loss = 0, accuracy = 0;
  return descent_trainer_evaluate(c.arg("trainer", w.trainer), c.arg("x", x.data()), World::kRows,
                                  cols, cols, c.arg("labels", labels), c.arg("targets", targets), 2,
                                  kHost, c.arg("loss", &loss), c.arg("accuracy", &accuracy));
}

descent_status fit_with(World& w, Call& c, const descent_dataset* train,
                        const descent_dataset* test, std::int64_t batch, std::int64_t epochs) {
  int calls = 0;
  return descent_trainer_fit(
      c.arg("trainer", w.trainer), c.arg("train", train), c.arg("test", test), batch, epochs, 5,
      c.arg(
          "callback", +[](const descent_epoch_stats*, void* user) { ++*static_cast<int*>(user); }),
      c.arg("user", static_cast<void*>(&calls)));
}

descent_status load_into(World& w, Call& c, const std::string& path, bool with_opt = true) {
  return descent_checkpoint_load(c.arg("path", path.c_str()), c.arg("model", w.model),
                                 c.arg("opt", with_opt ? w.opt : nullptr));
}

descent_status create_trainer(World& w, Call& c, bool parallel, descent_optimizer* opt,
                              const char* loss) {
  descent_trainer* out = Call::fresh<descent_trainer>();
  const descent_status s =
      parallel ? descent_trainer_create_parallel(c.arg("model", w.model), c.arg("opt", opt),
                                                 c.arg("loss", loss), c.arg("comm", w.single),
                                                 c.arg("out", &out))
               : descent_trainer_create(c.arg("model", w.model), c.arg("opt", opt),
                                        c.arg("loss", loss), c.arg("out", &out));
  return c.made(s, out, descent_trainer_destroy);
}

std::vector<Failure> trainer_create_failures(bool parallel) {
  return {
      {"an unknown loss", kArgument,
       [=](World& w, Call& c) { return create_trainer(w, c, parallel, w.opt, "hinge"); }},
      {"an optimizer of another model", kArgument,
       [=](World& w, Call& c) { return create_trainer(w, c, parallel, w.other_opt, "mse"); }},
  };
}

}  // namespace

std::vector<Entry> training_entries() {
  return {
      // ---------------------------------------------------------- data parallel
      {"descent_communicator_create_mpi",
       {"ctx", "out"},
       {},
       Effect::changes_state,
       [](World& w, Call& c) {
         descent_communicator* out = Call::fresh<descent_communicator>();
         return c.made(descent_communicator_create_mpi(c.arg("ctx", w.ctx), 0, c.arg("out", &out)),
                       out, descent_communicator_destroy);
       },
       {},
       DESCENT_ERROR_DEVICE,
       "MPI is not initialised in this process (or descent has no MPI): see tests/mpi"},
      {"descent_context_create_for_rank",
       {"out"},
       {"kind", "local_rank"},
       Effect::changes_state,
       [](World&, Call& c) {
         descent_context* out = Call::fresh<descent_context>();
         int local = -1;
         return c.made(
             descent_context_create_for_rank(0, c.arg("kind", "cpu"), c.arg("local_rank", &local),
                                             c.arg("out", &out)),
             out, descent_context_destroy);
       },
       {{"an unknown kind", kArgument,
         [](World&, Call& c) {
           descent_context* out = Call::fresh<descent_context>();
           return c.made(descent_context_create_for_rank(0, "tpu", nullptr, &out), out,
                         descent_context_destroy);
         }}},
       DESCENT_ERROR_DEVICE,
       "MPI is not initialised in this process (or descent has no MPI): see tests/mpi"},
      {"descent_communicator_create_single",
       {"out"},
       {},
       Effect::changes_state,
       [](World&, Call& c) {
         descent_communicator* out = Call::fresh<descent_communicator>();
         return c.made(descent_communicator_create_single(c.arg("out", &out)), out,
                       descent_communicator_destroy);
       }},
      {"descent_communicator_destroy",
       {},
       {"comm"},
       Effect::destroys,
       [](World&, Call& c) {
         descent_communicator* comm = nullptr;
         World::ok(descent_communicator_create_single(&comm));
         descent_communicator_destroy(c.arg("comm", comm));
         if (c.is_null("comm")) descent_communicator_destroy(comm);
         return DESCENT_OK;
       }},
      {"descent_communicator_rank",
       {"comm", "rank"},
       {},
       Effect::none,
       [](World& w, Call& c) {
         int rank = -1;
         return descent_communicator_rank(c.arg("comm", w.single), c.arg("rank", &rank));
       }},
      {"descent_communicator_size",
       {"comm", "size"},
       {},
       Effect::none,
       [](World& w, Call& c) {
         int size = -1;
         return descent_communicator_size(c.arg("comm", w.single), c.arg("size", &size));
       }},
      {"descent_communicator_sum_gradients",
       {"comm", "model"},
       {},
       Effect::changes_state,
       [](World& w, Call& c) {
         return descent_communicator_sum_gradients(c.arg("comm", w.single),
                                                   c.arg("model", w.model));
       }},
      {"descent_communicator_abort",
       {"comm"},
       {"message"},
       Effect::ends_process,
       [](World& w, Call& c) {
         return descent_communicator_abort(c.arg("comm", w.single), c.arg("message", "bye"), 3);
       }},
      // ---------------------------------------------------------- trainer
      {"descent_trainer_create",
       {"model", "opt", "loss", "out"},
       {},
       Effect::changes_state,
       [](World& w, Call& c) { return create_trainer(w, c, false, w.opt, "ce"); },
       trainer_create_failures(false)},
      {"descent_trainer_create_parallel",
       {"model", "opt", "loss", "comm", "out"},
       {},
       Effect::changes_state,
       [](World& w, Call& c) { return create_trainer(w, c, true, w.opt, "mse"); },
       trainer_create_failures(true)},
      {"descent_trainer_destroy",
       {},
       {"trainer"},
       Effect::destroys,
       [](World& w, Call& c) {
         descent_model* m = nullptr;
         descent_optimizer* o = nullptr;
         descent_trainer* t = nullptr;
         const std::int64_t widths[] = {2, 2};
         World::ok(descent_model_create(w.ctx, widths, 2, "relu", 1, &m));
         World::ok(descent_optimizer_create(m, 0.1f, 0, 0, 0, nullptr, 0, 0, &o));
         World::ok(descent_trainer_create(m, o, "mse", &t));
         descent_trainer_destroy(c.arg("trainer", t));
         if (c.is_null("trainer")) descent_trainer_destroy(t);
         descent_optimizer_destroy(o);
         descent_model_destroy(m);
         return DESCENT_OK;
       }},
      {"descent_trainer_step",
       {"trainer", "x", "labels"},
       {"targets"},
       Effect::changes_state,
       [](World& w, Call& c) {
         const std::int32_t l[] = {1, 0, 1, 1};
         return step_with(w, c, kBatch, 4, 3, 3, l, nullptr);
       },
       {{"cols that are not the model's inputs", kShape,
         [](World& w, Call& c) {
           const std::int32_t l[] = {1, 0, 1};
           return step_with(w, c, kBatch, 3, 4, 4, l, nullptr);
         }},
        {"a label out of range", kArgument,
         [](World& w, Call& c) {
           const std::int32_t l[] = {1, 0, 2, 1};
           return step_with(w, c, kBatch, 4, 3, 3, l, nullptr);
         }},
        {"a negative label", kArgument,
         [](World& w, Call& c) {
           const std::int32_t l[] = {1, 0, -1, 1};
           return step_with(w, c, kBatch, 4, 3, 3, l, nullptr);
         }},
        {"targets for a softmax cross-entropy trainer", kArgument,
         [](World& w, Call& c) {
           const std::int32_t l[] = {1, 0, 1, 1};
           return step_with(w, c, kBatch, 4, 3, 3, l, w.targets.data());
         }},
        {"ld_x < cols", kArgument,
         [](World& w, Call& c) {
           const std::int32_t l[] = {1, 0, 1, 1};
           return step_with(w, c, kBatch, 4, 3, 2, l, nullptr);
         }},
        {"no rows", kArgument,
         [](World& w, Call& c) {
           const std::int32_t l[] = {1, 0, 1, 1};
           return step_with(w, c, kBatch, 0, 3, 3, l, nullptr);
         }},
        {"device memory on a cpu context", kDevice,
         [](World& w, Call& c) {
           const std::int32_t l[] = {1, 0, 1, 1};
           return step_with(w, c, kBatch, 4, 3, 3, l, nullptr, DESCENT_MEMORY_DEVICE);
         }},
        {"an unknown memory kind", kArgument,
         [](World& w, Call& c) {
           const std::int32_t l[] = {1, 0, 1, 1};
           return step_with(w, c, kBatch, 4, 3, 3, l, nullptr, static_cast<descent_memory>(7));
         }}}},
      {"descent_trainer_take_loss",
       {"trainer", "loss"},
       {},
       Effect::changes_state,
       [](World& w, Call& c) {
         double loss = 0;
         return descent_trainer_take_loss(c.arg("trainer", w.trainer), c.arg("loss", &loss));
       }},
      {"descent_trainer_set_non_finite",
       {"trainer", "policy"},
       {},
       Effect::changes_state,
       [](World& w, Call& c) {
         return descent_trainer_set_non_finite(c.arg("trainer", w.trainer),
                                               c.arg("policy", "error"));
       },
       {{"an unknown policy", kArgument,
         [](World& w, Call&) { return descent_trainer_set_non_finite(w.trainer, "ignore"); }}}},
      {"descent_trainer_set_clip_grad_norm",
       {"trainer"},
       {},
       Effect::changes_state,
       [](World& w, Call& c) {
         return descent_trainer_set_clip_grad_norm(c.arg("trainer", w.trainer), 10.0f, 2.0f);
       },
       {{"a NaN max_norm", kArgument,
         [](World& w, Call&) { return descent_trainer_set_clip_grad_norm(w.trainer, kNaN, 2); }},
        {"a negative max_norm", kArgument,
         [](World& w, Call&) { return descent_trainer_set_clip_grad_norm(w.trainer, -1, 2); }},
        {"an infinite max_norm", kArgument,
         [](World& w, Call&) { return descent_trainer_set_clip_grad_norm(w.trainer, kInf, 2); }},
        {"norm_type 1", kArgument,
         [](World& w, Call&) { return descent_trainer_set_clip_grad_norm(w.trainer, 1, 1); }}}},
      {"descent_trainer_last_grad_norm",
       {"trainer", "norm"},
       {},
       Effect::none,
       [](World& w, Call& c) {
         float norm = 0;
         return descent_trainer_last_grad_norm(c.arg("trainer", w.trainer), c.arg("norm", &norm));
       }},
      {"descent_trainer_skipped_steps",
       {"trainer", "skipped"},
       {},
       Effect::none,
       [](World& w, Call& c) {
         std::int64_t skipped = 0;
         return descent_trainer_skipped_steps(c.arg("trainer", w.trainer),
                                              c.arg("skipped", &skipped));
       }},
      {"descent_trainer_evaluate",
       {"trainer", "x", "labels"},
       {"targets", "loss", "accuracy"},
       Effect::none,
       [](World& w, Call& c) {
         const std::int32_t l[] = {1, 0, 1, 1};
         return evaluate_with(w, c, kBatch, 3, l);
       },
       {{"a label out of range", kData,
         [](World& w, Call& c) {
           const std::int32_t l[] = {1, 0, 5, 1};
           return evaluate_with(w, c, kBatch, 3, l);
         }},
        {"a NaN input", kData,
         [](World& w, Call& c) {
           std::vector<float> x = kBatch;
           x[4] = kNaN;
           const std::int32_t l[] = {1, 0, 1, 1};
           return evaluate_with(w, c, x, 3, l);
         }},
        {"targets for a softmax cross-entropy trainer", kArgument,
         [](World& w, Call& c) {
           const std::int32_t l[] = {1, 0, 1, 1};
           return evaluate_with(w, c, kBatch, 3, l, w.targets.data());
         }},
        {"cols that are not the model's inputs", kShape,
         [](World& w, Call& c) {
           const std::int32_t l[] = {1, 0, 1, 1};
           return evaluate_with(w, c, kBatch, 2, l);
         }}}},
      {"descent_trainer_evaluate_dataset",
       {"trainer", "data"},
       {"loss", "accuracy"},
       Effect::none,
       [](World& w, Call& c) {
         double loss = 0, accuracy = 0;
         return descent_trainer_evaluate_dataset(c.arg("trainer", w.trainer), c.arg("data", w.data),
                                                 3, c.arg("loss", &loss),
                                                 c.arg("accuracy", &accuracy));
       },
       {{"a regression dataset for softmax cross-entropy", kArgument,
         [](World& w, Call&) {
           return descent_trainer_evaluate_dataset(w.trainer, w.targets_data, 3, nullptr, nullptr);
         }},
        {"4 features for a model of 3 inputs", kShape,
         [](World& w, Call&) {
           return descent_trainer_evaluate_dataset(w.trainer, w.wide_data, 3, nullptr, nullptr);
         }},
        {"batch_size 0", kArgument,
         [](World& w, Call&) {
           return descent_trainer_evaluate_dataset(w.trainer, w.data, 0, nullptr, nullptr);
         }}}},
      {"descent_trainer_fit",
       {"trainer", "train"},
       {"test", "callback", "user"},
       Effect::changes_state,
       [](World& w, Call& c) { return fit_with(w, c, w.data, w.data, 4, 3); },
       {{"batch_size 0", kArgument,
         [](World& w, Call& c) { return fit_with(w, c, w.data, w.data, 0, 3); }},
        {"0 epochs", kArgument,
         [](World& w, Call& c) { return fit_with(w, c, w.data, w.data, 4, 0); }},
        {"a regression training set for softmax cross-entropy", kArgument,
         [](World& w, Call& c) { return fit_with(w, c, w.targets_data, nullptr, 4, 3); }},
        {"a regression test set for softmax cross-entropy", kArgument,
         [](World& w, Call& c) { return fit_with(w, c, w.data, w.targets_data, 4, 3); }},
        {"a test set with a label past the model's outputs", kArgument,
         [](World& w, Call& c) {
           const std::vector<float> f(8 * 3, 0.5f);
           const std::int32_t l[] = {0, 1, 0, 1, 2, 0, 1, 0};
           descent_dataset* three = nullptr;
           World::ok(descent_dataset_create_labels(f.data(), 8, 3, 3, l, 3, &three));
           const descent_status s = fit_with(w, c, w.data, three, 4, 3);
           descent_dataset_destroy(three);
           return s;
         }},
        {"a training set of 4 features for 3 inputs", kShape,
         [](World& w, Call& c) { return fit_with(w, c, w.wide_data, nullptr, 4, 3); }},
        {"a test set of 4 features for 3 inputs", kShape,
         [](World& w, Call& c) { return fit_with(w, c, w.data, w.wide_data, 4, 3); }}}},
      // ---------------------------------------------------------- checkpoints
      {"descent_checkpoint_save",
       {"path", "model"},
       {"opt"},
       Effect::changes_state,
       [](World& w, Call& c) {
         const std::string path = (w.dir / "saved.ckpt").string();
         return descent_checkpoint_save(c.arg("path", path.c_str()), c.arg("model", w.model),
                                        c.arg("opt", w.opt));
       },
       {{"a folder that does not exist", kIo,
         [](World& w, Call&) {
           const std::string path = (w.dir / "no" / "such.ckpt").string();
           return descent_checkpoint_save(path.c_str(), w.model, w.opt);
         }},
        {"a folder as the path", kIo,
         [](World& w, Call&) { return descent_checkpoint_save(w.dir.c_str(), w.model, w.opt); }},
        {"an optimizer of another model, over the world's checkpoint", kArgument,
         [](World& w, Call&) {
           return descent_checkpoint_save(w.checkpoint.c_str(), w.model, w.other_opt);
         }}}},
      {"descent_checkpoint_load",
       {"path", "model"},
       {"opt"},
       Effect::changes_state,
       [](World& w, Call& c) { return load_into(w, c, w.checkpoint); },
       {{"a missing file", kIo,
         [](World& w, Call& c) { return load_into(w, c, w.checkpoint + ".no"); }},
        {"a folder", kIo, [](World& w, Call& c) { return load_into(w, c, w.dir.string()); }},
        {"a truncated file", kData,
         [](World& w, Call& c) { return load_into(w, c, truncated(w)); }},
        {"a flipped byte", kData, [](World& w, Call& c) { return load_into(w, c, flipped(w)); }},
        {"another architecture", kData,
         [](World& w, Call& c) {
           return load_into(w, c,
                            w.saved("other.ckpt", "sgd", {World::kInputs, 4, World::kOutputs}));
         }},
        {"another architecture, model only", kData,
         [](World& w, Call& c) {
           return load_into(
               w, c, w.saved("other.ckpt", nullptr, {World::kInputs, 4, World::kOutputs}), false);
         }},
        {"no optimizer state", kData,
         [](World& w, Call& c) { return load_into(w, c, w.saved("bare.ckpt", nullptr)); }},
        {"SGD without momentum", kData,
         [](World& w, Call& c) { return load_into(w, c, w.saved("sgd0.ckpt", "sgd0")); }},
        {"Adam's state", kData,
         [](World& w, Call& c) { return load_into(w, c, w.saved("adam.ckpt", "adam")); }},
        {"a NaN parameter", kData,
         [](World& w, Call& c) { return load_into(w, c, non_finite(w, kNaN)); }},
        {"an infinite parameter, model only", kData,
         [](World& w, Call& c) { return load_into(w, c, non_finite(w, -kInf), false); }},
        {"an optimizer of another model", kArgument,
         [](World& w, Call&) {
           return descent_checkpoint_load(w.checkpoint.c_str(), w.model, w.other_opt);
         }}}},
  };
}

}  // namespace c_api_contract
