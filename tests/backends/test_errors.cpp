// Bad arguments to every op throw the documented exception, with a message naming the argument.
#include <cmath>
#include <limits>

#include "descent/jet_ops.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::HasSubstr;

constexpr std::int64_t kBatch = 4, kIn = 3, kOut = 2;

class ErrorTest : public BackendTest {
 protected:
  // A device other than the context's (on a machine without a GPU, a cuda view of host memory
  // is enough: validation must reject it before touching the data).
  Device other_device() const { return on_gpu() ? Device::cpu() : Device::cuda(0); }
  template <class T>
  MatrixView<T> elsewhere(MatrixView<T> m) const {
    m.device = other_device();
    return m;
  }
  template <class T>
  VectorView<T> elsewhere(VectorView<T> v) const {
    v.device = other_device();
    return v;
  }
  template <class T>
  static MatrixView<T> null_data(MatrixView<T> m) {
    m.data = nullptr;
    return m;
  }
  template <class T>
  static MatrixView<T> reshaped(MatrixView<T> m, std::int64_t rows, std::int64_t cols) {
    m.rows = rows;
    m.cols = cols;
    m.ld = std::max(m.ld, cols);
    return m;
  }
  // Host memory the device-mismatch views point at; never dereferenced.
  std::vector<float> host_ = std::vector<float>(64, 1.0f);
};
DESCENT_INSTANTIATE_BACKENDS(ErrorTest);

// ---------------------------------------------------------------- dense

struct DenseData {
  Buffer<float> x, w, b, y, pre, dy, dx, dw, db;
  DenseData(const Context& ctx, std::mt19937_64& rng)
      : x(upload(ctx, random_floats(rng, kBatch * kIn))),
        w(upload(ctx, random_floats(rng, kOut * kIn))),
        b(upload(ctx, random_floats(rng, kOut))),
        y(upload(ctx, random_floats(rng, kBatch * kOut))),
        pre(upload(ctx, random_floats(rng, kBatch * kOut))),
        dy(upload(ctx, random_floats(rng, kBatch * kOut))),
        dx(poisoned<float>(ctx, kBatch * kIn)),
        dw(poisoned<float>(ctx, kOut * kIn)),
        db(poisoned<float>(ctx, kOut)) {}
  MatrixView<const float> xv() const { return x.matrix(kBatch, kIn); }
  MatrixView<const float> wv() const { return w.matrix(kOut, kIn); }
  VectorView<const float> bv() const { return b.view(); }
  MatrixView<float> yv() { return y.matrix(kBatch, kOut); }
  MatrixView<float> prev() { return pre.matrix(kBatch, kOut); }
  MatrixView<const float> dyv() const { return dy.matrix(kBatch, kOut); }
  DenseGrads grads() {
    return DenseGrads{dx.matrix(kBatch, kIn), dw.matrix(kOut, kIn), db.view(), false};
  }
};

TEST_P(ErrorTest, DenseForwardShapes) {
  DenseData d(ctx(), rng_);
  auto fwd = [&](MatrixView<const float> x, MatrixView<const float> w, VectorView<const float> b,
                 MatrixView<float> y, MatrixView<float> pre) {
    dense_forward(ctx(), x, w, b, Activation::relu, y, pre);
  };
  // Sanity: the valid call goes through.
  EXPECT_NO_THROW(fwd(d.xv(), d.wv(), d.bv(), d.yv(), d.prev()));

  EXPECT_THROW_THAT(fwd(d.xv(), reshaped(d.wv(), kOut, kIn - 1), d.bv(), d.yv(), d.prev()),
                    ShapeError, NamesArgument("w"));
  EXPECT_THROW_THAT(fwd(reshaped(d.xv(), kBatch, kIn - 1), d.wv(), d.bv(), d.yv(), d.prev()),
                    ShapeError, AnyOf(NamesArgument("w"), NamesArgument("x")));
  EXPECT_THROW_THAT(fwd(d.xv(), d.wv(), d.b.view().slice(0, 1), d.yv(), d.prev()), ShapeError,
                    NamesArgument("b"));
  EXPECT_THROW_THAT(fwd(d.xv(), d.wv(), d.bv(), reshaped(d.yv(), kBatch - 1, kOut), d.prev()),
                    ShapeError, NamesArgument("y"));
  EXPECT_THROW_THAT(fwd(d.xv(), d.wv(), d.bv(), reshaped(d.yv(), kBatch, kOut - 1), d.prev()),
                    ShapeError, NamesArgument("y"));
  EXPECT_THROW_THAT(fwd(d.xv(), d.wv(), d.bv(), d.yv(), reshaped(d.prev(), kBatch, 1)), ShapeError,
                    NamesArgument("pre"));
  // Batch 0.
  EXPECT_THROW_THAT(fwd(reshaped(d.xv(), 0, kIn), d.wv(), d.bv(), reshaped(d.yv(), 0, kOut), {}),
                    ShapeError, NamesArgument("x"));
  // A leading dimension smaller than the row.
  MatrixView<const float> short_ld = d.xv();
  short_ld.ld = kIn - 1;
  EXPECT_THROW_THAT(fwd(short_ld, d.wv(), d.bv(), d.yv(), {}), Error, NamesArgument("x"));
}

