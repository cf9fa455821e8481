// The float64 jets (JetF64, descent/jet.hpp) and L-BFGS over float64 parameters (LBfgsF64):
// every loss against the float64 Taylor-series oracle to float64 accuracy, every gradient
// against float64 central differences of it, the bits on any thread count, the refusals, and
// an L-BFGS run that ends where float32 cannot.
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <span>
#include <stdexcept>

#include "descent/descent.h"
#include "descent/jet.hpp"
#include "descent/optimizer.hpp"
#include "kernels/math/jet.hpp"
#include "oracle/jet_oracle.hpp"
#include "test_support.hpp"
#include "train_support.hpp"

namespace descent::test {
namespace {

using oracle::Mat;

// A problem: random float64 parameters (not floats: the test must see float64 arithmetic), the
// oracle's twin network, points, directions and a residual.
struct Problem {
  std::vector<std::int64_t> widths;
  std::vector<JetActivation> acts;
  std::vector<double> params;
  oracle::JetNet net;
  std::int64_t batch = 0;
  std::vector<double> x, f;
  std::vector<float> directions, weights;
  PdeResidual residual;
};

std::vector<double> random_doubles(std::mt19937_64& rng, std::size_t n, double lo, double hi) {
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(n);
  for (double& e : v) e = u(rng);
  return v;
}

Problem make_problem(std::mt19937_64& rng, std::vector<std::int64_t> widths, JetActivation act,
                     int k, std::int64_t batch) {
  Problem p;
  p.widths = std::move(widths);
  p.acts.assign(p.widths.size() - 1, act);
  p.acts.back() = JetActivation::identity;
  p.net.act = p.acts;
  for (std::size_t l = 0; l + 1 < p.widths.size(); ++l) {
    const std::int64_t in = p.widths[l], out = p.widths[l + 1];
    const double s = 1.6 / std::sqrt(double(in));
    const std::vector<double> w = random_doubles(rng, std::size_t(out * in), -s, s);
    const std::vector<double> b = random_doubles(rng, std::size_t(out), -0.4, 0.4);
    p.params.insert(p.params.end(), w.begin(), w.end());
    p.params.insert(p.params.end(), b.begin(), b.end());
    Mat wm(out, in);
    wm.v = w;
    p.net.w.push_back(wm);
    p.net.b.push_back(b);
  }
  const std::int64_t in = p.widths.front(), out = p.widths.back();
  p.batch = batch;
  p.x = random_doubles(rng, std::size_t(batch * in), -1.0, 1.0);
  p.f = random_doubles(rng, std::size_t(batch * out), -0.5, 0.5);
  p.directions = random_floats(rng, k * in);
  p.weights = random_floats(rng, k, 0.2f, 1.5f);
  if (k >= 2) p.weights[1] = -p.weights[1];
  p.residual.a = 0.3f;
  p.residual.c = -0.7f;
  p.residual.b = random_floats(rng, k);
  p.residual.d = random_floats(rng, k);
  return p;
}

Mlp model_of(const Problem& p) { return Mlp(Context(Device::cpu()), p.widths, Activation::tanh); }

JetOptions options_of(const Problem& p) {
  JetOptions o;
  o.directions = p.directions;
  o.weights = p.weights;
  o.activations = p.acts;
  return o;
}

// The oracle's residual loss: mean over points × outputs of r².
double oracle_residual(const Problem& p) {
  const int k = static_cast<int>(p.weights.size());
  const Mat x = [&] {
    Mat m(p.batch, p.widths.front());
    m.v = p.x;
    return m;
  }();
  const Mat dirs = to_mat(p.directions, k, p.widths.front());
  oracle::Vec c(p.weights.begin(), p.weights.end());
  const oracle::JetResult r = oracle::jet_forward(p.net, x, dirs, c);
  double sum = 0.0;
  for (std::size_t i = 0; i < r.u.v.size(); ++i) {
    const double u = r.u.v[i];
    double res = double(p.residual.a) * u + double(p.residual.c) * r.second.v[i] - p.f[i];
    for (int j = 0; j < k; ++j) {
      res += (double(p.residual.b[j]) + double(p.residual.d[j]) * u) * r.du[j].v[i];
    }
    sum += res * res;
  }
  return sum / double(r.u.v.size());
}

// The oracle's parameters in the flat layout.
std::vector<double*> flat(oracle::JetNet& net) {
  std::vector<double*> q;
  for (std::size_t l = 0; l < net.w.size(); ++l) {
    for (double& v : net.w[l].v) q.push_back(&v);
    for (double& v : net.b[l]) q.push_back(&v);
  }
  return q;
}

// Central differences with a step of 1e-6 (float64 throughout: the truncation error, ~1e-12 of
// the third derivative, and the rounding, ~1e-10, are both far below the tolerances).
std::vector<double> central_differences(Problem& p, const std::function<double()>& loss) {
  std::vector<double> g;
  for (double* q : flat(p.net)) {
    const double saved = *q, h = 1e-6;
    *q = saved + h;
    const double up = loss();
    *q = saved - h;
    const double down = loss();
    *q = saved;
    g.push_back((up - down) / (2.0 * h));
  }
  return g;
}

TEST(JetF64, ResidualLossAndGradientMatchTheOracleInFloat64) {
  std::mt19937_64 rng(64);
  constexpr JetActivation kSmooth[] = {JetActivation::tanh, JetActivation::sigmoid,
                                       JetActivation::gelu, JetActivation::softplus,
                                       JetActivation::silu};
  for (JetActivation act : kSmooth) {
    for (int k = 1; k <= 3; ++k) {
      // 301 points: more than one task (256) and a partial slice.
      Problem p = make_problem(rng, {3, 7, 5, 2}, act, k, k == 2 ? 301 : 37);
      SCOPED_TRACE(cat(to_string(act), ", K = ", k, ", batch ", p.batch));
      const JetF64 jet(model_of(p), options_of(p));
      std::vector<double> grad(p.params.size(), 1.0);
      const double loss = jet.pde_residual_step(p.params, p.x, p.residual, p.f, grad, 0.5);
      EXPECT_TRUE(close_to(loss, 0.5 * oracle_residual(p), 1e-12)) << "loss";
      std::vector<double> want = central_differences(p, [&] { return oracle_residual(p); });
      for (double& w : want) w = 1.0 + 0.5 * w;  // accumulated onto ones
      EXPECT_TRUE(close_to(grad, want, 1e-8)) << "parameter gradients";
    }
  }
}

TEST(JetF64, MseStepAndPredictMatchTheOracle) {
  std::mt19937_64 rng(65);
  Problem p = make_problem(rng, {2, 9, 9, 3}, JetActivation::tanh, 1, 70);
  const JetF64 jet(model_of(p), options_of(p));
  Mat x(p.batch, 2);
  x.v = p.x;
  const oracle::JetResult r = oracle::jet_forward(p.net, x, to_mat({1.0f, 0.0f}, 1, 2), {1.0});
  EXPECT_TRUE(close_to(jet.predict(p.params, p.x), r.u.v, 1e-13)) << "u";
  const auto mse = [&] {
    const oracle::JetResult s = oracle::jet_forward(p.net, x, to_mat({1.0f, 0.0f}, 1, 2), {1.0});
    double sum = 0.0;
    for (std::size_t i = 0; i < s.u.v.size(); ++i) sum += (s.u.v[i] - p.f[i]) * (s.u.v[i] - p.f[i]);
    return sum / double(s.u.v.size());
  };
  std::vector<double> grad(p.params.size(), 0.0);
  const double loss = jet.mse_step(p.params, p.x, p.f, grad, 2.0, false);
  EXPECT_TRUE(close_to(loss, 2.0 * mse(), 1e-12));
  std::vector<double> want = central_differences(p, mse);
  for (double& w : want) w *= 2.0;
  EXPECT_TRUE(close_to(grad, want, 1e-8));
}

// The float32 path resolves the same loss to ~1e-6 of it, the float64 one to ~1e-15: a loss
// that moves by 1e-9 between two parameter vectors is seen by one and not the other.
TEST(JetF64, ResolvesChangesBelowFloat32Rounding) {
  std::mt19937_64 rng(66);
  Problem p = make_problem(rng, {2, 20, 20, 1}, JetActivation::tanh, 2, 500);
  const JetF64 jet(model_of(p), options_of(p));
  std::vector<double> grad(p.params.size());
  const double base = jet.pde_residual_step(p.params, p.x, p.residual, p.f, grad, 1.0, false);
  std::vector<double> moved = p.params;
  for (std::size_t i = 0; i < moved.size(); ++i) moved[i] -= 1e-9 * grad[i];
  const double after = jet.pde_residual_step(moved, p.x, p.residual, p.f, grad, 1.0, false);
  double g2 = 0.0;
  for (double g : grad) g2 += g * g;
  // A step of 1e-9 along −g lowers the loss by about 1e-9 |g|².
  EXPECT_LT(after, base);
  EXPECT_NEAR((base - after) / (1e-9 * g2), 1.0, 1e-3);
}

void check_threads(const Problem& p);

// 1100 points: 5 tasks of 256; 20,000: 63 tasks of 320 (a 64th of the batch, whole slices).
TEST(JetF64, TheSameBitsOnAnyNumberOfThreads) {
  for (std::int64_t batch : {1100, 20000}) {
    SCOPED_TRACE(cat("batch ", batch));
    std::mt19937_64 rng(67);
    check_threads(make_problem(rng, {2, 20, 20, 1}, JetActivation::tanh, 2, batch));
  }
}

void check_threads(const Problem& p) {
  std::vector<std::vector<double>> grads;
  std::vector<double> losses;
  for (int threads : {1, 2, 3}) {
    ContextOptions o;
    o.threads = threads;
    Mlp model(Context(Device::cpu(), o), p.widths, Activation::tanh);
    const JetF64 jet(model, options_of(p));
    grads.emplace_back(p.params.size());
    losses.push_back(
        jet.pde_residual_step(p.params, p.x, p.residual, p.f, grads.back(), 1.0, false));
  }
  for (std::size_t i = 1; i < grads.size(); ++i) {
    EXPECT_EQ(losses[i], losses[0]);
    EXPECT_EQ(grads[i], grads[0]);
  }
}

TEST(JetF64, ParamsGoBetweenTheModelAndFloat64) {
  std::mt19937_64 rng(68);
  Mlp model(Context(Device::cpu()), {2, 5, 1}, Activation::tanh);
  const std::vector<float> start = random_floats(rng, model.parameter_count());
  model.params_from_host(start);
  const std::vector<double> p = params_f64(model);
  EXPECT_EQ(std::vector<float>(p.begin(), p.end()), start);
  std::vector<double> q = p;
  q[3] = 0.1;  // not a float: rounded to the nearest one
  params_from_f64(model, q);
  EXPECT_EQ(model.params_to_host()[3], 0.1f);
  q[4] = 1e300;  // finite, but not as a float
  EXPECT_THROW_THAT(params_from_f64(model, q), ArgumentError, ::testing::HasSubstr("value 4"));
  EXPECT_EQ(model.params_to_host()[4], start[4]) << "a refused call changes nothing";
  q.pop_back();
  EXPECT_THROW_THAT(params_from_f64(model, q), ArgumentError,
                    ::testing::HasSubstr("expected the model's 21"));
}

TEST(JetF64, RefusesBadArgumentsAndChangesNothing) {
  std::mt19937_64 rng(69);
  Problem p = make_problem(rng, {2, 6, 1}, JetActivation::tanh, 2, 10);
  const Mlp model = model_of(p);
  const JetF64 jet(model, options_of(p));
  std::vector<double> grad(p.params.size(), 7.0);
  const auto untouched = [&] {
    return std::all_of(grad.begin(), grad.end(), [](double g) { return g == 7.0; });
  };
  std::vector<double> short_params(p.params.begin(), p.params.end() - 1);
  EXPECT_THROW_THAT(jet.pde_residual_step(short_params, p.x, p.residual, p.f, grad), ArgumentError,
                    ::testing::HasSubstr("params: holds 24 values, expected the model's 25"));
  std::vector<double> odd_x(p.x.begin(), p.x.end() - 1);
  EXPECT_THROW_THAT(jet.pde_residual_step(p.params, odd_x, p.residual, p.f, grad), ArgumentError,
                    ::testing::HasSubstr("x: holds 19 values"));
  EXPECT_THROW_THAT(jet.pde_residual_step(p.params, {}, p.residual, p.f, grad), ArgumentError,
                    ::testing::HasSubstr("at least one row"));
  std::vector<double> short_f(p.f.begin(), p.f.end() - 1);
  EXPECT_THROW_THAT(jet.pde_residual_step(p.params, p.x, p.residual, short_f, grad), ArgumentError,
                    ::testing::HasSubstr("source: holds 9 values"));
  std::vector<double> short_grad(grad.begin(), grad.end() - 1);
  EXPECT_THROW_THAT(jet.pde_residual_step(p.params, p.x, p.residual, p.f, short_grad),
                    ArgumentError, ::testing::HasSubstr("grad: holds 24 values"));
  std::vector<double> bad_x = p.x;
  bad_x[5] = std::nan("");
  EXPECT_THROW_THAT(jet.pde_residual_step(p.params, bad_x, p.residual, p.f, grad), ArgumentError,
                    ::testing::HasSubstr("x: value 5 is nan"));
  std::vector<double> bad_params = p.params;
  bad_params[2] = INFINITY;
  EXPECT_THROW_THAT(jet.pde_residual_step(bad_params, p.x, p.residual, p.f, grad), ArgumentError,
                    ::testing::HasSubstr("params: value 2 is inf"));
  EXPECT_THROW_THAT(jet.pde_residual_step(p.params, p.x, p.residual, p.f, grad, INFINITY),
                    ArgumentError, ::testing::HasSubstr("weight: must be finite"));
  PdeResidual wrong = p.residual;
  wrong.b.push_back(1.0f);
  EXPECT_THROW_THAT(jet.pde_residual_step(p.params, p.x, wrong, p.f, grad), ArgumentError,
                    ::testing::HasSubstr("b: holds 3 floats, expected one per direction (K = 2)"));
  EXPECT_THROW_THAT(jet.mse_step(p.params, p.x, {}, grad), ArgumentError,
                    ::testing::HasSubstr("target: is empty"));
  EXPECT_TRUE(untouched()) << "a refused call changed the gradient";

  JetOptions first = options_of(p);
  first.second_order = false;
  const JetF64 first_order(model, first);
  EXPECT_THROW_THAT(first_order.pde_residual_step(p.params, p.x, p.residual, p.f, grad),
                    ArgumentError, ::testing::HasSubstr("no second-order block"));
  JetOptions relu = options_of(p);
  relu.activations[0] = JetActivation::relu;
  EXPECT_THROW_THAT(JetF64(model, relu), ArgumentError, ::testing::HasSubstr("relu"));
}

// ---------------------------------------------------------------- LBfgsF64

// The Rosenbrock function in n dimensions and its gradient.
double rosenbrock(std::span<const double> x, std::span<double> g) {
  double f = 0.0;
  std::fill(g.begin(), g.end(), 0.0);
  for (std::size_t i = 0; i + 1 < x.size(); ++i) {
    const double a = x[i + 1] - x[i] * x[i], b = 1.0 - x[i];
    f += 100.0 * a * a + b * b;
    g[i] += -400.0 * a * x[i] - 2.0 * b;
    g[i + 1] += 200.0 * a;
  }
  return f;
}

TEST(LBfgsF64, ReachesTheMinimumToFloat64Accuracy) {
  LbfgsOptions o;
  o.max_iter = 500;
  o.history_size = 10;
  o.strong_wolfe = true;
  o.tolerance_grad = 0.0f;
  o.tolerance_change = 0.0f;
  LBfgsF64 opt(o);
  std::vector<double> x(6, -1.2);
  opt.step(x, rosenbrock);
  // float32 cannot get nearer than ~1e-4 here (the valley's floor is flat to its rounding).
  for (double v : x) EXPECT_NEAR(v, 1.0, 1e-9) << "stopped: " << opt.stop_reason();
  EXPECT_GT(opt.evaluations(), opt.iterations());
}

TEST(LBfgsF64, FollowsLBfgsOnAProblemFloat32Resolves) {
  // The same algorithm: on a well-conditioned quadratic the float and float64 runs take the
  // same decisions, so their iterates agree to float32's rounding.
  std::mt19937_64 rng(70);
  Mlp model(Context(Device::cpu()), {3, 1}, Activation::identity);  // 4 parameters
  const std::vector<double> centre = {0.5, -1.0, 2.0, 0.25}, scale = {1.0, 3.0, 0.5, 2.0};
  const auto f64 = [&](std::span<const double> x, std::span<double> g) {
    double f = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      f += scale[i] * (x[i] - centre[i]) * (x[i] - centre[i]);
      g[i] = 2.0 * scale[i] * (x[i] - centre[i]);
    }
    return f;
  };
  LbfgsOptions o;
  o.max_iter = 3;
  o.strong_wolfe = true;
  LBfgs single(model, o);
  model.params_from_host(std::vector<float>(4, 0.0f));
  single.step([&] {
    const std::vector<float> p = model.params_to_host();
    std::vector<double> x(p.begin(), p.end()), g(4);
    const double f = f64(x, g);
    const std::vector<float> gf(g.begin(), g.end());
    detail::copy_bytes(model.context(), model.grads().data, model.grads().device, gf.data(),
                       Device::cpu(), sizeof(float) * 4);
    return float(f);
  });
  LBfgsF64 dbl(o);
  std::vector<double> x(4, 0.0);
  dbl.step(x, f64);
  EXPECT_TRUE(close_to(model.params_to_host(), x, 1e-6));
  EXPECT_EQ(single.evaluations(), dbl.evaluations());
  EXPECT_EQ(single.stop_reason(), dbl.stop_reason());
}

TEST(LBfgsF64, AFailedStepLeavesXAndTheStateAsTheyWere) {
  LbfgsOptions o;
  o.max_iter = 5;
  o.strong_wolfe = true;
  LBfgsF64 opt(o);
  std::vector<double> x(4, -1.2);
  opt.step(x, rosenbrock);
  const std::vector<double> after_one = x;
  const std::int64_t evals = opt.evaluations();
  int calls = 0;
  const auto poisoned = [&](std::span<const double> p, std::span<double> g) {
    if (++calls == 3) return std::nan("");
    return rosenbrock(p, g);
  };
  EXPECT_THROW_THAT(opt.step(x, poisoned), NumericError,
                    ::testing::HasSubstr("evaluation 3 of this step"));
  EXPECT_EQ(x, after_one);
  EXPECT_EQ(opt.evaluations(), evals);
  const auto thrower = [](std::span<const double>, std::span<double>) -> double {
    throw std::runtime_error("the simulation failed");
  };
  EXPECT_THROW(opt.step(x, thrower), std::runtime_error);
  EXPECT_EQ(x, after_one);
  // The state is intact: the next steps continue as an uninterrupted run's.
  LBfgsF64 twin(o);
  std::vector<double> y(4, -1.2);
  twin.step(y, rosenbrock);
  twin.step(y, rosenbrock);
  opt.step(x, rosenbrock);
  EXPECT_EQ(x, y);
  std::vector<double> other(5, 0.0);
  EXPECT_THROW_THAT(opt.step(other, rosenbrock), ArgumentError,
                    ::testing::HasSubstr("x holds 5 values"));
  x[0] = INFINITY;
  EXPECT_THROW_THAT(opt.step(x, rosenbrock), ArgumentError,
                    ::testing::HasSubstr("x[0] is not finite"));
  EXPECT_THROW_THAT(LBfgsF64(LbfgsOptions{.lr = -1.0f}), ArgumentError, ::testing::HasSubstr("lr"));
}

// Bit for bit (== would take -0.0 for 0.0).
bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

// Two steps of these fill the history (5 pairs) on the Rosenbrock function.
LbfgsOptions state_test_options() {
  LbfgsOptions o;
  o.max_iter = 7;
  o.history_size = 5;
  o.strong_wolfe = true;
  return o;
}

// A run saved after two steps and loaded into a fresh optimizer continues as the uninterrupted
// run does, bit for bit: x, the evaluations, the iterations.
TEST(LBfgsF64, SaveAndLoadContinueBitForBit) {
  const TempDir dir;
  const LbfgsOptions o = state_test_options();
  for (const int before : {0, 2}) {  // a fresh optimizer (no history) and one with pairs stored
    SCOPED_TRACE(std::to_string(before) + " steps before the save");
    LBfgsF64 run(o);
    std::vector<double> x(6, -1.2);
    for (int i = 0; i < before; ++i) run.step(x, rosenbrock);
    const std::string path = dir / ("state" + std::to_string(before));
    run.save(path, x);
    run.step(x, rosenbrock);
    run.step(x, rosenbrock);

    LBfgsF64 resumed(o);
    std::vector<double> y(6, 0.0);
    resumed.load(path, y);
    resumed.step(y, rosenbrock);
    resumed.step(y, rosenbrock);
    EXPECT_TRUE(same_bits(y, x));
    EXPECT_EQ(resumed.evaluations(), run.evaluations());
    EXPECT_EQ(resumed.iterations(), run.iterations());
    EXPECT_EQ(resumed.stop_reason(), run.stop_reason());
  }
}

// The CRC-32 of a state file's bytes put back after an edit (a well-formed file with bad values).
void reseal(std::string& bytes) {
  const auto crc = static_cast<std::uint32_t>(crc32(crc32(0L, Z_NULL, 0),
                                                    reinterpret_cast<const Bytef*>(bytes.data()),
                                                    static_cast<uInt>(bytes.size() - 4)));
  std::memcpy(bytes.data() + bytes.size() - 4, &crc, 4);
}

TEST(LBfgsF64, LoadRefusesBadFilesAndChangesNothing) {
  const TempDir dir;
  const LbfgsOptions o = state_test_options();
  LBfgsF64 source(o);
  std::vector<double> saved(6, -1.2);
  source.step(saved, rosenbrock);
  source.step(saved, rosenbrock);  // 5 pairs stored
  const std::string good_path = dir / "good";
  source.save(good_path, saved);
  const std::string good = read_bytes(good_path);

  // The optimizer under test, one step in, and its twin, which no load ever touches.
  LBfgsF64 opt(o), twin(o);
  std::vector<double> x(6, 0.5), y(6, 0.5);
  opt.step(x, rosenbrock);
  twin.step(y, rosenbrock);
  const auto refused = [&](const std::string& path, auto expect_throw) {
    expect_throw(path);
    EXPECT_TRUE(same_bits(x, y)) << "a refused load changed x";
    EXPECT_EQ(opt.evaluations(), twin.evaluations());
  };
  const auto data_error = [&](const std::string& bytes, const std::string& message) {
    SCOPED_TRACE(message);
    const std::string path = dir / "bad";
    write_bytes(path, bytes);
    refused(path, [&](const std::string& p) {
      EXPECT_THROW_THAT(opt.load(p, x), DataError, ::testing::HasSubstr(message));
    });
  };
  refused(dir / "missing", [&](const std::string& p) {
    EXPECT_THROW_THAT(opt.load(p, x), IoError, ::testing::HasSubstr("missing"));
  });
  refused(dir.path().string(),
          [&](const std::string& p) { EXPECT_THROW(opt.load(p, x), IoError); });
  {
    const std::string ckpt = dir / "checkpoint";
    save_checkpoint(ckpt, Mlp(Context(Device::cpu()), {2, 3, 1}, Activation::tanh));
    data_error(read_bytes(ckpt), "not a descent L-BFGS float64 state");
  }
  data_error(good.substr(0, good.size() - 9), "checksum");
  // Larger than any state of 6 parameters and 5 pairs can be: refused before it is read.
  data_error(good + std::string(std::size_t(1) << 20, '\0'),
             "an L-BFGS state for this x and history_size");
  std::string flipped = good;
  flipped[good.size() / 2] = static_cast<char>(flipped[good.size() / 2] ^ 4);
  data_error(flipped, "checksum mismatch");
  // x[0] (after the header and 8 + 8 + 8 + 24 + 1 bytes of counts and scalars, and x's count)
  // made NaN, the checksum made right: a well-formed file with a value no step can use.
  std::string nan_x = good;
  const double nan = std::nan("");
  std::memcpy(nan_x.data() + 20 + 8 + 16 + 24 + 1 + 8, &nan, 8);
  reseal(nan_x);
  data_error(nan_x, "x[0] is not finite");
  std::string negative = good;
  const std::int64_t minus_one = -1;
  std::memcpy(negative.data() + 20 + 8, &minus_one, 8);
  reseal(negative);
  data_error(negative, "expected >= 0");
  {
    std::vector<double> five(5, 0.0);
    EXPECT_THROW_THAT(opt.load(good_path, five), DataError,
                      ::testing::HasSubstr("it holds 6 parameters, x 5"));
    EXPECT_TRUE(same_bits(five, std::vector<double>(5, 0.0)));
  }
  {
    LbfgsOptions small = o;  // a copy
    small.history_size = 2;
    LBfgsF64 shorter(small);
    std::vector<double> z(6, 0.0);
    EXPECT_THROW_THAT(shorter.load(good_path, z), DataError,
                      ::testing::HasSubstr("more than this optimizer's history_size (2)"));
  }
  // After all that, the optimizer goes on as its twin does.
  opt.step(x, rosenbrock);
  twin.step(y, rosenbrock);
  EXPECT_TRUE(same_bits(x, y));
  // And the good file still loads.
  opt.load(good_path, x);
  EXPECT_TRUE(same_bits(x, saved));
}

// A state remembers the problem it was saved for (set_problem): another optimizer's problem,
// or none, refuses it and changes nothing; the same problem loads it. A version 1 file (before
// problems were stored) holds the empty problem.
TEST(LBfgsF64, LoadRefusesAStateOfAnotherProblem) {
  const TempDir dir;
  const LbfgsOptions o = state_test_options();
  LBfgsF64 source(o);
  source.set_problem("rosenbrock, 6 parameters");
  std::vector<double> saved(6, -1.2);
  source.step(saved, rosenbrock);
  const std::string path = dir / "state";
  source.save(path, saved);

  for (const std::string other : {"", "rosenbrock, 6 parameters ", "heat"}) {
    SCOPED_TRACE("problem '" + other + "'");
    LBfgsF64 opt(o);
    opt.set_problem(other);
    std::vector<double> x(6, 0.25);
    EXPECT_THROW_THAT(opt.load(path, x), DataError,
                      ::testing::AllOf(::testing::HasSubstr("\"rosenbrock, 6 parameters\""),
                                       ::testing::HasSubstr(other.empty() ? "is none" : other)));
    EXPECT_TRUE(same_bits(x, std::vector<double>(6, 0.25))) << "a refused load changed x";
    EXPECT_EQ(opt.iterations(), 0);
  }
  LBfgsF64 same(o);
  same.set_problem(source.problem());
  std::vector<double> y(6, 0.0);
  same.load(path, y);
  EXPECT_TRUE(same_bits(y, saved));

  EXPECT_THROW_THAT(same.set_problem(std::string(LBfgsF64::kMaxProblemBytes + 1, 'p')),
                    ArgumentError, ::testing::HasSubstr("at most 65536"));
  EXPECT_EQ(same.problem(), source.problem()) << "a refused set_problem changed the problem";
  same.set_problem(std::string(LBfgsF64::kMaxProblemBytes, 'p'));  // the longest is stored whole
  same.save(path, y);
  LBfgsF64 longest(o);
  longest.set_problem(same.problem());
  longest.load(path, y);

  // Version 1: the same payload without the problem's length (0) at its end.
  LBfgsF64 unnamed(o);
  std::vector<double> z(6, -1.2);
  unnamed.step(z, rosenbrock);
  unnamed.save(path, z);
  std::string v1 = read_bytes(path);
  ASSERT_EQ(v1.substr(v1.size() - 8, 4), std::string(4, '\0'));
  v1.erase(v1.size() - 8, 4);
  const std::uint32_t one = 1;
  std::memcpy(v1.data() + 8, &one, 4);
  std::uint64_t payload = 0;
  std::memcpy(&payload, v1.data() + 12, 8);
  payload -= 4;
  std::memcpy(v1.data() + 12, &payload, 8);
  reseal(v1);
  write_bytes(path, v1);
  LBfgsF64 named(o);
  named.set_problem("rosenbrock");
  std::vector<double> w(6, 0.0);
  EXPECT_THROW_THAT(named.load(path, w), DataError, ::testing::HasSubstr("the problem none"));
  LBfgsF64 old(o);
  old.load(path, w);
  EXPECT_TRUE(same_bits(w, z));
  EXPECT_EQ(old.iterations(), unnamed.iterations());
}

TEST(LBfgsF64, SaveRefusesWhatCouldNotBeLoadedAndKeepsAGoodFile) {
  const TempDir dir;
  LBfgsF64 opt;
  std::vector<double> x(4, -1.2);
  opt.step(x, rosenbrock);
  const std::string path = dir / "state";
  opt.save(path, x);
  const std::string good = read_bytes(path);
  EXPECT_THROW_THAT(opt.save(path, std::vector<double>{}), ArgumentError,
                    ::testing::HasSubstr("x: empty"));
  EXPECT_THROW_THAT(opt.save(path, std::vector<double>(5, 0.0)), ArgumentError,
                    ::testing::HasSubstr("x holds 5 values"));
  std::vector<double> bad = x;
  bad[2] = INFINITY;
  EXPECT_THROW_THAT(opt.save(path, bad), ArgumentError, ::testing::HasSubstr("x[2] is not finite"));
  EXPECT_THROW(opt.save(dir.path().string(), x), IoError);  // a folder
  EXPECT_EQ(read_bytes(path), good) << "a refused save touched the previous file";
}

// ---------------------------------------------------------------- the C API

struct CModel {
  descent_context* ctx = nullptr;
  descent_model* model = nullptr;
  descent_jet* jet = nullptr;
  CModel() {
    const std::int64_t widths[] = {2, 9, 7, 1};
    EXPECT_EQ(descent_context_create("cpu", 2, &ctx), DESCENT_OK);
    EXPECT_EQ(descent_model_create(ctx, widths, 4, "tanh", 3, &model), DESCENT_OK);
    const float weights[] = {0.0f, 1.0f};
    EXPECT_EQ(descent_jet_create(model, 0, nullptr, weights, 1, &jet), DESCENT_OK);
  }
  ~CModel() {
    descent_jet_destroy(jet);
    descent_model_destroy(model);
    descent_context_destroy(ctx);
  }
};

// A Burgers-type residual and a boundary term through C equal the C++ calls bit for bit (x with
// a leading dimension of 3, as a caller's strided rows); a refused call leaves grad alone.
TEST(JetF64, TheCCallsEqualTheCppOnesAndChangeNothingWhenRefused) {
  CModel c;
  std::mt19937_64 rng(71);
  std::int64_t n = 0;
  ASSERT_EQ(descent_model_parameter_count(c.model, &n), DESCENT_OK);
  std::vector<double> params(static_cast<std::size_t>(n));
  ASSERT_EQ(descent_model_get_params_f64(c.model, params.data(), n), DESCENT_OK);
  for (double& p : params) p += 1e-3 * std::uniform_real_distribution<double>(-1, 1)(rng);
  const std::int64_t rows = 300;
  std::vector<double> x = random_doubles(rng, std::size_t(rows * 3), -1, 1), packed;
  for (std::int64_t r = 0; r < rows; ++r) packed.insert(packed.end(), &x[r * 3], &x[r * 3 + 2]);
  const std::vector<double> f = random_doubles(rng, std::size_t(rows), -1, 1);
  const float b[] = {1.0f, 0.0f}, d[] = {0.0f, 1.0f};
  std::vector<double> grad(params.size(), 0.0);
  double boundary = 0, residual = 0;
  ASSERT_EQ(descent_jet_mse_step_f64(c.jet, params.data(), n, x.data(), rows, 2, 3, f.data(), 1,
                                     2.0, 0, grad.data(), &boundary),
            DESCENT_OK);
  ASSERT_EQ(
      descent_jet_pde_residual_step_f64(c.jet, params.data(), n, x.data(), rows, 2, 3, 0.0f, b,
                                        -0.01f, d, nullptr, 0, 1.0, 1, grad.data(), &residual),
      DESCENT_OK);

  Mlp model(Context(Device::cpu()), {2, 9, 7, 1}, Activation::tanh);
  JetOptions o;
  o.weights = {0.0f, 1.0f};
  const JetF64 jet(model, o);
  std::vector<double> want(params.size());
  PdeResidual burgers;
  burgers.b = {1.0f, 0.0f};
  burgers.c = -0.01f;
  burgers.d = {0.0f, 1.0f};
  EXPECT_EQ(boundary, jet.mse_step(params, packed, f, want, 2.0, false));
  EXPECT_EQ(residual, jet.pde_residual_step(params, packed, burgers, {}, want));
  EXPECT_EQ(grad, want);

  const std::vector<double> before = grad;
  params[5] = std::nan("");
  EXPECT_EQ(
      descent_jet_pde_residual_step_f64(c.jet, params.data(), n, x.data(), rows, 2, 3, 0.0f, b,
                                        -0.01f, d, nullptr, 0, 1.0, 1, grad.data(), nullptr),
      DESCENT_ERROR_ARGUMENT);
  EXPECT_THAT(descent_last_error(), ::testing::HasSubstr("params: value 5 is nan"));
  EXPECT_EQ(grad, before);
  params[5] = 0.0;
  ASSERT_EQ(descent_model_set_params_f64(c.model, params.data(), n), DESCENT_OK);
  std::vector<float> rounded(params.size());
  ASSERT_EQ(descent_model_get_params(c.model, rounded.data(), n), DESCENT_OK);
  EXPECT_EQ(rounded, std::vector<float>(params.begin(), params.end()));
}

descent_status rosenbrock_c(void* user, const double* x, double* g, int64_t n, double* loss) {
  ++*static_cast<int*>(user);
  *loss = rosenbrock({x, std::size_t(n)}, {g, std::size_t(n)});
  return DESCENT_OK;
}

TEST(LBfgsF64, TheCStepEqualsTheCppOne) {
  descent_lbfgs_f64* opt = nullptr;
  ASSERT_EQ(descent_lbfgs_f64_create("max_iter=40, history_size=8, strong_wolfe=1", &opt),
            DESCENT_OK);
  std::vector<double> x(5, -1.2);
  int calls = 0;
  double first = 0;
  ASSERT_EQ(descent_lbfgs_f64_step(opt, x.data(), 5, rosenbrock_c, &calls, &first), DESCENT_OK);
  std::int64_t iterations = 0, evaluations = 0;
  const char* reason = nullptr;
  ASSERT_EQ(descent_lbfgs_f64_progress(opt, &iterations, &evaluations, &reason), DESCENT_OK);
  const std::string stopped = reason;  // the optimizer owns the string
  EXPECT_EQ(evaluations, calls);
  EXPECT_EQ(descent_lbfgs_f64_step(opt, x.data(), 5, nullptr, nullptr, nullptr),
            DESCENT_ERROR_ARGUMENT);
  EXPECT_THAT(descent_last_error(), ::testing::HasSubstr("evaluate"));
  descent_lbfgs_f64_destroy(opt);

  LbfgsOptions o;
  o.max_iter = 40;
  o.history_size = 8;
  o.strong_wolfe = true;
  LBfgsF64 cpp(o);
  std::vector<double> y(5, -1.2);
  EXPECT_EQ(first, cpp.step(y, rosenbrock));
  EXPECT_EQ(x, y);
  EXPECT_EQ(iterations, cpp.iterations());
  EXPECT_EQ(stopped, cpp.stop_reason());
}

}  // namespace
}  // namespace descent::test
