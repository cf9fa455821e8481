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

TEST_P(CApiJetTest, AStepBuiltTermByTermEqualsTheCppApi) {
  const std::int64_t rows = 6, boundary = 4;
  const std::vector<std::int64_t> widths = {2, 8, 8, 1};
  std::vector<float> xi, f, xb, ub(boundary, 0.25f);
  for (std::int64_t i = 0; i < rows * 2; ++i) xi.push_back(std::sin(0.37f * float(i) + 0.2f));
  for (std::int64_t i = 0; i < rows; ++i) f.push_back(std::cos(0.5f * float(i)));
  for (std::int64_t i = 0; i < boundary * 2; ++i) xb.push_back(float(i % 3) * 0.5f);
  const float b[] = {0.5f, -0.25f}, d[] = {0.0f, 1.0f};

  // C.
  const std::string device = GetParam().str();
  descent_context* cctx = nullptr;
  descent_model* cmodel = nullptr;
  descent_optimizer* copt = nullptr;
  descent_jet* cjet = nullptr;
  C_OK(descent_context_create(device.c_str(), 1, &cctx));
  C_OK(descent_model_create(cctx, widths.data(), 4, "tanh", 5, &cmodel));
  C_OK(descent_optimizer_create_adam(cmodel, "adam", 1e-2f, 0.9f, 0.999f, 1e-8f, 0, 0, nullptr, 0,
                                     0, &copt));
  C_OK(descent_jet_create(cmodel, 0, nullptr, nullptr, 1, &cjet));
  double c_boundary = 0, c_residual = 0;
  C_OK(descent_model_mse_gradient(cmodel, xb.data(), boundary, 2, 2, ub.data(), 1,
                                  DESCENT_MEMORY_HOST, 2.0f, &c_boundary));
  C_OK(descent_jet_forward(cjet, xi.data(), rows, 2, 2, DESCENT_MEMORY_HOST));
  std::vector<float> c_lap(rows), c_dx(rows);
  C_OK(descent_jet_read(cjet, 3, c_lap.data(), rows, 1, DESCENT_MEMORY_HOST));
  C_OK(descent_jet_read(cjet, 1, c_dx.data(), rows, 1, DESCENT_MEMORY_HOST));
  C_OK(descent_jet_pde_residual(cjet, 0.3f, b, -1.0f, d, f.data(), rows, 1, DESCENT_MEMORY_HOST,
                                0.5f, 1, &c_residual));
  C_OK(descent_optimizer_step(copt));
  std::int64_t count = 0;
  C_OK(descent_model_parameter_count(cmodel, &count));
  std::vector<float> c_params(static_cast<std::size_t>(count));
  C_OK(descent_model_get_params(cmodel, c_params.data(), count));

  // C++.
  ContextOptions one_thread;
  one_thread.threads = 1;
  Context ctx(GetParam(), one_thread);
  MlpOptions seeded;
  seeded.seed = 5;
  Mlp model(ctx, widths, Activation::tanh, seeded);
  AdamOptions lr;
  lr.lr = 1e-2f;
  Adam adam(model, lr);
  Jet jet(model, {});
  Buffer<float> xbd = upload(ctx, xb), ubd = upload(ctx, ub), xid = upload(ctx, xi),
                fd = upload(ctx, f), loss(ctx, 2);
  const ForwardPass pass = model.forward(xbd.matrix(boundary, 2));
  LossOutput out;
  out.loss = VectorView<float>(loss.data(), 1, ctx.device());
  out.grad = pass.output_grad;
  out.grad_scale = 2.0f;
  mse_loss(ctx, pass.output, ubd.matrix(boundary, 1), out);
  model.backward(pass);
  jet_forward(model, xid.matrix(rows, 2), jet);
  const std::vector<float> lap = to_host(ctx, jet.second()), dx = to_host(ctx, jet.derivative(0));
  PdeResidual residual;
  residual.a = 0.3f;
  residual.b = {b[0], b[1]};
  residual.c = -1.0f;
  residual.d = {d[0], d[1]};
  const JetAdjoints adjoints = pde_residual_loss(
      jet, residual, fd.matrix(rows, 1), VectorView<float>(loss.data() + 1, 1, ctx.device()), 0.5f);
  jet_backward(model, jet, adjoints);
  adam.step();
  const std::vector<float> losses = loss.to_host(ctx);

  EXPECT_EQ(c_lap, lap);
  EXPECT_EQ(c_dx, dx);
  EXPECT_EQ(c_boundary, 2.0 * double(losses[0]));
  EXPECT_EQ(c_residual, double(losses[1]));
  EXPECT_EQ(c_params, model.params_to_host());
  EXPECT_GT(c_residual, 0.0);

  descent_jet_destroy(cjet);
  descent_optimizer_destroy(copt);
  descent_model_destroy(cmodel);
  descent_context_destroy(cctx);
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
// The one-call residual step from C: the C++ pde_residual_step's bits (outputs, loss, the step
// after it), over a batch that leaves a partial slice; after it, descent_jet_pde_residual needs
// a descent_jet_forward first and says so, changing nothing.
TEST_P(CApiJetTest, AOneCallResidualStepEqualsTheCppApi) {
  const std::int64_t rows = 100, boundary = 4;
  const std::vector<std::int64_t> widths = {2, 8, 8, 1};
  std::vector<float> xi, f, xb, ub(boundary, 0.25f);
  for (std::int64_t i = 0; i < rows * 2; ++i) xi.push_back(std::sin(0.37f * float(i) + 0.2f));
  for (std::int64_t i = 0; i < rows; ++i) f.push_back(std::cos(0.5f * float(i)));
  for (std::int64_t i = 0; i < boundary * 2; ++i) xb.push_back(float(i % 3) * 0.5f);
  const float b[] = {0.5f, -0.25f}, d[] = {0.0f, 1.0f};

  const std::string device = GetParam().str();
  descent_context* cctx = nullptr;
  descent_model* cmodel = nullptr;
  descent_optimizer* copt = nullptr;
  descent_jet* cjet = nullptr;
  C_OK(descent_context_create(device.c_str(), 1, &cctx));
  C_OK(descent_model_create(cctx, widths.data(), 4, "tanh", 5, &cmodel));
  C_OK(descent_optimizer_create_adam(cmodel, "adam", 1e-2f, 0.9f, 0.999f, 1e-8f, 0, 0, nullptr, 0,
                                     0, &copt));
  C_OK(descent_jet_create(cmodel, 0, nullptr, nullptr, 1, &cjet));
  double c_residual = 0;
  C_OK(descent_model_mse_gradient(cmodel, xb.data(), boundary, 2, 2, ub.data(), 1,
                                  DESCENT_MEMORY_HOST, 1.0f, nullptr));
  C_OK(descent_jet_pde_residual_step(cjet, xi.data(), rows, 2, 2, 0.3f, b, -1.0f, d, f.data(), 1,
                                     DESCENT_MEMORY_HOST, 0.5f, 1, &c_residual));
  std::vector<float> c_lap(rows);
  C_OK(descent_jet_read(cjet, 3, c_lap.data(), rows, 1, DESCENT_MEMORY_HOST));
  double again = -1;
  const descent_status refused = descent_jet_pde_residual(cjet, 0.3f, b, -1.0f, d, f.data(), rows,
                                                          1, DESCENT_MEMORY_HOST, 0.5f, 1, &again);
  EXPECT_EQ(refused, DESCENT_ERROR_ARGUMENT);
  EXPECT_NE(std::string(descent_last_error()).find("jet_forward"), std::string::npos)
      << descent_last_error();
  EXPECT_EQ(again, -1.0);
  C_OK(descent_optimizer_step(copt));
  std::int64_t count = 0;
  C_OK(descent_model_parameter_count(cmodel, &count));
  std::vector<float> c_params(static_cast<std::size_t>(count));
  C_OK(descent_model_get_params(cmodel, c_params.data(), count));

  ContextOptions one_thread;
  one_thread.threads = 1;
  Context ctx(GetParam(), one_thread);
  MlpOptions seeded;
  seeded.seed = 5;
  Mlp model(ctx, widths, Activation::tanh, seeded);
  AdamOptions lr;
  lr.lr = 1e-2f;
  Adam adam(model, lr);
  Jet jet(model, {});
  Buffer<float> xbd = upload(ctx, xb), ubd = upload(ctx, ub), xid = upload(ctx, xi),
                fd = upload(ctx, f), loss(ctx, 2);
  const ForwardPass pass = model.forward(xbd.matrix(boundary, 2));
  LossOutput out;
  out.loss = VectorView<float>(loss.data(), 1, ctx.device());
  out.grad = pass.output_grad;
  mse_loss(ctx, pass.output, ubd.matrix(boundary, 1), out);
  model.backward(pass);
  PdeResidual residual;
  residual.a = 0.3f;
  residual.b = {b[0], b[1]};
  residual.c = -1.0f;
  residual.d = {d[0], d[1]};
  pde_residual_step(model, xid.matrix(rows, 2), jet, residual, fd.matrix(rows, 1),
                    VectorView<float>(loss.data() + 1, 1, ctx.device()), 0.5f);
  const std::vector<float> lap = to_host(ctx, jet.second());
  adam.step();

  EXPECT_EQ(c_lap, lap);
  EXPECT_EQ(c_residual, double(loss.to_host(ctx)[1]));
  EXPECT_EQ(c_params, model.params_to_host());
  EXPECT_GT(c_residual, 0.0);

  descent_jet_destroy(cjet);
  descent_optimizer_destroy(copt);
  descent_model_destroy(cmodel);
  descent_context_destroy(cctx);
}

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
