/* The C API from C: every function of descent.h, its results and its error paths (status code and
 * a last-error message that names the argument). Runs on the cpu, and on cuda:0 when present. */
#include <descent/descent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;
static int checks = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    ++checks;                                                                  \
    if (!(cond)) {                                                             \
      ++failures;                                                              \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                          \
  } while (0)

/* A call that must succeed and leave the last error empty. */
#define OK(call)                                                                \
  do {                                                                          \
    descent_status st_ = (call);                                                \
    ++checks;                                                                   \
    if (st_ != DESCENT_OK || descent_last_error()[0] != '\0') {                 \
      ++failures;                                                               \
      fprintf(stderr, "%s:%d: %s returned %s: %s\n", __FILE__, __LINE__, #call, \
              descent_status_string(st_), descent_last_error());                \
    }                                                                           \
  } while (0)

/* A call that must fail with `status` and a message containing `word` and the function name. */
static void expect_error(const char* file, int line, const char* call, descent_status got,
                         descent_status want, const char* function, const char* word) {
  const char* msg = descent_last_error();
  ++checks;
  if (got != want || strstr(msg, word) == NULL || strncmp(msg, function, strlen(function)) != 0) {
    ++failures;
    fprintf(stderr, "%s:%d: %s: expected %s mentioning '%s', got %s: '%s'\n", file, line, call,
            descent_status_string(want), word, descent_status_string(got), msg);
  }
}
#define FAILS(call, want, function, word) \
  expect_error(__FILE__, __LINE__, #call, (call), (want), (function), (word))

/* ------------------------------------------------------------------ test data */

enum { FEATURES = 6, CLASSES = 3, SAMPLES = 96, LD = 8 };

/* Three well separated classes: class k has its features near +1 at positions 2k, 2k+1. */
static void make_classes(float* x, int32_t* labels, int n, int ld, unsigned seed) {
  int i, j;
  srand(seed);
  for (i = 0; i < n; ++i) {
    labels[i] = i % CLASSES;
    for (j = 0; j < ld; ++j) {
      float noise = (float)rand() / (float)RAND_MAX - 0.5f;
      x[i * ld + j] = j >= FEATURES ? 1e30f /* padding the ld must skip */
                                    : (j / 2 == labels[i] ? 1.0f : 0.0f) + 0.3f * noise;
    }
  }
}

static void write_be32(FILE* f, uint32_t v) {
  unsigned char b[4];
  b[0] = (unsigned char)(v >> 24);
  b[1] = (unsigned char)(v >> 16);
  b[2] = (unsigned char)(v >> 8);
  b[3] = (unsigned char)v;
  fwrite(b, 1, 4, f);
}

/* A raw IDX pair of `n` 2x3 images whose labels are i % 3. */
static void write_idx(const char* images, const char* labels, int n, uint32_t image_magic) {
  int i, j;
  FILE* f = fopen(images, "wb");
  write_be32(f, image_magic);
  write_be32(f, (uint32_t)n);
  write_be32(f, 2);
  write_be32(f, 3);
  for (i = 0; i < n; ++i) {
    for (j = 0; j < FEATURES; ++j) fputc(j / 2 == i % 3 ? 255 : 0, f);
  }
  fclose(f);
  f = fopen(labels, "wb");
  write_be32(f, 0x00000801u);
  write_be32(f, (uint32_t)n);
  for (i = 0; i < n; ++i) fputc(i % 3, f);
  fclose(f);
}

/* ------------------------------------------------------------------ the parts */

static void test_library(void) {
  const descent_status all[] = {
      DESCENT_OK,         DESCENT_ERROR_SHAPE,   DESCENT_ERROR_ARGUMENT,
      DESCENT_ERROR_DATA, DESCENT_ERROR_DEVICE,  DESCENT_ERROR_OUT_OF_MEMORY,
      DESCENT_ERROR_IO,   DESCENT_ERROR_NUMERIC, DESCENT_ERROR_UNKNOWN};
  size_t i;
  CHECK(strcmp(descent_status_string(DESCENT_OK), "DESCENT_OK") == 0);
  for (i = 1; i < sizeof all / sizeof all[0]; ++i) {
    CHECK(strncmp(descent_status_string(all[i]), "DESCENT_ERROR_", 14) == 0);
  }
  CHECK(strcmp(descent_status_string((descent_status)99), "unknown status") == 0);
  CHECK(strchr(descent_version(), '.') != NULL);
  CHECK(descent_built_with_cuda() == 0 || descent_built_with_cuda() == 1);
  CHECK(descent_cuda_device_count() >= 0);
  if (!descent_built_with_cuda()) CHECK(descent_cuda_device_count() == 0);
  CHECK(descent_last_error() != NULL);
}

static void test_context(void) {
  descent_context* ctx = (descent_context*)1;
  const char* name = NULL;
  void* stream = (void*)1;

  FAILS(descent_context_create(NULL, 0, &ctx), DESCENT_ERROR_ARGUMENT, "descent_context_create",
        "device");
  CHECK(ctx == NULL);
  FAILS(descent_context_create("gpu", 0, &ctx), DESCENT_ERROR_ARGUMENT, "descent_context_create",
        "'gpu'");
  FAILS(descent_context_create("cpu", -1, &ctx), DESCENT_ERROR_ARGUMENT, "descent_context_create",
        "threads");
  FAILS(descent_context_create("cpu", 0, NULL), DESCENT_ERROR_ARGUMENT, "descent_context_create",
        "out");
  if (descent_cuda_device_count() == 0) {
    FAILS(descent_context_create("cuda:0", 0, &ctx), DESCENT_ERROR_DEVICE, "descent_context_create",
          "");
  }

  OK(descent_context_create("cpu", 2, &ctx));
  CHECK(ctx != NULL);
  OK(descent_context_device(ctx, &name));
  CHECK(name != NULL && strcmp(name, "cpu") == 0);
  FAILS(descent_context_device(NULL, &name), DESCENT_ERROR_ARGUMENT, "descent_context_device",
        "ctx");
  FAILS(descent_context_device(ctx, NULL), DESCENT_ERROR_ARGUMENT, "descent_context_device",
        "name");

  OK(descent_context_get_stream(ctx, &stream));
  CHECK(stream == NULL);
  OK(descent_context_set_stream(ctx, NULL));
  FAILS(descent_context_set_stream(ctx, (void*)&name), DESCENT_ERROR_ARGUMENT,
        "descent_context_set_stream", "stream");
  FAILS(descent_context_set_stream(NULL, NULL), DESCENT_ERROR_ARGUMENT,
        "descent_context_set_stream", "ctx");
  FAILS(descent_context_get_stream(NULL, &stream), DESCENT_ERROR_ARGUMENT,
        "descent_context_get_stream", "ctx");
  FAILS(descent_context_get_stream(ctx, NULL), DESCENT_ERROR_ARGUMENT, "descent_context_get_stream",
        "stream");
  OK(descent_context_synchronize(ctx));
  FAILS(descent_context_synchronize(NULL), DESCENT_ERROR_ARGUMENT, "descent_context_synchronize",
        "ctx");

  /* A success clears the message of an earlier failure. */
  descent_context_destroy(ctx);
  FAILS(descent_context_create("gpu", 0, &ctx), DESCENT_ERROR_ARGUMENT, "descent_context_create",
        "gpu");
  CHECK(ctx == NULL);
  OK(descent_context_create("cpu", 1, &ctx));
  CHECK(descent_last_error()[0] == '\0');
  descent_context_destroy(ctx);
  descent_context_destroy(NULL);
}

static void test_model(descent_context* ctx) {
  const int64_t widths[] = {FEATURES, 5, CLASSES};
  const int64_t bad_widths[] = {FEATURES, 0, CLASSES};
  descent_model* model = NULL;
  descent_model* twin = NULL;
  int64_t inputs = 0, outputs = 0, count = 0;
  float* params;
  float* params2;
  float x[4 * LD];
  int32_t labels[4];
  float out[4 * 5];
  float out2[4 * CLASSES];
  int64_t i;

  FAILS(descent_model_create(NULL, widths, 3, "relu", 1, &model), DESCENT_ERROR_ARGUMENT,
        "descent_model_create", "ctx");
  FAILS(descent_model_create(ctx, NULL, 3, "relu", 1, &model), DESCENT_ERROR_ARGUMENT,
        "descent_model_create", "widths");
  FAILS(descent_model_create(ctx, widths, 1, "relu", 1, &model), DESCENT_ERROR_ARGUMENT,
        "descent_model_create", "n_widths");
  FAILS(descent_model_create(ctx, bad_widths, 3, "relu", 1, &model), DESCENT_ERROR_SHAPE,
        "descent_model_create", "widths[1]");
  FAILS(descent_model_create(ctx, widths, 3, "softmax", 1, &model), DESCENT_ERROR_ARGUMENT,
        "descent_model_create", "activation");
  FAILS(descent_model_create(ctx, widths, 3, NULL, 1, &model), DESCENT_ERROR_ARGUMENT,
        "descent_model_create", "activation");
  FAILS(descent_model_create(ctx, widths, 3, "relu", 1, NULL), DESCENT_ERROR_ARGUMENT,
        "descent_model_create", "out");
  CHECK(model == NULL);

  OK(descent_model_create(ctx, widths, 3, "tanh", 7, &model));
  OK(descent_model_shape(model, &inputs, &outputs));
  CHECK(inputs == FEATURES && outputs == CLASSES);
  OK(descent_model_shape(model, NULL, NULL));
  FAILS(descent_model_shape(NULL, &inputs, &outputs), DESCENT_ERROR_ARGUMENT, "descent_model_shape",
        "model");
  OK(descent_model_parameter_count(model, &count));
  CHECK(count == FEATURES * 5 + 5 + 5 * CLASSES + CLASSES);
  FAILS(descent_model_parameter_count(model, NULL), DESCENT_ERROR_ARGUMENT,
        "descent_model_parameter_count", "count");
  FAILS(descent_model_parameter_count(NULL, &count), DESCENT_ERROR_ARGUMENT,
        "descent_model_parameter_count", "model");

  params = (float*)malloc(sizeof(float) * (size_t)count);
  params2 = (float*)malloc(sizeof(float) * (size_t)count);
  OK(descent_model_get_params(model, params, count));
  FAILS(descent_model_get_params(model, params, count - 1), DESCENT_ERROR_SHAPE,
        "descent_model_get_params", "count");
  FAILS(descent_model_get_params(model, NULL, count), DESCENT_ERROR_ARGUMENT,
        "descent_model_get_params", "params");
  FAILS(descent_model_get_params(NULL, params, count), DESCENT_ERROR_ARGUMENT,
        "descent_model_get_params", "model");

  /* Same seed, same weights; set_params round-trips. */
  OK(descent_model_create(ctx, widths, 3, "tanh", 7, &twin));
  OK(descent_model_get_params(twin, params2, count));
  CHECK(memcmp(params, params2, sizeof(float) * (size_t)count) == 0);
  for (i = 0; i < count; ++i) params2[i] = 0.01f * (float)(i % 17) - 0.05f;
  OK(descent_model_set_params(twin, params2, count));
  OK(descent_model_get_params(twin, params, count));
  CHECK(memcmp(params, params2, sizeof(float) * (size_t)count) == 0);
  FAILS(descent_model_set_params(twin, params2, count + 1), DESCENT_ERROR_SHAPE,
        "descent_model_set_params", "count");
  FAILS(descent_model_set_params(twin, NULL, count), DESCENT_ERROR_ARGUMENT,
        "descent_model_set_params", "params");
  FAILS(descent_model_set_params(NULL, params2, count), DESCENT_ERROR_ARGUMENT,
        "descent_model_set_params", "model");

  /* predict honours both leading dimensions and leaves the padding alone. */
  make_classes(x, labels, 4, LD, 3);
  for (i = 0; i < 4 * 5; ++i) out[i] = -7.0f;
  OK(descent_model_predict(model, x, 4, FEATURES, LD, out, 5, DESCENT_MEMORY_HOST));
  for (i = 0; i < 4; ++i) {
    CHECK(isfinite(out[i * 5]) && isfinite(out[i * 5 + 2]));
    CHECK(out[i * 5 + 3] == -7.0f && out[i * 5 + 4] == -7.0f);
  }
  {
    /* The same rows packed give the same outputs. */
    float packed[4 * FEATURES];
    int r, c;
    for (r = 0; r < 4; ++r) {
      for (c = 0; c < FEATURES; ++c) packed[r * FEATURES + c] = x[r * LD + c];
    }
    OK(descent_model_predict(model, packed, 4, FEATURES, FEATURES, out2, CLASSES,
                             DESCENT_MEMORY_HOST));
    for (r = 0; r < 4; ++r) {
      for (c = 0; c < CLASSES; ++c) CHECK(out2[r * CLASSES + c] == out[r * 5 + c]);
    }
  }
  FAILS(descent_model_predict(model, x, 4, FEATURES + 1, LD, out, 5, DESCENT_MEMORY_HOST),
        DESCENT_ERROR_SHAPE, "descent_model_predict", "cols");
  FAILS(descent_model_predict(model, x, 4, FEATURES, FEATURES - 1, out, 5, DESCENT_MEMORY_HOST),
        DESCENT_ERROR_ARGUMENT, "descent_model_predict", "ld_x");
  FAILS(descent_model_predict(model, x, 4, FEATURES, LD, out, 2, DESCENT_MEMORY_HOST),
        DESCENT_ERROR_ARGUMENT, "descent_model_predict", "ld_out");
  FAILS(descent_model_predict(model, x, 0, FEATURES, LD, out, 5, DESCENT_MEMORY_HOST),
        DESCENT_ERROR_ARGUMENT, "descent_model_predict", "rows");
  FAILS(descent_model_predict(model, NULL, 4, FEATURES, LD, out, 5, DESCENT_MEMORY_HOST),
        DESCENT_ERROR_ARGUMENT, "descent_model_predict", "x");
  FAILS(descent_model_predict(model, x, 4, FEATURES, LD, NULL, 5, DESCENT_MEMORY_HOST),
        DESCENT_ERROR_ARGUMENT, "descent_model_predict", "out");
  FAILS(descent_model_predict(NULL, x, 4, FEATURES, LD, out, 5, DESCENT_MEMORY_HOST),
        DESCENT_ERROR_ARGUMENT, "descent_model_predict", "model");
  FAILS(descent_model_predict(model, x, 4, FEATURES, LD, out, 5, DESCENT_MEMORY_DEVICE),
        DESCENT_ERROR_DEVICE, "descent_model_predict", "memory");
  FAILS(descent_model_predict(model, x, 4, FEATURES, LD, out, 5, (descent_memory)5),
        DESCENT_ERROR_ARGUMENT, "descent_model_predict", "memory");

  free(params);
  free(params2);
  descent_model_destroy(twin);
  descent_model_destroy(model);
  descent_model_destroy(NULL);
}

static void test_optimizer(descent_context* ctx) {
  const int64_t widths[] = {FEATURES, CLASSES};
  descent_model* model = NULL;
  descent_optimizer* opt = (descent_optimizer*)1;
  float lr = 0.0f;
  int64_t steps = -1;

  OK(descent_model_create(ctx, widths, 2, "identity", 1, &model));
  FAILS(descent_optimizer_create(model, -0.1f, 0.0f, 0.0f, 0, NULL, 0, 0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, "descent_optimizer_create", "lr");
  CHECK(opt == NULL);
  FAILS(descent_optimizer_create(model, NAN, 0.0f, 0.0f, 0, NULL, 0, 0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, "descent_optimizer_create", "lr");
  FAILS(descent_optimizer_create(model, 0.1f, -1.0f, 0.0f, 0, NULL, 0, 0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, "descent_optimizer_create", "momentum");
  FAILS(descent_optimizer_create(model, 0.1f, 0.0f, -1.0f, 0, NULL, 0, 0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, "descent_optimizer_create", "weight_decay");
  FAILS(descent_optimizer_create(model, 0.1f, 0.0f, 0.0f, 1, NULL, 0, 0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, "descent_optimizer_create", "nesterov");
  FAILS(descent_optimizer_create(model, 0.1f, 0.0f, 0.0f, 0, "linear", 10, 0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, "descent_optimizer_create", "schedule");
  FAILS(descent_optimizer_create(model, 0.1f, 0.0f, 0.0f, 0, "cosine", 0, 0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, "descent_optimizer_create", "total");
  FAILS(descent_optimizer_create(model, 0.1f, 0.0f, 0.0f, 0, "step", 0, 0.5f, &opt),
        DESCENT_ERROR_ARGUMENT, "descent_optimizer_create", "every");
  FAILS(descent_optimizer_create(NULL, 0.1f, 0.0f, 0.0f, 0, NULL, 0, 0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, "descent_optimizer_create", "model");
  FAILS(descent_optimizer_create(model, 0.1f, 0.0f, 0.0f, 0, NULL, 0, 0.0f, NULL),
        DESCENT_ERROR_ARGUMENT, "descent_optimizer_create", "out");

  OK(descent_optimizer_create(model, 0.1f, 0.9f, 1e-4f, 1, "step", 5, 0.5f, &opt));
  OK(descent_optimizer_lr(opt, &lr));
  CHECK(lr == 0.1f);
  OK(descent_optimizer_steps(opt, &steps));
  CHECK(steps == 0);
  FAILS(descent_optimizer_lr(NULL, &lr), DESCENT_ERROR_ARGUMENT, "descent_optimizer_lr", "opt");
  FAILS(descent_optimizer_lr(opt, NULL), DESCENT_ERROR_ARGUMENT, "descent_optimizer_lr", "lr");
  FAILS(descent_optimizer_steps(NULL, &steps), DESCENT_ERROR_ARGUMENT, "descent_optimizer_steps",
        "opt");
  FAILS(descent_optimizer_steps(opt, NULL), DESCENT_ERROR_ARGUMENT, "descent_optimizer_steps",
        "steps");
  descent_optimizer_destroy(opt);
  OK(descent_optimizer_create(model, 0.1f, 0.0f, 0.0f, 0, "constant", 0, 0.0f, &opt));
  descent_optimizer_destroy(opt);
  OK(descent_optimizer_create(model, 0.1f, 0.0f, 0.0f, 0, "cosine", 10, 0.01f, &opt));
  descent_optimizer_destroy(opt);
  descent_optimizer_destroy(NULL);
  descent_model_destroy(model);
}

static void test_datasets(void) {
  float x[SAMPLES * LD];
  int32_t labels[SAMPLES];
  float targets[SAMPLES * 2];
  float copy[4 * 7];
  int32_t copied_labels[4];
  descent_dataset* data = (descent_dataset*)1;
  descent_dataset* reg = NULL;
  int64_t rows = 0, features = 0, classes = 0;
  int i;

  make_classes(x, labels, SAMPLES, LD, 1);
  for (i = 0; i < SAMPLES * 2; ++i) targets[i] = (float)(i % 5);

  FAILS(descent_dataset_create_labels(NULL, SAMPLES, FEATURES, LD, labels, CLASSES, &data),
        DESCENT_ERROR_ARGUMENT, "descent_dataset_create_labels", "features");
  CHECK(data == NULL);
  FAILS(descent_dataset_create_labels(x, SAMPLES, FEATURES, LD, NULL, CLASSES, &data),
        DESCENT_ERROR_ARGUMENT, "descent_dataset_create_labels", "labels");
  FAILS(descent_dataset_create_labels(x, 0, FEATURES, LD, labels, CLASSES, &data),
        DESCENT_ERROR_ARGUMENT, "descent_dataset_create_labels", "rows");
  FAILS(descent_dataset_create_labels(x, SAMPLES, FEATURES, 2, labels, CLASSES, &data),
        DESCENT_ERROR_ARGUMENT, "descent_dataset_create_labels", "ld");
  FAILS(descent_dataset_create_labels(x, SAMPLES, FEATURES, LD, labels, 0, &data),
        DESCENT_ERROR_ARGUMENT, "descent_dataset_create_labels", "classes");
  FAILS(descent_dataset_create_labels(x, SAMPLES, FEATURES, LD, labels, 2, &data),
        DESCENT_ERROR_DATA, "descent_dataset_create_labels", "2");
  FAILS(descent_dataset_create_labels(x, SAMPLES, FEATURES, LD, labels, CLASSES, NULL),
        DESCENT_ERROR_ARGUMENT, "descent_dataset_create_labels", "out");
  x[5] = NAN;
  FAILS(descent_dataset_create_labels(x, SAMPLES, FEATURES, LD, labels, CLASSES, &data),
        DESCENT_ERROR_DATA, "descent_dataset_create_labels", "");
  x[5] = 0.5f;
  /* The padding beyond cols is never read (it holds 1e30, which is finite; NaN there too). */
  x[FEATURES] = NAN;
  OK(descent_dataset_create_labels(x, SAMPLES, FEATURES, LD, labels, CLASSES, &data));
  x[FEATURES] = 1e30f;
  OK(descent_dataset_shape(data, &rows, &features, &classes));
  CHECK(rows == SAMPLES && features == FEATURES && classes == CLASSES);
  OK(descent_dataset_shape(data, NULL, NULL, NULL));
  FAILS(descent_dataset_shape(NULL, &rows, &features, &classes), DESCENT_ERROR_ARGUMENT,
        "descent_dataset_shape", "data");

  OK(descent_dataset_copy(data, 2, 4, copy, 7, copied_labels));
  for (i = 0; i < 4; ++i) {
    CHECK(copied_labels[i] == labels[2 + i]);
    CHECK(copy[i * 7] == x[(2 + i) * LD] && copy[i * 7 + 5] == x[(2 + i) * LD + 5]);
  }
  OK(descent_dataset_copy(data, 0, 4, NULL, 0, copied_labels));
  FAILS(descent_dataset_copy(data, SAMPLES - 2, 4, copy, 7, copied_labels), DESCENT_ERROR_ARGUMENT,
        "descent_dataset_copy", "first");
  FAILS(descent_dataset_copy(data, -1, 1, copy, 7, copied_labels), DESCENT_ERROR_ARGUMENT,
        "descent_dataset_copy", "first");
  FAILS(descent_dataset_copy(data, 0, 4, copy, 5, copied_labels), DESCENT_ERROR_ARGUMENT,
        "descent_dataset_copy", "ld");
  FAILS(descent_dataset_copy(NULL, 0, 4, copy, 7, copied_labels), DESCENT_ERROR_ARGUMENT,
        "descent_dataset_copy", "data");

  FAILS(descent_dataset_create_targets(x, SAMPLES, FEATURES, LD, NULL, 2, 2, &reg),
        DESCENT_ERROR_ARGUMENT, "descent_dataset_create_targets", "targets");
  FAILS(descent_dataset_create_targets(x, SAMPLES, FEATURES, LD, targets, 0, 2, &reg),
        DESCENT_ERROR_ARGUMENT, "descent_dataset_create_targets", "target_cols");
  FAILS(descent_dataset_create_targets(x, SAMPLES, FEATURES, LD, targets, 2, 1, &reg),
        DESCENT_ERROR_ARGUMENT, "descent_dataset_create_targets", "ld_targets");
  FAILS(descent_dataset_create_targets(x, SAMPLES, FEATURES, LD, targets, 2, 2, NULL),
        DESCENT_ERROR_ARGUMENT, "descent_dataset_create_targets", "out");
  targets[3] = INFINITY;
  FAILS(descent_dataset_create_targets(x, SAMPLES, FEATURES, LD, targets, 2, 2, &reg),
        DESCENT_ERROR_DATA, "descent_dataset_create_targets", "");
  targets[3] = 1.0f;
  OK(descent_dataset_create_targets(x, SAMPLES, FEATURES, LD, targets, 2, 2, &reg));
  OK(descent_dataset_shape(reg, &rows, &features, &classes));
  CHECK(rows == SAMPLES && features == FEATURES && classes == 0);
  FAILS(descent_dataset_copy(reg, 0, 4, copy, 7, copied_labels), DESCENT_ERROR_ARGUMENT,
        "descent_dataset_copy", "labels");

  /* IDX files: good, missing, corrupt. */
  write_idx("c_api_images.idx", "c_api_labels.idx", 30, 0x00000803u);
  write_idx("c_api_bad_images.idx", "c_api_bad_labels.idx", 30, 0x00000802u);
  descent_dataset_destroy(data);
  data = NULL;
  OK(descent_dataset_load_idx("c_api_images.idx", "c_api_labels.idx", 0, &data));
  OK(descent_dataset_shape(data, &rows, &features, &classes));
  CHECK(rows == 30 && features == 6 && classes == 3);
  descent_dataset_destroy(data);
  OK(descent_dataset_load_idx("c_api_images.idx", "c_api_labels.idx", 10, &data));
  OK(descent_dataset_shape(data, &rows, NULL, NULL));
  CHECK(rows == 10);
  OK(descent_dataset_copy(data, 1, 1, copy, 6, copied_labels));
  CHECK(copied_labels[0] == 1 && copy[2] == 1.0f && copy[0] == 0.0f);
  descent_dataset_destroy(data);
  FAILS(descent_dataset_load_idx("no-such-images.idx", "c_api_labels.idx", 0, &data),
        DESCENT_ERROR_IO, "descent_dataset_load_idx", "no-such-images.idx");
  CHECK(data == NULL);
  FAILS(descent_dataset_load_idx("c_api_bad_images.idx", "c_api_bad_labels.idx", 0, &data),
        DESCENT_ERROR_DATA, "descent_dataset_load_idx", "c_api_bad_images.idx");
  FAILS(descent_dataset_load_idx(NULL, "c_api_labels.idx", 0, &data), DESCENT_ERROR_ARGUMENT,
        "descent_dataset_load_idx", "images_path");
  FAILS(descent_dataset_load_idx("c_api_images.idx", NULL, 0, &data), DESCENT_ERROR_ARGUMENT,
        "descent_dataset_load_idx", "labels_path");
  FAILS(descent_dataset_load_idx("c_api_images.idx", "c_api_labels.idx", -1, &data),
        DESCENT_ERROR_ARGUMENT, "descent_dataset_load_idx", "limit");
  FAILS(descent_dataset_load_idx("c_api_images.idx", "c_api_labels.idx", 0, NULL),
        DESCENT_ERROR_ARGUMENT, "descent_dataset_load_idx", "out");
  remove("c_api_images.idx");
  remove("c_api_labels.idx");
  remove("c_api_bad_images.idx");
  remove("c_api_bad_labels.idx");

  descent_dataset_destroy(reg);
  descent_dataset_destroy(NULL);
}

struct fit_log {
  int calls;
  double first_loss, last_loss, last_accuracy;
};

static void on_epoch(const descent_epoch_stats* s, void* user) {
  struct fit_log* log = (struct fit_log*)user;
  if (log->calls == 0) log->first_loss = s->train_loss;
  log->last_loss = s->train_loss;
  log->last_accuracy = s->test_accuracy;
  ++log->calls;
}

/* Classification with steps, evaluation, fit and checkpoints on `device`. */
static void test_training(const char* device) {
  const int64_t widths[] = {FEATURES, 16, CLASSES};
  const int64_t other_widths[] = {FEATURES, 8, CLASSES};
  descent_context* ctx = NULL;
  descent_model* model = NULL;
  descent_model* other = NULL;
  descent_model* loaded = NULL;
  descent_optimizer* opt = NULL;
  descent_optimizer* other_opt = NULL;
  descent_trainer* trainer = (descent_trainer*)1;
  descent_dataset* data = NULL;
  float x[SAMPLES * LD];
  int32_t labels[SAMPLES];
  int32_t bad_labels[SAMPLES];
  float targets[SAMPLES * CLASSES];
  double first = 0, loss = 0, accuracy = 0;
  int64_t steps = 0, count = 0;
  float* params;
  float* params2;
  int epoch, b, i;
  struct fit_log log = {0, 0, 0, 0};

  printf("training on %s\n", device);
  OK(descent_context_create(device, 1, &ctx));
  OK(descent_model_create(ctx, widths, 3, "relu", 5, &model));
  OK(descent_optimizer_create(model, 0.1f, 0.9f, 0.0f, 0, "cosine", 60, 0.0f, &opt));
  OK(descent_model_create(ctx, other_widths, 3, "relu", 5, &other));
  OK(descent_optimizer_create(other, 0.1f, 0.0f, 0.0f, 0, NULL, 0, 0.0f, &other_opt));

  FAILS(descent_trainer_create(model, opt, "hinge", &trainer), DESCENT_ERROR_ARGUMENT,
        "descent_trainer_create", "loss");
  CHECK(trainer == NULL);
  FAILS(descent_trainer_create(model, opt, NULL, &trainer), DESCENT_ERROR_ARGUMENT,
        "descent_trainer_create", "loss");
  FAILS(descent_trainer_create(model, other_opt, "ce", &trainer), DESCENT_ERROR_ARGUMENT,
        "descent_trainer_create", "opt");
  FAILS(descent_trainer_create(NULL, opt, "ce", &trainer), DESCENT_ERROR_ARGUMENT,
        "descent_trainer_create", "model");
  FAILS(descent_trainer_create(model, NULL, "ce", &trainer), DESCENT_ERROR_ARGUMENT,
        "descent_trainer_create", "opt");
  FAILS(descent_trainer_create(model, opt, "ce", NULL), DESCENT_ERROR_ARGUMENT,
        "descent_trainer_create", "out");
  OK(descent_trainer_create(model, opt, "softmax_cross_entropy", &trainer));

  make_classes(x, labels, SAMPLES, LD, 2);
  for (i = 0; i < SAMPLES; ++i) bad_labels[i] = labels[i] == 2 ? 3 : labels[i];
  for (i = 0; i < SAMPLES * CLASSES; ++i) targets[i] = 0.0f;

  OK(descent_trainer_evaluate(trainer, x, SAMPLES, FEATURES, LD, labels, NULL, 0,
                              DESCENT_MEMORY_HOST, &first, &accuracy));
  CHECK(isfinite(first) && accuracy >= 0.0 && accuracy <= 1.0);
  OK(descent_trainer_take_loss(trainer, &loss));
  CHECK(isnan(loss)); /* no steps yet */

  /* 6 epochs of 4 batches of 24 rows, straight from the strided user array. */
  for (epoch = 0; epoch < 6; ++epoch) {
    for (b = 0; b < 4; ++b) {
      OK(descent_trainer_step(trainer, x + b * 24 * LD, 24, FEATURES, LD, labels + b * 24, NULL, 0,
                              DESCENT_MEMORY_HOST));
    }
    OK(descent_trainer_take_loss(trainer, &loss));
    CHECK(isfinite(loss));
  }
  OK(descent_optimizer_steps(opt, &steps));
  CHECK(steps == 24);
  OK(descent_trainer_evaluate(trainer, x, SAMPLES, FEATURES, LD, labels, NULL, 0,
                              DESCENT_MEMORY_HOST, &loss, &accuracy));
  printf("  steps: loss %.4f -> %.4f, accuracy %.3f\n", first, loss, accuracy);
  CHECK(loss < 0.5 * first);
  CHECK(accuracy > 0.95);
  OK(descent_trainer_evaluate(trainer, x, SAMPLES, FEATURES, LD, labels, NULL, 0,
                              DESCENT_MEMORY_HOST, NULL, NULL));

  /* Step and evaluation errors. */
  FAILS(descent_trainer_step(trainer, x, 24, FEATURES, LD, NULL, NULL, 0, DESCENT_MEMORY_HOST),
        DESCENT_ERROR_ARGUMENT, "descent_trainer_step", "labels");
  FAILS(descent_trainer_step(trainer, x, 24, FEATURES, LD, labels, targets, CLASSES,
                             DESCENT_MEMORY_HOST),
        DESCENT_ERROR_ARGUMENT, "descent_trainer_step", "targets");
  FAILS(
      descent_trainer_step(trainer, x, 24, FEATURES - 1, LD, labels, NULL, 0, DESCENT_MEMORY_HOST),
      DESCENT_ERROR_SHAPE, "descent_trainer_step", "cols");
  FAILS(descent_trainer_step(trainer, x, 24, FEATURES, FEATURES - 1, labels, NULL, 0,
                             DESCENT_MEMORY_HOST),
        DESCENT_ERROR_ARGUMENT, "descent_trainer_step", "ld_x");
  FAILS(descent_trainer_step(trainer, x, 0, FEATURES, LD, labels, NULL, 0, DESCENT_MEMORY_HOST),
        DESCENT_ERROR_ARGUMENT, "descent_trainer_step", "rows");
  FAILS(descent_trainer_step(trainer, NULL, 24, FEATURES, LD, labels, NULL, 0, DESCENT_MEMORY_HOST),
        DESCENT_ERROR_ARGUMENT, "descent_trainer_step", "x");
  FAILS(descent_trainer_step(NULL, x, 24, FEATURES, LD, labels, NULL, 0, DESCENT_MEMORY_HOST),
        DESCENT_ERROR_ARGUMENT, "descent_trainer_step", "trainer");
  FAILS(descent_trainer_step(trainer, x, 24, FEATURES, LD, labels, NULL, 0, (descent_memory)-1),
        DESCENT_ERROR_ARGUMENT, "descent_trainer_step", "memory");
  if (strcmp(device, "cpu") == 0) {
    FAILS(
        descent_trainer_step(trainer, x, 24, FEATURES, LD, labels, NULL, 0, DESCENT_MEMORY_DEVICE),
        DESCENT_ERROR_DEVICE, "descent_trainer_step", "memory");
  }
  FAILS(descent_trainer_evaluate(trainer, x, SAMPLES, FEATURES, LD, bad_labels, NULL, 0,
                                 DESCENT_MEMORY_HOST, &loss, &accuracy),
        DESCENT_ERROR_DATA, "descent_trainer_evaluate", "3");
  FAILS(descent_trainer_evaluate(trainer, x, SAMPLES, FEATURES + 1, LD, labels, NULL, 0,
                                 DESCENT_MEMORY_HOST, &loss, &accuracy),
        DESCENT_ERROR_SHAPE, "descent_trainer_evaluate", "cols");
  FAILS(descent_trainer_evaluate(trainer, x, SAMPLES, FEATURES, LD, NULL, NULL, 0,
                                 DESCENT_MEMORY_HOST, &loss, &accuracy),
        DESCENT_ERROR_ARGUMENT, "descent_trainer_evaluate", "labels");
  FAILS(descent_trainer_evaluate(NULL, x, SAMPLES, FEATURES, LD, labels, NULL, 0,
                                 DESCENT_MEMORY_HOST, &loss, &accuracy),
        DESCENT_ERROR_ARGUMENT, "descent_trainer_evaluate", "trainer");
  FAILS(descent_trainer_take_loss(NULL, &loss), DESCENT_ERROR_ARGUMENT, "descent_trainer_take_loss",
        "trainer");
  FAILS(descent_trainer_take_loss(trainer, NULL), DESCENT_ERROR_ARGUMENT,
        "descent_trainer_take_loss", "loss");

  /* Checkpoints: save, reload into a fresh model, load into a model of another shape. */
  OK(descent_model_parameter_count(model, &count));
  params = (float*)malloc(sizeof(float) * (size_t)count);
  params2 = (float*)malloc(sizeof(float) * (size_t)count);
  OK(descent_model_get_params(model, params, count));
  OK(descent_checkpoint_save("c_api_test.ckpt", model, opt));
  OK(descent_checkpoint_save("c_api_test_model.ckpt", model, NULL));
  OK(descent_model_load(ctx, "c_api_test.ckpt", &loaded));
  OK(descent_model_get_params(loaded, params2, count));
  CHECK(memcmp(params, params2, sizeof(float) * (size_t)count) == 0);
  descent_model_destroy(loaded);
  loaded = NULL;
  FAILS(descent_model_load(ctx, "no-such.ckpt", &loaded), DESCENT_ERROR_IO, "descent_model_load",
        "no-such.ckpt");
  CHECK(loaded == NULL);
  FAILS(descent_model_load(NULL, "c_api_test.ckpt", &loaded), DESCENT_ERROR_ARGUMENT,
        "descent_model_load", "ctx");
  FAILS(descent_model_load(ctx, NULL, &loaded), DESCENT_ERROR_ARGUMENT, "descent_model_load",
        "path");
  FAILS(descent_model_load(ctx, "c_api_test.ckpt", NULL), DESCENT_ERROR_ARGUMENT,
        "descent_model_load", "out");

  OK(descent_trainer_step(trainer, x, 24, FEATURES, LD, labels, NULL, 0, DESCENT_MEMORY_HOST));
  OK(descent_checkpoint_load("c_api_test.ckpt", model, opt));
  OK(descent_model_get_params(model, params2, count));
  CHECK(memcmp(params, params2, sizeof(float) * (size_t)count) == 0);
  OK(descent_optimizer_steps(opt, &steps));
  CHECK(steps == 24);
  OK(descent_checkpoint_load("c_api_test_model.ckpt", model, NULL));
  FAILS(descent_checkpoint_load("c_api_test.ckpt", other, NULL), DESCENT_ERROR_DATA,
        "descent_checkpoint_load", "");
  FAILS(descent_checkpoint_load("c_api_test.ckpt", model, other_opt), DESCENT_ERROR_ARGUMENT,
        "descent_checkpoint_load", "opt");
  FAILS(descent_checkpoint_load("no-such.ckpt", model, NULL), DESCENT_ERROR_IO,
        "descent_checkpoint_load", "no-such.ckpt");
  FAILS(descent_checkpoint_load(NULL, model, NULL), DESCENT_ERROR_ARGUMENT,
        "descent_checkpoint_load", "path");
  FAILS(descent_checkpoint_load("c_api_test.ckpt", NULL, NULL), DESCENT_ERROR_ARGUMENT,
        "descent_checkpoint_load", "model");
  FAILS(descent_checkpoint_save("no-such-dir/x.ckpt", model, NULL), DESCENT_ERROR_IO,
        "descent_checkpoint_save", "no-such-dir");
  FAILS(descent_checkpoint_save(NULL, model, NULL), DESCENT_ERROR_ARGUMENT,
        "descent_checkpoint_save", "path");
  FAILS(descent_checkpoint_save("c_api_x.ckpt", NULL, NULL), DESCENT_ERROR_ARGUMENT,
        "descent_checkpoint_save", "model");
  FAILS(descent_checkpoint_save("c_api_x.ckpt", model, other_opt), DESCENT_ERROR_ARGUMENT,
        "descent_checkpoint_save", "opt");
  remove("c_api_test.ckpt");
  remove("c_api_test_model.ckpt");
  free(params);
  free(params2);

  /* fit on a dataset, with and without a test set and a callback. */
  OK(descent_dataset_create_labels(x, SAMPLES, FEATURES, LD, labels, CLASSES, &data));
  OK(descent_trainer_fit(trainer, data, data, 16, 8, 3, on_epoch, &log));
  CHECK(log.calls == 8 - 4); /* 24 steps of 6 batches: 4 epochs were done already */
  CHECK(isfinite(log.last_loss) && log.last_accuracy > 0.95);
  OK(descent_trainer_fit(trainer, data, NULL, 16, 9, 3, NULL, NULL));
  OK(descent_trainer_evaluate_dataset(trainer, data, 7, &loss, &accuracy));
  CHECK(isfinite(loss) && accuracy > 0.95);
  OK(descent_trainer_evaluate_dataset(trainer, data, 7, NULL, NULL));
  FAILS(descent_trainer_evaluate_dataset(trainer, data, 0, &loss, &accuracy),
        DESCENT_ERROR_ARGUMENT, "descent_trainer_evaluate_dataset", "batch");
  FAILS(descent_trainer_evaluate_dataset(trainer, NULL, 7, &loss, &accuracy),
        DESCENT_ERROR_ARGUMENT, "descent_trainer_evaluate_dataset", "data");
  FAILS(descent_trainer_evaluate_dataset(NULL, data, 7, &loss, &accuracy), DESCENT_ERROR_ARGUMENT,
        "descent_trainer_evaluate_dataset", "trainer");
  FAILS(descent_trainer_fit(trainer, data, NULL, 0, 10, 3, NULL, NULL), DESCENT_ERROR_ARGUMENT,
        "descent_trainer_fit", "batch");
  FAILS(descent_trainer_fit(trainer, data, NULL, 16, 0, 3, NULL, NULL), DESCENT_ERROR_ARGUMENT,
        "descent_trainer_fit", "epochs");
  FAILS(descent_trainer_fit(trainer, NULL, NULL, 16, 10, 3, NULL, NULL), DESCENT_ERROR_ARGUMENT,
        "descent_trainer_fit", "train");
  FAILS(descent_trainer_fit(NULL, data, NULL, 16, 10, 3, NULL, NULL), DESCENT_ERROR_ARGUMENT,
        "descent_trainer_fit", "trainer");
  descent_dataset_destroy(data);

  /* A non-finite loss: NUMERIC, naming the step. */
  {
    descent_trainer* t2 = NULL;
    descent_model* m2 = NULL;
    descent_optimizer* o2 = NULL;
    descent_status st;
    OK(descent_model_create(ctx, widths, 3, "relu", 5, &m2));
    OK(descent_optimizer_create(m2, 0.1f, 0.0f, 0.0f, 0, NULL, 0, 0.0f, &o2));
    OK(descent_trainer_create(m2, o2, "ce", &t2));
    x[0] = NAN;
    st = descent_trainer_step(t2, x, 24, FEATURES, LD, labels, NULL, 0, DESCENT_MEMORY_HOST);
    if (st == DESCENT_OK) { /* on a GPU the step does not wait: the next read reports it */
      FAILS(descent_trainer_take_loss(t2, &loss), DESCENT_ERROR_NUMERIC,
            "descent_trainer_take_loss", "descent_trainer_set_non_finite(trainer, \"skip\")");
    } else {
      expect_error(__FILE__, __LINE__, "non-finite step", st, DESCENT_ERROR_NUMERIC,
                   "descent_trainer_step", "descent_trainer_set_non_finite(trainer, \"skip\")");
    }
    /* Reported once: the next read succeeds. */
    OK(descent_trainer_take_loss(t2, &loss));
    {
      int64_t skipped = -1;
      OK(descent_trainer_skipped_steps(t2, &skipped));
      CHECK(skipped == 1);
      /* The skip policy: a non-finite step is counted, not an error. */
      OK(descent_trainer_set_non_finite(t2, "skip"));
      OK(descent_trainer_step(t2, x, 24, FEATURES, LD, labels, NULL, 0, DESCENT_MEMORY_HOST));
      OK(descent_trainer_take_loss(t2, &loss));
      OK(descent_trainer_skipped_steps(t2, &skipped));
      CHECK(skipped == 2);
      FAILS(descent_trainer_set_non_finite(t2, "ignore"), DESCENT_ERROR_ARGUMENT,
            "descent_trainer_set_non_finite", "policy");
      FAILS(descent_trainer_set_non_finite(t2, NULL), DESCENT_ERROR_ARGUMENT,
            "descent_trainer_set_non_finite", "policy");
      FAILS(descent_trainer_set_non_finite(NULL, "skip"), DESCENT_ERROR_ARGUMENT,
            "descent_trainer_set_non_finite", "trainer");
      FAILS(descent_trainer_skipped_steps(t2, NULL), DESCENT_ERROR_ARGUMENT,
            "descent_trainer_skipped_steps", "skipped");
    }
    x[0] = 1.0f;
    descent_trainer_destroy(t2);
    descent_optimizer_destroy(o2);
    descent_model_destroy(m2);
  }

  descent_trainer_destroy(trainer);
  descent_trainer_destroy(NULL);

  /* Regression losses take targets, not labels. */
  {
    const int64_t reg_widths[] = {FEATURES, 8, 2};
    descent_model* m3 = NULL;
    descent_optimizer* o3 = NULL;
    descent_trainer* t3 = NULL;
    float y[SAMPLES * 3];
    for (i = 0; i < SAMPLES; ++i) {
      y[i * 3] = x[i * LD] > 0.5f ? 1.0f : 0.0f;
      y[i * 3 + 1] = x[i * LD + 2] > 0.5f ? 1.0f : 0.0f;
      y[i * 3 + 2] = NAN; /* padding */
    }
    OK(descent_model_create(ctx, reg_widths, 3, "sigmoid", 2, &m3));
    OK(descent_optimizer_create(m3, 0.5f, 0.9f, 0.0f, 1, NULL, 0, 0.0f, &o3));
    OK(descent_trainer_create(m3, o3, "bce", &t3));
    OK(descent_trainer_evaluate(t3, x, SAMPLES, FEATURES, LD, NULL, y, 3, DESCENT_MEMORY_HOST,
                                &first, &accuracy));
    for (epoch = 0; epoch < 40; ++epoch) {
      OK(descent_trainer_step(t3, x, SAMPLES, FEATURES, LD, NULL, y, 3, DESCENT_MEMORY_HOST));
    }
    OK(descent_trainer_evaluate(t3, x, SAMPLES, FEATURES, LD, NULL, y, 3, DESCENT_MEMORY_HOST,
                                &loss, &accuracy));
    printf("  bce: loss %.4f -> %.4f, accuracy %.3f\n", first, loss, accuracy);
    CHECK(loss < first && accuracy > 0.9);
    FAILS(descent_trainer_step(t3, x, SAMPLES, FEATURES, LD, labels, NULL, 0, DESCENT_MEMORY_HOST),
          DESCENT_ERROR_ARGUMENT, "descent_trainer_step", "targets");
    FAILS(descent_trainer_step(t3, x, SAMPLES, FEATURES, LD, labels, y, 3, DESCENT_MEMORY_HOST),
          DESCENT_ERROR_ARGUMENT, "descent_trainer_step", "labels");
    FAILS(descent_trainer_step(t3, x, SAMPLES, FEATURES, LD, NULL, y, 1, DESCENT_MEMORY_HOST),
          DESCENT_ERROR_ARGUMENT, "descent_trainer_step", "ld_targets");
    descent_trainer_destroy(t3);
    OK(descent_trainer_create(m3, o3, "mse", &t3));
    OK(descent_trainer_step(t3, x, SAMPLES, FEATURES, LD, NULL, y, 3, DESCENT_MEMORY_HOST));
    OK(descent_trainer_evaluate(t3, x, SAMPLES, FEATURES, LD, NULL, y, 3, DESCENT_MEMORY_HOST,
                                &loss, &accuracy));
    CHECK(isfinite(loss) && isnan(accuracy));
    descent_trainer_destroy(t3);
    descent_optimizer_destroy(o3);
    descent_model_destroy(m3);
  }

  descent_optimizer_destroy(other_opt);
  descent_model_destroy(other);
  descent_optimizer_destroy(opt);
  descent_model_destroy(model);
  descent_context_destroy(ctx);
}

static void test_adam_optimizer(descent_context* ctx) {
  const int64_t widths[] = {FEATURES, CLASSES};
  const char* fn = "descent_optimizer_create_adam";
  descent_model* model = NULL;
  descent_optimizer* opt = (descent_optimizer*)1;
  const char* kind = NULL;
  float lr = 0.0f;
  int64_t steps = -1;

  OK(descent_model_create(ctx, widths, 2, "identity", 1, &model));
  FAILS(descent_optimizer_create_adam(NULL, "adam", 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, NULL, 0,
                                      0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "model");
  CHECK(opt == NULL);
  FAILS(descent_optimizer_create_adam(model, "adam", 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, NULL, 0,
                                      0.0f, NULL),
        DESCENT_ERROR_ARGUMENT, fn, "out");
  FAILS(descent_optimizer_create_adam(model, NULL, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, NULL, 0,
                                      0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "kind");
  FAILS(descent_optimizer_create_adam(model, "sgd", 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, NULL, 0,
                                      0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "got 'sgd' (the other kinds are made by");
  FAILS(descent_optimizer_create_adam(model, "lbfgs", 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, NULL, 0,
                                      0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "expected \"adam\" or \"adamw\", got 'lbfgs'");
  FAILS(descent_optimizer_create_adam(model, "adamax", 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, NULL, 0,
                                      0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "kind: optimizer: expected sgd, adam, adamw or lbfgs, got 'adamax'");
  FAILS(descent_optimizer_create_adam(model, "AdamW", 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, NULL, 0,
                                      0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "kind");
  FAILS(descent_optimizer_create_adam(model, "adam", -1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, NULL, 0,
                                      0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "lr");
  FAILS(descent_optimizer_create_adam(model, "adam", NAN, 0.9f, 0.999f, 1e-8f, 0.0f, 0, NULL, 0,
                                      0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "lr");
  FAILS(descent_optimizer_create_adam(model, "adamw", INFINITY, 0.9f, 0.999f, 1e-8f, 0.01f, 0, NULL,
                                      0, 0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "lr");
  FAILS(descent_optimizer_create_adam(model, "adam", 1e-3f, 1.0f, 0.999f, 1e-8f, 0.0f, 0, NULL, 0,
                                      0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "beta1");
  FAILS(descent_optimizer_create_adam(model, "adam", 1e-3f, -0.1f, 0.999f, 1e-8f, 0.0f, 0, NULL, 0,
                                      0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "beta1");
  FAILS(descent_optimizer_create_adam(model, "adamw", 1e-3f, NAN, 0.999f, 1e-8f, 0.01f, 0, NULL, 0,
                                      0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "beta1");
  FAILS(descent_optimizer_create_adam(model, "adam", 1e-3f, 0.9f, 1.0f, 1e-8f, 0.0f, 0, NULL, 0,
                                      0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "beta2");
  FAILS(descent_optimizer_create_adam(model, "adam", 1e-3f, 0.9f, NAN, 1e-8f, 0.0f, 0, NULL, 0,
                                      0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "beta2");
  FAILS(descent_optimizer_create_adam(model, "adam", 1e-3f, 0.9f, 0.999f, -1e-8f, 0.0f, 0, NULL, 0,
                                      0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "eps");
  FAILS(descent_optimizer_create_adam(model, "adam", 1e-3f, 0.9f, 0.999f, NAN, 0.0f, 0, NULL, 0,
                                      0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "eps");
  FAILS(descent_optimizer_create_adam(model, "adamw", 1e-3f, 0.9f, 0.999f, 1e-8f, -0.01f, 0, NULL,
                                      0, 0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "weight_decay");
  FAILS(descent_optimizer_create_adam(model, "adam", 1e-3f, 0.9f, 0.999f, 1e-8f, NAN, 0, NULL, 0,
                                      0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "weight_decay");
  FAILS(descent_optimizer_create_adam(model, "adam", 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, "linear",
                                      10, 0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "schedule");
  FAILS(descent_optimizer_create_adam(model, "adam", 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, "cosine",
                                      0, 0.0f, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "total");
  FAILS(descent_optimizer_create_adam(model, "adam", 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, "cosine",
                                      10, NAN, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "min_lr");
  FAILS(descent_optimizer_create_adam(model, "adam", 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, "step", 0,
                                      0.5f, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "every");
  FAILS(descent_optimizer_create_adam(model, "adam", 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, "step", 5,
                                      -0.5f, &opt),
        DESCENT_ERROR_ARGUMENT, fn, "gamma");
  CHECK(opt == NULL);

  /* beta 0 and eps 0 are allowed, as in torch. */
  OK(descent_optimizer_create_adam(model, "adam", 2e-3f, 0.0f, 0.0f, 0.0f, 0.0f, 1, "step", 5, 0.5f,
                                   &opt));
  OK(descent_optimizer_kind(opt, &kind));
  CHECK(kind != NULL && strcmp(kind, "adam") == 0);
  OK(descent_optimizer_lr(opt, &lr));
  CHECK(lr == 2e-3f);
  OK(descent_optimizer_steps(opt, &steps));
  CHECK(steps == 0);
  FAILS(descent_optimizer_kind(NULL, &kind), DESCENT_ERROR_ARGUMENT, "descent_optimizer_kind",
        "opt");
  FAILS(descent_optimizer_kind(opt, NULL), DESCENT_ERROR_ARGUMENT, "descent_optimizer_kind",
        "kind");
  descent_optimizer_destroy(opt);
  OK(descent_optimizer_create_adam(model, "adamw", 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 0, NULL, 0,
                                   0.0f, &opt));
  OK(descent_optimizer_kind(opt, &kind));
  CHECK(kind != NULL && strcmp(kind, "adamw") == 0);
  descent_optimizer_destroy(opt);
  OK(descent_optimizer_create_adam(model, "adamw", 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 0, "cosine",
                                   10, 1e-4f, &opt));
  OK(descent_optimizer_lr(opt, &lr));
  CHECK(lr == 1e-3f);
  descent_optimizer_destroy(opt);
  OK(descent_optimizer_create(model, 0.1f, 0.0f, 0.0f, 0, NULL, 0, 0.0f, &opt));
  OK(descent_optimizer_kind(opt, &kind));
  CHECK(kind != NULL && strcmp(kind, "sgd") == 0);
  descent_optimizer_destroy(opt);
  descent_model_destroy(model);
}

/* || a - b || (2-norm) and max |a - b| over n floats. */
static double diff_norm(const float* a, const float* b, int64_t n) {
  double s = 0.0;
  int64_t i;
  for (i = 0; i < n; ++i) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
  return sqrt(s);
}

static double diff_max(const float* a, const float* b, int64_t n) {
  double m = 0.0;
  int64_t i;
  for (i = 0; i < n; ++i) m = fabs((double)a[i] - b[i]) > m ? fabs((double)a[i] - b[i]) : m;
  return m;
}

/* AdamW training, Adam checkpoints and gradient clipping on `device`. */
static void test_adam_training(const char* device) {
  const int64_t widths[] = {FEATURES, 16, CLASSES};
  descent_context* ctx = NULL;
  descent_model *model = NULL, *m2 = NULL, *m3 = NULL;
  descent_optimizer *opt = NULL, *o2 = NULL, *o3 = NULL, *wrong = NULL;
  descent_trainer *trainer = NULL, *t2 = NULL, *t3 = NULL;
  descent_dataset* data = NULL;
  float x[SAMPLES * LD];
  int32_t labels[SAMPLES];
  double first = 0, loss = 0, accuracy = 0;
  float norm = 0.0f, lr = 0.0f, lr3 = 0.0f;
  int64_t steps = 0, count = 0;
  float *saved, *after, *again;
  int epoch, b;

  printf("adam on %s\n", device);
  make_classes(x, labels, SAMPLES, LD, 2);
  OK(descent_context_create(device, 1, &ctx));

  /* AdamW (with clipping that seldom binds) learns the three classes. */
  OK(descent_model_create(ctx, widths, 3, "relu", 5, &model));
  OK(descent_optimizer_create_adam(model, "adamw", 0.02f, 0.9f, 0.999f, 1e-8f, 0.01f, 0, "cosine",
                                   60, 0.0f, &opt));
  OK(descent_trainer_create(model, opt, "softmax_cross_entropy", &trainer));
  OK(descent_trainer_set_clip_grad_norm(trainer, 5.0f, 2.0f));
  OK(descent_trainer_evaluate(trainer, x, SAMPLES, FEATURES, LD, labels, NULL, 0,
                              DESCENT_MEMORY_HOST, &first, &accuracy));
  for (epoch = 0; epoch < 6; ++epoch) {
    for (b = 0; b < 4; ++b) {
      OK(descent_trainer_step(trainer, x + b * 24 * LD, 24, FEATURES, LD, labels + b * 24, NULL, 0,
                              DESCENT_MEMORY_HOST));
    }
    OK(descent_trainer_take_loss(trainer, &loss));
    CHECK(isfinite(loss));
  }
  OK(descent_trainer_last_grad_norm(trainer, &norm));
  CHECK(isfinite(norm) && norm > 0.0f);
  OK(descent_optimizer_steps(opt, &steps));
  CHECK(steps == 24);
  OK(descent_trainer_evaluate(trainer, x, SAMPLES, FEATURES, LD, labels, NULL, 0,
                              DESCENT_MEMORY_HOST, &loss, &accuracy));
  printf("  adamw steps: loss %.4f -> %.4f, accuracy %.3f, last grad norm %.4f\n", first, loss,
         accuracy, norm);
  CHECK(loss < 0.5 * first);
  CHECK(accuracy > 0.95);
  /* fit goes on from the 24 steps (4 epochs of 6 batches) with the same optimizer. */
  OK(descent_dataset_create_labels(x, SAMPLES, FEATURES, LD, labels, CLASSES, &data));
  OK(descent_trainer_fit(trainer, data, NULL, 16, 6, 3, NULL, NULL));
  OK(descent_optimizer_steps(opt, &steps));
  CHECK(steps == 36);
  OK(descent_trainer_evaluate_dataset(trainer, data, 32, &loss, &accuracy));
  CHECK(isfinite(loss) && accuracy > 0.95);
  descent_dataset_destroy(data);

  /* Adam with amsgrad through a checkpoint: the step after a reload is the step after the save,
   * bit for bit, in the same objects and in new ones. */
  OK(descent_model_create(ctx, widths, 3, "tanh", 9, &m2));
  OK(descent_optimizer_create_adam(m2, "adam", 0.01f, 0.8f, 0.99f, 1e-6f, 1e-3f, 1, "step", 4, 0.5f,
                                   &o2));
  OK(descent_trainer_create(m2, o2, "ce", &t2));
  for (b = 0; b < 5; ++b) {
    OK(descent_trainer_step(t2, x + (b % 4) * 24 * LD, 24, FEATURES, LD, labels + (b % 4) * 24,
                            NULL, 0, DESCENT_MEMORY_HOST));
  }
  OK(descent_model_parameter_count(m2, &count));
  saved = (float*)malloc(sizeof(float) * (size_t)count);
  after = (float*)malloc(sizeof(float) * (size_t)count);
  again = (float*)malloc(sizeof(float) * (size_t)count);
  OK(descent_model_get_params(m2, saved, count));
  OK(descent_checkpoint_save("c_api_adam.ckpt", m2, o2));
  OK(descent_checkpoint_save("c_api_adam_model.ckpt", m2, NULL));
  OK(descent_trainer_step(t2, x, 24, FEATURES, LD, labels, NULL, 0, DESCENT_MEMORY_HOST));
  OK(descent_model_get_params(m2, after, count));
  OK(descent_optimizer_lr(o2, &lr));
  CHECK(memcmp(saved, after, sizeof(float) * (size_t)count) != 0);
  OK(descent_trainer_step(t2, x + 24 * LD, 24, FEATURES, LD, labels + 24, NULL, 0,
                          DESCENT_MEMORY_HOST));

  OK(descent_checkpoint_load("c_api_adam.ckpt", m2, o2));
  OK(descent_model_get_params(m2, again, count));
  CHECK(memcmp(saved, again, sizeof(float) * (size_t)count) == 0);
  OK(descent_optimizer_steps(o2, &steps));
  CHECK(steps == 5);
  OK(descent_trainer_step(t2, x, 24, FEATURES, LD, labels, NULL, 0, DESCENT_MEMORY_HOST));
  OK(descent_model_get_params(m2, again, count));
  CHECK(memcmp(after, again, sizeof(float) * (size_t)count) == 0);

  OK(descent_model_load(ctx, "c_api_adam.ckpt", &m3));
  OK(descent_optimizer_create_adam(m3, "adam", 0.01f, 0.8f, 0.99f, 1e-6f, 1e-3f, 1, "step", 4, 0.5f,
                                   &o3));
  OK(descent_checkpoint_load("c_api_adam.ckpt", m3, o3));
  OK(descent_optimizer_steps(o3, &steps));
  CHECK(steps == 5);
  OK(descent_trainer_create(m3, o3, "ce", &t3));
  OK(descent_optimizer_lr(o3, &lr3));
  CHECK(lr3 == lr && lr == 0.005f); /* step 5 of a halving every 4 */
  OK(descent_trainer_step(t3, x, 24, FEATURES, LD, labels, NULL, 0, DESCENT_MEMORY_HOST));
  OK(descent_model_get_params(m3, again, count));
  CHECK(memcmp(after, again, sizeof(float) * (size_t)count) == 0);

  /* Another kind or other state: DATA, and nothing changes. */
  OK(descent_model_get_params(m3, saved, count));
  OK(descent_optimizer_create(m3, 0.1f, 0.9f, 0.0f, 0, NULL, 0, 0.0f, &wrong));
  FAILS(descent_checkpoint_load("c_api_adam.ckpt", m3, wrong), DESCENT_ERROR_DATA,
        "descent_checkpoint_load", "adam");
  OK(descent_checkpoint_save("c_api_sgd.ckpt", m3, wrong));
  FAILS(descent_checkpoint_load("c_api_sgd.ckpt", m3, o3), DESCENT_ERROR_DATA,
        "descent_checkpoint_load", "sgd");
  descent_optimizer_destroy(wrong);
  OK(descent_optimizer_create_adam(m3, "adamw", 0.01f, 0.8f, 0.99f, 1e-6f, 1e-3f, 1, NULL, 0, 0.0f,
                                   &wrong));
  FAILS(descent_checkpoint_load("c_api_adam.ckpt", m3, wrong), DESCENT_ERROR_DATA,
        "descent_checkpoint_load", "adamw");
  descent_optimizer_destroy(wrong);
  OK(descent_optimizer_create_adam(m3, "adam", 0.01f, 0.8f, 0.99f, 1e-6f, 1e-3f, 0, NULL, 0, 0.0f,
                                   &wrong));
  FAILS(descent_checkpoint_load("c_api_adam.ckpt", m3, wrong), DESCENT_ERROR_DATA,
        "descent_checkpoint_load", "amsgrad");
  FAILS(descent_checkpoint_load("c_api_adam_model.ckpt", m3, o3), DESCENT_ERROR_DATA,
        "descent_checkpoint_load", "without an optimizer");
  FAILS(descent_checkpoint_load("c_api_adam.ckpt", m3, o2), DESCENT_ERROR_ARGUMENT,
        "descent_checkpoint_load", "opt");
  FAILS(descent_checkpoint_save("c_api_x.ckpt", m3, o2), DESCENT_ERROR_ARGUMENT,
        "descent_checkpoint_save", "opt");
  descent_optimizer_destroy(wrong);
  OK(descent_model_get_params(m3, again, count));
  CHECK(memcmp(saved, again, sizeof(float) * (size_t)count) == 0);
  OK(descent_optimizer_steps(o3, &steps));
  CHECK(steps == 6);
  remove("c_api_adam.ckpt");
  remove("c_api_adam_model.ckpt");
  remove("c_api_sgd.ckpt");

  free(saved);
  free(after);
  free(again);
  descent_trainer_destroy(t3);
  descent_optimizer_destroy(o3);
  descent_model_destroy(m3);
  descent_trainer_destroy(t2);
  descent_optimizer_destroy(o2);
  descent_model_destroy(m2);
  descent_trainer_destroy(trainer);
  descent_optimizer_destroy(opt);
  descent_model_destroy(model);
  descent_context_destroy(ctx);
}

/* Gradient clipping: the norm reported is the norm applied, a tiny max_norm bounds every step's
 * move (plain SGD, lr 0.5: ||dp|| <= lr * max_norm), and the unclipped twin moves freely. */
static void test_clipping(const char* device) {
  const int64_t widths[] = {FEATURES, 16, CLASSES};
  const char* fn = "descent_trainer_set_clip_grad_norm";
  const float lr = 0.5f;
  descent_context* ctx = NULL;
  descent_model *ma = NULL, *mb = NULL;
  descent_optimizer *oa = NULL, *ob = NULL;
  descent_trainer *ta = NULL, *tb = NULL;
  float x[SAMPLES * LD];
  int32_t labels[SAMPLES];
  float norm = 0.0f;
  int64_t count = 0;
  float *pa0, *pa, *pb0, *pb;
  double moved_a, moved_b;
  int b;

  printf("clipping on %s\n", device);
  make_classes(x, labels, SAMPLES, LD, 4);
  OK(descent_context_create(device, 1, &ctx));
  OK(descent_model_create(ctx, widths, 3, "relu", 5, &ma));
  OK(descent_model_create(ctx, widths, 3, "relu", 5, &mb));
  OK(descent_optimizer_create(ma, lr, 0.0f, 0.0f, 0, NULL, 0, 0.0f, &oa));
  OK(descent_optimizer_create(mb, lr, 0.0f, 0.0f, 0, NULL, 0, 0.0f, &ob));
  OK(descent_trainer_create(ma, oa, "ce", &ta));
  OK(descent_trainer_create(mb, ob, "ce", &tb));
  OK(descent_model_parameter_count(ma, &count));
  pa0 = (float*)malloc(sizeof(float) * (size_t)count);
  pa = (float*)malloc(sizeof(float) * (size_t)count);
  pb0 = (float*)malloc(sizeof(float) * (size_t)count);
  pb = (float*)malloc(sizeof(float) * (size_t)count);

  norm = 0.0f;
  OK(descent_trainer_last_grad_norm(tb, &norm));
  CHECK(isnan(norm)); /* off, and no step yet */
  FAILS(descent_trainer_set_clip_grad_norm(NULL, 1.0f, 2.0f), DESCENT_ERROR_ARGUMENT, fn,
        "trainer");
  FAILS(descent_trainer_set_clip_grad_norm(tb, -1.0f, 2.0f), DESCENT_ERROR_ARGUMENT, fn,
        "max_norm");
  FAILS(descent_trainer_set_clip_grad_norm(tb, NAN, 2.0f), DESCENT_ERROR_ARGUMENT, fn, "max_norm");
  FAILS(descent_trainer_set_clip_grad_norm(tb, INFINITY, 2.0f), DESCENT_ERROR_ARGUMENT, fn,
        "max_norm");
  FAILS(descent_trainer_set_clip_grad_norm(tb, 1.0f, 1.0f), DESCENT_ERROR_ARGUMENT, fn,
        "norm_type");
  FAILS(descent_trainer_set_clip_grad_norm(tb, 1.0f, 3.0f), DESCENT_ERROR_ARGUMENT, fn,
        "norm_type");
  FAILS(descent_trainer_set_clip_grad_norm(tb, 1.0f, NAN), DESCENT_ERROR_ARGUMENT, fn, "norm_type");
  FAILS(descent_trainer_set_clip_grad_norm(tb, 1.0f, -INFINITY), DESCENT_ERROR_ARGUMENT, fn,
        "norm_type");
  OK(descent_trainer_set_clip_grad_norm(tb, 0.0f, 0.0f)); /* off: norm_type is not used */
  FAILS(descent_trainer_last_grad_norm(NULL, &norm), DESCENT_ERROR_ARGUMENT,
        "descent_trainer_last_grad_norm", "trainer");
  FAILS(descent_trainer_last_grad_norm(tb, NULL), DESCENT_ERROR_ARGUMENT,
        "descent_trainer_last_grad_norm", "norm");

  /* A max_norm that never binds: the same step as without clipping, and the norm reported is
   * the gradient's (the move divided by lr), in both norms. */
  OK(descent_trainer_set_clip_grad_norm(tb, 1e30f, 2.0f));
  OK(descent_model_get_params(mb, pb0, count));
  OK(descent_trainer_step(ta, x, 24, FEATURES, LD, labels, NULL, 0, DESCENT_MEMORY_HOST));
  OK(descent_trainer_step(tb, x, 24, FEATURES, LD, labels, NULL, 0, DESCENT_MEMORY_HOST));
  OK(descent_trainer_last_grad_norm(tb, &norm));
  OK(descent_model_get_params(ma, pa, count));
  OK(descent_model_get_params(mb, pb, count));
  CHECK(memcmp(pa, pb, sizeof(float) * (size_t)count) == 0);
  moved_b = diff_norm(pb, pb0, count) / lr;
  printf("  2-norm %.6f, move / lr %.6f\n", norm, moved_b);
  CHECK(isfinite(norm) && norm > 0.0f && fabs(norm - moved_b) <= 1e-3 * moved_b);

  OK(descent_trainer_set_clip_grad_norm(tb, 1e30f, INFINITY));
  OK(descent_model_get_params(mb, pb0, count));
  OK(descent_trainer_step(ta, x + 24 * LD, 24, FEATURES, LD, labels + 24, NULL, 0,
                          DESCENT_MEMORY_HOST));
  OK(descent_trainer_step(tb, x + 24 * LD, 24, FEATURES, LD, labels + 24, NULL, 0,
                          DESCENT_MEMORY_HOST));
  OK(descent_trainer_last_grad_norm(tb, &norm));
  OK(descent_model_get_params(ma, pa, count));
  OK(descent_model_get_params(mb, pb, count));
  CHECK(memcmp(pa, pb, sizeof(float) * (size_t)count) == 0);
  moved_b = diff_max(pb, pb0, count) / lr;
  printf("  inf-norm %.6f, largest move / lr %.6f\n", norm, moved_b);
  CHECK(isfinite(norm) && norm > 0.0f && fabs(norm - moved_b) <= 1e-3 * moved_b);

  /* A tiny max_norm: each step moves the parameters by at most lr * max_norm. */
  OK(descent_trainer_set_clip_grad_norm(tb, 1e-3f, 2.0f));
  OK(descent_model_get_params(ma, pa0, count));
  OK(descent_model_get_params(mb, pb0, count));
  for (b = 0; b < 4; ++b) {
    OK(descent_trainer_step(ta, x + b * 24 * LD, 24, FEATURES, LD, labels + b * 24, NULL, 0,
                            DESCENT_MEMORY_HOST));
    OK(descent_trainer_step(tb, x + b * 24 * LD, 24, FEATURES, LD, labels + b * 24, NULL, 0,
                            DESCENT_MEMORY_HOST));
  }
  OK(descent_trainer_last_grad_norm(tb, &norm));
  CHECK(isfinite(norm) && norm > 1e-3f); /* the norm before clipping */
  OK(descent_model_get_params(ma, pa, count));
  OK(descent_model_get_params(mb, pb, count));
  moved_a = diff_norm(pa, pa0, count);
  moved_b = diff_norm(pb, pb0, count);
  printf("  4 steps: moved %.6f unclipped, %.6f clipped to 1e-3\n", moved_a, moved_b);
  CHECK(moved_b > 0.0 && moved_b <= 4 * lr * 1e-3 * 1.001);
  CHECK(moved_a > 10 * moved_b);
  CHECK(memcmp(pa, pb, sizeof(float) * (size_t)count) != 0);

  /* Turned on after unclipped steps: no norm until a clipped step has run. */
  OK(descent_trainer_set_clip_grad_norm(ta, 1.0f, INFINITY));
  OK(descent_trainer_last_grad_norm(ta, &norm));
  CHECK(isnan(norm));
  OK(descent_trainer_step(ta, x, 24, FEATURES, LD, labels, NULL, 0, DESCENT_MEMORY_HOST));
  OK(descent_trainer_last_grad_norm(ta, &norm));
  CHECK(isfinite(norm) && norm > 0.0f);

  /* Off again: no norm is computed. */
  OK(descent_trainer_set_clip_grad_norm(tb, 0.0f, 2.0f));
  OK(descent_trainer_step(tb, x, 24, FEATURES, LD, labels, NULL, 0, DESCENT_MEMORY_HOST));
  OK(descent_trainer_last_grad_norm(tb, &norm));
  CHECK(isnan(norm));

  free(pa0);
  free(pa);
  free(pb0);
  free(pb);
  descent_trainer_destroy(ta);
  descent_trainer_destroy(tb);
  descent_optimizer_destroy(oa);
  descent_optimizer_destroy(ob);
  descent_model_destroy(ma);
  descent_model_destroy(mb);
  descent_context_destroy(ctx);
}

/* Communicators without mpirun: a single process, MPI's errors when MPI is not initialised (or
 * not built), and a data-parallel trainer over one rank, which must train exactly as an ordinary
 * one (the same steps, bit for bit). */
static void test_communicator(void) {
  const int64_t widths[] = {FEATURES, 16, CLASSES};
  descent_context* ctx = NULL;
  descent_communicator* comm = (descent_communicator*)1;
  descent_model *ma = NULL, *mb = NULL;
  descent_optimizer *oa = NULL, *ob = NULL;
  descent_trainer *ta = NULL, *tb = (descent_trainer*)1;
  descent_dataset* data = NULL;
  float x[SAMPLES * LD];
  int32_t labels[SAMPLES];
  float pa[FEATURES * 16 + 16 + 16 * CLASSES + CLASSES];
  float pb[FEATURES * 16 + 16 + 16 * CLASSES + CLASSES];
  const int64_t n_params = (int64_t)(sizeof pa / sizeof pa[0]);
  double la = 0, lb = 0, aa = 0, ab = 0;
  int64_t count = 0;
  int rank = -1, size = -1;

  CHECK(descent_built_with_mpi() == 0 || descent_built_with_mpi() == 1);
  OK(descent_context_create("cpu", 1, &ctx));

  /* MPI is not initialised in this process: a DEVICE error that says so (or, in a build without
   * MPI, that it has none), and *out cleared. */
  FAILS(descent_communicator_create_mpi(ctx, 0, &comm), DESCENT_ERROR_DEVICE,
        "descent_communicator_create_mpi", "MPI");
  CHECK(comm == NULL);
  FAILS(descent_communicator_create_mpi(ctx, 0, &comm), DESCENT_ERROR_DEVICE,
        "descent_communicator_create_mpi",
        descent_built_with_mpi() ? "not initialised" : "without MPI");
  FAILS(descent_communicator_create_mpi(NULL, 0, &comm), DESCENT_ERROR_ARGUMENT,
        "descent_communicator_create_mpi", "ctx");
  FAILS(descent_communicator_create_mpi(ctx, 0, NULL), DESCENT_ERROR_ARGUMENT,
        "descent_communicator_create_mpi", "out");
  FAILS(descent_communicator_create_single(NULL), DESCENT_ERROR_ARGUMENT,
        "descent_communicator_create_single", "out");

  OK(descent_communicator_create_single(&comm));
  CHECK(comm != NULL);
  OK(descent_communicator_rank(comm, &rank));
  OK(descent_communicator_size(comm, &size));
  CHECK(rank == 0 && size == 1);
  FAILS(descent_communicator_rank(NULL, &rank), DESCENT_ERROR_ARGUMENT, "descent_communicator_rank",
        "comm");
  FAILS(descent_communicator_rank(comm, NULL), DESCENT_ERROR_ARGUMENT, "descent_communicator_rank",
        "rank");
  FAILS(descent_communicator_size(NULL, &size), DESCENT_ERROR_ARGUMENT, "descent_communicator_size",
        "comm");
  FAILS(descent_communicator_size(comm, NULL), DESCENT_ERROR_ARGUMENT, "descent_communicator_size",
        "size");
  /* abort ends the process for any real communicator; only its NULL check returns. */
  FAILS(descent_communicator_abort(NULL, "message", 3), DESCENT_ERROR_ARGUMENT,
        "descent_communicator_abort", "comm");
  descent_communicator_destroy(NULL);

  /* Two replicas of one model: an ordinary trainer and one over the single communicator. */
  make_classes(x, labels, SAMPLES, LD, 4);
  OK(descent_dataset_create_labels(x, SAMPLES, FEATURES, LD, labels, CLASSES, &data));
  OK(descent_model_create(ctx, widths, 3, "relu", 9, &ma));
  OK(descent_model_create(ctx, widths, 3, "relu", 9, &mb));
  OK(descent_optimizer_create(ma, 0.1f, 0.9f, 0.0f, 0, NULL, 0, 0.0f, &oa));
  OK(descent_optimizer_create(mb, 0.1f, 0.9f, 0.0f, 0, NULL, 0, 0.0f, &ob));
  OK(descent_model_parameter_count(ma, &count));
  CHECK(count == n_params);
  OK(descent_trainer_create(ma, oa, "ce", &ta));
  FAILS(descent_trainer_create_parallel(mb, ob, "ce", NULL, &tb), DESCENT_ERROR_ARGUMENT,
        "descent_trainer_create_parallel", "comm");
  CHECK(tb == NULL);
  FAILS(descent_trainer_create_parallel(NULL, ob, "ce", comm, &tb), DESCENT_ERROR_ARGUMENT,
        "descent_trainer_create_parallel", "model");
  FAILS(descent_trainer_create_parallel(mb, oa, "ce", comm, &tb), DESCENT_ERROR_ARGUMENT,
        "descent_trainer_create_parallel", "opt");
  FAILS(descent_trainer_create_parallel(mb, ob, "hinge", comm, &tb), DESCENT_ERROR_ARGUMENT,
        "descent_trainer_create_parallel", "loss");
  FAILS(descent_trainer_create_parallel(mb, ob, "ce", comm, NULL), DESCENT_ERROR_ARGUMENT,
        "descent_trainer_create_parallel", "out");
  OK(descent_trainer_create_parallel(mb, ob, "ce", comm, &tb));
  /* The trainer keeps its own reference: the handle may go first. */
  descent_communicator_destroy(comm);

  OK(descent_trainer_fit(ta, data, data, 20, 3, 7, NULL, NULL));
  OK(descent_trainer_fit(tb, data, data, 20, 3, 7, NULL, NULL));
  OK(descent_trainer_step(ta, x, 24, FEATURES, LD, labels, NULL, 0, DESCENT_MEMORY_HOST));
  OK(descent_trainer_step(tb, x, 24, FEATURES, LD, labels, NULL, 0, DESCENT_MEMORY_HOST));
  OK(descent_model_get_params(ma, pa, n_params));
  OK(descent_model_get_params(mb, pb, n_params));
  CHECK(memcmp(pa, pb, sizeof pa) == 0);
  OK(descent_trainer_evaluate_dataset(ta, data, 32, &la, &aa));
  OK(descent_trainer_evaluate_dataset(tb, data, 32, &lb, &ab));
  CHECK(la == lb && aa == ab);
  CHECK(aa > 0.9);

  descent_trainer_destroy(tb);
  descent_trainer_destroy(ta);
  descent_optimizer_destroy(ob);
  descent_optimizer_destroy(oa);
  descent_model_destroy(mb);
  descent_model_destroy(ma);
  descent_dataset_destroy(data);
  descent_context_destroy(ctx);
}

int main(void) {
  descent_context* ctx = NULL;
  test_library();
  test_context();
  if (descent_context_create("cpu", 1, &ctx) != DESCENT_OK) {
    fprintf(stderr, "no cpu context: %s\n", descent_last_error());
    return 1;
  }
  test_model(ctx);
  test_optimizer(ctx);
  test_adam_optimizer(ctx);
  descent_context_destroy(ctx);
  test_datasets();
  test_training("cpu");
  test_adam_training("cpu");
  test_clipping("cpu");
  test_communicator();
  if (descent_cuda_device_count() > 0) {
    test_training("cuda:0");
    test_adam_training("cuda:0");
    test_clipping("cuda:0");
  } else {
    printf("cuda:0: skipped, no CUDA device\n");
  }
  printf("%d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
