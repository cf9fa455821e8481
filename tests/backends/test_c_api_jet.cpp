// The C API's losses on derivatives give the C++ API's bits: a jet's blocks, and a step built
// from a boundary term and a PDE residual, then an optimizer step, on every device present.
#include <algorithm>
#include <cmath>

#include "descent/descent.h"
#include "descent/descent.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

class CApiJetTest : public BackendTest {};

#define C_OK(call) ASSERT_EQ((call), DESCENT_OK) << descent_last_error()

// A C model of `widths` (tanh, seed 5), Adam at lr 1e-2 and a jet with the unit directions.
struct CWorld {
  descent_context* ctx = nullptr;
  descent_model* model = nullptr;
  descent_optimizer* opt = nullptr;
  descent_jet* jet = nullptr;

  CWorld(const Device& device, const std::vector<std::int64_t>& widths) {
    const std::string name = device.str();
    EXPECT_EQ(descent_context_create(name.c_str(), 1, &ctx), DESCENT_OK);
    EXPECT_EQ(
        descent_model_create(ctx, widths.data(), std::int64_t(widths.size()), "tanh", 5, &model),
        DESCENT_OK);
    EXPECT_EQ(descent_optimizer_create_adam(model, "adam", 1e-2f, 0.9f, 0.999f, 1e-8f, 0, 0,
                                            nullptr, 0, 0, &opt),
              DESCENT_OK);
    EXPECT_EQ(descent_jet_create(model, 0, nullptr, nullptr, 1, &jet), DESCENT_OK);
  }
  ~CWorld() {
    descent_jet_destroy(jet);
    descent_optimizer_destroy(opt);
    descent_model_destroy(model);
    descent_context_destroy(ctx);
  }
  CWorld(const CWorld&) = delete;
  CWorld& operator=(const CWorld&) = delete;

  // The model's parameters after one optimizer step.
  std::vector<float> step_and_params() {
    EXPECT_EQ(descent_optimizer_step(opt), DESCENT_OK) << descent_last_error();
    std::int64_t count = 0;
    EXPECT_EQ(descent_model_parameter_count(model, &count), DESCENT_OK);
    std::vector<float> params(static_cast<std::size_t>(count));
    EXPECT_EQ(descent_model_get_params(model, params.data(), count), DESCENT_OK);
    return params;
  }
};

// The C++ twin of CWorld, on one thread as the C context is.
struct CppWorld {
  Context ctx;
  Mlp model;
  Adam adam;
  Jet jet;

  CppWorld(const Device& device, const std::vector<std::int64_t>& widths)
      : ctx(device, one_thread()),
        model(ctx, widths, Activation::tanh, seeded()),
        adam(model, lr()),
        jet(model, {}) {}
  static ContextOptions one_thread() {
    ContextOptions o;
    o.threads = 1;
    return o;
  }
  static MlpOptions seeded() {
    MlpOptions o;
    o.seed = 5;
    return o;
  }
  static AdamOptions lr() {
    AdamOptions o;
    o.lr = 1e-2f;
    return o;
  }
};

// The residual problem both step tests build: rows interior points, 4 boundary points.
struct StepData {
  std::vector<float> xi, f, xb, ub;
  std::int64_t rows, boundary = 4;
  float b[2] = {0.5f, -0.25f}, d[2] = {0.0f, 1.0f};

  explicit StepData(std::int64_t n) : ub(4, 0.25f), rows(n) {
    for (std::int64_t i = 0; i < rows * 2; ++i) xi.push_back(std::sin(0.37f * float(i) + 0.2f));
    for (std::int64_t i = 0; i < rows; ++i) f.push_back(std::cos(0.5f * float(i)));
    for (std::int64_t i = 0; i < boundary * 2; ++i) xb.push_back(float(i % 3) * 0.5f);
  }
  PdeResidual residual() const {
    PdeResidual r;
    r.a = 0.3f;
    r.b = {b[0], b[1]};
    r.c = -1.0f;
    r.d = {d[0], d[1]};
    return r;
  }
};

