// Physics-informed training of three problems with known answers, Adam then L-BFGS (the usual
// schedule), full batch on fixed points:
//   poisson   −u'' = π² sin πx on [−1, 1], u(±1) = 0                    exact: sin πx
//   heat      u_t = 0.4 u_xx on [0, 1]², u(t, 0) = u(t, 1) = 0, u(0, x) = sin πx
//                                                                      exact: e^{−0.4π²t} sin πx
//   burgers   u_t + u u_x − (0.01/π) u_xx = 0, x ∈ [−1, 1], t ∈ [0, 1], u(0, x) = −sin πx,
//             u(t, ±1) = 0: the reference is the Cole–Hopf solution, its integrals evaluated by
//             quadrature in double precision here (no downloaded data)
// The loss is the mean square of the residual at the collocation points (a forward jet carries
// u, ∂_t u, ∂_x u and u_xx through the network; descent/jet.hpp) plus the mean squared error at
// the initial and boundary points. Burgers uses the published setup: 9 hidden layers of 20 tanh
// units, 100 initial/boundary points drawn from the error grid's, 10,000 collocation points.
//   pinn <poisson|heat|burgers> [--adam STEPS] [--lbfgs ITERATIONS] [--points N]
//        [--boundary N] [--sampling lhs|uniform] [--boundary-sampling grid|uniform] [--seed N]
//        [--lbfgs-precision float32|float64]
//        [--lbfgs-state FILE] [--require ERROR]
// prints the relative L2 error against the exact or reference solution on a grid and the wall
// time; fails (exit 3) when training did not lower the error or, with --require, when the final
// error is above ERROR. --seed N (0 by default) draws other initial weights and points.
// --lbfgs-precision float64 runs the L-BFGS phase in float64 on the CPU (JetF64 and LBfgsF64:
// the parameters, jets, losses, directions and line search; Adam stays float32), where float32's
// stalls at the rounding of its loss; the parameters are rounded back into the model at the end.
// --lbfgs-state FILE (float64 only) saves the float64 L-BFGS state (parameters, history, counts)
// to FILE after every step of up to 500 iterations; when FILE exists at the start, the run
// skips Adam and goes on from it for --lbfgs more iterations, bit for bit as if it had not
// stopped; a state saved for another problem, network, draw of points or seed is refused.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <descent/descent.hpp>
#include <descent/jet.hpp>
#include <filesystem>
#include <functional>
#include <memory>
#include <numbers>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr double kPi = std::numbers::pi;
constexpr double kBurgersNu = 0.01 / kPi;

// u(t, x) of Burgers' equation by the Cole–Hopf transformation:
//   u = −∫ sin π(x − η) F(x − η) G(η) dη / ∫ F(x − η) G(η) dη,
//   F(y) = exp(−cos(πy) / (2πν)),  G(η) = exp(−η² / (4νt)),
// with η = √(4νt) z, by the trapezoidal rule in z over [−12, 12] with `n` intervals (the
// integrands are smooth and e^{−z²} is below 1e-62 at the ends, so the rule converges
// geometrically; 2400 and 9600 intervals agree to 1e-12 on the error grid). The exponent is
// shifted by its bound 1 / (2πν) so nothing overflows.
double burgers_reference(double t, double x, int n = 2400) {
  if (t <= 0.0) return -std::sin(kPi * x);
  const double z_max = 12.0, h = 2.0 * z_max / n;
  const double scale = std::sqrt(4.0 * kBurgersNu * t), k = 1.0 / (2.0 * kPi * kBurgersNu);
  double num = 0.0, den = 0.0;
  for (int i = 0; i <= n; ++i) {
    const double z = -z_max + i * h;
    const double y = x - scale * z;
    const double w = std::exp(-k * std::cos(kPi * y) - k - z * z) * (i == 0 || i == n ? 0.5 : 1);
    num += std::sin(kPi * y) * w;
    den += w;
  }
  return -num / den;
}

struct Problem {
  const char* name;
  std::vector<std::int64_t> widths;
  std::vector<float> weights;  // c_k of the jet: which second derivative L is
  descent::PdeResidual residual;
  double t_max, x_min, x_max;                       // the domain (t unused for poisson: one input)
  std::function<double(double, double)> source;     // f(t, x)
  std::function<double(double, double)> condition;  // u on the boundary (and at t = 0)
  std::function<double(double, double)> solution;   // exact or reference u(t, x)
  std::int64_t points, boundary;                    // defaults
  int grid_t, grid_x;                               // where the error is measured
};

