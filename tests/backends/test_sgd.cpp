// sgd_update on every backend: hand-computed steps, PyTorch's algorithm over several steps, and
// the mixed-precision extras (found_inf, lr_device, params_bf16, grad_scale).
#include <cmath>
#include <sstream>

#include "kernels/math/sgd.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

// The same three parameters, gradients and previous momentum for every hand-computed row.
const std::vector<float> kP = {1.0f, -2.0f, 0.5f};
const std::vector<float> kG = {0.5f, 0.25f, -1.0f};
const std::vector<float> kM = {1.0f, -1.0f, 0.5f};  // momentum buffer before a later step

struct HandCase {
  const char* name;
  SgdOptions opt;
  bool first_step;
  float grad_scale;
  std::vector<float> want_p;
  std::vector<float> want_m;  // empty when momentum == 0
};

// lr = 0.1 throughout. g' is the gradient after scale/maximize/weight decay, buf the new momentum.
// Fields: name, {lr, momentum, dampening, weight_decay, nesterov, maximize}, first_step,
// grad_scale, expected params, expected momentum.
// clang-format off
const HandCase kHandCases[] = {
    // p - 0.1 g = {1 - .05, -2 - .025, .5 + .1}
    {"plain", {0.1f, 0, 0, 0, false, false}, false, 1.0f,
     {0.95f, -2.025f, 0.6f}, {}},
    // g' = g + 0.1 p = {.6, .05, -.95};  p - 0.1 g' = {.94, -2.005, .595}
    {"weight_decay", {0.1f, 0, 0, 0.1f, false, false}, false, 1.0f,
     {0.94f, -2.005f, 0.595f}, {}},
    // first step: buf = g (no dampening); p - 0.1 buf = {.95, -2.025, .6}
    {"momentum first step", {0.1f, 0.9f, 0, 0, false, false}, true, 1.0f,
     {0.95f, -2.025f, 0.6f}, {0.5f, 0.25f, -1.0f}},
    // buf = .9 m + g = {.9 + .5, -.9 + .25, .45 - 1} = {1.4, -.65, -.55}; p - .1 buf
    {"momentum later step", {0.1f, 0.9f, 0, 0, false, false}, false, 1.0f,
     {0.86f, -1.935f, 0.555f}, {1.4f, -0.65f, -0.55f}},
    // buf = .9 m + .5 g = {.9 + .25, -.9 + .125, .45 - .5} = {1.15, -.775, -.05}; p - .1 buf
    {"dampening later step", {0.1f, 0.9f, 0.5f, 0, false, false}, false, 1.0f,
     {0.885f, -1.9225f, 0.505f}, {1.15f, -0.775f, -0.05f}},
    // dampening is not applied on the first step: buf = g
    {"dampening first step", {0.1f, 0.9f, 0.5f, 0, false, false}, true, 1.0f,
     {0.95f, -2.025f, 0.6f}, {0.5f, 0.25f, -1.0f}},
    // buf = g; g' = g + .9 buf = 1.9 g = {.95, .475, -1.9}; p - .1 g' = {.905, -2.0475, .69}
    {"nesterov first step", {0.1f, 0.9f, 0, 0, true, false}, true, 1.0f,
     {0.905f, -2.0475f, 0.69f}, {0.5f, 0.25f, -1.0f}},
    // buf = {1.4, -.65, -.55}; g' = g + .9 buf = {1.76, -.335, -1.495}; p - .1 g'
    {"nesterov later step", {0.1f, 0.9f, 0, 0, true, false}, false, 1.0f,
     {0.824f, -1.9665f, 0.6495f}, {1.4f, -0.65f, -0.55f}},
    // g' = -g; p + .1 g = {1.05, -1.975, .4}
    {"maximize", {0.1f, 0, 0, 0, false, true}, false, 1.0f,
     {1.05f, -1.975f, 0.4f}, {}},
    // g' = -g + .1 p = {-.4, -.45, 1.05}; p - .1 g' = {1.04, -1.955, .395}
    {"maximize + weight_decay", {0.1f, 0, 0, 0.1f, false, true}, false, 1.0f,
     {1.04f, -1.955f, 0.395f}, {}},
    // g' = {-.4, -.45, 1.05}; buf = .9 m + g' = {.5, -1.35, 1.5};
    // g'' = g' + .9 buf = {.05, -1.665, 2.4}; p - .1 g'' = {.995, -1.8335, .26}
    {"maximize + weight_decay + nesterov later step", {0.1f, 0.9f, 0, 0.1f, true, true}, false, 1.0f,
     {0.995f, -1.8335f, 0.26f}, {0.5f, -1.35f, 1.5f}},
    // g' = {.6, .05, -.95}; buf = .9 m + .5 g' = {1.2, -.875, -.025}; p - .1 buf
    {"weight_decay + momentum + dampening later step", {0.1f, 0.9f, 0.5f, 0.1f, false, false}, false, 1.0f,
     {0.88f, -1.9125f, 0.5025f}, {1.2f, -0.875f, -0.025f}},
    // g' = .5 g = {.25, .125, -.5}; p - .1 g' = {.975, -2.0125, .55}
    {"grad_scale", {0.1f, 0, 0, 0, false, false}, false, 0.5f,
     {0.975f, -2.0125f, 0.55f}, {}},
    // g' = .5 g + .1 p = {.35, -.075, -.45}; first step buf = g'; p - .1 buf
    {"grad_scale + weight_decay + momentum first step", {0.1f, 0.9f, 0, 0.1f, false, false}, true, 0.5f,
     {0.965f, -1.9925f, 0.545f}, {0.35f, -0.075f, -0.45f}},
};
// clang-format on