// The C++ boundary term of StepData (weight `weight`, loss to loss[0]): overwrites the gradients.
void boundary_term(CppWorld& w, const StepData& s, Buffer<float>& loss, float weight) {
  Buffer<float> xbd = upload(w.ctx, s.xb), ubd = upload(w.ctx, s.ub);
  const ForwardPass pass = w.model.forward(xbd.matrix(s.boundary, 2));
  LossOutput out;
  out.loss = VectorView<float>(loss.data(), 1, w.ctx.device());
  out.grad = pass.output_grad;
  out.grad_scale = weight;
  mse_loss(w.ctx, pass.output, ubd.matrix(s.boundary, 1), out);
  w.model.backward(pass);
}

TEST_P(CApiJetTest, AStepBuiltTermByTermEqualsTheCppApi) {
  const StepData s(6);
  const std::vector<std::int64_t> widths = {2, 8, 8, 1};

  // C.
  CWorld c(GetParam(), widths);
  double c_boundary = 0, c_residual = 0;
  C_OK(descent_model_mse_gradient(c.model, s.xb.data(), s.boundary, 2, 2, s.ub.data(), 1,
                                  DESCENT_MEMORY_HOST, 2.0f, &c_boundary));
  C_OK(descent_jet_forward(c.jet, s.xi.data(), s.rows, 2, 2, DESCENT_MEMORY_HOST));
  std::vector<float> c_lap(s.rows), c_dx(s.rows);
  C_OK(descent_jet_read(c.jet, 3, c_lap.data(), s.rows, 1, DESCENT_MEMORY_HOST));
  C_OK(descent_jet_read(c.jet, 1, c_dx.data(), s.rows, 1, DESCENT_MEMORY_HOST));
  C_OK(descent_jet_pde_residual(c.jet, 0.3f, s.b, -1.0f, s.d, s.f.data(), s.rows, 1,
                                DESCENT_MEMORY_HOST, 0.5f, 1, &c_residual));
  const std::vector<float> c_params = c.step_and_params();

  // C++.
  CppWorld w(GetParam(), widths);
  Buffer<float> xid = upload(w.ctx, s.xi), fd = upload(w.ctx, s.f), loss(w.ctx, 2);
  boundary_term(w, s, loss, 2.0f);
  jet_forward(w.model, xid.matrix(s.rows, 2), w.jet);
  const std::vector<float> lap = to_host(w.ctx, w.jet.second());
  const std::vector<float> dx = to_host(w.ctx, w.jet.derivative(0));
  const JetAdjoints adjoints =
      pde_residual_loss(w.jet, s.residual(), fd.matrix(s.rows, 1),
                        VectorView<float>(loss.data() + 1, 1, w.ctx.device()), 0.5f);
  jet_backward(w.model, w.jet, adjoints);
  w.adam.step();
  const std::vector<float> losses = loss.to_host(w.ctx);

  EXPECT_EQ(c_lap, lap);
  EXPECT_EQ(c_dx, dx);
  EXPECT_EQ(c_boundary, 2.0 * double(losses[0]));
  EXPECT_EQ(c_residual, double(losses[1]));
  EXPECT_EQ(c_params, w.model.params_to_host());
  EXPECT_GT(c_residual, 0.0);
}

