// The C API's losses on derivatives give the C++ API's bits: a jet's blocks, and a step built
// from a boundary term and a PDE residual, then an optimizer step, on every device present.
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

DESCENT_INSTANTIATE_BACKENDS(CApiJetTest);

}  // namespace
}  // namespace descent::test
