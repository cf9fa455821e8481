/* Poisson's equation -Δu = f on the unit square, u = 0 on its boundary, solved by
 * physics-informed training through descent's C API (examples/poisson.cpp is the same in C++):
 * each step builds its gradient term by term (the boundary's mean squared error, then the
 * residual -Δu - f at interior points through a forward jet) and takes one Adam step.
 *   poisson_c [steps] [interior points per step] [boundary points per step] */
#include <descent/descent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define TRY(call)                                                                            \
  do {                                                                                       \
    descent_status status_ = (call);                                                         \
    if (status_ != DESCENT_OK) {                                                             \
      fprintf(stderr, "poisson_c: %s: %s\n", descent_status_string(status_),                 \
              descent_last_error());                                                         \
      exit(1);                                                                               \
    }                                                                                        \
  } while (0)

static const double kPi = 3.14159265358979323846;

/* A uniform float in [0, 1) from a 64-bit linear congruential generator (the same sequence on
 * every platform). */
static float uniform(unsigned long long* state) {
  *state = *state * 6364136223846793005ull + 1442695040888963407ull;
  return (float)(*state >> 40) / 16777216.0f;
}

static double exact(double x, double y) { return sin(kPi * x) * sin(kPi * y); }

/* The relative L2 error of the model against the exact solution on an n x n grid. */
static double relative_error(descent_model* model, int n) {
  float* points = malloc(sizeof(float) * 2 * (size_t)n * (size_t)n);
  float* u = malloc(sizeof(float) * (size_t)n * (size_t)n);
  double err = 0.0, norm = 0.0;
  int i, j;
  if (points == NULL || u == NULL) {
    fprintf(stderr, "poisson_c: out of memory\n");
    exit(1);
  }
  for (i = 0; i < n; ++i) {
    for (j = 0; j < n; ++j) {
      points[2 * (i * n + j)] = (float)i / (float)(n - 1);
      points[2 * (i * n + j) + 1] = (float)j / (float)(n - 1);
    }
  }
  TRY(descent_model_predict(model, points, (int64_t)n * n, 2, 2, u, 1, DESCENT_MEMORY_HOST));
  for (i = 0; i < n * n; ++i) {
    const double want = exact(points[2 * i], points[2 * i + 1]);
    err += (u[i] - want) * (u[i] - want);
    norm += want * want;
  }
  free(points);
  free(u);
  return sqrt(err / norm);
}

int main(int argc, char** argv) {
  const long steps = argc > 1 ? atol(argv[1]) : 4000;
  const int64_t interior = argc > 2 ? atoll(argv[2]) : 1024;
  const int64_t boundary = argc > 3 ? atoll(argv[3]) : 256;
  const int64_t widths[] = {2, 32, 32, 32, 1};
  unsigned long long rng = 1;
  descent_context* ctx;
  descent_model* model;
  descent_optimizer* opt;
  descent_jet* jet;
  float *xi, *fi, *xb, *ub;
  long step;
  int64_t i;
  double initial, error;
  if (steps < 1 || interior < 1 || boundary < 1) {
    fprintf(stderr, "usage: poisson_c [steps >= 1] [interior points >= 1] [boundary >= 1]\n");
    return 2;
  }
  xi = malloc(sizeof(float) * 2 * (size_t)interior);
  fi = malloc(sizeof(float) * (size_t)interior);
  xb = malloc(sizeof(float) * 2 * (size_t)boundary);
  ub = calloc((size_t)boundary, sizeof(float));
  if (xi == NULL || fi == NULL || xb == NULL || ub == NULL) {
    fprintf(stderr, "poisson_c: out of memory\n");
    return 1;
  }

  TRY(descent_context_create(descent_cuda_device_count() > 0 ? "cuda:0" : "cpu", 0, &ctx));
  TRY(descent_model_create(ctx, widths, 5, "tanh", 1, &model));
  TRY(descent_optimizer_create_adam(model, "adam", 2e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, "cosine",
                                    steps, 0.0f, &opt));
  /* Unit directions, all weights 1: the second-order sum is the Laplacian. */
  TRY(descent_jet_create(model, 0, NULL, NULL, 1, &jet));

  initial = error = relative_error(model, 101);
  printf("initial relative L2 error %.4f\n", initial);
  for (step = 1; step <= steps; ++step) {
    const int report = step % (steps / 4 > 0 ? steps / 4 : 1) == 0 || step == steps;
    double boundary_loss = 0.0, residual_loss = 0.0;
    for (i = 0; i < interior; ++i) {
      xi[2 * i] = uniform(&rng);
      xi[2 * i + 1] = uniform(&rng);
      fi[i] = (float)(2.0 * kPi * kPi * exact(xi[2 * i], xi[2 * i + 1]));
    }
    for (i = 0; i < boundary; ++i) { /* a random side, a random point on it */
      const float s = uniform(&rng);
      const int side = (int)(uniform(&rng) * 4.0f);
      xb[2 * i] = side < 2 ? s : (float)(side == 2);
      xb[2 * i + 1] = side < 2 ? (float)(side == 1) : s;
    }
    /* The boundary term writes the gradients; the residual r = c·Δu - f with c = -1 adds its
     * own (the jet forward pass, the residual and its backward pass in one call). Losses are
     * read back only when reported (a read waits for the device). */
    TRY(descent_model_mse_gradient(model, xb, boundary, 2, 2, ub, 1, DESCENT_MEMORY_HOST, 1.0f,
                                   report ? &boundary_loss : NULL));
    TRY(descent_jet_pde_residual_step(jet, xi, interior, 2, 2, 0.0f, NULL, -1.0f, NULL, fi, 1,
                                      DESCENT_MEMORY_HOST, 1.0f, 1,
                                      report ? &residual_loss : NULL));
    TRY(descent_optimizer_step(opt));
    if (report) {
      error = relative_error(model, 101);
      printf("step %5ld: residual %.3e, boundary %.3e, relative L2 error %.4f\n", step,
             residual_loss, boundary_loss, error);
    }
  }

  descent_jet_destroy(jet);
  descent_optimizer_destroy(opt);
  descent_model_destroy(model);
  descent_context_destroy(ctx);
  free(xi);
  free(fi);
  free(xb);
  free(ub);
  if (!(error < 0.5 * initial)) { /* a run that did not learn is a failure */
    fprintf(stderr, "poisson_c: the error did not halve (%.4f -> %.4f)\n", initial, error);
    return 3;
  }
  return 0;
}
