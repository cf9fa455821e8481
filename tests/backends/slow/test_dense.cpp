// dense_forward / dense_backward on every backend against the float64 oracle: the large odd
// shapes, batches the CPU cuts into row slices, tf32 and bf16 (seconds each on 2 cores).
#include "backends/dense_checks.hpp"

namespace descent::test {
namespace {

// The odd sizes 1000 and 1023 rotate through the activations so the suite stays fast.
const Shape kLargeShapes[] = {
    {1, 1023, 1000}, {17, 1000, 1023}, {1000, 17, 3}, {1000, 3, 1023}, {3, 1023, 17}};

class DenseTest : public BackendTest {};
DESCENT_INSTANTIATE_BACKENDS(DenseTest);

TEST_P(DenseTest, ForwardLargeOddShapes) {
  int i = 0;
  for (Shape s : kLargeShapes) {
    const Activation act = kAllActivations[i++ % 5];
    check_forward(ctx(), rng_, s, act, {true, true, 0}, kTolFp32);
  }
}

TEST_P(DenseTest, BackwardLargeOddShapes) {
  int i = 0;
  for (Shape s : kLargeShapes) {
    const Activation act = kAllActivations[(i++ + 2) % 5];
    check_backward(ctx(), rng_, s, act, {}, kTolFp32);
  }
}

// Batches the CPU backend cuts into several row slices with DESCENT_CPU_SLICE_ROWS=256 (GEMM, then
// the elementwise pass over what it wrote), the last one short and not a whole chunk of db's sums:
// every activation, with and without the optional outputs, on padded views (named LargeOddShapes:
// slow on 2 cores).
TEST_P(DenseTest, ForwardSlicedBatchLargeOddShapes) {
  for (Activation act : kAllActivations) {
    check_forward(ctx(), rng_, {700, 40, 1030}, act, {true, act == Activation::gelu, 3}, kTolFp32);
  }
  check_forward(ctx(), rng_, {9000, 5, 70}, Activation::relu, {true, false, 0}, kTolFp32);
}

TEST_P(DenseTest, BackwardSlicedBatchLargeOddShapes) {
  for (Activation act : kAllActivations) {
    check_backward(ctx(), rng_, {700, 40, 1030}, act, {true, true, false, true, 2}, kTolFp32);
  }
  check_backward(ctx(), rng_, {1000, 1100, 30}, Activation::tanh, {true, true, true, true, 0},
                 kTolFp32);
  check_backward(ctx(), rng_, {700, 30, 1030}, Activation::relu, {false, false, false, true, 0},
                 kTolFp32);
}

// fp32 mode is strict; tf32 is looser on the GPU; the CPU always computes in fp32.
TEST_P(DenseTest, Tf32MathMode) {
  ctx().set_math(MathMode::tf32);
  const double tol = on_gpu() ? kTolTf32 : kTolFp32;
  for (Activation act : kAllActivations) {
    check_forward(ctx(), rng_, {17, 1000, 33}, act, {true, true, 0}, tol);
    check_backward(ctx(), rng_, {33, 257, 17}, act, {}, tol);
  }
  check_forward(ctx(), rng_, {1, 1023, 1000}, Activation::identity, {true, true, 0}, tol);
}

// ---------------------------------------------------------------- bf16

void check_forward_bf16(Context& ctx, std::mt19937_64& rng, Shape s, Activation act, bool bias,
                        bool with_pre, std::int64_t pad) {
  SCOPED_TRACE(describe(
      s, act,
      std::string("bf16") + (bias ? ", bias" : ", no bias") + ", pad " + std::to_string(pad)));
  const DenseInputs in = make_inputs(rng, s);
  const std::vector<float> xr = round_to_bf16(in.x), wr = round_to_bf16(in.w);
  const oracle::DenseResult ref = oracle::dense_forward(
      to_mat(xr, s.batch, s.in), to_mat(wr, s.out, s.in), bias ? to_vec(in.b) : oracle::Vec{}, act);
  auto x = upload_matrix(ctx, to_bf16_vec(in.x), s.batch, s.in, s.in + pad);
  auto w = upload_matrix(ctx, to_bf16_vec(in.w), s.out, s.in, s.in + pad);
  Buffer<float> b = upload(ctx, in.b);
  auto y = poisoned_matrix<bf16>(ctx, s.batch, s.out, s.out + pad);
  auto pre = poisoned_matrix<float>(ctx, s.batch, s.out, s.out + pad);
  dense_forward(ctx, x.cview(), w.cview(), optional_view(b, bias), act, y.view(),
                with_pre ? pre.view() : MatrixView<float>{});
  EXPECT_TRUE(close_to(download_matrix(ctx, y, "y"), ref.y.v, kTolBf16)) << "y";
  if (with_pre) {
    EXPECT_TRUE(close_to(download_matrix(ctx, pre, "pre"), ref.pre.v, kTolBf16)) << "pre";
  }
}

void check_backward_bf16(Context& ctx, std::mt19937_64& rng, Shape s, Activation act, bool with_dx,
                         bool with_db, bool accumulate, std::int64_t pad) {
  SCOPED_TRACE(describe(s, act,
                        std::string("bf16") + (with_dx ? ", dx" : ", no dx") +
                            (with_db ? ", db" : ", no db") + (accumulate ? ", accumulate" : "") +
                            ", pad " + std::to_string(pad)));
  const DenseInputs in = make_inputs(rng, s);
  const std::vector<float> xr = round_to_bf16(in.x), wr = round_to_bf16(in.w);
  const oracle::Mat xm = to_mat(xr, s.batch, s.in), wm = to_mat(wr, s.out, s.in);
  const oracle::DenseResult fwd = oracle::dense_forward(xm, wm, to_vec(in.b), act);
  const std::vector<float> pre_f = to_floats(fwd.pre.v);
  const std::vector<float> dyr = round_to_bf16(random_floats(rng, s.batch * s.out));
  const oracle::DenseGradsResult g = oracle::dense_backward(xm, wm, to_mat(pre_f, s.batch, s.out),
                                                            to_mat(dyr, s.batch, s.out), act);
  const std::vector<float> dw0 = random_floats(rng, s.out * s.in), db0 = random_floats(rng, s.out);
  oracle::Vec want_dw = g.dw.v, want_db = g.db;
  if (accumulate) {
    for (std::size_t i = 0; i < want_dw.size(); ++i) want_dw[i] += dw0[i];
    for (std::size_t i = 0; i < want_db.size(); ++i) want_db[i] += db0[i];
  }

  auto x = upload_matrix(ctx, to_bf16_vec(xr), s.batch, s.in, s.in + pad);
  auto w = upload_matrix(ctx, to_bf16_vec(wr), s.out, s.in, s.in + pad);
  auto y = upload_matrix(ctx, to_bf16_vec(to_floats(fwd.y.v)), s.batch, s.out, s.out + pad);
  auto pre = upload_matrix(ctx, pre_f, s.batch, s.out, s.out + pad);
  auto dy = upload_matrix(ctx, to_bf16_vec(dyr), s.batch, s.out, s.out + pad);
  auto dx = poisoned_matrix<bf16>(ctx, s.batch, s.in, s.in + pad);
  auto dw = accumulate ? upload_matrix(ctx, dw0, s.out, s.in, s.in + pad)
                       : poisoned_matrix<float>(ctx, s.out, s.in, s.in + pad);
  Buffer<float> db = accumulate ? upload(ctx, db0) : poisoned<float>(ctx, s.out);
  DenseGradsBf16 grads;
  if (with_dx) grads.dx = dx.view();
  grads.dw = dw.view();
  if (with_db) grads.db = db.view();
  grads.accumulate = accumulate;
  dense_backward(ctx, x.cview(), w.cview(), y.cview(), pre.cview(), dy.cview(), act, grads);

  EXPECT_TRUE(close_to(download_matrix(ctx, dw, "dw"), want_dw, kTolBf16)) << "dw";
  if (with_db) {
    EXPECT_TRUE(close_to(db.to_host(ctx), want_db, kTolBf16)) << "db";
  }
  if (with_dx) {
    EXPECT_TRUE(close_to(download_matrix(ctx, dx, "dx"), g.dx.v, kTolBf16)) << "dx";
  }
}

TEST_P(DenseTest, Bf16ForwardEveryActivation) {
  for (Activation act : kAllActivations) {
    check_forward_bf16(ctx(), rng_, {1, 3, 17}, act, true, true, 0);
    check_forward_bf16(ctx(), rng_, {17, 1000, 3}, act, false, true, 0);
    check_forward_bf16(ctx(), rng_, {33, 64, 17}, act, true, false, 3);
  }
  check_forward_bf16(ctx(), rng_, {1000, 17, 1023}, Activation::gelu, true, true, 0);
}

TEST_P(DenseTest, Bf16BackwardEveryActivation) {
  for (Activation act : kAllActivations) {
    check_backward_bf16(ctx(), rng_, {1, 3, 17}, act, true, true, false, 0);
    check_backward_bf16(ctx(), rng_, {17, 1000, 3}, act, true, true, true, 0);
    check_backward_bf16(ctx(), rng_, {33, 64, 17}, act, false, false, false, 2);
  }
  check_backward_bf16(ctx(), rng_, {1000, 17, 1023}, Activation::relu, true, true, false, 0);
}

}  // namespace
}  // namespace descent::test