class SgdTest : public BackendTest {};
DESCENT_INSTANTIATE_BACKENDS(SgdTest);

TEST_P(SgdTest, HandComputedSteps) {
  for (const HandCase& c : kHandCases) {
    SCOPED_TRACE(c.name);
    Buffer<float> p = upload(ctx(), kP);
    Buffer<float> g = upload(ctx(), kG);
    const bool has_m = c.opt.momentum != 0.0f;
    // On the first step the momentum buffer's contents must be ignored: poison them.
    Buffer<float> m =
        has_m ? (c.first_step ? poisoned<float>(ctx(), 3) : upload(ctx(), kM)) : Buffer<float>();
    SgdStep step;
    step.first_step = c.first_step;
    step.grad_scale = c.grad_scale;
    sgd_update(ctx(), p.view(), std::as_const(g).view(), has_m ? m.view() : VectorView<float>{},
               c.opt, step);
    const std::vector<float> got_p = p.to_host(ctx());
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(got_p[i], c.want_p[i], 1e-6) << "param " << i;
    if (has_m) {
      const std::vector<float> got_m = m.to_host(ctx());
      for (int i = 0; i < 3; ++i) EXPECT_NEAR(got_m[i], c.want_m[i], 1e-6) << "momentum " << i;
    }
    // The gradients are read-only.
    EXPECT_EQ(g.to_host(ctx()), kG);
  }
}

struct TorchCase {
  const char* name;
  SgdOptions opt;
  float grad_scale;
};

const TorchCase kTorchCases[] = {
    {"plain", {0.05f, 0, 0, 0, false, false}, 1.0f},
    {"momentum", {0.05f, 0.9f, 0, 0, false, false}, 1.0f},
    {"momentum + dampening + weight_decay", {0.02f, 0.8f, 0.3f, 1e-2f, false, false}, 1.0f},
    {"nesterov + weight_decay", {0.05f, 0.95f, 0, 5e-3f, true, false}, 1.0f},
    {"nesterov + maximize", {0.01f, 0.5f, 0, 0, true, true}, 1.0f},
    {"maximize + weight_decay, no momentum", {0.1f, 0, 0, 0.1f, false, true}, 1.0f},
    {"momentum + grad_scale", {0.05f, 0.9f, 0.1f, 1e-3f, false, false}, 1.0f / 128.0f},
};

TEST_P(SgdTest, MatchesPyTorchAlgorithmOverFiveSteps) {
  const std::int64_t n = 1003;
  for (const TorchCase& c : kTorchCases) {
    SCOPED_TRACE(c.name);
    std::vector<float> p0 = random_floats(rng_, n);
    oracle::Vec p_ref = to_vec(p0);
    oracle::SgdState state;
    const oracle::SgdHyper h{c.opt.lr,           c.opt.momentum, c.opt.dampening,
                             c.opt.weight_decay, c.opt.nesterov, c.opt.maximize};
    Buffer<float> p = upload(ctx(), p0);
    Buffer<float> m = poisoned<float>(ctx(), n);
    const bool has_m = c.opt.momentum != 0.0f;
    for (int s = 0; s < 5; ++s) {
      SCOPED_TRACE("step " + std::to_string(s));
      const std::vector<float> g = random_floats(rng_, n, -2.0f, 2.0f);
      oracle::Vec g_scaled = to_vec(g);
      for (double& v : g_scaled) v *= c.grad_scale;
      oracle::sgd_step(p_ref, g_scaled, state, h);
      Buffer<float> gb = upload(ctx(), g);
      SgdStep step;
      step.first_step = s == 0;
      step.grad_scale = c.grad_scale;
      sgd_update(ctx(), p.view(), std::as_const(gb).view(), has_m ? m.view() : VectorView<float>{},
                 c.opt, step);
      EXPECT_TRUE(close_to(p.to_host(ctx()), p_ref, kTolFp32)) << "params";
      if (has_m) {
        EXPECT_TRUE(close_to(m.to_host(ctx()), state.momentum, kTolFp32)) << "momentum";
      }
    }
  }
}

