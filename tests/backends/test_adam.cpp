// adam_update and clip_grad_norm on every backend: the first steps of every option combination
// worked out in double, 20-step trajectories against the float64 oracle, the shared formula bit
// for bit, clipping against the oracle (NaN, below max_norm, repeat calls), and the options each
// op and the optimizers reject. Clipping on 1 and 2 CPU threads: tests/test_cpu_threads.cpp.
#include <cmath>
#include <limits>
#include <utility>

#include "descent/descent.hpp"
#include "kernels/math/adam.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

// ---------------------------------------------------------------- helpers

// How many units in the last place of float(want) `got` is away from `want`.
double ulps_from(float got, double want) {
  const float w = std::fabs(static_cast<float>(want));
  const double ulp =
      static_cast<double>(std::nextafter(w, std::numeric_limits<float>::infinity())) - w;
  return std::fabs(static_cast<double>(got) - want) / ulp;
}

// Passes when every element is within max_ulps of the double value.
::testing::AssertionResult within_ulps(const std::vector<float>& got,
                                       const std::vector<double>& want, double max_ulps) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  }
  double worst = 0.0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double u = std::isfinite(got[i]) ? ulps_from(got[i], want[i])
                                           : std::numeric_limits<double>::infinity();
    if (!(u <= worst)) {
      worst = u;
      at = i;
    }
  }
  if (worst <= max_ulps) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "element " << at << ": got " << got[at] << ", expected " << want[at] << " (" << worst
         << " ulps > " << max_ulps << ")";
}

std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// The optimizer state of one adam_update run on the device: moments, the running maximum
// (amsgrad), the 4 scalars and the learning rate, all as a new optimizer holds them.
struct DeviceAdam {
  Buffer<float> p, m, v, vmax, scalars, lr;
  bool amsgrad = false;
  DeviceAdam(const Context& ctx, const std::vector<float>& p0, bool ams, float rate)
      : p(upload(ctx, p0)),
        m(upload(ctx, std::vector<float>(p0.size(), 0.0f))),
        v(upload(ctx, std::vector<float>(p0.size(), 0.0f))),
        scalars(upload(ctx, std::vector<float>(4, 0.0f))),
        lr(upload(ctx, std::vector<float>{rate})),
        amsgrad(ams) {
    if (ams) vmax = upload(ctx, std::vector<float>(p0.size(), 0.0f));
  }
  void step(const Context& ctx, const Buffer<float>& g, const AdamOptions& o, AdamStep s = {}) {
    s.lr_device = lr.data();
    s.scalars = scalars.data();
    adam_update(ctx, p.view(), g.view(), m.view(), v.view(),
                amsgrad ? vmax.view() : VectorView<float>{}, o, s);
  }
};

// ---------------------------------------------------------------- steps worked out in double

// Five parameters and three steps of gradients, chosen so that no sum in the formula cancels
// (the ulp bound below holds), one gradient is zero at the first step (m = v = 0: only eps keeps
// the update finite) and element 2's gradient shrinks, so amsgrad's running maximum differs
// from v from the second step on.
const std::vector<float> kP0 = {1.5f, -2.0f, 0.75f, -0.625f, 3.0f};
const std::vector<std::vector<float>> kGrads = {{0.5f, -0.25f, 1.0f, 0.0f, -2.0f},
                                                {0.375f, -0.5f, 0.25f, 0.25f, -1.5f},
                                                {0.625f, -0.375f, 0.25f, 0.0625f, -1.0f}};
// The rate read from lr_device; options.lr is set to another value, which must be ignored.
constexpr float kLr = 0.1f;
// Dyadic betas: their powers are exact in float, so the float bias corrections carry no
// rounding of beta^t (with 0.999, 1 - 0.999^t loses most of a float's digits; the trajectory
// test covers the defaults). eps = 1e-3 is large enough that where it is added shows.
constexpr float kBeta1 = 0.875f, kBeta2 = 0.75f, kEps = 1e-3f, kDecay = 0.125f;

// The documented formula (ops.hpp, adam_update) written out in double with the options' float
// values: t = step + 1; g = grad · scale, negated when maximizing; AdamW decays p by lr·wd·p,
// Adam adds wd·p to g; m, v (and vmax) move; p -= lr/(1-β1^t) · m / (sqrt(v̂)/sqrt(1-β2^t) + eps).
struct HandAdam {
  std::vector<double> p, m, v, vmax;
  double t = 0.0;
  explicit HandAdam(const std::vector<float>& p0)
      : p(widen(p0)), m(p0.size(), 0.0), v(p0.size(), 0.0), vmax(p0.size(), 0.0) {}

  void step(const std::vector<float>& grad, const AdamOptions& o, double lr, double scale) {
    const double b1 = o.beta1, b2 = o.beta2, eps = o.eps, wd = o.weight_decay;
    t += 1.0;
    const double bias_correction1 = 1.0 - std::pow(b1, t);
    const double bias_correction2 = 1.0 - std::pow(b2, t);
    const double step_size = lr / bias_correction1;
    const double bias_correction2_sqrt = std::sqrt(bias_correction2);
    for (std::size_t i = 0; i < p.size(); ++i) {
      double g = grad[i] * scale;
      if (o.maximize) g = -g;
      if (wd != 0.0) {
        if (o.decoupled_weight_decay) {
          p[i] = p[i] - lr * wd * p[i];
        } else {
          g = g + p[i] * wd;
        }
      }
      m[i] = b1 * m[i] + (1.0 - b1) * g;
      v[i] = b2 * v[i] + (1.0 - b2) * g * g;
      double second = v[i];
      if (o.amsgrad) {
        vmax[i] = std::max(vmax[i], v[i]);
        second = vmax[i];
      }
      p[i] = p[i] - step_size * m[i] / (std::sqrt(second) / bias_correction2_sqrt + eps);
    }
  }
  // The scalars the op keeps after this many steps: t, lr / (1 - β1^t), sqrt(1 - β2^t), lr.
  std::vector<double> scalars(const AdamOptions& o, double lr) const {
    return {t, lr / (1.0 - std::pow(double(o.beta1), t)),
            std::sqrt(1.0 - std::pow(double(o.beta2), t)), lr};
  }
};