// The one-call residual step from C: the C++ pde_residual_step's bits (outputs, loss, the step
// after it), over a batch that leaves a partial slice; after it, descent_jet_pde_residual needs
// a descent_jet_forward first and says so, changing nothing.
TEST_P(CApiJetTest, AOneCallResidualStepEqualsTheCppApi) {
  const StepData s(100);
  const std::vector<std::int64_t> widths = {2, 8, 8, 1};

  CWorld c(GetParam(), widths);
  double c_residual = 0;
  C_OK(descent_model_mse_gradient(c.model, s.xb.data(), s.boundary, 2, 2, s.ub.data(), 1,
                                  DESCENT_MEMORY_HOST, 1.0f, nullptr));
  C_OK(descent_jet_pde_residual_step(c.jet, s.xi.data(), s.rows, 2, 2, 0.3f, s.b, -1.0f, s.d,
                                     s.f.data(), 1, DESCENT_MEMORY_HOST, 0.5f, 1, &c_residual));
  std::vector<float> c_lap(s.rows);
  C_OK(descent_jet_read(c.jet, 3, c_lap.data(), s.rows, 1, DESCENT_MEMORY_HOST));
  double again = -1;
  EXPECT_EQ(descent_jet_pde_residual(c.jet, 0.3f, s.b, -1.0f, s.d, s.f.data(), s.rows, 1,
                                     DESCENT_MEMORY_HOST, 0.5f, 1, &again),
            DESCENT_ERROR_ARGUMENT);
  EXPECT_NE(std::string(descent_last_error()).find("jet_forward"), std::string::npos)
      << descent_last_error();
  EXPECT_EQ(again, -1.0);
  const std::vector<float> c_params = c.step_and_params();

  CppWorld w(GetParam(), widths);
  Buffer<float> xid = upload(w.ctx, s.xi), fd = upload(w.ctx, s.f), loss(w.ctx, 2);
  boundary_term(w, s, loss, 1.0f);
  pde_residual_step(w.model, xid.matrix(s.rows, 2), w.jet, s.residual(), fd.matrix(s.rows, 1),
                    VectorView<float>(loss.data() + 1, 1, w.ctx.device()), 0.5f);
  const std::vector<float> lap = to_host(w.ctx, w.jet.second());
  w.adam.step();

  EXPECT_EQ(c_lap, lap);
  EXPECT_EQ(c_residual, double(loss.to_host(w.ctx)[1]));
  EXPECT_EQ(c_params, w.model.params_to_host());
  EXPECT_GT(c_residual, 0.0);
}

// What the C test's loss callback needs: the handles and the points.
struct CPinn {
  descent_model* model = nullptr;
  descent_jet* jet = nullptr;
  std::vector<float> xi, f, xb, ub;
  std::int64_t rows = 0, boundary = 0;
  int calls = 0, fail_at = -1;  // fail_at: the call that returns DESCENT_ERROR_IO
};

descent_status c_pinn_loss(void* user, float* loss) {
  auto& p = *static_cast<CPinn*>(user);
  if (++p.calls == p.fail_at) return DESCENT_ERROR_IO;
  const float b[] = {1.0f, 0.0f}, d[] = {0.0f, 1.0f};
  double boundary = 0, residual = 0;
  descent_status s = descent_model_mse_gradient(p.model, p.xb.data(), p.boundary, 2, 2, p.ub.data(),
                                                1, DESCENT_MEMORY_HOST, 1.0f, &boundary);
  if (s == DESCENT_OK)
    s = descent_jet_forward(p.jet, p.xi.data(), p.rows, 2, 2, DESCENT_MEMORY_HOST);
  if (s == DESCENT_OK) {
    s = descent_jet_pde_residual(p.jet, 0.0f, b, -0.1f, d, p.f.data(), p.rows, 1,
                                 DESCENT_MEMORY_HOST, 1.0f, 1, &residual);
  }
  *loss = float(boundary + residual);
  return s;
}

// L-BFGS from C (a callback builds the loss term by term) takes the C++ LBfgs's steps bit for
// bit; a callback's error ends the step with its status and changes nothing.