// The detail header is the single definition of the update: the CPU backend must agree with it
// to the bit (the GPU compiler may contract a multiply-add into an FMA, so there 1 ulp is allowed).
TEST_P(SgdTest, AgreesWithSharedFormula) {
  const std::int64_t n = 4097;
  const SgdOptions opt{0.03f, 0.9f, 0.1f, 1e-4f, false, false};
  std::vector<float> p = random_floats(rng_, n), m = random_floats(rng_, n);
  const std::vector<float> g = random_floats(rng_, n);
  Buffer<float> pb = upload(ctx(), p), mb = upload(ctx(), m), gb = upload(ctx(), g);
  sgd_update(ctx(), pb.view(), std::as_const(gb).view(), mb.view(), opt, {});
  const detail::SgdCoeffs c{opt.lr, opt.momentum, opt.dampening, opt.weight_decay,
                            1.0f,   opt.nesterov, opt.maximize,  false};
  for (std::size_t i = 0; i < p.size(); ++i) detail::sgd_one(p[i], m[i], g[i], c);
  const std::vector<float> got_p = pb.to_host(ctx()), got_m = mb.to_host(ctx());
  if (on_gpu()) {
    EXPECT_TRUE(close_to(got_p, p, 1e-6));
    EXPECT_TRUE(close_to(got_m, m, 1e-6));
    return;
  }
  std::int64_t differ = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    differ += !same_bits(got_p[std::size_t(i)], p[std::size_t(i)]) ||
              !same_bits(got_m[std::size_t(i)], m[std::size_t(i)]);
  }
  EXPECT_EQ(differ, 0) << "elements that differ from detail::sgd_one";
}

TEST_P(SgdTest, FoundInfSkipsTheUpdate) {
  const std::int64_t n = 257;
  const SgdOptions opt{0.1f, 0.9f, 0, 0.01f, true, false};
  const std::vector<float> p0 = random_floats(rng_, n), m0 = random_floats(rng_, n);
  const std::vector<float> g = random_floats(rng_, n);
  for (std::int32_t flag : {1, 0}) {
    SCOPED_TRACE("found_inf = " + std::to_string(flag));
    Buffer<float> p = upload(ctx(), p0), m = upload(ctx(), m0), gb = upload(ctx(), g);
    Buffer<std::int32_t> found = upload(ctx(), std::vector<std::int32_t>{flag});
    SgdStep step;
    step.found_inf = found.data();
    sgd_update(ctx(), p.view(), std::as_const(gb).view(), m.view(), opt, step);
    const std::vector<float> got_p = p.to_host(ctx()), got_m = m.to_host(ctx());
    if (flag != 0) {
      EXPECT_EQ(got_p, p0) << "params changed although found_inf was set";
      EXPECT_EQ(got_m, m0) << "momentum changed although found_inf was set";
    } else {
      oracle::Vec p_ref = to_vec(p0);
      oracle::SgdState st{to_vec(m0), true};
      oracle::sgd_step(p_ref, to_vec(g), st, {0.1, 0.9, 0, 0.01, true, false});
      EXPECT_TRUE(close_to(got_p, p_ref, kTolFp32));
      EXPECT_TRUE(close_to(got_m, st.momentum, kTolFp32));
    }
  }
}