struct HandCase {
  const char* name;
  float weight_decay;
  bool amsgrad, maximize, decoupled;
  float grad_scale;         // AdamStep::grad_scale
  float grad_scale_device;  // 0: no device scale
};

// clang-format off
const HandCase kHandCases[] = {
    // name                                   wd      ams    max    decoupled scale dev
    {"adam",                                  0,      false, false, false,    1.0f, 0},
    {"adam + weight_decay",                   kDecay, false, false, false,    1.0f, 0},
    {"adam + amsgrad",                        0,      true,  false, false,    1.0f, 0},
    {"adam + maximize",                       0,      false, true,  false,    1.0f, 0},
    {"adam + weight_decay + amsgrad + maximize", kDecay, true, true, false,   1.0f, 0},
    {"adamw",                                 kDecay, false, false, true,     1.0f, 0},
    {"adamw, weight_decay 0",                 0,      false, false, true,     1.0f, 0},
    {"adamw + amsgrad",                       kDecay, true,  false, true,     1.0f, 0},
    {"adamw + amsgrad + maximize",            kDecay, true,  true,  true,     1.0f, 0},
    {"adam + weight_decay + grad_scale_device", kDecay, false, false, false,  1.0f, 0.25f},
    {"adamw + amsgrad + grad_scale and grad_scale_device", kDecay, true, false, true, 0.5f, 4.0f},
    {"adam + weight_decay + maximize + grad_scale", kDecay, false, true, false, 0.5f, 0},
};
// clang-format on

// Each step's float arithmetic rounds about ten times (and the moments carry the roundings of
// earlier steps), and the cases keep every difference away from cancellation, so the results
// stay within a few ulps of the exact values (3 on the CPU; the GPU's powf may be off by an ulp
// or two, which 1 - β^t amplifies); a wrong term (eps inside the square root, the bias
// corrections of another step, the decay coupled instead of decoupled) is thousands of ulps off.
constexpr double kMaxUlps = 8.0;

class AdamTest : public BackendTest {};
DESCENT_INSTANTIATE_BACKENDS(AdamTest);

