// Forward jets (descent/jet.hpp) on every backend: each output against the float64 Taylor-series
// oracle (tests/oracle/jet_oracle.*), each parameter and input gradient through them against
// float64 central differences of that oracle, the Laplacian of a network known in closed form,
// and the refusals.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <utility>

#include "descent/jet.hpp"
#include "kernels/math/jet.hpp"
#include "oracle/jet_oracle.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

using oracle::JetNet;
using oracle::Mat;

constexpr JetActivation kSmooth[] = {JetActivation::tanh, JetActivation::sigmoid,
                                     JetActivation::gelu, JetActivation::softplus,
                                     JetActivation::silu};

// ---------------------------------------------------------------- a model and its oracle twin

struct Net {
  std::vector<std::int64_t> widths;
  std::vector<float> params;
  JetNet oracle;
};

// Random parameters (already floats, so both sides see the same values) and activations `acts`.
Net make_net(std::mt19937_64& rng, std::vector<std::int64_t> widths,
             std::vector<JetActivation> acts) {
  Net n;
  n.widths = std::move(widths);
  n.oracle.act = std::move(acts);
  for (std::size_t l = 0; l + 1 < n.widths.size(); ++l) {
    const std::int64_t in = n.widths[l], out = n.widths[l + 1];
    const float s = 1.6f / std::sqrt(float(in));
    const std::vector<float> w = random_floats(rng, out * in, -s, s);
    const std::vector<float> b = random_floats(rng, out, -0.4f, 0.4f);
    n.params.insert(n.params.end(), w.begin(), w.end());
    n.params.insert(n.params.end(), b.begin(), b.end());
    n.oracle.w.push_back(to_mat(w, out, in));
    n.oracle.b.push_back(to_vec(b));
  }
  return n;
}

// The oracle's parameters in the flat layout, for finite differences one at a time.
std::vector<double*> flat_params(JetNet& net) {
  std::vector<double*> p;
  for (std::size_t l = 0; l < net.w.size(); ++l) {
    for (double& v : net.w[l].v) p.push_back(&v);
    for (double& v : net.b[l]) p.push_back(&v);
  }
  return p;
}

// The random adjoints of a test loss ℓ = Σ A_u ⊙ u + Σ_k A_k ⊙ ∂_k u + Σ A_L ⊙ L.
struct Adjoints {
  std::vector<float> u;
  std::vector<std::vector<float>> du;
  std::vector<float> second;
};

double loss_of(const oracle::JetResult& r, const Adjoints& a, bool second_order) {
  double s = 0.0;
  for (std::size_t i = 0; i < r.u.v.size(); ++i) {
    s += a.u[i] * r.u.v[i];
    if (second_order) s += a.second[i] * r.second.v[i];
    for (std::size_t k = 0; k < r.du.size(); ++k) s += a.du[k][i] * r.du[k].v[i];
  }
  return s;
}

double central_difference(const std::function<double()>& f, double& value) {
  const double h = 1e-5 * std::max(1.0, std::abs(value));
  const double saved = value;
  value = saved + h;
  const double up = f();
  value = saved - h;
  const double down = f();
  value = saved;
  return (up - down) / (2.0 * h);
}

// close_to with the error taken relative to at least 0.1 per element: a value that is small by
// cancellation (an output near 0 at batch 1) has the absolute error of its O(1) terms.
::testing::AssertionResult near(const std::vector<float>& out, const std::vector<double>& ref,
                                double tol) {
  double sq = 0.0;
  for (double r : ref) sq += r * r;
  const double floor2 = 0.01 * double(ref.size());
  if (sq >= floor2) return close_to(out, ref, tol);
  return close_to(out, ref, tol * std::sqrt(floor2 / std::max(sq, 1e-300)));
}

// The elements of a contiguous view, on the host.
std::vector<float> to_host(const Context& ctx, MatrixView<const float> m) {
  std::vector<float> v(static_cast<std::size_t>(m.rows * m.cols));
  detail::copy_bytes(ctx, v.data(), Device::cpu(), m.data, m.device, v.size() * sizeof(float));
  return v;
}
std::vector<float> to_host(const Context& ctx, VectorView<const float> v) {
  return to_host(ctx, MatrixView<const float>(v.data, 1, v.size, v.device));
}

class JetTest : public BackendTest {
 protected:
  Mlp make_model(const Net& n, Activation hidden = Activation::tanh) {
    Mlp model(ctx(), n.widths, hidden);
    model.params_from_host(n.params);
    return model;
  }

