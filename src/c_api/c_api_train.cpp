// The C API (include/descent/descent.h), part 2: datasets and trainers (steps on user memory,
// evaluation, fit).
#include <cmath>
#include <limits>
#include <optional>

#include "c_api/c_api.hpp"

using namespace descent;
using namespace descent::c_api;

namespace {

// What a C caller does to skip non-finite steps, named by the NUMERIC error's message.
constexpr const char* kSkipHint = "descent_trainer_set_non_finite(trainer, \"skip\")";

// The labels/targets a trainer's loss needs, and nothing else.
void check_supervision(const descent_trainer& t, const int32_t* labels, const float* targets,
                       std::int64_t ld_targets) {
  const Loss loss = t.trainer.loss();
  if (loss == Loss::softmax_cross_entropy) {
    if (labels == nullptr) {
      throw ArgumentError("labels: NULL pointer; softmax_cross_entropy needs integer labels");
    }
    if (targets != nullptr) {
      throw ArgumentError("targets: must be NULL for softmax_cross_entropy (it uses labels)");
    }
    return;
  }
  if (targets == nullptr) {
    throw ArgumentError(std::string("targets: NULL pointer; ") + to_string(loss) +
                        " needs float targets");
  }
  if (labels != nullptr) {
    throw ArgumentError(std::string("labels: must be NULL for ") + to_string(loss) +
                        " (it uses targets)");
  }
  check_ld(ld_targets, t.model->mlp.outputs(), "ld_targets");
}

Dataset dataset_from_user(const Context& ctx, const float* x, std::int64_t rows, std::int64_t cols,
                          std::int64_t ld, const int32_t* labels, std::int64_t classes,
                          const float* targets, std::int64_t target_cols, std::int64_t ld_targets,
                          Device where) {
  const std::vector<float> features =
      pack(to_host(ctx, x, extent(rows, cols, ld), where), rows, cols, ld);
  if (labels != nullptr) {
    return Dataset::from_floats(features, cols, to_host(ctx, labels, rows, where), classes);
  }
  const std::vector<float> t =
      pack(to_host(ctx, targets, extent(rows, target_cols, ld_targets), where), rows, target_cols,
           ld_targets);
  return Dataset::from_floats(features, cols, t, target_cols);
}

// What Dataset::from_floats checks of labels, for labels read in place.
void check_user_labels(const std::vector<std::int32_t>& labels, std::int64_t classes) {
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= classes) {
      throw DataError("labels: label " + std::to_string(i) + " is " + std::to_string(labels[i]) +
                      ", outside [0, " + std::to_string(classes) + ") (classes = the model's " +
                      "outputs)");
    }
  }
}

// Throws DataError when a matrix in device memory holds a NaN or an infinity; each row is
// checked on the device (the gaps between strided rows are not read).
void check_device_finite(const Context& ctx, MatrixView<const float> m, const char* what) {
  Buffer<std::int32_t> flag(ctx, std::vector<std::int32_t>{0});
  if (m.ld == m.cols) {
    check_finite(ctx, VectorView<const float>(m.data, m.rows * m.cols, m.device), flag.data());
  } else {
    for (std::int64_t r = 0; r < m.rows; ++r) {
      check_finite(ctx, VectorView<const float>(m.data + r * m.ld, m.cols, m.device), flag.data());
    }
  }
  if (flag.to_host(ctx)[0] != 0) {
    throw DataError(std::string(what) + ": holds a NaN or infinite value; values must be finite");
  }
}