TEST_P(AdamTest, FirstStepsOfEveryOptionCombinationMatchTheFormulaInDouble) {
  int index = 0;
  for (const HandCase& c : kHandCases) {
    SCOPED_TRACE(c.name);
    AdamOptions o;
    o.lr = 0.5f;  // ignored: lr_device holds kLr
    o.beta1 = kBeta1;
    o.beta2 = kBeta2;
    o.eps = kEps;
    o.weight_decay = c.weight_decay;
    o.amsgrad = c.amsgrad;
    o.maximize = c.maximize;
    o.decoupled_weight_decay = c.decoupled;
    const double scale =
        double(c.grad_scale) * (c.grad_scale_device != 0 ? c.grad_scale_device : 1);
    DeviceAdam dev(ctx(), kP0, c.amsgrad, kLr);
    Buffer<float> dev_scale = upload(ctx(), std::vector<float>{c.grad_scale_device});
    // Every other case passes a found_inf flag holding 0 (the update runs), the others none.
    Buffer<std::int32_t> no_inf = upload(ctx(), std::vector<std::int32_t>{0});
    AdamStep s;
    s.grad_scale = c.grad_scale;
    if (c.grad_scale_device != 0) s.grad_scale_device = dev_scale.data();
    if (index++ % 2 == 1) s.found_inf = no_inf.data();
    HandAdam hand(kP0);
    for (std::size_t k = 0; k < kGrads.size(); ++k) {
      SCOPED_TRACE("step " + std::to_string(k + 1));
      const Buffer<float> g = upload(ctx(), kGrads[k]);
      dev.step(ctx(), g, o, s);
      hand.step(kGrads[k], o, kLr, scale);
      EXPECT_TRUE(within_ulps(dev.p.to_host(ctx()), hand.p, kMaxUlps)) << "params";
      EXPECT_TRUE(within_ulps(dev.m.to_host(ctx()), hand.m, kMaxUlps)) << "exp_avg";
      EXPECT_TRUE(within_ulps(dev.v.to_host(ctx()), hand.v, kMaxUlps)) << "exp_avg_sq";
      if (c.amsgrad) {
        EXPECT_TRUE(within_ulps(dev.vmax.to_host(ctx()), hand.vmax, kMaxUlps)) << "max_exp_avg_sq";
      }
      EXPECT_TRUE(within_ulps(dev.scalars.to_host(ctx()), hand.scalars(o, kLr), kMaxUlps))
          << "scalars (t, step_size, sqrt(bias_correction2), lr)";
      EXPECT_EQ(g.to_host(ctx()), kGrads[k]) << "the gradients are read-only";
      if (k == 0) {
        // The first step by hand, whatever the betas: m̂ = g', v̂ = g'^2, so
        // p1 = p0 (· (1 - lr·wd) for AdamW) - lr · g' / (|g'| + eps), g' the effective gradient.
        std::vector<double> want(kP0.size());
        for (std::size_t i = 0; i < kP0.size(); ++i) {
          const double p0 = kP0[i], lr = kLr, wd = c.weight_decay;
          double g1 = (c.maximize ? -1.0 : 1.0) * kGrads[0][i] * scale;
          if (!c.decoupled) g1 += wd * p0;
          want[i] =
              (c.decoupled ? p0 * (1.0 - lr * wd) : p0) - lr * g1 / (std::fabs(g1) + double(kEps));
        }
        EXPECT_TRUE(within_ulps(dev.p.to_host(ctx()), want, kMaxUlps)) << "params after step 1";
      }
      if (k == 1) {
        // A step skipped for a non-finite gradient (found_inf set; the gradients are NaN, which
        // must not be read) changes nothing, not even the update count in scalars[0]: the next
        // step is still the third.
        const std::vector<float> p = dev.p.to_host(ctx()), m = dev.m.to_host(ctx()),
                                 v = dev.v.to_host(ctx()), sc = dev.scalars.to_host(ctx());
        const std::vector<float> vmax = c.amsgrad ? dev.vmax.to_host(ctx()) : std::vector<float>{};
        const Buffer<float> nan_g = upload(ctx(), std::vector<float>(kP0.size(), nan_f()));
        Buffer<std::int32_t> inf = upload(ctx(), std::vector<std::int32_t>{1});
        AdamStep skipped = s;
        skipped.found_inf = inf.data();
        dev.step(ctx(), nan_g, o, skipped);
        EXPECT_TRUE(bit_identical(dev.p.to_host(ctx()), p)) << "params after a skipped step";
        EXPECT_TRUE(bit_identical(dev.m.to_host(ctx()), m)) << "exp_avg after a skipped step";
        EXPECT_TRUE(bit_identical(dev.v.to_host(ctx()), v)) << "exp_avg_sq after a skipped step";
        EXPECT_TRUE(bit_identical(dev.scalars.to_host(ctx()), sc))
            << "scalars after a skipped step";
        if (c.amsgrad) {
          EXPECT_TRUE(bit_identical(dev.vmax.to_host(ctx()), vmax)) << "max_exp_avg_sq";
        }
      }
    }
    // The hand computation really depends on the options: the case's parameters differ from
    // plain Adam's (a guard against a table whose options all collapse to one formula).
    if (c.weight_decay != 0 || c.amsgrad || c.maximize || scale != 1.0) {
      HandAdam plain(kP0);
      AdamOptions po;
      po.beta1 = kBeta1;
      po.beta2 = kBeta2;
      po.eps = kEps;
      for (const auto& g : kGrads) plain.step(g, po, kLr, 1.0);
      EXPECT_FALSE(within_ulps(dev.p.to_host(ctx()), plain.p, 100.0))
          << "indistinguishable from plain Adam";
    }
  }
}

// The torch defaults (betas 0.9, 0.999, eps 1e-8) over a first step: the update is lr · sign(g)
// to within eps (m̂ = g, v̂ = g²), whatever the precision of the bias corrections.
TEST_P(AdamTest, FirstStepWithTorchDefaultsMovesEachParameterByLr) {
  const std::vector<float> p0 = {1.5f, -2.0f, 0.75f, -0.625f, 3.0f, 0.25f, -1.0f};
  const std::vector<float> g = {0.5f, -0.25f, 1e-3f, 2.0f, -7.0f, 0.125f, 1e-5f};
  for (const bool adamw : {false, true}) {
    SCOPED_TRACE(adamw ? "adamw" : "adam");
    const AdamOptions o = adamw ? AdamW::adamw_defaults() : AdamOptions{};
    DeviceAdam dev(ctx(), p0, false, 1e-3f);
    const Buffer<float> gb = upload(ctx(), g);
    AdamOptions oo = o;
    oo.decoupled_weight_decay = adamw;
    dev.step(ctx(), gb, oo);
    const std::vector<float> got = dev.p.to_host(ctx());
    for (std::size_t i = 0; i < p0.size(); ++i) {
      const double lr = 1e-3, decayed = adamw ? p0[i] * (1.0 - lr * 0.01) : p0[i];
      const double want = decayed - lr * g[i] / (std::fabs(g[i]) + 1e-8);
      // float β2^1 is exact, so this step's bias corrections are exact: a few ulps of p.
      EXPECT_LE(ulps_from(got[i], want), 4.0)
          << "element " << i << ": " << got[i] << " vs " << want;
    }
  }
}

// ---------------------------------------------------------------- trajectories against the oracle

struct TrajectoryCase {
  const char* name;
  AdamOptions opt;
  float grad_scale_device;  // 0: none
};

AdamOptions adam_opts(float lr, float b1, float b2, float eps, float wd, bool ams, bool max,
                      bool decoupled) {
  AdamOptions o;
  o.lr = lr;
  o.beta1 = b1;
  o.beta2 = b2;
  o.eps = eps;
  o.weight_decay = wd;
  o.amsgrad = ams;
  o.maximize = max;
  o.decoupled_weight_decay = decoupled;
  return o;
}