TEST_P(CApiJetTest, LbfgsThroughACallbackEqualsTheCppApi) {
  CPinn p;
  p.rows = 10;
  p.boundary = 6;
  for (std::int64_t i = 0; i < p.rows * 2; ++i) p.xi.push_back(std::sin(0.41f * float(i) + 0.3f));
  for (std::int64_t i = 0; i < p.rows; ++i) p.f.push_back(0.1f * std::cos(0.7f * float(i)));
  for (std::int64_t i = 0; i < p.boundary * 2; ++i) p.xb.push_back(float(i % 4) / 3.0f - 0.5f);
  for (std::int64_t i = 0; i < p.boundary; ++i) p.ub.push_back(std::sin(float(i)));
  const std::vector<std::int64_t> widths = {2, 8, 8, 1};
  const char* options = "strong_wolfe=1, max_iter=8, history_size=5";

  const std::string device = GetParam().str();
  descent_context* cctx = nullptr;
  descent_optimizer* copt = nullptr;
  C_OK(descent_context_create(device.c_str(), 1, &cctx));
  C_OK(descent_model_create(cctx, widths.data(), 4, "tanh", 5, &p.model));
  C_OK(descent_optimizer_create_from(p.model, "lbfgs", options, nullptr, 0, 0, &copt));
  C_OK(descent_jet_create(p.model, 2, nullptr, nullptr, 1, &p.jet));
  float c_first[2] = {0, 0};
  for (float& first : c_first) C_OK(descent_optimizer_lbfgs_step(copt, c_pinn_loss, &p, &first));
  std::int64_t count = 0;
  C_OK(descent_model_parameter_count(p.model, &count));
  std::vector<float> c_params(static_cast<std::size_t>(count));
  C_OK(descent_model_get_params(p.model, c_params.data(), count));
  // Refusals and a failing callback.
  EXPECT_EQ(descent_optimizer_lbfgs_step(copt, nullptr, &p, nullptr), DESCENT_ERROR_ARGUMENT);
  EXPECT_EQ(descent_optimizer_step(copt), DESCENT_ERROR_ARGUMENT);
  EXPECT_NE(std::string(descent_last_error()).find("closure"), std::string::npos)
      << descent_last_error();
  p.fail_at = p.calls + 3;
  EXPECT_EQ(descent_optimizer_lbfgs_step(copt, c_pinn_loss, &p, nullptr), DESCENT_ERROR_IO);
  EXPECT_NE(std::string(descent_last_error()).find("evaluate returned DESCENT_ERROR_IO"),
            std::string::npos)
      << descent_last_error();
  std::vector<float> after(c_params.size());
  C_OK(descent_model_get_params(p.model, after.data(), count));
  EXPECT_EQ(after, c_params) << "a failed step changes nothing";
  descent_optimizer* adam = nullptr;
  C_OK(descent_optimizer_create_from(p.model, "adam", nullptr, nullptr, 0, 0, &adam));
  EXPECT_EQ(descent_optimizer_lbfgs_step(adam, c_pinn_loss, &p, nullptr), DESCENT_ERROR_ARGUMENT);
  descent_optimizer_destroy(adam);

  // C++.
  ContextOptions one_thread;
  one_thread.threads = 1;
  Context ctx(GetParam(), one_thread);
  MlpOptions seeded;
  seeded.seed = 5;
  Mlp model(ctx, widths, Activation::tanh, seeded);
  std::unique_ptr<Optimizer> opt = make_optimizer(
      model, OptimizerKind::lbfgs, parse_optimizer_options(OptimizerKind::lbfgs, options));
  Jet jet(model, {});
  Buffer<float> xbd = upload(ctx, p.xb), ubd = upload(ctx, p.ub), xid = upload(ctx, p.xi),
                fd = upload(ctx, p.f), loss(ctx, 2);
  PdeResidual residual;
  residual.b = {1.0f, 0.0f};
  residual.c = -0.1f;
  residual.d = {0.0f, 1.0f};
  const LBfgs::Closure closure = [&] {
    const ForwardPass pass = model.forward(xbd.matrix(p.boundary, 2));
    LossOutput out;
    out.loss = VectorView<float>(loss.data(), 1, ctx.device());
    out.grad = pass.output_grad;
    mse_loss(ctx, pass.output, ubd.matrix(p.boundary, 1), out);
    model.backward(pass);
    jet_forward(model, xid.matrix(p.rows, 2), jet);
    jet_backward(model, jet,
                 pde_residual_loss(jet, residual, fd.matrix(p.rows, 1),
                                   VectorView<float>(loss.data() + 1, 1, ctx.device())));
    const std::vector<float> l = loss.to_host(ctx);
    return float(double(l[0]) + double(l[1]));
  };
  auto& lbfgs = dynamic_cast<LBfgs&>(*opt);
  for (const float first : c_first) EXPECT_EQ(lbfgs.step(closure), first);
  EXPECT_EQ(c_params, model.params_to_host());
  EXPECT_GE(lbfgs.iterations(), 8);

  descent_jet_destroy(p.jet);
  descent_optimizer_destroy(copt);
  descent_model_destroy(p.model);
  descent_context_destroy(cctx);
}