  // Runs one jet forward and backward of a random problem and checks every output against the
  // oracle and every gradient (parameters and x) against central differences of the oracle.
  void check_jet(const std::vector<std::int64_t>& widths, JetActivation act, int k,
                 std::int64_t batch, bool unit_directions, bool second_order = true) {
    SCOPED_TRACE(cat(to_string(act), ", K = ", k, ", batch ", batch,
                     unit_directions ? ", unit directions" : ", random directions",
                     second_order ? "" : ", first order"));
    std::vector<JetActivation> acts(widths.size() - 1, act);
    acts.back() = JetActivation::identity;
    Net n = make_net(rng_, widths, acts);
    Mlp model = make_model(n, act == JetActivation::relu ? Activation::relu : Activation::tanh);
    const std::int64_t in = widths.front(), out = widths.back();

    JetOptions o;
    o.second_order = second_order;
    o.activations = acts;
    Mat dirs(k, in);
    if (unit_directions) {
      // The first k unit vectors; all of them is the default (directions left empty).
      for (int i = 0; i < k; ++i) dirs.at(i, i) = 1.0;
      if (k < in) o.directions.assign(dirs.v.begin(), dirs.v.end());
    } else {
      o.directions = random_floats(rng_, k * in);
      dirs = to_mat(o.directions, k, in);
    }
    o.weights = random_floats(rng_, k, 0.2f, 1.5f);
    if (k == 2) o.weights[1] = -o.weights[1];  // a negative weight (e.g. u_tt − u_xx)

    const std::vector<float> xh = random_floats(rng_, batch * in);
    const Mat x = to_mat(xh, batch, in);
    DeviceMatrix<float> xd = upload_matrix(ctx(), xh, batch, in, in + 2);
    Jet jet(model, o);
    jet_forward(model, xd.cview(), jet);

    const oracle::JetResult ref = oracle::jet_forward(n.oracle, x, dirs, to_vec(o.weights));
    const auto host = [&](MatrixView<const float> m) { return to_host(ctx(), m); };
    EXPECT_TRUE(near(host(jet.value()), ref.u.v, 2e-5)) << "value";
    for (int i = 0; i < k; ++i) {
      EXPECT_TRUE(near(host(jet.derivative(i)), ref.du[i].v, 5e-5)) << "derivative " << i;
    }
    if (second_order) {
      EXPECT_TRUE(near(host(jet.second()), ref.second.v, 2e-4)) << "second";
    }

    // Backward: random adjoints, the gradients added to ones (accumulate).
    Adjoints a;
    a.u = random_floats(rng_, batch * out);
    for (int i = 0; i < k; ++i) a.du.push_back(random_floats(rng_, batch * out));
    a.second = random_floats(rng_, batch * out);
    std::vector<Buffer<float>> keep;
    JetAdjoints ja;
    keep.push_back(upload(ctx(), a.u));
    ja.value = keep.back().matrix(batch, out);
    for (int i = 0; i < k; ++i) {
      keep.push_back(upload(ctx(), a.du[i]));
      ja.derivatives.push_back(keep.back().matrix(batch, out));
    }
    if (second_order) {
      keep.push_back(upload(ctx(), a.second));
      ja.second = keep.back().matrix(batch, out);
    }
    DeviceMatrix<float> dx = poisoned_matrix<float>(ctx(), batch, in, in + 1);
    ja.dx = dx.view();
    fill(ctx(), model.grads(), 1.0f);
    jet_backward(model, jet, ja);

    const auto loss = [&] {
      return loss_of(oracle::jet_forward(n.oracle, x, dirs, to_vec(o.weights)), a, second_order);
    };
    std::vector<double> want;
    for (double* p : flat_params(n.oracle)) want.push_back(1.0 + central_difference(loss, *p));
    EXPECT_TRUE(near(to_host(ctx(), model.grads()), want, 5e-5)) << "parameter gradients";
    Mat xv = x;
    std::vector<double> want_dx;
    const auto loss_x = [&] {
      return loss_of(oracle::jet_forward(n.oracle, xv, dirs, to_vec(o.weights)), a, second_order);
    };
    for (double& v : xv.v) want_dx.push_back(central_difference(loss_x, v));
    EXPECT_TRUE(near(download_matrix(ctx(), dx, "dx"), want_dx, 5e-5)) << "dx";
  }
};

TEST_P(JetTest, EveryOutputAndGradientMatchesTheOracleForEachActivationAndK) {
  for (JetActivation act : kSmooth) {
    for (int k = 1; k <= 4; ++k) check_jet({4, 7, 5, 3}, act, k, 5, false);
  }
}

TEST_P(JetTest, BatchOfOneAndUnitDirections) {
  for (JetActivation act : kSmooth) check_jet({3, 5, 1}, act, 3, 1, true);
}

TEST_P(JetTest, DeeperOddWidths) {
  check_jet({5, 9, 3, 11, 2}, JetActivation::tanh, 2, 7, false);
  check_jet({5, 9, 3, 11, 2}, JetActivation::gelu, 4, 3, true);
}

TEST_P(JetTest, FirstOrderJetsAllowRelu) {
  check_jet({3, 6, 2}, JetActivation::relu, 2, 4, false, false);
  check_jet({3, 6, 2}, JetActivation::silu, 3, 2, true, false);
}

TEST_P(JetTest, ValueEqualsTheModelsForward) {
  Net n = make_net(rng_, {3, 8, 2}, {JetActivation::gelu, JetActivation::identity});
  Mlp model(ctx(), n.widths, Activation::gelu);
  model.params_from_host(n.params);
  const std::vector<float> xh = random_floats(rng_, 6 * 3);
  Buffer<float> x = upload(ctx(), xh);
  const Jet jet = jet_forward(model, x.matrix(6, 3));
  const std::vector<float> u = to_host(ctx(), jet.value());
  const MatrixView<const float> forward = model.forward(x.matrix(6, 3));
  const std::vector<float> y = to_host(ctx(), forward);
  EXPECT_TRUE(close_to(u, std::vector<double>(y.begin(), y.end()), 1e-6));
}