const TrajectoryCase kTrajectories[] = {
    {"adam, torch defaults", adam_opts(1e-3f, 0.9f, 0.999f, 1e-8f, 0, false, false, false), 0},
    {"adam + weight_decay + maximize",
     adam_opts(1e-2f, 0.9f, 0.999f, 1e-8f, 1e-2f, false, true, false), 0},
    {"adamw, torch defaults", adam_opts(1e-3f, 0.9f, 0.999f, 1e-8f, 1e-2f, false, false, true), 0},
    {"adamw, large rate and decay", adam_opts(3e-2f, 0.8f, 0.99f, 1e-6f, 0.1f, false, false, true),
     0},
    {"adam + amsgrad", adam_opts(5e-3f, 0.8f, 0.99f, 1e-8f, 0, true, false, false), 0},
    {"adamw + amsgrad + grad_scale_device",
     adam_opts(1e-2f, 0.9f, 0.999f, 1e-8f, 5e-2f, true, false, true), 0.375f},
    {"adam + amsgrad + maximize + weight_decay",
     adam_opts(1e-2f, 0.5f, 0.9f, 1e-4f, 1e-3f, true, true, false), 0},
};

// Tolerances, norm-wise as everywhere (test_support.hpp):
// - params, exp_avg, exp_avg_sq, max_exp_avg_sq: kTolFp32, as SGD; each is a handful of float
//   roundings per step of a quantity of its own size.
// - the displacement p - p0, which isolates the optimizer's own error: float computes the bias
//   correction from a float power, and 1 - β2^t cancels: a 1-ulp rounding of 0.999^t (6e-8) is a
//   relative error of up to 6e-8 / (1 - 0.999^t) = 6e-5 at t = 1 in the denominator (3e-5 after
//   the square root), and the parameters' own rounding adds a few 1e-8 per step on
//   displacements of about lr·sqrt(steps). 2e-4 leaves room for that; a misplaced eps, a wrong
//   bias correction or a lost weight-decay term is several times larger.
constexpr double kTolAdamDisplacement = 2e-4;

TEST_P(AdamTest, TwentyStepsFollowTheFloat64Oracle) {
  const std::int64_t n = 4099;  // odd: the GPU's 4-wide loop has a tail of 3
  for (const TrajectoryCase& c : kTrajectories) {
    SCOPED_TRACE(c.name);
    const AdamOptions& o = c.opt;
    std::vector<float> p0 = random_floats(rng_, n);
    // Per-element gradient magnitudes over three decades, so sqrt(v) spans a range.
    std::vector<float> magnitude(static_cast<std::size_t>(n));
    std::uniform_real_distribution<float> decade(-3.0f, 0.0f);
    for (float& x : magnitude) x = std::pow(10.0f, decade(rng_));
    oracle::Vec p_ref = to_vec(p0);
    oracle::AdamState state;
    DeviceAdam dev(ctx(), p0, o.amsgrad, o.lr);
    Buffer<float> dev_scale = upload(ctx(), std::vector<float>{c.grad_scale_device});
    AdamStep s;
    if (c.grad_scale_device != 0) s.grad_scale_device = dev_scale.data();
    for (int k = 0; k < 20; ++k) {
      SCOPED_TRACE("step " + std::to_string(k + 1));
      // A decaying rate written to lr_device each step, as a schedule does.
      const float lr = o.lr * (1.0f - 0.03f * static_cast<float>(k));
      dev.lr.copy_from_host(ctx(), std::span<const float>(&lr, 1));
      std::vector<float> g = random_floats(rng_, n);
      for (std::size_t i = 0; i < g.size(); ++i) g[i] *= magnitude[i];
      oracle::Vec g_ref = to_vec(g);
      if (c.grad_scale_device != 0) {
        for (double& x : g_ref) x *= c.grad_scale_device;
      }
      const oracle::AdamHyper h{lr,        o.beta1,        o.beta2,
                                o.eps,     o.weight_decay, o.decoupled_weight_decay,
                                o.amsgrad, o.maximize};
      oracle::adam_step(p_ref, g_ref, state, h);
      const Buffer<float> gb = upload(ctx(), g);
      dev.step(ctx(), gb, o, s);
    }
    const std::vector<float> p = dev.p.to_host(ctx());
    EXPECT_TRUE(close_to(p, p_ref, kTolFp32)) << "params";
    std::vector<double> moved(p.size()), moved_ref(p.size());
    for (std::size_t i = 0; i < p.size(); ++i) {
      moved[i] = double(p[i]) - p0[i];
      moved_ref[i] = p_ref[i] - p0[i];
    }
    EXPECT_TRUE(close_to(moved, moved_ref, kTolAdamDisplacement)) << "displacement p - p0";
    EXPECT_TRUE(close_to(dev.m.to_host(ctx()), state.exp_avg, kTolFp32)) << "exp_avg";
    EXPECT_TRUE(close_to(dev.v.to_host(ctx()), state.exp_avg_sq, kTolFp32)) << "exp_avg_sq";
    if (o.amsgrad) {
      EXPECT_TRUE(close_to(dev.vmax.to_host(ctx()), state.max_exp_avg_sq, kTolFp32))
          << "max_exp_avg_sq";
    }
    EXPECT_EQ(dev.scalars.to_host(ctx())[0], 20.0f) << "update count";
  }
}