// Everything of a dataset that a trainer's loss needs, checked before fit or evaluation starts,
// so that a mismatch fails before the first step (not after an epoch of training, at the test
// set) and on every device alike: labels (each < the model's outputs) for softmax cross-entropy,
// targets of the model's output width (in [0, 1] for sigmoid_bce) for the others.
void check_dataset(const descent_trainer& t, const Dataset& d, const char* name) {
  check_inputs(t.model->mlp, d.features(), name);
  const Loss loss = t.trainer.loss();
  const std::int64_t outputs = t.model->mlp.outputs();
  if (loss == Loss::softmax_cross_entropy) {
    if (!d.has_labels()) {
      throw ArgumentError(std::string(name) +
                          ": holds regression targets; softmax_cross_entropy needs labels");
    }
    const std::span<const std::int32_t> labels = d.labels();
    for (std::size_t i = 0; i < labels.size(); ++i) {
      if (labels[i] >= outputs) {
        throw ArgumentError(std::string(name) + ": label " + std::to_string(i) + " is " +
                            std::to_string(labels[i]) + ", outside [0, " + std::to_string(outputs) +
                            ") (the model's outputs)");
      }
    }
    return;
  }
  if (d.has_labels()) {
    throw ArgumentError(std::string(name) + ": holds labels; " + to_string(loss) +
                        " needs float targets");
  }
  if (d.target_count() != outputs) {
    throw ShapeError(std::string(name) + ": " + std::to_string(d.target_count()) +
                     " targets per sample, expected " + std::to_string(outputs) +
                     " (the model's outputs)");
  }
  if (loss == Loss::sigmoid_bce) {
    const std::span<const float> targets = d.targets();
    for (std::size_t i = 0; i < targets.size(); ++i) {
      if (!(targets[i] >= 0.0f && targets[i] <= 1.0f)) {
        throw ArgumentError(std::string(name) + ": target " + std::to_string(i) + " is " +
                            std::to_string(targets[i]) +
                            ", outside [0, 1] (a probability: binary cross-entropy)");
      }
    }
  }
}

// descent_trainer_create (comm NULL, not parallel) and descent_trainer_create_parallel: checks
// the arguments in the order of the C signature and sets *out.
void make_trainer(descent_model* model, descent_optimizer* opt, const char* loss,
                  const descent_communicator* comm, bool parallel, descent_trainer** out) {
  descent_model& m = need(model, "model");
  descent_optimizer& o = need(opt, "opt");
  const Loss l = parse_loss(loss);
  const Communicator c = parallel ? need(comm, "comm").comm : Communicator();
  need_ptr(out, "out");
  if (o.model != &m) {
    throw ArgumentError("opt: the optimizer was made for another model");
  }
  TrainerOptions options;
  options.non_finite_hint = kSkipHint;
  *out = new descent_trainer{&m, &o, Trainer(m.mlp, l, *o.opt, c, options)};
}

}  // namespace