// u(x) = Σ_j a_j tanh(w_j·x + b_j) + c: ∂_i u = Σ_j a_j σ'(z_j) w_ji and
// Δu = Σ_j a_j σ''(z_j) |w_j|², with σ' = 1 − tanh², σ'' = −2 tanh (1 − tanh²).
TEST_P(JetTest, LaplacianOfAOneHiddenLayerTanhNetworkIsTheAnalyticOne) {
  const std::int64_t in = 3, hidden = 9, batch = 4;
  Net n = make_net(rng_, {in, hidden, 1}, {JetActivation::tanh, JetActivation::identity});
  Mlp model = make_model(n);
  const std::vector<float> xh = random_floats(rng_, batch * in);
  Buffer<float> x = upload(ctx(), xh);
  const Jet jet = jet_forward(model, x.matrix(batch, in));  // unit directions, c = 1
  ASSERT_EQ(jet.directions(), in);
  std::vector<double> lap(batch), grad(batch * in);
  for (std::int64_t r = 0; r < batch; ++r) {
    for (std::int64_t j = 0; j < hidden; ++j) {
      double z = n.oracle.b[0][j], norm2 = 0.0;
      for (std::int64_t i = 0; i < in; ++i) {
        z += n.oracle.w[0].at(j, i) * xh[r * in + i];
        norm2 += n.oracle.w[0].at(j, i) * n.oracle.w[0].at(j, i);
      }
      const double t = std::tanh(z), a = n.oracle.w[1].at(0, j);
      lap[r] += a * -2.0 * t * (1.0 - t * t) * norm2;
      for (std::int64_t i = 0; i < in; ++i) {
        grad[i * batch + r] += a * (1.0 - t * t) * n.oracle.w[0].at(j, i);
      }
    }
  }
  const auto host = [&](MatrixView<const float> m) { return to_host(ctx(), m); };
  EXPECT_TRUE(near(host(jet.second()), lap, 2e-5)) << "Laplacian";
  std::vector<float> g;
  for (int i = 0; i < in; ++i) {
    const std::vector<float> d = host(jet.derivative(i));
    g.insert(g.end(), d.begin(), d.end());
  }
  EXPECT_TRUE(near(g, grad, 2e-5)) << "gradient";
}

TEST_P(JetTest, InputGradientMatchesFiniteDifferencesAndLeavesTheGradientsAlone) {
  const std::int64_t batch = 5, in = 4, out = 3;
  Net n = make_net(rng_, {in, 7, 6, out},
                   {JetActivation::sigmoid, JetActivation::sigmoid, JetActivation::identity});
  Mlp model = make_model(n, Activation::sigmoid);
  fill(ctx(), model.grads(), 7.0f);
  const std::vector<float> xh = random_floats(rng_, batch * in);
  const std::vector<float> dyh = random_floats(rng_, batch * out);
  Buffer<float> x = upload(ctx(), xh), dy = upload(ctx(), dyh);
  DeviceMatrix<float> dx = poisoned_matrix<float>(ctx(), batch, in, in + 3);
  input_gradient(model, x.matrix(batch, in), dy.matrix(batch, out), dx.view());

  Mat xv = to_mat(xh, batch, in);
  Adjoints a;
  a.u = dyh;
  const auto loss = [&] {
    return loss_of(oracle::jet_forward(n.oracle, xv, Mat(0, in), {}), a, false);
  };
  std::vector<double> want;
  for (double& v : xv.v) want.push_back(central_difference(loss, v));
  EXPECT_TRUE(near(download_matrix(ctx(), dx, "dx"), want, 5e-5));
  for (float g : to_host(ctx(), model.grads()))
    ASSERT_EQ(g, 7.0f) << "input_gradient wrote the model's gradients";
}

// A Burgers-like residual u_t + u u_x − ν u_xx − f over (t, x) plus a and b terms: the loss
// against the oracle, and the parameter gradients through its adjoints against central
// differences of the oracle's loss.
TEST_P(JetTest, PdeResidualLossMatchesTheOracleAndFiniteDifferences) {
  const std::int64_t batch = 6, in = 2, out = 2;
  Net n = make_net(rng_, {in, 6, 5, out},
                   {JetActivation::tanh, JetActivation::softplus, JetActivation::identity});
  Mlp model = make_model(n);
  JetOptions o;
  o.weights = {0.0f, 1.0f};  // L = u_xx
  o.activations = n.oracle.act;
  PdeResidual res;
  res.a = 0.3f;
  res.b = {1.0f, 0.2f};
  res.c = -0.05f;
  res.d = {0.0f, 1.0f};
  const float weight = 0.7f;
  const std::vector<float> xh = random_floats(rng_, batch * in);
  const std::vector<float> fh = random_floats(rng_, batch * out);
  Buffer<float> x = upload(ctx(), xh), f = upload(ctx(), fh);
  Buffer<float> loss = upload(ctx(), std::vector<float>{0.25f});
  Jet jet(model, o);
  jet_forward(model, x.matrix(batch, in), jet);
  const JetAdjoints a =
      pde_residual_loss(jet, res, f.matrix(batch, out), loss.view(), weight, /*accumulate=*/true);
  JetAdjoints grads = a;
  grads.accumulate = false;
  jet_backward(model, jet, grads);

  const Mat dirs = to_mat({1.0f, 0.0f, 0.0f, 1.0f}, 2, 2);
  const Mat xm = to_mat(xh, batch, in);
  const auto oracle_loss = [&] {
    const oracle::JetResult r = oracle::jet_forward(n.oracle, xm, dirs, {0.0, 1.0});
    double sum = 0.0;
    for (std::size_t i = 0; i < r.u.v.size(); ++i) {
      const double u = r.u.v[i];
      const double res_i = res.a * u + (res.b[0] + res.d[0] * u) * r.du[0].v[i] +
                           (res.b[1] + res.d[1] * u) * r.du[1].v[i] + res.c * r.second.v[i] - fh[i];
      sum += res_i * res_i;
    }
    return weight * sum / double(r.u.v.size());
  };
  EXPECT_TRUE(close_to(double(loss.to_host(ctx())[0]), 0.25 + oracle_loss(), 1e-5)) << "loss";
  std::vector<double> want;
  for (double* p : flat_params(n.oracle)) want.push_back(central_difference(oracle_loss, *p));
  EXPECT_TRUE(near(to_host(ctx(), model.grads()), want, 5e-5)) << "parameter gradients";

  PdeResidual bad;
  bad.b = {1.0f};
  EXPECT_THROW_THAT(pde_residual_loss(jet, bad, {}, loss.view()), ArgumentError,
                    NamesArgument("b"));
  // A shard's global batch cannot hold fewer rows than the shard; the whole batch over itself
  // is the plain mean, to the bit.
  EXPECT_THROW_THAT(pde_residual_loss(jet, res, {}, loss.view(), 1.0f, false, batch - 1),
                    ArgumentError, NamesArgument("mean_rows"));
  Buffer<float> plain(ctx(), 1), over_itself(ctx(), 1), half(ctx(), 1);
  pde_residual_loss(jet, res, f.matrix(batch, out), plain.view());
  pde_residual_loss(jet, res, f.matrix(batch, out), over_itself.view(), 1.0f, false, batch);
  pde_residual_loss(jet, res, f.matrix(batch, out), half.view(), 1.0f, false, 2 * batch);
  EXPECT_EQ(plain.to_host(ctx()), over_itself.to_host(ctx()));
  EXPECT_NEAR(half.to_host(ctx())[0], 0.5f * plain.to_host(ctx())[0],
              1e-6f * plain.to_host(ctx())[0]);
}

