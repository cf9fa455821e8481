// Solves Poisson's equation −Δu = f on the unit square with u = 0 on its boundary by training a
// network on the equation itself (physics-informed): at random interior points a forward jet
// (descent/jet.hpp) carries the network's Laplacian through the layers with its value, the
// residual −Δu − f gives its loss and adjoints in one more pass, and one backward pass puts the
// parameter gradients through both into the model's gradient buffer, next to those of the
// boundary term (an ordinary mean squared error). f = 2π² sin(πx) sin(πy), whose solution
// u = sin(πx) sin(πy) the trained network is compared with on a 101 × 101 grid.
//   poisson [steps] [interior points per step] [boundary points per step]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <descent/descent.hpp>
#include <descent/jet.hpp>
#include <numbers>
#include <random>
#include <vector>

namespace {

constexpr double kPi = std::numbers::pi;

double exact(double x, double y) { return std::sin(kPi * x) * std::sin(kPi * y); }

// The relative L2 error of the network against the exact solution on an n × n grid.
double relative_error(descent::Mlp& model, const descent::Context& ctx, int n) {
  std::vector<float> points;
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      points.push_back(float(i) / float(n - 1));
      points.push_back(float(j) / float(n - 1));
    }
  }
  const descent::Buffer<float> x(ctx, std::span<const float>(points));
  const std::int64_t rows = std::int64_t(n) * n;
  const std::vector<float> got = descent::to_host(ctx, model.forward(x.matrix(rows, 2)).output);
  double err = 0.0, norm = 0.0;
  for (std::int64_t r = 0; r < rows; ++r) {
    const double want = exact(points[2 * r], points[2 * r + 1]);
    err += (got[static_cast<std::size_t>(r)] - want) * (got[static_cast<std::size_t>(r)] - want);
    norm += want * want;
  }
  return std::sqrt(err / norm);
}

}  // namespace

int main(int argc, char** argv) try {
  using namespace descent;
  const long steps = argc > 1 ? std::atol(argv[1]) : 4000;
  const std::int64_t interior = argc > 2 ? std::atoll(argv[2]) : 1024;
  const std::int64_t boundary = argc > 3 ? std::atoll(argv[3]) : 256;
  if (steps < 1 || interior < 1 || boundary < 1) {
    std::fprintf(stderr, "usage: poisson [steps >= 1] [interior points >= 1] [boundary >= 1]\n");
    return 2;
  }

  Context ctx(cuda_device_count() > 0 ? Device::cuda(0) : Device::cpu());
  Mlp model(ctx, {2, 32, 32, 32, 1}, Activation::tanh);
  Adam adam(model, {.lr = 2e-3f}, LrSchedule::cosine(steps));
  Jet jet(model, {});   // unit directions: L is the Laplacian Δu
  PdeResidual poisson;  // r = a·u + Σ b_k ∂_k u + c·Δu + Σ d_k u ∂_k u − f
  poisson.c = -1.0f;    // r = −Δu − f

  Buffer<float> xi(ctx, interior * 2), fi(ctx, interior), xb(ctx, boundary * 2);
  const Buffer<float> ub(ctx, std::span<const float>(std::vector<float>(boundary, 0.0f)));
  Buffer<float> loss(ctx, 2);  // [0]: the residual's mean square, [1]: the boundary's
  std::vector<float> hxi(interior * 2), hfi(interior), hxb(boundary * 2);
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);

  std::printf(
      "Poisson on the unit square, %s: %ld steps of %lld interior and %lld boundary "
      "points\n",
      ctx.device().str().c_str(), steps, static_cast<long long>(interior),
      static_cast<long long>(boundary));
  const double initial = relative_error(model, ctx, 101);
  std::printf("initial relative L2 error %.4f\n", initial);
  double error = initial;
  double seconds = 0.0;  // the steps' own time, points drawn included, reports left out
  auto start = std::chrono::steady_clock::now();
  for (long step = 1; step <= steps; ++step) {
    for (std::int64_t i = 0; i < interior; ++i) {
      hxi[2 * i] = unit(rng);
      hxi[2 * i + 1] = unit(rng);
      hfi[i] = float(2.0 * kPi * kPi * exact(hxi[2 * i], hxi[2 * i + 1]));
    }
    for (std::int64_t i = 0; i < boundary; ++i) {  // a random side, a random point on it
      const float s = unit(rng), side = float(rng() % 4);
      hxb[2 * i] = side < 2 ? s : float(side == 2);
      hxb[2 * i + 1] = side < 2 ? float(side == 1) : s;
    }
    xi.copy_from_host(ctx, hxi);
    fi.copy_from_host(ctx, hfi);
    xb.copy_from_host(ctx, hxb);

    // The boundary term: its gradients overwrite the model's.
    const ForwardPass pass = model.forward(xb.matrix(boundary, 2));
    mse_loss(
        ctx, pass.output, ub.matrix(boundary, 1),
        {.loss = VectorView<float>(loss.data() + 1, 1, ctx.device()), .grad = pass.output_grad});
    model.backward(pass);
    // The residual at the interior points, in one call (jet_forward, pde_residual_loss and
    // jet_backward): its gradients are added to them.
    pde_residual_step(model, xi.matrix(interior, 2), jet, poisson, fi.matrix(interior, 1),
                      VectorView<float>(loss.data(), 1, ctx.device()));
    adam.step();

    if (step % (steps / 8 > 0 ? steps / 8 : 1) == 0 || step == steps) {
      const std::vector<float> l = loss.to_host(ctx);  // waits for the steps queued so far
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      error = relative_error(model, ctx, 101);
      std::printf("step %5ld: residual %.3e, boundary %.3e, relative L2 error %.4f\n", step,
                  double(l[0]), double(l[1]), error);
      start = std::chrono::steady_clock::now();
    }
  }
  std::printf("%.1f steps per second (%.3f ms a step)\n", double(steps) / seconds,
              1e3 * seconds / double(steps));
  if (!(error < 0.5 * initial)) {  // a run that did not learn is a failure (and a failing test)
    std::fprintf(stderr, "poisson: the error did not halve (%.4f -> %.4f)\n", initial, error);
    return 3;
  }
  return 0;
} catch (const descent::Error& e) {
  std::fprintf(stderr, "poisson: %s\n", e.what());
  return 1;
}