TEST_P(ErrorTest, DenseForwardNullData) {
  DenseData d(ctx(), rng_);
  auto fwd = [&](MatrixView<const float> x, MatrixView<const float> w, MatrixView<float> y) {
    dense_forward(ctx(), x, w, d.bv(), Activation::tanh, y);
  };
  EXPECT_THROW_THAT(fwd(null_data(d.xv()), d.wv(), d.yv()), ArgumentError, NamesArgument("x"));
  EXPECT_THROW_THAT(fwd(d.xv(), null_data(d.wv()), d.yv()), ArgumentError, NamesArgument("w"));
  EXPECT_THROW_THAT(fwd(d.xv(), d.wv(), null_data(d.yv())), ArgumentError, NamesArgument("y"));
}

TEST_P(ErrorTest, DenseForwardWrongDevice) {
  DenseData d(ctx(), rng_);
  auto fwd = [&](MatrixView<const float> x, MatrixView<const float> w, VectorView<const float> b,
                 MatrixView<float> y, MatrixView<float> pre) {
    dense_forward(ctx(), x, w, b, Activation::sigmoid, y, pre);
  };
  EXPECT_THROW_THAT(fwd(elsewhere(d.xv()), d.wv(), d.bv(), d.yv(), {}), DeviceError,
                    NamesArgument("x"));
  EXPECT_THROW_THAT(fwd(d.xv(), elsewhere(d.wv()), d.bv(), d.yv(), {}), DeviceError,
                    NamesArgument("w"));
  EXPECT_THROW_THAT(fwd(d.xv(), d.wv(), elsewhere(d.bv()), d.yv(), {}), DeviceError,
                    NamesArgument("b"));
  EXPECT_THROW_THAT(fwd(d.xv(), d.wv(), d.bv(), elsewhere(d.yv()), {}), DeviceError,
                    NamesArgument("y"));
  EXPECT_THROW_THAT(fwd(d.xv(), d.wv(), d.bv(), d.yv(), elsewhere(d.prev())), DeviceError,
                    NamesArgument("pre"));
  // A view built by hand around host memory with a cuda device (or vice versa).
  const MatrixView<const float> foreign(host_.data(), kBatch, kIn, other_device());
  EXPECT_THROW_THAT(fwd(foreign, d.wv(), d.bv(), d.yv(), {}), DeviceError, NamesArgument("x"));
}