TEST_P(JetTest, ReluIsRefusedForSecondOrderJetsSayingWhy) {
  Mlp model(ctx(), {3, 4, 1}, Activation::relu);
  Buffer<float> x = upload(ctx(), random_floats(rng_, 6));
  EXPECT_THROW_THAT(jet_forward(model, x.matrix(2, 3)), ArgumentError,
                    ::testing::AllOf(::testing::HasSubstr("layer 0 is relu"),
                                     ::testing::HasSubstr("almost everywhere"),
                                     ::testing::HasSubstr("second_order = false")));
  JetOptions first;
  first.second_order = false;
  EXPECT_NO_THROW(jet_forward(model, x.matrix(2, 3), first));
}

TEST_P(JetTest, OptionsAreCheckedAgainstTheModel) {
  Mlp model(ctx(), {3, 4, 1}, Activation::tanh);
  JetOptions o;
  o.directions = {1.0f, 0.0f};
  EXPECT_THROW_THAT(Jet(model, o), ArgumentError, NamesArgument("directions"));
  o.directions = {1.0f, 0.0f, 0.0f};
  o.weights = {1.0f, 2.0f};
  EXPECT_THROW_THAT(Jet(model, o), ArgumentError, NamesArgument("weights"));
  o.weights = {};
  o.activations = {JetActivation::tanh};
  EXPECT_THROW_THAT(Jet(model, o), ArgumentError, NamesArgument("activations"));
  Jet jet(model, {});
  EXPECT_THROW_THAT(jet_backward(model, jet, {}), ArgumentError, NamesArgument("jet"));
  Mlp other(ctx(), {3, 5, 1}, Activation::tanh);
  Buffer<float> x = upload(ctx(), random_floats(rng_, 3));
  EXPECT_THROW_THAT(jet_forward(other, x.matrix(1, 3), jet), ArgumentError, NamesArgument("model"));
}

// Rows stored contiguously and rows with padding between them (the CPU backend takes the first
// a tile of rows at a time, the second row by row) give the same h and dz, bit for bit, and the
// same db to float rounding, also for batches that are not whole tiles or chunks of rows; db is
// the sum of the value rows of dz.
TEST_P(JetTest, ContiguousAndPaddedRowsGiveTheSameBits) {
  for (const std::int64_t n : {20, 6, 16, 33}) {
    for (const std::int64_t batch : {70, 3, 128}) {
      SCOPED_TRACE(cat("n ", n, ", batch ", batch));
      const std::vector<float> weights = {1.0f, 0.5f};
      Buffer<float> w = upload(ctx(), weights);
      const JetBlocks blocks{batch, 2, std::as_const(w).view(), true};
      const std::int64_t rows = blocks.rows();
      const std::vector<float> zh = random_floats(rng_, rows * n, -2.0f, 2.0f);
      const std::vector<float> dhh = random_floats(rng_, rows * n);
      const std::vector<float> bh = random_floats(rng_, n);
      Buffer<float> b = upload(ctx(), bh);
      std::vector<float> h[2], dz[2], db[2];
      for (int padded = 0; padded < 2; ++padded) {
        const std::int64_t ld = padded ? n + 3 : n;
        DeviceMatrix<float> z = upload_matrix(ctx(), zh, rows, n, ld);
        DeviceMatrix<float> hm = poisoned_matrix<float>(ctx(), rows, n, ld);
        jet_activation_forward(ctx(), blocks, JetActivation::tanh, std::as_const(b).view(),
                               z.view(), hm.view());
        h[padded] = download_matrix(ctx(), hm, "h");
        DeviceMatrix<float> dh = upload_matrix(ctx(), dhh, rows, n, ld);
        DeviceMatrix<float> dzm = poisoned_matrix<float>(ctx(), rows, n, ld);
        Buffer<float> dbd = poisoned<float>(ctx(), n);
        jet_activation_backward(ctx(), blocks, JetActivation::tanh, z.cview(), dh.cview(),
                                dzm.view(), dbd.view());
        dz[padded] = download_matrix(ctx(), dzm, "dz");
        db[padded] = dbd.to_host(ctx());
      }
      EXPECT_EQ(h[0], h[1]);
      EXPECT_EQ(dz[0], dz[1]);
      for (int padded = 0; padded < 2; ++padded) {
        for (std::int64_t j = 0; j < n; ++j) {
          double sum = 0, size = 0;
          for (std::int64_t r = 0; r < batch; ++r) {
            sum += dz[padded][static_cast<std::size_t>(r * n + j)];
            size += std::fabs(dz[padded][static_cast<std::size_t>(r * n + j)]);
          }
          EXPECT_NEAR(db[padded][static_cast<std::size_t>(j)], sum, 1e-6 * size + 1e-30)
              << "db[" << j << "], " << (padded ? "padded" : "contiguous");
        }
      }
    }
  }
}