Problem make_problem(const std::string& name) {
  Problem p{};
  p.name = "";
  if (name == "poisson") {
    p.name = "poisson";
    p.widths = {1, 20, 20, 20, 1};
    p.weights = {1.0f};
    p.residual.c = -1.0f;  // −u'' − f
    p.t_max = 0.0;
    p.x_min = -1.0;
    p.x_max = 1.0;
    p.source = [](double, double x) { return kPi * kPi * std::sin(kPi * x); };
    p.condition = [](double, double) { return 0.0; };
    p.solution = [](double, double x) { return std::sin(kPi * x); };
    p.points = 256;
    p.boundary = 2;
    p.grid_t = 1;
    p.grid_x = 1001;
  } else if (name == "heat" || name == "burgers") {
    const bool burgers = name == "burgers";
    p.name = burgers ? "burgers" : "heat";
    p.widths = burgers ? std::vector<std::int64_t>{2, 20, 20, 20, 20, 20, 20, 20, 20, 20, 1}
                       : std::vector<std::int64_t>{2, 20, 20, 20, 1};
    p.weights = {0.0f, 1.0f};     // inputs (t, x): L = u_xx
    p.residual.b = {1.0f, 0.0f};  // u_t
    p.residual.c = burgers ? -float(kBurgersNu) : -0.4f;
    if (burgers) p.residual.d = {0.0f, 1.0f};  // u u_x
    p.t_max = 1.0;
    p.x_min = burgers ? -1.0 : 0.0;
    p.x_max = 1.0;
    p.source = [](double, double) { return 0.0; };
    if (burgers) {
      p.condition = [](double t, double x) { return t == 0.0 ? -std::sin(kPi * x) : 0.0; };
      p.solution = [](double t, double x) { return burgers_reference(t, x); };
      p.points = 10000;
      p.boundary = 100;
      p.grid_t = 100;
      p.grid_x = 256;
    } else {
      p.condition = [](double t, double x) { return t == 0.0 ? std::sin(kPi * x) : 0.0; };
      p.solution = [](double t, double x) {
        return std::exp(-0.4 * kPi * kPi * t) * std::sin(kPi * x);
      };
      p.points = 2000;
      p.boundary = 200;
      p.grid_t = 101;
      p.grid_x = 101;
    }
  }
  return p;
}

// The problem's inputs for (t, x): one column (x) for poisson, two (t, x) otherwise.
void push_point(const Problem& p, double t, double x, std::vector<double>& out) {
  if (p.widths.front() == 2) out.push_back(t);
  out.push_back(x);
}

std::vector<float> floats(const std::vector<double>& v) { return {v.begin(), v.end()}; }

double relative_error(const std::vector<double>& got, const std::vector<double>& want) {
  double err = 0.0, norm = 0.0;
  for (std::size_t r = 0; r < want.size(); ++r) {
    err += (got[r] - want[r]) * (got[r] - want[r]);
    norm += want[r] * want[r];
  }
  return std::sqrt(err / norm);
}

struct Grid {
  std::vector<double> inputs;
  std::vector<double> want;
  std::int64_t rows = 0;
};

Grid error_grid(const Problem& p) {
  Grid g;
  for (int i = 0; i < p.grid_t; ++i) {
    const double t = p.grid_t == 1 ? 0.0 : p.t_max * i / (p.grid_t - 1);
    for (int j = 0; j < p.grid_x; ++j) {
      const double x = p.x_min + (p.x_max - p.x_min) * j / (p.grid_x - 1);
      push_point(p, t, x, g.inputs);
      g.want.push_back(p.solution(t, x));
      ++g.rows;
    }
  }
  return g;
}

double relative_error(descent::Mlp& model, const descent::Context& ctx, const Grid& g) {
  const descent::Buffer<float> x(ctx, std::span<const float>(floats(g.inputs)));
  const std::vector<float> got =
      descent::to_host(ctx, model.forward(x.matrix(g.rows, model.inputs())).output);
  return relative_error(std::vector<double>(got.begin(), got.end()), g.want);
}