// The shared header is the single definition of the update: the CPU backend agrees with it to
// the bit (the GPU compiler may contract a multiply-add into an FMA: 1e-6 there).
TEST_P(AdamTest, AgreesWithSharedFormula) {
  const std::int64_t n = 1027;
  for (const bool amsgrad : {false, true}) {
    SCOPED_TRACE(amsgrad ? "amsgrad" : "no amsgrad");
    const AdamOptions o = adam_opts(1e-2f, 0.9f, 0.999f, 1e-8f, 1e-2f, amsgrad, false, !amsgrad);
    std::vector<float> p = random_floats(rng_, n), m = random_floats(rng_, n, -0.1f, 0.1f),
                       v = random_floats(rng_, n, 0.001f, 0.01f), vmax = v;
    for (float& x : vmax) x *= 1.5f;
    const std::vector<float> g = random_floats(rng_, n);
    DeviceAdam dev(ctx(), p, amsgrad, o.lr);
    dev.m.copy_from_host(ctx(), m);
    dev.v.copy_from_host(ctx(), v);
    if (amsgrad) dev.vmax.copy_from_host(ctx(), vmax);
    const std::vector<float> after = {6.0f, 0, 1, 0};  // six updates applied before
    dev.scalars.copy_from_host(ctx(), after);
    const Buffer<float> gb = upload(ctx(), g);
    dev.step(ctx(), gb, o);
    detail::AdamScalars sc{6.0f, 0, 1, 0};
    detail::adam_begin_step(sc, o.lr, o.beta1, o.beta2, false);
    const detail::AdamCoeffs c{o.beta1,        o.beta2,   o.eps,
                               o.weight_decay, 1.0f,      o.decoupled_weight_decay,
                               o.amsgrad,      o.maximize};
    for (std::size_t i = 0; i < p.size(); ++i)
      detail::adam_one(p[i], m[i], v[i], vmax[i], g[i], c, sc);
    const std::vector<float> got_p = dev.p.to_host(ctx()), got_m = dev.m.to_host(ctx()),
                             got_v = dev.v.to_host(ctx());
    if (on_gpu()) {
      EXPECT_TRUE(close_to(got_p, p, 1e-6));
      EXPECT_TRUE(close_to(got_m, m, 1e-6));
      EXPECT_TRUE(close_to(got_v, v, 1e-6));
      continue;
    }
    EXPECT_TRUE(bit_identical(got_p, p)) << "params";
    EXPECT_TRUE(bit_identical(got_m, m)) << "exp_avg";
    EXPECT_TRUE(bit_identical(got_v, v)) << "exp_avg_sq";
    if (amsgrad) {
      EXPECT_TRUE(bit_identical(dev.vmax.to_host(ctx()), vmax)) << "max_exp_avg_sq";
    }
    const std::vector<float> want_scalars = {sc.step, sc.step_size, sc.bias_correction2_sqrt,
                                             sc.lr};
    EXPECT_TRUE(bit_identical(dev.scalars.to_host(ctx()), want_scalars)) << "scalars";
  }
}

TEST_P(AdamTest, ParamsBf16ReceivesRoundedUpdatedParams) {
  const std::int64_t n = 1001;
  const std::vector<float> p0 = random_floats(rng_, n, -3.0f, 3.0f), g = random_floats(rng_, n);
  DeviceAdam dev(ctx(), p0, true, 0.01f);
  Buffer<bf16> pb = poisoned<bf16>(ctx(), n);
  const Buffer<float> gb = upload(ctx(), g);
  AdamStep s;
  s.params_bf16 = pb.view();
  dev.step(ctx(), gb, adam_opts(0.01f, 0.9f, 0.999f, 1e-8f, 0.01f, true, false, true), s);
  const std::vector<float> got = dev.p.to_host(ctx());
  const std::vector<bf16> got_b = pb.to_host(ctx());
  std::int64_t wrong = 0, moved = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    wrong += got_b[i].bits != descent::to_bf16(got[i]).bits;
    moved += got[i] != p0[i];
  }
  EXPECT_EQ(wrong, 0) << "bf16 copies that are not round-to-nearest-even of the new params";
  EXPECT_EQ(moved, n);
}

// Updating a slice of a flat buffer (one layer of a model) leaves the rest alone.
TEST_P(AdamTest, UpdatesOnlyTheGivenSlice) {
  const std::int64_t n = 100;
  const std::vector<float> p0 = random_floats(rng_, n), g = random_floats(rng_, n);
  DeviceAdam dev(ctx(), p0, false, 0.5f);
  const Buffer<float> gb = upload(ctx(), g);
  AdamStep s;
  s.lr_device = dev.lr.data();
  s.scalars = dev.scalars.data();
  adam_update(ctx(), dev.p.view().slice(10, 37), gb.view().slice(10, 37),
              dev.m.view().slice(10, 37), dev.v.view().slice(10, 37), {}, AdamOptions{}, s);
  const std::vector<float> got = dev.p.to_host(ctx()), m = dev.m.to_host(ctx());
  for (std::int64_t i = 0; i < n; ++i) {
    const std::size_t k = std::size_t(i);
    if (i >= 10 && i < 47) {
      // First step: p - lr · g / (|g| + eps).
      EXPECT_NEAR(got[k], p0[k] - 0.5 * g[k] / (std::fabs(g[k]) + 1e-8), 1e-6) << i;
    } else {
      EXPECT_EQ(got[k], p0[k]) << "element " << i << " outside the slice changed";
      EXPECT_EQ(m[k], 0.0f) << "exp_avg element " << i << " outside the slice changed";
    }
  }
}

// ---------------------------------------------------------------- the Adam optimizer object