// The forward pass keeping σ' (slope) and the backward pass taking σ and σ' from h and slope
// (the CPU backend, tanh) give the same h, dz and db bits as the passes that recompute them from
// z, contiguous and padded, at batches that are not whole tiles; a device that does not keep
// slopes (CUDA) refuses one, naming it.
TEST_P(JetTest, KeptSlopesGiveTheSameBitsAsRecomputing) {
  const bool keeps = ctx().device().is_cpu();
  for (const std::int64_t n : {20, 7}) {
    for (const std::int64_t batch : {70, 3}) {
      for (const bool padded : {false, true}) {
        SCOPED_TRACE(cat("n ", n, ", batch ", batch, padded ? ", padded" : ""));
        const std::int64_t ld = padded ? n + 3 : n;
        Buffer<float> w = upload(ctx(), std::vector<float>{0.0f, 1.0f});
        const JetBlocks blocks{batch, 2, std::as_const(w).view(), true};
        const std::int64_t rows = blocks.rows();
        // Values on both sides of the |z| = 0.625 switch of the CPU's tanh, and large ones.
        const std::vector<float> zh = random_floats(rng_, rows * n, -9.0f, 9.0f);
        const std::vector<float> dhh = random_floats(rng_, rows * n);
        Buffer<float> b = upload(ctx(), random_floats(rng_, n, -0.5f, 0.5f));
        std::vector<float> h[2], dz[2], db[2];
        for (int kept = 0; kept < 2; ++kept) {
          DeviceMatrix<float> z = upload_matrix(ctx(), zh, rows, n, ld);
          DeviceMatrix<float> hm = poisoned_matrix<float>(ctx(), rows, n, ld);
          DeviceMatrix<float> slope = poisoned_matrix<float>(ctx(), batch, n, ld);
          DeviceMatrix<float> dh = upload_matrix(ctx(), dhh, rows, n, ld);
          DeviceMatrix<float> dzm = poisoned_matrix<float>(ctx(), rows, n, ld);
          Buffer<float> dbd = poisoned<float>(ctx(), n);
          if (kept == 1 && !keeps) {
            EXPECT_THROW_THAT(
                jet_activation_forward(ctx(), blocks, JetActivation::tanh, std::as_const(b).view(),
                                       z.view(), hm.view(), slope.view()),
                ArgumentError, NamesArgument("slope"));
            return;
          }
          if (kept == 1) {
            jet_activation_forward(ctx(), blocks, JetActivation::tanh, std::as_const(b).view(),
                                   z.view(), hm.view(), slope.view());
            jet_activation_backward(ctx(), blocks, JetActivation::tanh, z.cview(), dh.cview(),
                                    dzm.view(), dbd.view(), false, hm.cview(), slope.cview());
          } else {
            jet_activation_forward(ctx(), blocks, JetActivation::tanh, std::as_const(b).view(),
                                   z.view(), hm.view());
            jet_activation_backward(ctx(), blocks, JetActivation::tanh, z.cview(), dh.cview(),
                                    dzm.view(), dbd.view());
          }
          h[kept] = download_matrix(ctx(), hm, "h");
          dz[kept] = download_matrix(ctx(), dzm, "dz");
          db[kept] = dbd.to_host(ctx());
        }
        EXPECT_EQ(h[0], h[1]);
        EXPECT_EQ(dz[0], dz[1]);
        EXPECT_EQ(db[0], db[1]);
      }
    }
  }
}

// What a slope is refused for: another activation than tanh, h without slope or slope without h.
TEST_P(JetTest, SlopesAreRefusedForOtherActivationsAndAlone) {
  const std::int64_t batch = 4, n = 3;
  Buffer<float> w = upload(ctx(), std::vector<float>{1.0f});
  const JetBlocks blocks{batch, 1, std::as_const(w).view(), true};
  const std::int64_t rows = blocks.rows();
  Buffer<float> z = upload(ctx(), random_floats(rng_, rows * n)), h(ctx(), rows * n);
  Buffer<float> dh = upload(ctx(), random_floats(rng_, rows * n)), dz(ctx(), rows * n);
  Buffer<float> slope(ctx(), batch * n);
  EXPECT_THROW_THAT(
      jet_activation_forward(ctx(), blocks, JetActivation::sigmoid, {}, z.matrix(rows, n),
                             h.matrix(rows, n), slope.matrix(batch, n)),
      ArgumentError, NamesArgument("slope"));
  EXPECT_THROW_THAT(
      jet_activation_backward(ctx(), blocks, JetActivation::tanh, std::as_const(z).matrix(rows, n),
                              std::as_const(dh).matrix(rows, n), dz.matrix(rows, n), {}, false,
                              std::as_const(h).matrix(rows, n), {}),
      ArgumentError, NamesArgument("slope"));
  EXPECT_THROW_THAT(
      jet_activation_backward(ctx(), blocks, JetActivation::tanh, std::as_const(z).matrix(rows, n),
                              std::as_const(dh).matrix(rows, n), dz.matrix(rows, n), {}, false, {},
                              std::as_const(slope).matrix(batch, n)),
      ArgumentError, NamesArgument("h"));
}

// DESCENT_JET_LAYOUT set for the scope of one test, then unset.
class ScopedLayout {
 public:
  explicit ScopedLayout(const char* layout) { ::setenv("DESCENT_JET_LAYOUT", layout, 1); }
  ~ScopedLayout() { ::unsetenv("DESCENT_JET_LAYOUT"); }
  ScopedLayout(const ScopedLayout&) = delete;
  ScopedLayout& operator=(const ScopedLayout&) = delete;
};