// momentum_started: the first update applied initialises the buffer (torch), whatever
// first_step says; a skipped one (found_inf) leaves the flag alone.
TEST_P(SgdTest, MomentumStartedMakesTheFirstAppliedUpdateFirst) {
  const std::int64_t n = 131;
  const SgdOptions opt{0.1f, 0.9f, 0.5f};
  const std::vector<float> p0 = random_floats(rng_, n), m0 = random_floats(rng_, n);
  const std::vector<float> g = random_floats(rng_, n);
  Buffer<float> p = upload(ctx(), p0), m = upload(ctx(), m0), gb = upload(ctx(), g);
  Buffer<std::int32_t> started = upload(ctx(), std::vector<std::int32_t>{0, 7});
  Buffer<std::int32_t> found = upload(ctx(), std::vector<std::int32_t>{1});
  SgdStep step;
  step.momentum_started = started.data();
  step.found_inf = found.data();
  sgd_update(ctx(), p.view(), std::as_const(gb).view(), m.view(), opt, step);
  EXPECT_EQ(started.to_host(ctx()), (std::vector<std::int32_t>{0, 7})) << "skipped step";
  EXPECT_EQ(p.to_host(ctx()), p0);
  step.found_inf = nullptr;
  sgd_update(ctx(), p.view(), std::as_const(gb).view(), m.view(), opt, step);
  EXPECT_EQ(started.to_host(ctx()), (std::vector<std::int32_t>{1, 1}));
  EXPECT_EQ(m.to_host(ctx()), g) << "the first applied update: buffer = g";
  sgd_update(ctx(), p.view(), std::as_const(gb).view(), m.view(), opt, step);
  EXPECT_EQ(started.to_host(ctx()), (std::vector<std::int32_t>{1, 0}));
  oracle::Vec p_ref = to_vec(p0);
  oracle::SgdState st;
  oracle::sgd_step(p_ref, to_vec(g), st, {0.1, 0.9, 0.5});
  oracle::sgd_step(p_ref, to_vec(g), st, {0.1, 0.9, 0.5});
  EXPECT_TRUE(close_to(p.to_host(ctx()), p_ref, kTolFp32));
  EXPECT_TRUE(close_to(m.to_host(ctx()), st.momentum, kTolFp32));
}

TEST_P(SgdTest, LrDeviceOverridesOptionsLr) {
  const std::int64_t n = 33;
  const std::vector<float> p0 = random_floats(rng_, n), g = random_floats(rng_, n);
  Buffer<float> p = upload(ctx(), p0), gb = upload(ctx(), g);
  Buffer<float> lr = upload(ctx(), std::vector<float>{0.25f});
  SgdStep step;
  step.lr_device = lr.data();
  sgd_update(ctx(), p.view(), std::as_const(gb).view(), {}, SgdOptions{0.1f}, step);
  oracle::Vec p_ref = to_vec(p0);
  oracle::SgdState st;
  oracle::sgd_step(p_ref, to_vec(g), st, {0.25});
  EXPECT_TRUE(close_to(p.to_host(ctx()), p_ref, kTolFp32));
}

TEST_P(SgdTest, ParamsBf16ReceivesRoundedUpdatedParams) {
  const std::int64_t n = 1001;
  const std::vector<float> p0 = random_floats(rng_, n, -3.0f, 3.0f), g = random_floats(rng_, n);
  Buffer<float> p = upload(ctx(), p0), gb = upload(ctx(), g), m = poisoned<float>(ctx(), n);
  Buffer<bf16> pb = poisoned<bf16>(ctx(), n);
  SgdStep step;
  step.first_step = true;
  step.params_bf16 = pb.view();
  sgd_update(ctx(), p.view(), std::as_const(gb).view(), m.view(), SgdOptions{0.1f, 0.9f}, step);
  const std::vector<float> got = p.to_host(ctx());
  const std::vector<bf16> got_b = pb.to_host(ctx());
  std::int64_t wrong = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    wrong += got_b[i].bits != descent::to_bf16(got[i]).bits;
  }
  EXPECT_EQ(wrong, 0) << "bf16 copies that are not round-to-nearest-even of the new params";
}

// Updating a slice of a flat buffer (one layer of a model) leaves the rest alone.
TEST_P(SgdTest, UpdatesOnlyTheGivenSlice) {
  const std::int64_t n = 100;
  const std::vector<float> p0 = random_floats(rng_, n), g = random_floats(rng_, n);
  Buffer<float> p = upload(ctx(), p0), gb = upload(ctx(), g);
  sgd_update(ctx(), p.view().slice(10, 37), std::as_const(gb).view().slice(10, 37), {},
             SgdOptions{0.5f}, {});
  const std::vector<float> got = p.to_host(ctx());
  for (std::int64_t i = 0; i < n; ++i) {
    const std::size_t k = std::size_t(i);
    if (i >= 10 && i < 47) {
      EXPECT_NEAR(got[k], p0[k] - 0.5 * g[k], 1e-6) << i;
    } else {
      EXPECT_EQ(got[k], p0[k]) << "element " << i << " outside the slice changed";
    }
  }
}

}  // namespace
}  // namespace descent::test