TEST_P(AdamTest, OptimizerStepsEqualTheOpWithItsScheduleAndState) {
  Mlp model(ctx(), {6, 9, 4}, Activation::tanh, {Init::torch_default, 3, 8});
  const std::int64_t n = model.parameter_count();
  const AdamOptions o = adam_opts(0.02f, 0.9f, 0.99f, 1e-7f, 0.05f, true, false, false);
  const LrSchedule sched = LrSchedule::step(2, 0.5f);
  Adam adam(model, o, sched);
  EXPECT_EQ(adam.kind(), OptimizerKind::adam);
  EXPECT_EQ(adam.state_names(),
            (std::vector<std::string>{"exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"}));
  const std::vector<float> p0 = model.params_to_host();
  DeviceAdam ref(ctx(), p0, true, 0.0f);
  for (int k = 0; k < 5; ++k) {
    const std::vector<float> g = random_floats(rng_, n);
    detail::copy_bytes(ctx(), model.grads().data, model.grads().device, g.data(), Device::cpu(),
                       g.size() * sizeof(float));
    adam.step();
    const float lr = sched.at(o.lr, k);
    ref.lr.copy_from_host(ctx(), std::span<const float>(&lr, 1));
    const Buffer<float> gb = upload(ctx(), g);
    ref.step(ctx(), gb, o);
    ASSERT_TRUE(bit_identical(model.params_to_host(), ref.p.to_host(ctx())))
        << "after step " << k + 1;
  }
  EXPECT_EQ(adam.steps(), 5);
  EXPECT_EQ(adam.state_to_host("step"), std::vector<float>{5.0f});
  EXPECT_TRUE(bit_identical(adam.state_to_host("exp_avg"), ref.m.to_host(ctx())));
  EXPECT_TRUE(bit_identical(adam.state_to_host("exp_avg_sq"), ref.v.to_host(ctx())));
  EXPECT_TRUE(bit_identical(adam.state_to_host("max_exp_avg_sq"), ref.vmax.to_host(ctx())));
  EXPECT_THROW_THAT(adam.state_to_host("momentum"), ArgumentError,
                    ::testing::HasSubstr("momentum"));
  EXPECT_THROW(adam.state_from_host("exp_avg", std::vector<float>(3)), ShapeError);
  EXPECT_THROW(adam.state_from_host("step", std::vector<float>{2.5f}), DataError);

  AdamW adamw(model);
  EXPECT_EQ(adamw.kind(), OptimizerKind::adamw);
  EXPECT_EQ(adamw.options().weight_decay, 0.01f);
  EXPECT_TRUE(adamw.options().decoupled_weight_decay);
  EXPECT_EQ(adamw.state_names(), (std::vector<std::string>{"exp_avg", "exp_avg_sq", "step"}));
  EXPECT_EQ(parse_optimizer("adamw"), OptimizerKind::adamw);
  EXPECT_EQ(parse_optimizer("adam"), OptimizerKind::adam);
  EXPECT_THROW_THAT(parse_optimizer("rmsprop"), ArgumentError, ::testing::HasSubstr("rmsprop"));
}

// ---------------------------------------------------------------- clip_grad_norm

class ClipGradNormTest : public BackendTest {
 protected:
  // Runs the op; returns {norm, scale}.
  std::pair<float, float> clip(const std::vector<float>& g, float max_norm, float norm_type) {
    const Buffer<float> gb = upload(ctx(), g);
    Buffer<float> out = poisoned<float>(ctx(), 2);
    clip_grad_norm(ctx(), gb.view(), max_norm, norm_type, out.data(), out.data() + 1);
    EXPECT_TRUE(bit_identical(gb.to_host(ctx()), g)) << "the gradients are read-only";
    const std::vector<float> r = out.to_host(ctx());
    return {r[0], r[1]};
  }
};
DESCENT_INSTANTIATE_BACKENDS(ClipGradNormTest);

constexpr float kInf = std::numeric_limits<float>::infinity();

TEST_P(ClipGradNormTest, MatchesTheFloat64Oracle) {
  for (const std::int64_t n : {std::int64_t(1), std::int64_t(7), std::int64_t(50001)}) {
    for (const float norm_type : {2.0f, kInf}) {
      SCOPED_TRACE("n " + std::to_string(n) + ", norm_type " + std::to_string(norm_type));
      const std::vector<float> g = random_floats(rng_, n, -3.0f, 3.0f);
      oracle::Vec probe = to_vec(g);
      const double norm = oracle::clip_grad_norm(probe, 1e30, norm_type);
      // max_norm a third of the norm: the scale is about 1/3.
      const float max_norm = static_cast<float>(norm / 3.0);
      oracle::Vec clipped = to_vec(g);
      const double same_norm = oracle::clip_grad_norm(clipped, max_norm, norm_type);
      const double coef = std::min(1.0, double(max_norm) / (norm + 1e-6));
      const auto [got_norm, got_scale] = clip(g, max_norm, norm_type);
      EXPECT_TRUE(close_to(got_norm, same_norm, kTolFp32)) << "norm";
      EXPECT_TRUE(close_to(got_scale, coef, kTolFp32)) << "scale";
      EXPECT_LT(got_scale, 0.34f);
      // grads · scale is what the oracle leaves in the gradients.
      std::vector<float> scaled = g;
      for (float& x : scaled) x *= got_scale;
      EXPECT_TRUE(close_to(scaled, clipped, kTolFp32)) << "clipped gradients";
      if (std::isinf(norm_type)) {
        float largest = 0.0f;
        for (float x : g) largest = std::max(largest, std::fabs(x));
        EXPECT_EQ(got_norm, largest) << "the inf norm is the largest magnitude, exactly";
      }
    }
  }
}