TEST_P(ErrorTest, DenseBackwardArguments) {
  DenseData d(ctx(), rng_);
  auto bwd = [&](MatrixView<const float> y, MatrixView<const float> pre, MatrixView<const float> dy,
                 Activation act, const DenseGrads& g) {
    dense_backward(ctx(), d.xv(), d.wv(), y, pre, dy, act, g);
  };
  const MatrixView<const float> y = d.yv(), pre = d.prev();
  EXPECT_NO_THROW(bwd(y, pre, d.dyv(), Activation::gelu, d.grads()));

  EXPECT_THROW_THAT(bwd(y, pre, reshaped(d.dyv(), kBatch, 1), Activation::relu, d.grads()),
                    ShapeError, NamesArgument("dy"));
  EXPECT_THROW_THAT(bwd(reshaped(y, 1, kOut), pre, d.dyv(), Activation::relu, d.grads()),
                    ShapeError, NamesArgument("y"));
  EXPECT_THROW_THAT(bwd(y, reshaped(pre, kBatch, 1), d.dyv(), Activation::gelu, d.grads()),
                    ShapeError, NamesArgument("pre"));
  // gelu's derivative needs the pre-activation.
  EXPECT_THROW_THAT(bwd(y, {}, d.dyv(), Activation::gelu, d.grads()), Error, NamesArgument("pre"));

  DenseGrads g = d.grads();
  g.dw = reshaped(g.dw, kOut, kIn - 1);
  EXPECT_THROW_THAT(bwd(y, pre, d.dyv(), Activation::relu, g), ShapeError, NamesArgument("dw"));
  g = d.grads();
  g.dw = null_data(g.dw);
  EXPECT_THROW_THAT(bwd(y, pre, d.dyv(), Activation::relu, g), ArgumentError, NamesArgument("dw"));
  g = d.grads();
  g.db = g.db.slice(0, 1);
  EXPECT_THROW_THAT(bwd(y, pre, d.dyv(), Activation::relu, g), ShapeError, NamesArgument("db"));
  g = d.grads();
  g.dx = reshaped(g.dx, kBatch, kIn + 1);
  EXPECT_THROW_THAT(bwd(y, pre, d.dyv(), Activation::relu, g), ShapeError, NamesArgument("dx"));
  g = d.grads();
  g.dw = elsewhere(g.dw);
  EXPECT_THROW_THAT(bwd(y, pre, d.dyv(), Activation::relu, g), DeviceError, NamesArgument("dw"));
  g = d.grads();
  g.dx = elsewhere(g.dx);
  EXPECT_THROW_THAT(bwd(y, pre, d.dyv(), Activation::relu, g), DeviceError, NamesArgument("dx"));
  EXPECT_THROW_THAT(bwd(y, pre, elsewhere(d.dyv()), Activation::relu, d.grads()), DeviceError,
                    NamesArgument("dy"));
  EXPECT_THROW_THAT(bwd(y, pre, null_data(d.dyv()), Activation::relu, d.grads()), ArgumentError,
                    NamesArgument("dy"));
  EXPECT_THROW_THAT(dense_backward(ctx(), reshaped(d.xv(), 0, kIn), d.wv(), reshaped(y, 0, kOut),
                                   {}, reshaped(d.dyv(), 0, kOut), Activation::relu, d.grads()),
                    ShapeError, NamesArgument("x"));
}

TEST_P(ErrorTest, DenseBf16Overloads) {
  const std::vector<bf16> x = to_bf16_vec(random_floats(rng_, kBatch * kIn));
  const std::vector<bf16> w = to_bf16_vec(random_floats(rng_, kOut * kIn));
  Buffer<bf16> xb = upload(ctx(), x), wb = upload(ctx(), w),
               yb = poisoned<bf16>(ctx(), kBatch * kOut);
  Buffer<float> dw = poisoned<float>(ctx(), kOut * kIn);
  const MatrixView<const bf16> xv = std::as_const(xb).matrix(kBatch, kIn),
                               wv = std::as_const(wb).matrix(kOut, kIn);
  EXPECT_THROW_THAT(
      dense_forward(ctx(), null_data(xv), wv, {}, Activation::relu, yb.matrix(kBatch, kOut)),
      ArgumentError, NamesArgument("x"));
  EXPECT_THROW_THAT(dense_forward(ctx(), xv, reshaped(wv, kOut, 1), {}, Activation::relu,
                                  yb.matrix(kBatch, kOut)),
                    ShapeError, NamesArgument("w"));
  EXPECT_THROW_THAT(
      dense_forward(ctx(), xv, wv, {}, Activation::relu, elsewhere(yb.matrix(kBatch, kOut))),
      DeviceError, NamesArgument("y"));
  DenseGradsBf16 g{{}, dw.matrix(kOut, kIn - 1), {}, false};
  const MatrixView<const bf16> yv = std::as_const(yb).matrix(kBatch, kOut);
  EXPECT_THROW_THAT(dense_backward(ctx(), xv, wv, yv, {}, yv, Activation::relu, g), ShapeError,
                    NamesArgument("dw"));
}