// The CPU runs jets through whole feature-major layers (Backend::jet_layer_forward_t); the
// row-major passes around dense products (the GPU's, and the CPU's with DESCENT_JET_LAYOUT=rows)
// are held to the same oracle here, several outputs and an input gradient included.
TEST_P(JetTest, RowMajorLayersMatchTheOracleToo) {
  const ScopedLayout rows("rows");
  check_jet({4, 7, 5, 3}, JetActivation::tanh, 3, 5, false);
  check_jet({5, 9, 3, 11, 2}, JetActivation::gelu, 2, 7, true);
  check_jet({3, 6, 2}, JetActivation::relu, 2, 4, false, false);
}

// Every output and gradient of a jet has the same bits when run again on the same number of
// threads (1 and 3), in either layout: batches of several tasks of points (1024) and of stacked
// rows (2048), widths with 4 × 4 blocks and edges. Not across thread counts: the layers' products
// z = W h and h̄ = Wᵀ z̄ (and, row-major, W̄) run on oneDNN's sgemm, whose sums on some CPUs
// follow its partition of the work among the threads (on an AVX2-only CPU 65 of 160 jet-like
// shapes gave other bits on 2 or 3 threads than on 1). pde_residual_step, whose products are
// descent's own, has the same bits on any thread count (PdeResidualStepGivesTheSameBits...).
TEST_P(JetTest, TheSameBitsWhenRunAgainOnTheSameThreads) {
  const std::vector<std::int64_t> widths = {3, 9, 20, 2};
  const std::int64_t batch = 2601;
  Net n =
      make_net(rng_, widths, {JetActivation::tanh, JetActivation::silu, JetActivation::identity});
  const std::vector<float> xh = random_floats(rng_, batch * 3);
  std::vector<std::vector<float>> adjoint;
  for (int b = 0; b < 5; ++b) adjoint.push_back(random_floats(rng_, batch * 2));  // K = 3
  const auto run = [&](int threads) {
    ContextOptions options;
    options.threads = threads;
    Context c(GetParam(), options);
    Mlp model(c, widths, Activation::tanh);
    model.params_from_host(n.params);
    JetOptions o;
    o.activations = {JetActivation::tanh, JetActivation::silu, JetActivation::identity};
    Jet jet(model, o);
    Buffer<float> x = upload(c, xh);
    jet_forward(model, x.matrix(batch, 3), jet);
    std::vector<Buffer<float>> keep;
    for (const auto& a : adjoint) keep.push_back(upload(c, a));
    JetAdjoints ja;
    ja.value = keep[0].matrix(batch, 2);
    ja.derivatives = {keep[1].matrix(batch, 2), keep[2].matrix(batch, 2), keep[3].matrix(batch, 2)};
    ja.second = keep[4].matrix(batch, 2);
    Buffer<float> dx(c, batch * 3);
    ja.dx = dx.matrix(batch, 3);
    ja.accumulate = false;  // the gradients written, not added to a fresh model's
    jet_backward(model, jet, ja);
    return std::vector<std::vector<float>>{to_host(c, jet.value()), to_host(c, jet.derivative(1)),
                                           to_host(c, jet.second()),
                                           to_host(c, std::as_const(model).grads()), dx.to_host(c)};
  };
  for (const char* layout : {"features", "rows"}) {
    SCOPED_TRACE(layout);
    const ScopedLayout scoped(layout);
    for (int threads : {1, 3}) {
      SCOPED_TRACE(threads);
      const std::vector<std::vector<float>> first = run(threads), again = run(threads);
      for (std::size_t i = 0; i < first.size(); ++i) {
        EXPECT_EQ(again[i], first[i]) << "output " << i;
      }
    }
  }
}

// ---------------------------------------------------------------- pde_residual_step

// A residual problem: u_t-like and Burgers-like terms over two outputs, random directions' worth
// of coefficients, a source, and the model's gradients already holding something (the step adds
// to them).
struct StepProblem {
  Net net;
  JetOptions options;
  PdeResidual residual;
  std::vector<float> x, f, grads;
  std::int64_t batch, in, out;
};

StepProblem step_problem(std::mt19937_64& rng, std::int64_t batch, std::vector<std::int64_t> widths,
                         std::vector<JetActivation> acts, bool second_order = true) {
  StepProblem p;
  p.batch = batch;
  p.in = widths.front();
  p.out = widths.back();
  p.net = make_net(rng, widths, acts);
  // K = inputs unit directions; the second-order sum over all but the first (u_xx with t first).
  p.options.weights.assign(static_cast<std::size_t>(p.in), 1.0f);
  p.options.weights[0] = 0.0f;
  p.options.second_order = second_order;
  p.options.activations = std::move(acts);
  p.residual.a = 0.3f;
  p.residual.b.assign(static_cast<std::size_t>(p.in), 0.2f);
  p.residual.b[0] = 1.0f;
  p.residual.c = second_order ? -0.05f : 0.0f;
  p.residual.d.assign(static_cast<std::size_t>(p.in), 1.0f);
  p.residual.d[0] = 0.0f;
  p.x = random_floats(rng, batch * p.in);
  p.f = random_floats(rng, batch * p.out);
  p.grads = random_floats(rng, static_cast<std::int64_t>(p.net.params.size()));
  return p;
}

// What one problem gives: the loss, the model's gradients, the jet's outputs.
struct StepResult {
  std::vector<float> loss, grads, value, du, second;
};