TEST_P(ClipGradNormTest, NormBelowMaxNormGivesScaleExactlyOne) {
  const std::vector<float> g = random_floats(rng_, 3001, -0.01f, 0.01f);
  for (const float norm_type : {2.0f, kInf}) {
    SCOPED_TRACE("norm_type " + std::to_string(norm_type));
    const auto [norm, scale] = clip(g, 10.0f, norm_type);
    EXPECT_TRUE(std::isfinite(norm));
    EXPECT_LT(norm, 10.0f);
    EXPECT_EQ(scale, 1.0f);
  }
  // Exactly at max_norm: the 1e-6 keeps the coefficient just below 1 (torch's formula).
  const std::vector<float> unit = {0.6f, 0.8f};
  const auto [norm, scale] = clip(unit, 1.0f, 2.0f);
  EXPECT_TRUE(close_to(norm, 1.0, 1e-6));
  EXPECT_LT(scale, 1.0f);
  EXPECT_GT(scale, 0.9999f);
}

// A NaN gradient makes the norm NaN and the scale NaN (torch: clamp keeps NaN), so the update
// turns the parameters NaN instead of silently skipping the bad element; an infinite one makes
// the 2-norm and the inf-norm infinite and the scale 0.
TEST_P(ClipGradNormTest, NonFiniteGradients) {
  std::vector<float> g = random_floats(rng_, 40000);
  for (const std::size_t at : {std::size_t(0), std::size_t(20001), std::size_t(39999)}) {
    std::vector<float> bad = g;
    bad[at] = nan_f();
    for (const float norm_type : {2.0f, kInf}) {
      SCOPED_TRACE("NaN at " + std::to_string(at) + ", norm_type " + std::to_string(norm_type));
      const auto [norm, scale] = clip(bad, 1.0f, norm_type);
      EXPECT_TRUE(std::isnan(norm)) << norm;
      EXPECT_TRUE(std::isnan(scale)) << scale;
    }
  }
  g[123] = -kInf;
  for (const float norm_type : {2.0f, kInf}) {
    SCOPED_TRACE("-inf, norm_type " + std::to_string(norm_type));
    const auto [norm, scale] = clip(g, 1.0f, norm_type);
    EXPECT_EQ(norm, kInf);
    EXPECT_EQ(scale, 0.0f);
  }
}

TEST_P(ClipGradNormTest, RepeatCallsAreBitIdentical) {
  const std::vector<float> g = random_floats(rng_, 100003, -5.0f, 5.0f);
  for (const float norm_type : {2.0f, kInf}) {
    const auto first = clip(g, 0.5f, norm_type);
    for (int r = 0; r < 3; ++r) {
      const auto again = clip(g, 0.5f, norm_type);
      EXPECT_TRUE(same_bits(first.first, again.first)) << "norm, repeat " << r;
      EXPECT_TRUE(same_bits(first.second, again.second)) << "scale, repeat " << r;
    }
  }
}

// Gradients whose sum of squares exceeds the float range while the norm itself does not: every
// backend sums the squares in double and finds the same finite norm (an fp32 sum gives inf and
// a scale of 0, which would zero the update).
TEST_P(ClipGradNormTest, LargeGradientsGiveTheFiniteNorm) {
  for (const std::int64_t n : {std::int64_t(3), std::int64_t(5000), std::int64_t(300001)}) {
    SCOPED_TRACE("n " + std::to_string(n));
    std::vector<float> g = random_floats(rng_, n, 1.0f, 2.0f);
    for (std::size_t i = 0; i < g.size(); ++i) g[i] *= (i % 2 ? -3e19f : 3e19f);
    oracle::Vec probe = to_vec(g);
    const double norm = oracle::clip_grad_norm(probe, 1e30, 2.0);
    ASSERT_TRUE(std::isfinite(static_cast<float>(norm)));
    const auto [got_norm, got_scale] = clip(g, 1.0f, 2.0f);
    EXPECT_TRUE(std::isfinite(got_norm)) << "norm " << got_norm;
    EXPECT_TRUE(close_to(got_norm, norm, kTolFp32)) << "norm";
    EXPECT_TRUE(close_to(got_scale, 1.0 / (norm + 1e-6), kTolFp32)) << "scale";
    EXPECT_GT(got_scale, 0.0f);
  }
}

// ---------------------------------------------------------------- bad options

struct BadAdamOption {
  const char* field;
  AdamOptions opt;
};

std::vector<BadAdamOption> bad_adam_options() {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<BadAdamOption> v;
  const auto with = [&](const char* field, auto set) {
    AdamOptions o;
    set(o);
    v.push_back({field, o});
  };
  for (const float bad : {-1e-3f, nan, kInf}) {
    with("lr", [&](AdamOptions& o) { o.lr = bad; });
    with("eps", [&](AdamOptions& o) { o.eps = bad; });
    with("weight_decay", [&](AdamOptions& o) { o.weight_decay = bad; });
  }
  for (const float bad : {-0.1f, 1.0f, 1.5f, nan}) {
    with("beta1", [&](AdamOptions& o) { o.beta1 = bad; });
    with("beta2", [&](AdamOptions& o) { o.beta2 = bad; });
  }
  return v;
}