// ---------------------------------------------------------------- losses

TEST_P(ErrorTest, LossShapesAndPointers) {
  const std::int64_t rows = 5, cols = 3;
  Buffer<float> pred = upload(ctx(), random_floats(rng_, rows * cols));
  Buffer<float> target = upload(ctx(), random_floats(rng_, rows * cols, 0.0f, 1.0f));
  Buffer<std::int32_t> labels = upload(ctx(), random_labels(rng_, rows, cols));
  Buffer<float> loss = poisoned<float>(ctx(), 1), grad = poisoned<float>(ctx(), rows * cols);
  const MatrixView<const float> p = std::as_const(pred).matrix(rows, cols),
                                t = std::as_const(target).matrix(rows, cols);
  const VectorView<const std::int32_t> l = std::as_const(labels).view();
  const LossOutput out{loss.view(), grad.matrix(rows, cols)};
  EXPECT_NO_THROW(mse_loss(ctx(), p, t, out));
  EXPECT_NO_THROW(softmax_cross_entropy(ctx(), p, l, out));
  EXPECT_NO_THROW(sigmoid_bce(ctx(), p, t, out));

  EXPECT_THROW_THAT(mse_loss(ctx(), p, reshaped(t, rows, cols - 1), out), ShapeError,
                    NamesArgument("target"));
  EXPECT_THROW_THAT(sigmoid_bce(ctx(), p, reshaped(t, rows - 1, cols), out), ShapeError,
                    NamesArgument("targets"));
  EXPECT_THROW_THAT(softmax_cross_entropy(ctx(), p, l.slice(0, rows - 1), out), ShapeError,
                    NamesArgument("labels"));
  EXPECT_THROW_THAT(
      softmax_cross_entropy(ctx(), p, VectorView<const std::int32_t>(nullptr, rows, ctx().device()),
                            out),
      ArgumentError, NamesArgument("labels"));

  LossOutput bad = out;
  bad.grad = reshaped(bad.grad, rows, cols + 1);
  EXPECT_THROW_THAT(mse_loss(ctx(), p, t, bad), ShapeError, NamesArgument("grad"));
  EXPECT_THROW_THAT(softmax_cross_entropy(ctx(), p, l, bad), ShapeError, NamesArgument("grad"));
  EXPECT_THROW_THAT(sigmoid_bce(ctx(), p, t, bad), ShapeError, NamesArgument("grad"));
  bad = out;
  bad.loss = {};
  EXPECT_THROW_THAT(mse_loss(ctx(), p, t, bad), ArgumentError, NamesArgument("loss"));
  EXPECT_THROW_THAT(softmax_cross_entropy(ctx(), p, l, bad), ArgumentError, NamesArgument("loss"));
  bad = out;
  bad.grad = null_data(bad.grad);
  EXPECT_THROW_THAT(sigmoid_bce(ctx(), p, t, bad), ArgumentError, NamesArgument("grad"));
  bad = out;
  bad.grad_scale = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW_THAT(mse_loss(ctx(), p, t, bad), ArgumentError, NamesArgument("grad_scale"));

  EXPECT_THROW_THAT(mse_loss(ctx(), null_data(p), t, out), ArgumentError, NamesArgument("pred"));
  EXPECT_THROW_THAT(sigmoid_bce(ctx(), null_data(p), t, out), ArgumentError,
                    NamesArgument("logits"));
  // Batch 0.
  EXPECT_THROW_THAT(mse_loss(ctx(), reshaped(p, 0, cols), reshaped(t, 0, cols),
                             {loss.view(), reshaped(grad.matrix(rows, cols), 0, cols)}),
                    ShapeError, NamesArgument("pred"));
  EXPECT_THROW_THAT(
      softmax_cross_entropy(ctx(), reshaped(p, 0, cols), l.slice(0, 0),
                            {loss.view(), reshaped(grad.matrix(rows, cols), 0, cols)}),
      ShapeError, NamesArgument("logits"));
}