// The problem through pde_residual_step, or (three = true) through jet_forward,
// pde_residual_loss and jet_backward.
StepResult run_step(const Context& c, const StepProblem& p, bool three, float weight = 0.7f) {
  Mlp model(c, p.net.widths, Activation::tanh);
  model.params_from_host(p.net.params);
  detail::copy_bytes(c, model.grads().data, model.grads().device, p.grads.data(), Device::cpu(),
                     p.grads.size() * sizeof(float));
  Jet jet(model, p.options);
  Buffer<float> x = upload(c, p.x), f = upload(c, p.f), loss(c, 1);
  if (three) {
    jet_forward(model, x.matrix(p.batch, p.in), jet);
    const JetAdjoints a =
        pde_residual_loss(jet, p.residual, f.matrix(p.batch, p.out), loss.view(), weight);
    jet_backward(model, jet, a);
  } else {
    pde_residual_step(model, x.matrix(p.batch, p.in), jet, p.residual, f.matrix(p.batch, p.out),
                      loss.view(), weight);
  }
  return {loss.to_host(c), to_host(c, std::as_const(model).grads()), to_host(c, jet.value()),
          to_host(c, jet.derivative(0)),
          p.options.second_order ? to_host(c, jet.second()) : std::vector<float>()};
}

// The one-call step against the three calls it stands for, whose every piece the tests above hold
// to the oracle: on the CPU a different path (the whole network per slice of points), so equal
// to rounding, over a batch that leaves a partial slice and a partial task, two outputs, a
// softplus layer, in both layouts.
TEST_P(JetTest, PdeResidualStepMatchesTheThreeCallsItStandsFor) {
  // tanh layers run a pass of their own for K = 1..3 (with and without the second-order
  // block), the other activations and other K the jet rows.
  const StepProblem problems[] = {
      step_problem(rng_, 1500, {2, 20, 17, 2},
                   {JetActivation::tanh, JetActivation::softplus, JetActivation::identity}),
      step_problem(rng_, 700, {3, 12, 9, 1},
                   {JetActivation::tanh, JetActivation::tanh, JetActivation::identity}),
      step_problem(rng_, 333, {1, 7, 1}, {JetActivation::tanh, JetActivation::identity}, false),
      step_problem(rng_, 300, {3, 10, 1}, {JetActivation::tanh, JetActivation::identity}, false),
      step_problem(rng_, 200, {4, 8, 1}, {JetActivation::tanh, JetActivation::identity}),
      // more than 64 tasks of 1024 points: longer tasks
      step_problem(rng_, 70001, {1, 5, 1}, {JetActivation::tanh, JetActivation::identity}),
      // more than 65,536 parameters: the three calls themselves
      step_problem(rng_, 40, {2, 260, 260, 1},
                   {JetActivation::tanh, JetActivation::tanh, JetActivation::identity})};
  for (const char* layout : {"features", "rows"}) {
    for (const StepProblem& p : problems) {
      SCOPED_TRACE(cat(layout, ", K = ", p.in, p.options.second_order ? "" : ", first order"));
      const ScopedLayout scoped(layout);
      const StepResult one = run_step(ctx(), p, false), three = run_step(ctx(), p, true);
      const auto as_double = [](const std::vector<float>& v) {
        return std::vector<double>(v.begin(), v.end());
      };
      EXPECT_TRUE(close_to(one.loss, as_double(three.loss), 1e-5)) << "loss";
      EXPECT_TRUE(close_to(one.grads, as_double(three.grads), 1e-5)) << "gradients";
      EXPECT_TRUE(close_to(one.value, as_double(three.value), 1e-5)) << "value";
      EXPECT_TRUE(close_to(one.du, as_double(three.du), 1e-5)) << "derivative";
      EXPECT_TRUE(close_to(one.second, as_double(three.second), 1e-5)) << "second";
      // accumulate = true added the step's gradients to what the model held: not equal to it.
      EXPECT_FALSE(close_to(one.grads, as_double(p.grads), 1e-3));
    }
  }
}

// And directly against the oracle: the loss, and the gradients by central differences.
TEST_P(JetTest, PdeResidualStepMatchesTheOracleAndFiniteDifferences) {
  StepProblem p = step_problem(rng_, 70, {2, 6, 5, 2},
                               {JetActivation::tanh, JetActivation::silu, JetActivation::identity});
  std::fill(p.grads.begin(), p.grads.end(), 0.0f);
  const StepResult got = run_step(ctx(), p, false, 1.0f);
  const Mat dirs = to_mat({1.0f, 0.0f, 0.0f, 1.0f}, 2, 2);
  const Mat xm = to_mat(p.x, p.batch, p.in);
  const auto oracle_loss = [&] {
    const oracle::JetResult r = oracle::jet_forward(p.net.oracle, xm, dirs, {0.0, 1.0});
    double sum = 0.0;
    for (std::size_t i = 0; i < r.u.v.size(); ++i) {
      const double u = r.u.v[i];
      const PdeResidual& res = p.residual;
      const double res_i = res.a * u + (res.b[0] + res.d[0] * u) * r.du[0].v[i] +
                           (res.b[1] + res.d[1] * u) * r.du[1].v[i] + res.c * r.second.v[i] -
                           p.f[i];
      sum += res_i * res_i;
    }
    return sum / double(r.u.v.size());
  };
  EXPECT_TRUE(close_to(double(got.loss[0]), oracle_loss(), 1e-5)) << "loss";
  std::vector<double> want;
  for (double* q : flat_params(p.net.oracle)) want.push_back(central_difference(oracle_loss, *q));
  EXPECT_TRUE(near(got.grads, want, 5e-5)) << "parameter gradients";
}