// The C input gradient gives the C++ one's bits, may write over its own x, leaves the model's
// gradients alone, and with a scaling answers in the caller's units: against central differences
// of descent_model_predict (which applies the same scaling) in double.
TEST_P(CApiJetTest, InputGradientEqualsTheCppApiAndFollowsTheScaling) {
  const std::int64_t rows = 5, in = 3, out = 2;
  const std::vector<std::int64_t> widths = {in, 8, 8, out};
  std::vector<float> x, dy;
  for (std::int64_t i = 0; i < rows * in; ++i) x.push_back(std::sin(0.61f * float(i) + 0.3f));
  for (std::int64_t i = 0; i < rows * out; ++i) dy.push_back(std::cos(0.83f * float(i)) - 0.2f);

  const std::string device = GetParam().str();
  descent_context* cctx = nullptr;
  descent_model* cmodel = nullptr;
  C_OK(descent_context_create(device.c_str(), 1, &cctx));
  C_OK(descent_model_create(cctx, widths.data(), 4, "tanh", 7, &cmodel));
  std::vector<float> c_dx(static_cast<std::size_t>(rows * in), -1.0f);
  C_OK(descent_model_input_gradient(cmodel, x.data(), rows, in, in, dy.data(), out, c_dx.data(), in,
                                    DESCENT_MEMORY_HOST));
  // dx over x itself: the same answer.
  std::vector<float> in_place = x;
  C_OK(descent_model_input_gradient(cmodel, in_place.data(), rows, in, in, dy.data(), out,
                                    in_place.data(), in, DESCENT_MEMORY_HOST));
  EXPECT_EQ(in_place, c_dx);

  ContextOptions one_thread;
  one_thread.threads = 1;
  Context ctx(GetParam(), one_thread);
  MlpOptions seeded;
  seeded.seed = 7;
  Mlp model(ctx, widths, Activation::tanh, seeded);
  Buffer<float> xd = upload(ctx, x), dyd = upload(ctx, dy), dxd(ctx, rows * in);
  input_gradient(model, xd.matrix(rows, in), dyd.matrix(rows, out), dxd.matrix(rows, in));
  EXPECT_EQ(c_dx, dxd.to_host(ctx));

  // In the caller's units: x' = (x - m) / s in, y = y' * s + m out.
  const float in_mean[] = {0.5f, -1.0f, 0.0f}, in_scale[] = {2.0f, 0.25f, 1.0f};
  const float out_mean[] = {3.0f, -0.5f}, out_scale[] = {4.0f, 0.5f};
  C_OK(descent_model_set_scaling(cmodel, in_mean, in_scale, out_mean, out_scale));
  C_OK(descent_model_input_gradient(cmodel, x.data(), rows, in, in, dy.data(), out, c_dx.data(), in,
                                    DESCENT_MEMORY_HOST));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < in; ++c) {
      const float h = 1e-2f * in_scale[c];
      std::vector<float> plus(x.begin() + r * in, x.begin() + (r + 1) * in), minus = plus;
      plus[static_cast<std::size_t>(c)] += h;
      minus[static_cast<std::size_t>(c)] -= h;
      std::vector<float> yp(static_cast<std::size_t>(out)), ym(static_cast<std::size_t>(out));
      C_OK(descent_model_predict(cmodel, plus.data(), 1, in, in, yp.data(), out,
                                 DESCENT_MEMORY_HOST));
      C_OK(descent_model_predict(cmodel, minus.data(), 1, in, in, ym.data(), out,
                                 DESCENT_MEMORY_HOST));
      double fd = 0;
      for (std::int64_t o = 0; o < out; ++o) {
        fd += double(dy[r * out + o]) * (double(yp[o]) - double(ym[o])) /
              (double(plus[c]) - double(minus[c]));
      }
      const double got = c_dx[r * in + c];
      EXPECT_NEAR(got, fd, 2e-3 * std::max(1.0, std::abs(fd))) << "row " << r << " input " << c;
    }
  }
  descent_model_destroy(cmodel);
  descent_context_destroy(cctx);
}

DESCENT_INSTANTIATE_BACKENDS(CApiJetTest);

}  // namespace
}  // namespace descent::test