TEST_P(ErrorTest, LossWrongDevice) {
  const std::int64_t rows = 2, cols = 3;
  Buffer<float> pred = upload(ctx(), random_floats(rng_, rows * cols));
  Buffer<float> target = upload(ctx(), random_floats(rng_, rows * cols, 0.0f, 1.0f));
  Buffer<std::int32_t> labels = upload(ctx(), random_labels(rng_, rows, cols));
  Buffer<float> loss = poisoned<float>(ctx(), 1), grad = poisoned<float>(ctx(), rows * cols);
  const MatrixView<const float> p = std::as_const(pred).matrix(rows, cols),
                                t = std::as_const(target).matrix(rows, cols);
  const VectorView<const std::int32_t> l = std::as_const(labels).view();
  const LossOutput out{loss.view(), grad.matrix(rows, cols)};
  EXPECT_THROW_THAT(mse_loss(ctx(), elsewhere(p), t, out), DeviceError, NamesArgument("pred"));
  EXPECT_THROW_THAT(mse_loss(ctx(), p, elsewhere(t), out), DeviceError, NamesArgument("target"));
  EXPECT_THROW_THAT(softmax_cross_entropy(ctx(), elsewhere(p), l, out), DeviceError,
                    NamesArgument("logits"));
  EXPECT_THROW_THAT(softmax_cross_entropy(ctx(), p, elsewhere(l), out), DeviceError,
                    NamesArgument("labels"));
  EXPECT_THROW_THAT(sigmoid_bce(ctx(), p, elsewhere(t), out), DeviceError,
                    NamesArgument("targets"));
  LossOutput bad = out;
  bad.loss = elsewhere(bad.loss);
  EXPECT_THROW_THAT(sigmoid_bce(ctx(), p, t, bad), DeviceError, NamesArgument("loss"));
  bad = out;
  bad.grad = elsewhere(bad.grad);
  EXPECT_THROW_THAT(sigmoid_bce(ctx(), p, t, bad), DeviceError, NamesArgument("grad"));
}

TEST_P(ErrorTest, CrossEntropyLabelOutOfRangeOnCpu) {
  if (on_gpu()) GTEST_SKIP() << "labels are checked by the host only on the CPU backend";
  Buffer<float> logits = upload(ctx(), random_floats(rng_, 6));
  Buffer<float> loss = poisoned<float>(ctx(), 1), grad = poisoned<float>(ctx(), 6);
  for (std::int32_t bad : {3, -1}) {
    Buffer<std::int32_t> labels = upload(ctx(), std::vector<std::int32_t>{0, bad});
    EXPECT_THROW_THAT(
        softmax_cross_entropy(ctx(), std::as_const(logits).matrix(2, 3),
                              std::as_const(labels).view(), {loss.view(), grad.matrix(2, 3)}),
        ArgumentError, AllOf(NamesArgument("labels"), HasSubstr(std::to_string(bad))));
  }
}

// ---------------------------------------------------------------- sgd