TEST_P(JetTest, PdeResidualStepGivesTheSameBitsOnAnyNumberOfThreads) {
  const StepProblem p =
      step_problem(rng_, 2601, {2, 20, 20, 1},
                   {JetActivation::tanh, JetActivation::gelu, JetActivation::identity});
  std::vector<StepResult> runs;
  for (int threads : {1, 3}) {
    ContextOptions options;
    options.threads = threads;
    Context c(GetParam(), options);
    runs.push_back(run_step(c, p, false));
  }
  EXPECT_EQ(runs[0].loss, runs[1].loss);
  EXPECT_EQ(runs[0].grads, runs[1].grads);
  EXPECT_EQ(runs[0].value, runs[1].value);
  EXPECT_EQ(runs[0].second, runs[1].second);
}

// One Jet through batches that grow and shrink, steps and forward passes mixed (the step keeps
// only its outputs, a forward pass every block): each step gives a fresh Jet's bits.
TEST_P(JetTest, PdeResidualStepsOnAReusedJetEqualAFreshOnes) {
  const StepProblem p =
      step_problem(rng_, 200, {2, 9, 1}, {JetActivation::tanh, JetActivation::identity});
  Mlp model(ctx(), p.net.widths, Activation::tanh);
  model.params_from_host(p.net.params);
  Buffer<float> x = upload(ctx(), p.x), f = upload(ctx(), p.f), loss(ctx(), 1);
  const auto step = [&](Jet& jet, std::int64_t rows) {
    pde_residual_step(model, x.matrix(rows, 2), jet, p.residual, f.matrix(rows, 1), loss.view(),
                      1.0f, false);
    return std::vector<std::vector<float>>{
        loss.to_host(ctx()), to_host(ctx(), std::as_const(model).grads()),
        to_host(ctx(), jet.value()), to_host(ctx(), jet.second())};
  };
  Jet reused(model, p.options);
  jet_forward(model, x.matrix(50, 2), reused);
  for (std::int64_t rows : {200, 100, 150, 30, 200}) {
    SCOPED_TRACE(cat("batch ", rows));
    const auto got = step(reused, rows);
    Jet fresh(model, p.options);
    EXPECT_EQ(got, step(fresh, rows));
    jet_forward(model, x.matrix(rows / 2 + 10, 2), reused);
  }
}

// A refused step changes nothing: not the loss, not the gradients, not the jet's last pass. After
// a step the jet has no layer blocks for jet_backward, which says so.
TEST_P(JetTest, PdeResidualStepRefusesBadArgumentsAndChangesNothing) {
  const StepProblem p =
      step_problem(rng_, 100, {2, 8, 1}, {JetActivation::tanh, JetActivation::identity});
  Mlp model(ctx(), p.net.widths, Activation::tanh);
  model.params_from_host(p.net.params);
  detail::copy_bytes(ctx(), model.grads().data, model.grads().device, p.grads.data(), Device::cpu(),
                     p.grads.size() * sizeof(float));
  Jet jet(model, p.options);
  Buffer<float> x = upload(ctx(), p.x), f = upload(ctx(), p.f);
  Buffer<float> loss = upload(ctx(), std::vector<float>{0.5f});
  jet_forward(model, x.matrix(50, 2), jet);
  const std::vector<float> value = to_host(ctx(), jet.value());
  // Each refusal names the argument, and the call the user made (not the calls it stands for).
  const auto Refusal = [](const char* argument) {
    return testing::AllOf(NamesArgument(argument), testing::StartsWith("pde_residual_step"));
  };
  PdeResidual bad = p.residual;
  bad.d = {1.0f};
  EXPECT_THROW_THAT(pde_residual_step(model, x.matrix(100, 2), jet, bad, {}, loss.view()),
                    ArgumentError, Refusal("d"));
  bad = p.residual;
  bad.c = std::numeric_limits<float>::infinity();
  EXPECT_THROW_THAT(pde_residual_step(model, x.matrix(100, 2), jet, bad, {}, loss.view()),
                    ArgumentError, Refusal("c"));
  EXPECT_THROW_THAT(
      pde_residual_step(model, x.matrix(100, 2), jet, p.residual, f.matrix(99, 1), loss.view()),
      ShapeError, Refusal("source"));
  EXPECT_THROW_THAT(pde_residual_step(model, x.matrix(100, 2), jet, p.residual, f.matrix(100, 1),
                                      VectorView<float>(f.data() + 3, 1, f.device())),
                    Error, Refusal("loss"));
  EXPECT_THROW_THAT(pde_residual_step(model, x.matrix(100, 2), jet, p.residual, {}, loss.view(),
                                      std::numeric_limits<float>::quiet_NaN()),
                    ArgumentError, Refusal("weight"));
  EXPECT_THROW_THAT(
      pde_residual_step(model, x.matrix(100, 2), jet, p.residual, {}, loss.view(), 1.0f, true, 99),
      ArgumentError, Refusal("mean_rows"));
  EXPECT_EQ(loss.to_host(ctx()), std::vector<float>{0.5f});
  EXPECT_EQ(to_host(ctx(), std::as_const(model).grads()), p.grads);
  EXPECT_EQ(jet.batch(), 50);
  EXPECT_EQ(to_host(ctx(), jet.value()), value);

  pde_residual_step(model, x.matrix(100, 2), jet, p.residual, f.matrix(100, 1), loss.view());
  EXPECT_EQ(jet.batch(), 100);
  JetAdjoints a;
  a.value = f.matrix(100, 1);
  if (GetParam() == Device::cpu() && std::getenv("DESCENT_JET_LAYOUT") == nullptr) {
    EXPECT_THROW_THAT(jet_backward(model, jet, a), ArgumentError, NamesArgument("jet"));
  }
  jet_forward(model, x.matrix(100, 2), jet);
  jet_backward(model, jet, a);  // after a jet_forward, as before
}

DESCENT_INSTANTIATE_BACKENDS(JetTest);

}  // namespace
}  // namespace descent::test