extern "C" {

// ---------------------------------------------------------------- datasets

descent_status descent_dataset_create_labels(const float* features, int64_t rows, int64_t cols,
                                             int64_t ld, const int32_t* labels, int64_t classes,
                                             descent_dataset** out) {
  if (out != nullptr) *out = nullptr;
  return guarded("descent_dataset_create_labels", [&] {
    need_ptr(out, "out");
    check_matrix(features, "features", rows, cols, ld, "ld");
    need_ptr(labels, "labels");
    if (classes < 1) throw ArgumentError("classes: expected >= 1, got " + std::to_string(classes));
    const std::span<const float> f(features, static_cast<std::size_t>(extent(rows, cols, ld)));
    const std::vector<float> packed = pack(std::vector<float>(f.begin(), f.end()), rows, cols, ld);
    const std::span<const std::int32_t> l(labels, static_cast<std::size_t>(rows));
    *out = new descent_dataset{Dataset::from_floats(packed, cols, l, classes)};
  });
}

descent_status descent_dataset_create_targets(const float* features, int64_t rows, int64_t cols,
                                              int64_t ld, const float* targets, int64_t target_cols,
                                              int64_t ld_targets, descent_dataset** out) {
  if (out != nullptr) *out = nullptr;
  return guarded("descent_dataset_create_targets", [&] {
    need_ptr(out, "out");
    check_matrix(features, "features", rows, cols, ld, "ld");
    if (target_cols < 1) {
      throw ArgumentError("target_cols: expected >= 1, got " + std::to_string(target_cols));
    }
    check_matrix(targets, "targets", rows, target_cols, ld_targets, "ld_targets");
    const std::span<const float> f(features, static_cast<std::size_t>(extent(rows, cols, ld)));
    const std::span<const float> t(targets,
                                   static_cast<std::size_t>(extent(rows, target_cols, ld_targets)));
    *out = new descent_dataset{Dataset::from_floats(
        pack(std::vector<float>(f.begin(), f.end()), rows, cols, ld), cols,
        pack(std::vector<float>(t.begin(), t.end()), rows, target_cols, ld_targets), target_cols)};
  });
}

descent_status descent_dataset_load_idx(const char* images_path, const char* labels_path,
                                        int64_t limit, descent_dataset** out) {
  if (out != nullptr) *out = nullptr;
  return guarded("descent_dataset_load_idx", [&] {
    need_ptr(out, "out");
    need_ptr(images_path, "images_path");
    need_ptr(labels_path, "labels_path");
    if (limit < 0) throw ArgumentError("limit: expected >= 0, got " + std::to_string(limit));
    IdxOptions o;
    o.limit = limit;
    *out = new descent_dataset{load_idx(images_path, labels_path, o)};
  });
}

void descent_dataset_destroy(descent_dataset* data) { delete data; }

descent_status descent_dataset_shape(const descent_dataset* data, int64_t* rows, int64_t* features,
                                     int64_t* classes) {
  return guarded("descent_dataset_shape", [&] {
    const Dataset& d = need(data, "data").data;
    if (rows != nullptr) *rows = d.size();
    if (features != nullptr) *features = d.features();
    if (classes != nullptr) *classes = d.classes();
  });
}

descent_status descent_dataset_copy(const descent_dataset* data, int64_t first, int64_t count,
                                    float* features, int64_t ld, int32_t* labels) {
  return guarded("descent_dataset_copy", [&] {
    const Dataset& d = need(data, "data").data;
    if (first < 0 || count < 0 || first > d.size() || count > d.size() - first) {
      throw ArgumentError("first, count: samples [" + std::to_string(first) + ", " +
                          std::to_string(first + count) + ") lie outside the dataset's [0, " +
                          std::to_string(d.size()) + ")");
    }
    // Every check before the first write: a failed call leaves the caller's memory alone.
    if (features != nullptr && ld < d.features()) {
      throw ArgumentError("ld: expected >= " + std::to_string(d.features()) +
                          " (the feature count), got " + std::to_string(ld));
    }
    if (labels != nullptr && !d.has_labels()) {
      throw ArgumentError("labels: the dataset holds regression targets, not labels");
    }
    if (features != nullptr) {
      for (std::int64_t i = 0; i < count; ++i) d.copy_features(first + i, features + i * ld);
    }
    if (labels != nullptr) {
      std::memcpy(labels, d.labels().data() + first, sizeof(std::int32_t) * count);
    }
  });
}

// ---------------------------------------------------------------- trainer

descent_status descent_trainer_create(descent_model* model, descent_optimizer* opt,
                                      const char* loss, descent_trainer** out) {
  if (out != nullptr) *out = nullptr;
  return guarded("descent_trainer_create",
                 [&] { make_trainer(model, opt, loss, nullptr, false, out); });
}

descent_status descent_trainer_create_parallel(descent_model* model, descent_optimizer* opt,
                                               const char* loss, const descent_communicator* comm,
                                               descent_trainer** out) {
  if (out != nullptr) *out = nullptr;
  return guarded("descent_trainer_create_parallel",
                 [&] { make_trainer(model, opt, loss, comm, true, out); });
}

void descent_trainer_destroy(descent_trainer* trainer) { delete trainer; }

descent_status descent_trainer_step(descent_trainer* trainer, const float* x, int64_t rows,
                                    int64_t cols, int64_t ld_x, const int32_t* labels,
                                    const float* targets, int64_t ld_targets,
                                    descent_memory memory) {
  return guarded("descent_trainer_step", [&] {
    descent_trainer& t = need(trainer, "trainer");
    descent_model& m = *t.model;
    const Context& ctx = m.owner->ctx;
    check_matrix(x, "x", rows, cols, ld_x, "ld_x");
    check_supervision(t, labels, targets, ld_targets);
    check_inputs(m.mlp, cols);
    const Device where = memory_device(ctx, memory);
    Batch b;
    b.x = on_device(ctx, x, rows, cols, ld_x, where, m.x_stage);
    if (labels != nullptr) {
      b.labels = VectorView<const std::int32_t>(on_device(ctx, labels, rows, where, m.labels_stage),
                                                rows, ctx.device());
    } else {
      const std::int64_t outputs = m.mlp.outputs();
      b.targets = on_device(ctx, targets, rows, outputs, ld_targets, where, m.targets_stage);
    }
    // Data parallel: the ranks may hold different numbers of rows (a domain decomposition); the
    // step is the mean over all of them, so their sum is gathered (one 8-byte sum, on the host).
    const Communicator& comm = t.trainer.communicator();
    if (comm.size() > 1) {
      std::int64_t global[1] = {rows};
      comm.sum(global);
      b.global_rows = global[0];
    }
    t.trainer.step(b);
  });
}

descent_status descent_trainer_take_loss(descent_trainer* trainer, double* loss) {
  return guarded("descent_trainer_take_loss", [&] {
    descent_trainer& t = need(trainer, "trainer");
    need_ptr(loss, "loss");
    *loss = t.trainer.take_train_loss();
  });
}

descent_status descent_trainer_set_non_finite(descent_trainer* trainer, const char* policy) {
  return guarded("descent_trainer_set_non_finite", [&] {
    descent_trainer& t = need(trainer, "trainer");
    const std::string p = policy != nullptr ? policy : "";
    if (p != "error" && p != "skip") {
      throw ArgumentError("policy: expected \"error\" or \"skip\", got " +
                          (policy != nullptr ? "\"" + p + "\"" : std::string("NULL")));
    }
    t.trainer.set_non_finite_policy(p == "skip" ? NonFinitePolicy::skip : NonFinitePolicy::error,
                                    kSkipHint);
  });
}

descent_status descent_trainer_set_clip_grad_norm(descent_trainer* trainer, float max_norm,
                                                  float norm_type) {
  return guarded("descent_trainer_set_clip_grad_norm", [&] {
    descent_trainer& t = need(trainer, "trainer");
    // Checked here, not only by the Trainer, so that the message names the C arguments.
    if (max_norm != 0.0f && !(max_norm > 0.0f && std::isfinite(max_norm))) {
      throw ArgumentError("max_norm: expected 0 (off) or a finite number > 0, got " +
                          std::to_string(max_norm));
    }
    if (max_norm != 0.0f && norm_type != 2.0f && !(std::isinf(norm_type) && norm_type > 0.0f)) {
      throw ArgumentError("norm_type: expected 2 or INFINITY, got " + std::to_string(norm_type));
    }
    t.trainer.set_clip_grad_norm(max_norm, norm_type);
  });
}

descent_status descent_trainer_last_grad_norm(descent_trainer* trainer, float* norm) {
  return guarded("descent_trainer_last_grad_norm", [&] {
    descent_trainer& t = need(trainer, "trainer");
    need_ptr(norm, "norm");
    *norm = t.trainer.last_grad_norm();
  });
}

descent_status descent_trainer_skipped_steps(descent_trainer* trainer, int64_t* skipped) {
  return guarded("descent_trainer_skipped_steps", [&] {
    descent_trainer& t = need(trainer, "trainer");
    need_ptr(skipped, "skipped");
    *skipped = t.trainer.skipped_steps();
  });
}

descent_status descent_trainer_evaluate(descent_trainer* trainer, const float* x, int64_t rows,
                                        int64_t cols, int64_t ld_x, const int32_t* labels,
                                        const float* targets, int64_t ld_targets,
                                        descent_memory memory, double* loss, double* accuracy) {
  return guarded("descent_trainer_evaluate", [&] {
    descent_trainer& t = need(trainer, "trainer");
    const Context& ctx = t.model->owner->ctx;
    check_matrix(x, "x", rows, cols, ld_x, "ld_x");
    check_supervision(t, labels, targets, ld_targets);
    check_inputs(t.model->mlp, cols);
    const Device where = memory_device(ctx, memory);
    EvalResult r;
    if (where == ctx.device()) {
      // Memory the model reads (device memory on a GPU, host memory on the CPU): evaluated in
      // place, with no copy into a Dataset. The checks a Dataset makes are made here: labels in
      // range (a copy of the labels only) and finite values.
      Batch all;
      all.x = MatrixView<const float>(x, rows, cols, where, ld_x);
      check_device_finite(ctx, all.x, "x");
      if (labels != nullptr) {
        check_user_labels(to_host(ctx, labels, rows, where), t.model->mlp.outputs());
        all.labels = VectorView<const std::int32_t>(labels, rows, where);
      } else {
        all.targets =
            MatrixView<const float>(targets, rows, t.model->mlp.outputs(), where, ld_targets);
        check_device_finite(ctx, all.targets, "targets");
      }
      r = t.trainer.evaluate(all);
    } else {
      // Host memory for a GPU: packed into a Dataset (checked there) and read by a loader, which
      // copies it to the device a batch at a time.
      const Dataset data =
          dataset_from_user(ctx, x, rows, cols, ld_x, labels, t.model->mlp.outputs(), targets,
                            t.model->mlp.outputs(), ld_targets, where);
      LoaderOptions lo;
      lo.batch_size = 1024;
      lo.shuffle = false;
      BatchLoader loader(ctx, data, lo);
      r = t.trainer.evaluate(loader);
    }
    if (loss != nullptr) *loss = r.loss;
    if (accuracy != nullptr) *accuracy = r.accuracy;
  });
}

descent_status descent_trainer_evaluate_dataset(descent_trainer* trainer,
                                                const descent_dataset* data, int64_t batch_size,
                                                double* loss, double* accuracy) {
  return guarded("descent_trainer_evaluate_dataset", [&] {
    descent_trainer& t = need(trainer, "trainer");
    const Dataset& d = need(data, "data").data;
    check_dataset(t, d, "data");
    LoaderOptions lo;
    lo.batch_size = batch_size;
    lo.shuffle = false;
    // Sharded over a data-parallel trainer's ranks (evaluate sums their results).
    BatchLoader loader(t.model->owner->ctx, d, lo, t.trainer.communicator());
    const EvalResult r = t.trainer.evaluate(loader);
    if (loss != nullptr) *loss = r.loss;
    if (accuracy != nullptr) *accuracy = r.accuracy;
  });
}

descent_status descent_trainer_fit(descent_trainer* trainer, const descent_dataset* train,
                                   const descent_dataset* test, int64_t batch_size, int64_t epochs,
                                   uint64_t seed, descent_epoch_callback callback, void* user) {
  return guarded("descent_trainer_fit", [&] {
    descent_trainer& t = need(trainer, "trainer");
    const Dataset& d = need(train, "train").data;
    const Context& ctx = t.model->owner->ctx;
    // Every check before the first step: a failed call leaves the trainer as it was.
    check_dataset(t, d, "train");
    if (test != nullptr) check_dataset(t, test->data, "test");
    if (epochs < 1) throw ArgumentError("epochs: expected >= 1, got " + std::to_string(epochs));
    LoaderOptions lo;
    lo.batch_size = batch_size;
    lo.shuffle = true;
    lo.seed = seed;
    // Sharded over a data-parallel trainer's ranks: batch_size is the global batch.
    const Communicator& comm = t.trainer.communicator();
    BatchLoader train_loader(ctx, d, lo, comm);
    std::optional<BatchLoader> test_loader;
    if (test != nullptr) {
      LoaderOptions to;
      to.batch_size = batch_size;
      to.shuffle = false;
      test_loader.emplace(ctx, test->data, to, comm);
    }
    const double nan = std::numeric_limits<double>::quiet_NaN();
    t.trainer.fit(train_loader, test_loader ? &*test_loader : nullptr, epochs,
                  [&](const EpochStats& e) {
                    if (callback == nullptr) return;
                    descent_epoch_stats s{};
                    s.epoch = e.epoch;
                    s.epochs = e.epochs;
                    s.train_loss = e.train_loss;
                    s.test_loss = e.has_test ? e.test.loss : nan;
                    s.test_accuracy = e.has_test ? e.test.accuracy : nan;
                    s.samples_per_second = e.samples_per_second;
                    s.seconds = e.epoch_seconds;
                    s.lr = e.lr;
                    callback(&s, user);
                  });
  });
}

}  // extern "C"