TEST_P(AdamTest, BadOptionsAreArgumentErrorsNamingTheField) {
  Mlp model(ctx(), {3, 2});
  const std::vector<float> p0 = random_floats(rng_, 5);
  DeviceAdam dev(ctx(), p0, false, 0.1f);
  const Buffer<float> g = upload(ctx(), p0);
  for (const BadAdamOption& b : bad_adam_options()) {
    SCOPED_TRACE(b.field);
    EXPECT_THROW_THAT(validate(b.opt), ArgumentError, NamesArgument(b.field));
    EXPECT_THROW_THAT(Adam(model, b.opt), ArgumentError, NamesArgument(b.field));
    AdamOptions w = b.opt;
    w.decoupled_weight_decay = true;
    EXPECT_THROW_THAT(AdamW(model, w), ArgumentError, NamesArgument(b.field));
    EXPECT_THROW_THAT(dev.step(ctx(), g, b.opt), ArgumentError, NamesArgument(b.field));
  }
  EXPECT_TRUE(bit_identical(dev.p.to_host(ctx()), p0)) << "a rejected call changed the params";
  EXPECT_EQ(dev.scalars.to_host(ctx())[0], 0.0f) << "a rejected call counted an update";
  // The limits themselves are valid: beta 0, lr, eps and weight decay 0.
  EXPECT_NO_THROW(validate(adam_opts(0, 0, 0, 0, 0, true, true, true)));
  EXPECT_NO_THROW(Adam(model, adam_opts(0, 0, 0.999999f, 0, 0, false, false, false)));
  // A bad schedule is refused too.
  LrSchedule bad_sched;
  bad_sched.kind = LrSchedule::Kind::cosine;
  bad_sched.total = 0;
  EXPECT_THROW_THAT(Adam(model, {}, bad_sched), ArgumentError, NamesArgument("total"));
}

TEST_P(AdamTest, BadBuffersAreRejectedNamingTheArgument) {
  const std::vector<float> p0 = random_floats(rng_, 6);
  DeviceAdam dev(ctx(), p0, true, 0.1f);
  const Buffer<float> g = upload(ctx(), p0), short_g = upload(ctx(), std::vector<float>(5, 1.0f));
  AdamOptions ams;
  ams.amsgrad = true;
  AdamStep s;
  s.lr_device = dev.lr.data();
  s.scalars = dev.scalars.data();
  const auto call = [&](VectorView<const float> grads, VectorView<float> m, VectorView<float> vmax,
                        const AdamOptions& o, const AdamStep& st) {
    adam_update(ctx(), dev.p.view(), grads, m, dev.v.view(), vmax, o, st);
  };
  EXPECT_THROW_THAT(call(short_g.view(), dev.m.view(), dev.vmax.view(), ams, s), ShapeError,
                    NamesArgument("grads"));
  EXPECT_THROW_THAT(call(g.view(), dev.m.view().slice(0, 5), dev.vmax.view(), ams, s), ShapeError,
                    NamesArgument("exp_avg"));
  EXPECT_THROW_THAT(call(g.view(), dev.m.view(), {}, ams, s), ArgumentError,
                    NamesArgument("max_exp_avg_sq"));
  AdamStep no_lr = s;
  no_lr.lr_device = nullptr;
  EXPECT_THROW_THAT(call(g.view(), dev.m.view(), dev.vmax.view(), ams, no_lr), ArgumentError,
                    NamesArgument("lr_device"));
  AdamStep no_scalars = s;
  no_scalars.scalars = nullptr;
  EXPECT_THROW_THAT(call(g.view(), dev.m.view(), dev.vmax.view(), ams, no_scalars), ArgumentError,
                    NamesArgument("scalars"));
  AdamStep nan_scale = s;
  nan_scale.grad_scale = nan_f();
  EXPECT_THROW_THAT(call(g.view(), dev.m.view(), dev.vmax.view(), ams, nan_scale), ArgumentError,
                    NamesArgument("grad_scale"));
  EXPECT_TRUE(bit_identical(dev.p.to_host(ctx()), p0)) << "a rejected call changed the params";
}

TEST_P(ClipGradNormTest, BadArgumentsAreArgumentErrorsNamingTheField) {
  const Buffer<float> g = upload(ctx(), random_floats(rng_, 9));
  Buffer<float> out(ctx(), 2);
  for (const float bad : {0.0f, -1.0f, nan_f(), kInf}) {
    SCOPED_TRACE("max_norm " + std::to_string(bad));
    EXPECT_THROW_THAT(clip_grad_norm(ctx(), g.view(), bad, 2.0f, out.data(), out.data() + 1),
                      ArgumentError, NamesArgument("max_norm"));
  }
  for (const float bad : {3.0f, 1.0f, 0.0f, -kInf, nan_f()}) {
    SCOPED_TRACE("norm_type " + std::to_string(bad));
    EXPECT_THROW_THAT(clip_grad_norm(ctx(), g.view(), 1.0f, bad, out.data(), out.data() + 1),
                      ArgumentError, NamesArgument("norm_type"));
  }
  EXPECT_THROW_THAT(clip_grad_norm(ctx(), g.view(), 1.0f, 2.0f, nullptr, out.data()), ArgumentError,
                    NamesArgument("norm"));
  EXPECT_THROW_THAT(clip_grad_norm(ctx(), g.view(), 1.0f, 2.0f, out.data(), nullptr), ArgumentError,
                    NamesArgument("scale"));
}

}  // namespace
}  // namespace descent::test