long number(const char* flag, const char* text) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || v < 0) {
    std::fprintf(stderr, "pinn: %s: expected a whole number >= 0, got '%s'\n", flag, text);
    std::exit(2);
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) try {
  using namespace descent;
  const char* usage =
      "usage: pinn <poisson|heat|burgers> [--adam STEPS] [--lbfgs ITERATIONS] [--points N] "
      "[--boundary N] [--sampling lhs|uniform] [--boundary-sampling grid|uniform] [--seed N] "
      "[--lbfgs-precision float32|float64] "
      "[--lbfgs-state FILE] [--require ERROR]\n";
  if (argc < 2) {
    std::fputs(usage, stderr);
    return 2;
  }
  const Problem p = make_problem(argv[1]);
  if (p.widths.empty()) {
    std::fprintf(stderr, "pinn: unknown problem '%s'\n%s", argv[1], usage);
    return 2;
  }
  long adam_steps = 2000, lbfgs_iterations = 5000;
  std::int64_t points = p.points, boundary = p.boundary;
  double require = INFINITY;
  bool latin_hypercube = false, lbfgs_f64 = false, boundary_grid = true;
  unsigned seed = 0;        // 0: the initial weights and points of the results in docs/pinn.md
  std::string lbfgs_state;  // --lbfgs-state
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "pinn: %s needs a value\n%s", argv[i], usage);
      return 2;
    }
    const char* value = argv[++i];
    if (flag == "--adam") {
      adam_steps = number("--adam", value);
    } else if (flag == "--lbfgs") {
      lbfgs_iterations = number("--lbfgs", value);
    } else if (flag == "--seed") {
      seed = static_cast<unsigned>(number("--seed", value));
    } else if (flag == "--points") {
      points = std::max(1L, number("--points", value));
    } else if (flag == "--boundary") {
      boundary = std::max(2L, number("--boundary", value));
    } else if (flag == "--sampling") {
      if (std::strcmp(value, "lhs") != 0 && std::strcmp(value, "uniform") != 0) {
        std::fprintf(stderr, "pinn: --sampling: expected lhs or uniform, got '%s'\n", value);
        return 2;
      }
      latin_hypercube = std::strcmp(value, "lhs") == 0;
    } else if (flag == "--boundary-sampling") {
      if (std::strcmp(value, "grid") != 0 && std::strcmp(value, "uniform") != 0) {
        std::fprintf(stderr, "pinn: --boundary-sampling: expected grid or uniform, got '%s'\n",
                     value);
        return 2;
      }
      boundary_grid = std::strcmp(value, "grid") == 0;
    } else if (flag == "--lbfgs-precision") {
      if (std::strcmp(value, "float32") != 0 && std::strcmp(value, "float64") != 0) {
        std::fprintf(stderr, "pinn: --lbfgs-precision: expected float32 or float64, got '%s'\n",
                     value);
        return 2;
      }
      lbfgs_f64 = std::strcmp(value, "float64") == 0;
    } else if (flag == "--lbfgs-state") {
      lbfgs_state = value;
    } else if (flag == "--require") {
      char* end = nullptr;
      require = std::strtod(value, &end);
      if (*end != '\0' || !(require > 0)) {
        std::fprintf(stderr, "pinn: --require: expected a number > 0, got '%s'\n", value);
        return 2;
      }
    } else {
      std::fprintf(stderr, "pinn: unknown option '%s'\n%s", argv[i - 1], usage);
      return 2;
    }
  }

  if (!lbfgs_state.empty() && !lbfgs_f64) {
    std::fprintf(stderr, "pinn: --lbfgs-state needs --lbfgs-precision float64\n");
    return 2;
  }
  const bool resume =
      !lbfgs_state.empty() && lbfgs_iterations > 0 && std::filesystem::exists(lbfgs_state);
  if (resume) adam_steps = 0;  // the parameters come from the state

  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress lines as they come, into a file too
  Context ctx(cuda_device_count() > 0 ? Device::cuda(0) : Device::cpu());
  Mlp model(ctx, p.widths, Activation::tanh);
  model.init(Init::xavier, 1234 + seed);
  const std::int64_t in = model.inputs();

  // Fixed points (full batch). The collocation points are drawn independently (uniform);
  // --sampling lhs makes them a Latin hypercube: each coordinate's range cut into `points` equal
  // strata, one point in each, the strata of t and x paired at random. The initial and boundary
  // points of a time-dependent problem are, as the published Burgers code draws them, `boundary`
  // of the error grid's points at t = 0 and on x = x_min and x = x_max, drawn without
  // replacement (--boundary-sampling grid, the default: for Burgers 256 of the 456 lie at t = 0,
  // so the initial condition gets more than half of the points); --boundary-sampling uniform
  // puts them on x = x_min, x = x_max and t = 0 in turn, uniform along each (poisson: its two
  // end points, either way).
  std::mt19937_64 rng(42 + seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::vector<double> xf, ff, xb, ub;  // float64 (the float32 path rounds them)
  std::vector<std::int64_t> strata(static_cast<std::size_t>(points));
  for (std::int64_t i = 0; i < points; ++i) strata[static_cast<std::size_t>(i)] = i;
  if (latin_hypercube) std::shuffle(strata.begin(), strata.end(), rng);  // (uniform: as before)
  for (std::int64_t i = 0; i < points; ++i) {
    double u = unit(rng), v = unit(rng);
    if (latin_hypercube) {
      u = (double(i) + u) / double(points);
      v = (double(strata[static_cast<std::size_t>(i)]) + v) / double(points);
    }
    const double t = p.t_max * u, x = p.x_min + (p.x_max - p.x_min) * v;
    push_point(p, t, x, xf);
    ff.push_back(p.source(t, x));
  }
  if (boundary_grid && in == 2) {
    std::vector<std::pair<double, double>> pool;  // (t, x)
    for (int j = 0; j < p.grid_x; ++j)
      pool.emplace_back(0.0, p.x_min + (p.x_max - p.x_min) * j / (p.grid_x - 1));
    for (const double x : {p.x_min, p.x_max})
      for (int i = 0; i < p.grid_t; ++i) pool.emplace_back(p.t_max * i / (p.grid_t - 1), x);
    if (boundary > std::int64_t(pool.size())) {
      std::fprintf(stderr,
                   "pinn: --boundary %lld: the grid has %zu initial and boundary points to draw "
                   "from (--boundary-sampling uniform draws any number)\n",
                   static_cast<long long>(boundary), pool.size());
      return 2;
    }
    std::shuffle(pool.begin(), pool.end(), rng);
    for (std::int64_t i = 0; i < boundary; ++i) {
      const auto [t, x] = pool[static_cast<std::size_t>(i)];
      push_point(p, t, x, xb);
      ub.push_back(p.condition(t, x));
    }
  } else {
    for (std::int64_t i = 0; i < boundary; ++i) {
      const int side = in == 1 ? int(i % 2) : int(i % 3);  // 0: x_min, 1: x_max, 2: t = 0
      const double t = side == 2 ? 0.0 : p.t_max * unit(rng);
      const double x = side == 0   ? p.x_min
                       : side == 1 ? p.x_max
                                   : p.x_min + (p.x_max - p.x_min) * unit(rng);
      push_point(p, t, x, xb);
      ub.push_back(p.condition(t, x));
    }
  }
  const Buffer<float> xf_d(ctx, std::span<const float>(floats(xf)));
  const Buffer<float> ff_d(ctx, std::span<const float>(floats(ff)));
  const Buffer<float> xb_d(ctx, std::span<const float>(floats(xb)));
  const Buffer<float> ub_d(ctx, std::span<const float>(floats(ub)));
  Buffer<float> loss(ctx, 2);  // [0]: the residual's mean square, [1]: the boundary's MSE
  JetOptions jet_options;
  jet_options.weights = p.weights;
  Jet jet(model, jet_options);

  // One evaluation: the loss and its gradient in model.grads().
  const auto evaluate = [&]() -> float {
    const ForwardPass pass = model.forward(xb_d.matrix(boundary, in));
    LossOutput boundary_loss;
    boundary_loss.loss = VectorView<float>(loss.data() + 1, 1, ctx.device());
    boundary_loss.grad = pass.output_grad;
    mse_loss(ctx, pass.output, ub_d.matrix(boundary, 1), boundary_loss);
    model.backward(pass);  // overwrites the gradients
    // The residual's loss, its gradients added to them.
    pde_residual_step(model, xf_d.matrix(points, in), jet, p.residual, ff_d.matrix(points, 1),
                      VectorView<float>(loss.data(), 1, ctx.device()));
    const std::vector<float> l = loss.to_host(ctx);
    return l[0] + l[1];
  };

  const Grid grid = error_grid(p);
  std::printf("%s on %s: network %s, %lld collocation and %lld boundary points", p.name,
              ctx.device().str().c_str(), model.describe().c_str(), static_cast<long long>(points),
              static_cast<long long>(boundary));
  if (in == 2) {
    std::int64_t initial_points = 0;  // those at t = 0 (the row's first input)
    for (std::int64_t i = 0; i < boundary; ++i) initial_points += xb[std::size_t(2 * i)] == 0.0;
    std::printf(" (%lld at t = 0, drawn %s)", static_cast<long long>(initial_points),
                boundary_grid ? "from the grid" : "uniformly");
  }
  std::printf("\n");
  const double initial = relative_error(model, ctx, grid);
  std::printf("initial relative L2 error %.3e\n", initial);
  const auto start = std::chrono::steady_clock::now();
  const auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };

  if (adam_steps > 0) {
    AdamOptions o;
    o.lr = 1e-3f;
    Adam adam(model, o);
    float l = 0.0f;
    double step_seconds = 0.0;  // the steps alone, the error reports left out
    for (long s = 1; s <= adam_steps; ++s) {
      const auto step_start = std::chrono::steady_clock::now();
      l = evaluate();  // reads the loss back: the step's work is done when it returns
      adam.step();
      step_seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count();
      if (s % std::max(1L, adam_steps / 4) == 0 || s == adam_steps) {
        std::printf("adam  %6ld steps: loss %.3e, error %.3e, %.1f s\n", s, double(l),
                    relative_error(model, ctx, grid), seconds());
      }
    }
    // The matrix products of a step: the jet's stacked rows (value, K derivative blocks, the
    // second-order block) forward, their weight and input gradients backward (no input gradient
    // for the first layer), and the same for the boundary points' forward and backward pass.
    const double jet_rows = double(points) * double(2 + jet.directions());
    double flop = 0.0;
    for (std::size_t l = 0; l + 1 < p.widths.size(); ++l) {
      const double mn = double(p.widths[l]) * double(p.widths[l + 1]);
      flop += 2.0 * (jet_rows + double(boundary)) * mn * (l == 0 ? 2.0 : 3.0);
    }
    const double per_step = step_seconds / double(adam_steps);
    std::printf("adam: %.3f ms a step, %.1f GFLOP/s in its matrix products (%.1f MFLOP a step)\n",
                1e3 * per_step, flop / per_step * 1e-9, flop * 1e-6);
  }
  if (lbfgs_iterations > 0 && lbfgs_f64) {
    LbfgsOptions o;
    o.strong_wolfe = true;
    o.history_size = 50;
    o.max_iter = int(std::min(lbfgs_iterations, 500L));
    o.max_eval = o.max_iter * 2;
    o.tolerance_grad = 0.0f;  // only the budget, or a line search that finds nothing, stops it
    o.tolerance_change = 0.0f;
    // The same loss in float64: the residual at the collocation points plus the boundary's MSE.
    const JetF64 jet64(model, jet_options);
    std::vector<double> params = params_f64(model);
    const LBfgsF64::Closure evaluate64 = [&](std::span<const double> q, std::span<double> g) {
      return jet64.mse_step(q, xb, ub, g, 1.0, false) +
             jet64.pde_residual_step(q, xf, p.residual, ff, g);
    };
    std::vector<double> scratch(params.size());
    const auto error64 = [&] {
      return relative_error(jet64.predict(params, grid.inputs), grid.want);
    };
    // What the state file is for: a state of another problem, draw or network is refused.
    std::string problem = std::string("pinn ") + argv[1] + ", widths";
    for (const std::int64_t w : p.widths) problem += " " + std::to_string(w);
    problem += ", --points " + std::to_string(points) + " --sampling " +
               (latin_hypercube ? "lhs" : "uniform") + " --boundary " + std::to_string(boundary) +
               " --boundary-sampling " + (boundary_grid ? "grid" : "uniform") + " --seed " +
               std::to_string(seed) + ", history_size " + std::to_string(o.history_size);
    const auto fresh_lbfgs = [&] {
      auto opt = std::make_unique<LBfgsF64>(o);
      opt->set_problem(problem);
      return opt;
    };
    auto lbfgs = fresh_lbfgs();
    if (resume) {
      lbfgs->load(lbfgs_state, params);
      std::printf("lbfgs: going on from '%s' (%lld iterations in it)\n", lbfgs_state.c_str(),
                  static_cast<long long>(lbfgs->iterations()));
    }
    std::int64_t done = 0;
    int stalls = 0;
    while (done < lbfgs_iterations && stalls < 3) {
      const std::int64_t before = lbfgs->iterations();
      lbfgs->step(params, evaluate64);
      done += lbfgs->iterations() - before;
      std::printf("lbfgs %6lld iterations (float64): loss %.3e, error %.3e, %.1f s (stopped: %s)\n",
                  static_cast<long long>(done), evaluate64(params, scratch), error64(), seconds(),
                  lbfgs->stop_reason().c_str());
      if (lbfgs->stop_reason() != "max_iter" && lbfgs->stop_reason() != "max_eval") {
        stalls = lbfgs->iterations() - before < 10 ? stalls + 1 : 1;
        lbfgs = fresh_lbfgs();
      } else {
        stalls = 0;
      }
      // What the next step starts from (after a stall, the fresh optimizer): a run that goes on
      // from the file takes the steps this one takes next (its count of stalls starts over).
      if (!lbfgs_state.empty()) lbfgs->save(lbfgs_state, params);
    }
    std::printf("float64 network: relative L2 error %.3e, loss %.17g\n", error64(),
                evaluate64(params, scratch));
    params_from_f64(model, params);  // the float32 model, rounded: what the error below measures
  } else if (lbfgs_iterations > 0) {
    LbfgsOptions o;
    o.strong_wolfe = true;
    o.history_size = 50;
    o.max_iter = int(std::min(lbfgs_iterations, 500L));
    o.max_eval = o.max_iter * 2;  // room for the line search: the iterations are the budget
    o.tolerance_grad = 1e-9f;
    o.tolerance_change = 0.0f;  // stop on the budget, not on a loss that moves little
    // A step that stops early (its line search found no decrease along the L-BFGS direction)
    // starts over from a fresh history, which begins along the gradient; three such restarts in
    // a row without 10 iterations between them end the run.
    auto lbfgs = std::make_unique<LBfgs>(model, o);
    std::int64_t done = 0;
    int stalls = 0;
    while (done < lbfgs_iterations && stalls < 3) {
      const std::int64_t before = lbfgs->iterations();
      lbfgs->step(evaluate);
      done += lbfgs->iterations() - before;
      std::printf("lbfgs %6lld iterations: loss %.3e, error %.3e, %.1f s (stopped: %s)\n",
                  static_cast<long long>(done), double(evaluate()),
                  relative_error(model, ctx, grid), seconds(), lbfgs->stop_reason().c_str());
      if (lbfgs->stop_reason() != "max_iter" && lbfgs->stop_reason() != "max_eval") {
        stalls = lbfgs->iterations() - before < 10 ? stalls + 1 : 1;
        lbfgs = std::make_unique<LBfgs>(model, o);
      } else {
        stalls = 0;
      }
    }
  }
  const double error = relative_error(model, ctx, grid);
  std::printf("final relative L2 error %.3e after %.1f s\n", error, seconds());
  if (!(error <= require)) {
    std::fprintf(stderr, "pinn: %s: the error %.3e is above the required %.3e\n", p.name, error,
                 require);
    return 3;
  }
  if (!(error < initial) && (adam_steps > 0 || lbfgs_iterations > 0)) {
    std::fprintf(stderr,
                 "pinn: %s: training did not lower the error (%.3e at the start, %.3e now)\n",
                 p.name, initial, error);
    return 3;
  }
  return 0;
} catch (const descent::Error& e) {
  std::fprintf(stderr, "pinn: %s\n", e.what());
  return 1;
}