TEST_P(ErrorTest, SgdOptions) {
  const std::int64_t n = 7;
  Buffer<float> p = upload(ctx(), random_floats(rng_, n)),
                g = upload(ctx(), random_floats(rng_, n));
  Buffer<float> m = poisoned<float>(ctx(), n);
  auto step = [&](SgdOptions o) {
    sgd_update(ctx(), p.view(), std::as_const(g).view(), m.view(), o, {true});
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_NO_THROW(step({0.1f, 0.9f, 0.0f, 0.0f, true, false}));
  EXPECT_NO_THROW(step({0.0f}));  // lr 0 is allowed, as in PyTorch

  EXPECT_THROW_THAT(step({-0.1f}), ArgumentError, NamesArgument("lr"));
  EXPECT_THROW_THAT(step({nan}), ArgumentError, NamesArgument("lr"));
  EXPECT_THROW_THAT(step({inf}), ArgumentError, NamesArgument("lr"));
  EXPECT_THROW_THAT(step({0.1f, -0.5f}), ArgumentError, NamesArgument("momentum"));
  EXPECT_THROW_THAT(step({0.1f, nan}), ArgumentError, NamesArgument("momentum"));
  EXPECT_THROW_THAT(step({0.1f, 0.0f, 0.0f, -1e-4f}), ArgumentError, NamesArgument("weight_decay"));
  // PyTorch: "Nesterov momentum requires a momentum and zero dampening".
  EXPECT_THROW_THAT(step({0.1f, 0.0f, 0.0f, 0.0f, true}), ArgumentError, NamesArgument("nesterov"));
  EXPECT_THROW_THAT(step({0.1f, 0.9f, 0.1f, 0.0f, true}), ArgumentError, NamesArgument("nesterov"));
}

TEST_P(ErrorTest, SgdBuffers) {
  const std::int64_t n = 7;
  Buffer<float> p = upload(ctx(), random_floats(rng_, n)),
                g = upload(ctx(), random_floats(rng_, n));
  Buffer<float> m = poisoned<float>(ctx(), n);
  Buffer<bf16> pb = poisoned<bf16>(ctx(), n);
  const VectorView<const float> gv = std::as_const(g).view();
  const SgdOptions plain{0.1f}, mom{0.1f, 0.9f};
  EXPECT_THROW_THAT(sgd_update(ctx(), p.view(), gv.slice(0, n - 1), {}, plain), ShapeError,
                    NamesArgument("grads"));
  EXPECT_THROW_THAT(sgd_update(ctx(), p.view(), gv, m.view().slice(0, 3), mom, {true}), ShapeError,
                    NamesArgument("momentum"));
  EXPECT_THROW_THAT(sgd_update(ctx(), p.view(), gv, {}, mom, {true}), Error,
                    NamesArgument("momentum"));
  SgdStep s;
  s.params_bf16 = pb.view().slice(0, n - 2);
  EXPECT_THROW_THAT(sgd_update(ctx(), p.view(), gv, {}, plain, s), ShapeError,
                    NamesArgument("params_bf16"));
  s.params_bf16 = elsewhere(pb.view());
  EXPECT_THROW_THAT(sgd_update(ctx(), p.view(), gv, {}, plain, s), DeviceError,
                    NamesArgument("params_bf16"));
  EXPECT_THROW_THAT(sgd_update(ctx(), VectorView<float>(nullptr, n, ctx().device()), gv, {}, plain),
                    ArgumentError, NamesArgument("params"));
  EXPECT_THROW_THAT(sgd_update(ctx(), elsewhere(p.view()), gv, {}, plain), DeviceError,
                    NamesArgument("params"));
  EXPECT_THROW_THAT(sgd_update(ctx(), p.view(), elsewhere(gv), {}, plain), DeviceError,
                    NamesArgument("grads"));
  EXPECT_THROW_THAT(sgd_update(ctx(), p.view(), gv, elsewhere(m.view()), mom), DeviceError,
                    NamesArgument("momentum"));
  SgdStep scaled;
  scaled.grad_scale = std::numeric_limits<float>::infinity();
  EXPECT_THROW_THAT(sgd_update(ctx(), p.view(), gv, {}, plain, scaled), ArgumentError,
                    NamesArgument("grad_scale"));
}

// ---------------------------------------------------------------- init and helpers

TEST_P(ErrorTest, FillConvertCheckFinite) {
  const std::int64_t n = 9;
  Buffer<float> f = poisoned<float>(ctx(), n);
  Buffer<bf16> b = poisoned<bf16>(ctx(), n);
  Buffer<std::int32_t> flag = upload(ctx(), std::vector<std::int32_t>{0});
  EXPECT_THROW_THAT(fill_uniform(ctx(), VectorView<float>(nullptr, n, ctx().device()), -1, 1, 1),
                    ArgumentError, NamesArgument("out"));
  EXPECT_THROW_THAT(fill_uniform(ctx(), elsewhere(f.view()), -1, 1, 1), DeviceError,
                    NamesArgument("out"));
  EXPECT_THROW_THAT(fill(ctx(), elsewhere(f.view()), 1.0f), DeviceError, NamesArgument("out"));
  EXPECT_THROW_THAT(fill(ctx(), VectorView<float>(nullptr, n, ctx().device()), 1.0f), ArgumentError,
                    NamesArgument("out"));
  EXPECT_THROW_THAT(check_finite(ctx(), std::as_const(f).view(), nullptr), ArgumentError,
                    NamesArgument("flag"));
  EXPECT_THROW_THAT(check_finite(ctx(), elsewhere(std::as_const(f).view()), flag.data()),
                    DeviceError, NamesArgument("x"));
  EXPECT_THROW_THAT(convert(ctx(), std::as_const(f).view(), b.view().slice(0, n - 1)), ShapeError,
                    NamesArgument("out"));
  EXPECT_THROW_THAT(convert(ctx(), std::as_const(b).view(), f.view().slice(0, 1)), ShapeError,
                    NamesArgument("out"));
  EXPECT_THROW_THAT(convert(ctx(), VectorView<const float>(nullptr, n, ctx().device()), b.view()),
                    ArgumentError, NamesArgument("in"));
  EXPECT_THROW_THAT(convert(ctx(), elsewhere(std::as_const(b).view()), f.view()), DeviceError,
                    NamesArgument("in"));
}

// ---------------------------------------------------------------- overlapping buffers

// An output that shares memory with another argument is refused, naming the output, before
// anything is written: such a call has no right answer on any backend. Views are cut from one
// buffer so that they overlap by a single element or exactly; disjoint neighbours pass.
TEST_P(ErrorTest, OutputsOverlappingOtherArgumentsAreRefusedAndChangeNothing) {
  Buffer<float> pool = upload(ctx(), random_floats(rng_, 256));
  const std::vector<float> before = pool.to_host(ctx());
  float* const base = pool.data();
  const Device dev = ctx().device();
  const auto m = [&](std::int64_t offset, std::int64_t rows, std::int64_t cols) {
    return MatrixView<float>(base + offset, rows, cols, dev);
  };
  const auto v = [&](std::int64_t offset, std::int64_t size) {
    return VectorView<float>(base + offset, size, dev);
  };
  const auto overlap = HasSubstr("shares memory with");

  // dense_forward: x [4, 3] at 0, w [2, 3] at 12, b [2] at 18; y [4, 2] from 20 is clear of
  // them, from 19 it takes b's last float, from 0 it is x.
  EXPECT_NO_THROW(
      dense_forward(ctx(), m(0, 4, 3), m(12, 2, 3), v(18, 2), Activation::relu, m(20, 4, 2)));
  EXPECT_THROW_THAT(
      dense_forward(ctx(), m(0, 4, 3), m(12, 2, 3), v(18, 2), Activation::relu, m(19, 4, 2)),
      ArgumentError, AllOf(NamesArgument("y"), overlap, HasSubstr("b")));
  EXPECT_THROW_THAT(dense_forward(ctx(), m(0, 4, 3), m(12, 2, 3), {}, Activation::relu, m(0, 4, 2)),
                    ArgumentError, AllOf(NamesArgument("y"), overlap));
  EXPECT_THROW_THAT(
      dense_forward(ctx(), m(0, 4, 3), m(12, 2, 3), {}, Activation::relu, m(20, 4, 2), m(27, 4, 2)),
      ArgumentError, AllOf(NamesArgument("pre"), overlap, HasSubstr("y")));

  // dense_backward: dx over dy, dw over x.
  DenseGrads g{m(100, 4, 3), m(120, 2, 3), v(130, 2), false};
  EXPECT_NO_THROW(dense_backward(ctx(), m(0, 4, 3), m(12, 2, 3), m(20, 4, 2), {}, m(40, 4, 2),
                                 Activation::relu, g));
  g.dx = m(40, 4, 3);
  EXPECT_THROW_THAT(dense_backward(ctx(), m(0, 4, 3), m(12, 2, 3), m(20, 4, 2), {}, m(40, 4, 2),
                                   Activation::relu, g),
                    ArgumentError, AllOf(NamesArgument("dx"), overlap, HasSubstr("dy")));
  g.dx = m(100, 4, 3);
  g.dw = m(10, 2, 3);
  EXPECT_THROW_THAT(dense_backward(ctx(), m(0, 4, 3), m(12, 2, 3), m(20, 4, 2), {}, m(40, 4, 2),
                                   Activation::relu, g),
                    ArgumentError, AllOf(NamesArgument("dw"), overlap));

  // A loss's gradient written over its prediction; its value inside the gradient.
  EXPECT_THROW_THAT(mse_loss(ctx(), m(0, 4, 2), m(8, 4, 2), LossOutput{v(200, 1), m(0, 4, 2)}),
                    ArgumentError, AllOf(NamesArgument("grad"), overlap, HasSubstr("pred")));
  EXPECT_THROW_THAT(mse_loss(ctx(), m(0, 4, 2), m(8, 4, 2), LossOutput{v(60, 1), m(60, 4, 2)}),
                    ArgumentError, AllOf(NamesArgument("loss"), overlap, HasSubstr("grad")));

  // The optimizers' buffers.
  EXPECT_THROW_THAT(sgd_update(ctx(), v(0, 8), v(4, 8), {}, SgdOptions{0.1f}), ArgumentError,
                    AllOf(NamesArgument("params"), overlap, HasSubstr("grads")));
  EXPECT_THROW_THAT(sgd_update(ctx(), v(0, 8), v(8, 8), v(15, 8), SgdOptions{0.1f, 0.9f}),
                    ArgumentError, AllOf(NamesArgument("momentum"), overlap));
  Buffer<float> scalars(ctx(), 4), lr(ctx(), 1);
  fill(ctx(), scalars.view(), 0.0f);
  fill(ctx(), lr.view(), 1e-3f);
  AdamStep step;
  step.lr_device = lr.data();
  step.scalars = scalars.data();
  EXPECT_THROW_THAT(
      adam_update(ctx(), v(0, 8), v(8, 8), v(16, 8), v(20, 8), {}, AdamOptions{}, step),
      ArgumentError, AllOf(NamesArgument("exp_avg_sq"), overlap));

  // The jet activation: h over z; dz over z (dz may be dh itself, not part of it).
  Buffer<float> weights = upload(ctx(), std::vector<float>{1.0f});
  JetBlocks blocks;
  blocks.batch = 2;
  blocks.directions = 1;
  blocks.weights = std::as_const(weights).view();  // 3 blocks: [6, 2] stacked matrices
  EXPECT_THROW_THAT(
      jet_activation_forward(ctx(), blocks, JetActivation::tanh, {}, m(0, 6, 2), m(10, 6, 2)),
      ArgumentError, AllOf(NamesArgument("h"), overlap, HasSubstr("z")));
  EXPECT_THROW_THAT(jet_activation_backward(ctx(), blocks, JetActivation::tanh, m(0, 6, 2),
                                            m(20, 6, 2), m(22, 6, 2), {}),
                    ArgumentError, AllOf(NamesArgument("dz"), overlap, HasSubstr("dh")));
  EXPECT_NO_THROW(jet_activation_backward(ctx(), blocks, JetActivation::tanh, m(0, 6, 2),
                                          m(20, 6, 2), m(20, 6, 2), {}));

  // convert: out over in.
  Buffer<bf16> halves(ctx(), 8);
  EXPECT_NO_THROW(convert(ctx(), std::as_const(pool).view().slice(0, 8), halves.view()));
  EXPECT_THROW_THAT(
      convert(ctx(), VectorView<const bf16>(reinterpret_cast<const bf16*>(base), 8, dev), v(2, 8)),
      ArgumentError, AllOf(NamesArgument("out"), overlap, HasSubstr("in")));

  // Every refused call left the pool as it was: only the calls that passed wrote, and they wrote
  // where no refused call reads. Check the parts no accepted call writes.
  const std::vector<float> after = pool.to_host(ctx());
  for (std::int64_t i : {0, 5, 11, 12, 17, 18, 19}) {
    EXPECT_EQ(after[static_cast<std::size_t>(i)], before[static_cast<std::size_t>(i)]) << i;
  }
}

}  // namespace
}  // namespace descent::test
