// dense_forward / dense_backward on every backend against the float64 oracle.
#include <omp.h>

#include <cmath>
#include <sstream>
#include <utility>

#include "test_support.hpp"

namespace descent::test {
namespace {

struct Shape {
  std::int64_t batch, in, out;
};

std::string describe(Shape s, Activation act, const std::string& extra = {}) {
  std::ostringstream os;
  os << "batch " << s.batch << ", in " << s.in << ", out " << s.out << ", " << to_string(act)
     << (extra.empty() ? "" : ", ") << extra;
  return os.str();
}

// Small shapes run for every activation and option; large ones (the odd sizes 1000 and 1023)
// rotate through the activations so the suite stays fast.
const Shape kSmallShapes[] = {{1, 1, 1},  {1, 3, 17}, {3, 17, 1},
                              {17, 3, 3}, {5, 1, 17}, {2, 17, 17}};
const Shape kLargeShapes[] = {
    {1, 1023, 1000}, {17, 1000, 1023}, {1000, 17, 3}, {1000, 3, 1023}, {3, 1023, 17}};

struct DenseInputs {
  std::vector<float> x, w, b;
};

// Weights scaled by 1/sqrt(in) keep pre-activations O(1), where the activations are not flat.
DenseInputs make_inputs(std::mt19937_64& rng, Shape s) {
  const float scale = std::sqrt(3.0f / float(s.in));
  return {random_floats(rng, s.batch * s.in), random_floats(rng, s.out * s.in, -scale, scale),
          random_floats(rng, s.out, -0.5f, 0.5f)};
}

VectorView<const float> optional_view(const Buffer<float>& b, bool use) {
  return use ? b.view() : VectorView<const float>{};
}

struct ForwardOptions {
  bool bias = true;
  bool with_pre = true;
  std::int64_t pad = 0;  // ld = cols + pad
};

void check_forward(Context& ctx, std::mt19937_64& rng, Shape s, Activation act, ForwardOptions o,
                   double tol) {
  SCOPED_TRACE(describe(s, act,
                        std::string(o.bias ? "bias" : "no bias") + (o.with_pre ? ", pre" : "") +
                            ", pad " + std::to_string(o.pad)));
  const DenseInputs in = make_inputs(rng, s);
  const oracle::DenseResult ref =
      oracle::dense_forward(to_mat(in.x, s.batch, s.in), to_mat(in.w, s.out, s.in),
                            o.bias ? to_vec(in.b) : oracle::Vec{}, act);

  auto x = upload_matrix(ctx, in.x, s.batch, s.in, s.in + o.pad);
  auto w = upload_matrix(ctx, in.w, s.out, s.in, s.in + o.pad + 1);
  Buffer<float> b = upload(ctx, in.b);
  auto y = poisoned_matrix<float>(ctx, s.batch, s.out, s.out + o.pad);
  auto pre = poisoned_matrix<float>(ctx, s.batch, s.out, s.out + 2 * o.pad);
  dense_forward(ctx, x.cview(), w.cview(), optional_view(b, o.bias), act, y.view(),
                o.with_pre ? pre.view() : MatrixView<float>{});
  EXPECT_TRUE(close_to(download_matrix(ctx, y, "y"), ref.y.v, tol)) << "y";
  if (o.with_pre) {
    EXPECT_TRUE(close_to(download_matrix(ctx, pre, "pre"), ref.pre.v, tol)) << "pre";
  } else {
    // An absent pre must not be written anywhere: its buffer stays poisoned.
    for (float v : pre.buf.to_host(ctx)) ASSERT_TRUE(same_bits(v, poison_value<float>()));
  }
}

struct BackwardOptions {
  bool with_dx = true;
  bool with_db = true;
  bool accumulate = false;
  bool pass_pre = true;  // gelu always needs it
  std::int64_t pad = 0;
};

void check_backward(Context& ctx, std::mt19937_64& rng, Shape s, Activation act, BackwardOptions o,
                    double tol) {
  SCOPED_TRACE(describe(s, act,
                        std::string(o.with_dx ? "dx" : "no dx") + (o.with_db ? ", db" : ", no db") +
                            (o.accumulate ? ", accumulate" : "") +
                            (o.pass_pre ? ", pre" : ", no pre") + ", pad " +
                            std::to_string(o.pad)));
  const DenseInputs in = make_inputs(rng, s);
  const oracle::Mat xm = to_mat(in.x, s.batch, s.in), wm = to_mat(in.w, s.out, s.in);
  const oracle::DenseResult fwd = oracle::dense_forward(xm, wm, to_vec(in.b), act);
  // What the op is given: the forward results rounded to float, as the forward op stores them.
  const std::vector<float> y_f = to_floats(fwd.y.v), pre_f = to_floats(fwd.pre.v);
  const std::vector<float> dy = random_floats(rng, s.batch * s.out);
  const oracle::DenseGradsResult g = oracle::dense_backward(xm, wm, to_mat(pre_f, s.batch, s.out),
                                                            to_mat(dy, s.batch, s.out), act);

  const std::vector<float> dw0 = random_floats(rng, s.out * s.in);
  const std::vector<float> db0 = random_floats(rng, s.out);
  oracle::Vec want_dw = g.dw.v, want_db = g.db;
  if (o.accumulate) {
    for (std::size_t i = 0; i < want_dw.size(); ++i) want_dw[i] += dw0[i];
    for (std::size_t i = 0; i < want_db.size(); ++i) want_db[i] += db0[i];
  }

  auto x = upload_matrix(ctx, in.x, s.batch, s.in, s.in + o.pad);
  auto w = upload_matrix(ctx, in.w, s.out, s.in, s.in + 2 * o.pad);
  auto y = upload_matrix(ctx, y_f, s.batch, s.out, s.out + o.pad);
  auto pre = upload_matrix(ctx, pre_f, s.batch, s.out, s.out + o.pad);
  auto dyv = upload_matrix(ctx, dy, s.batch, s.out, s.out + 3 * o.pad);
  auto dx = poisoned_matrix<float>(ctx, s.batch, s.in, s.in + o.pad);
  auto dw = o.accumulate ? upload_matrix(ctx, dw0, s.out, s.in, s.in + o.pad)
                         : poisoned_matrix<float>(ctx, s.out, s.in, s.in + o.pad);
  Buffer<float> db = o.accumulate && o.with_db ? upload(ctx, db0) : poisoned<float>(ctx, s.out);

  DenseGrads grads;
  if (o.with_dx) grads.dx = dx.view();
  grads.dw = dw.view();
  if (o.with_db) grads.db = db.view();
  grads.accumulate = o.accumulate;
  dense_backward(ctx, x.cview(), w.cview(), y.cview(),
                 o.pass_pre ? pre.cview() : MatrixView<const float>{}, dyv.cview(), act, grads);

  EXPECT_TRUE(close_to(download_matrix(ctx, dw, "dw"), want_dw, tol)) << "dw";
  if (o.with_db) {
    EXPECT_TRUE(close_to(db.to_host(ctx), want_db, tol)) << "db";
  } else {
    for (float v : db.to_host(ctx))
      ASSERT_TRUE(same_bits(v, poison_value<float>())) << "db written";
  }
  if (o.with_dx) {
    EXPECT_TRUE(close_to(download_matrix(ctx, dx, "dx"), g.dx.v, tol)) << "dx";
  } else {
    for (float v : dx.buf.to_host(ctx))
      ASSERT_TRUE(same_bits(v, poison_value<float>())) << "dx written";
  }
}

class DenseTest : public BackendTest {};
DESCENT_INSTANTIATE_BACKENDS(DenseTest);

// The CPU backend runs its GEMM on the Context's threads without changing the caller's OpenMP
// setting (a library does not change global state).
TEST(DenseCpu, GemmLeavesTheCallersOpenMpThreadCountAlone) {
  const int before = omp_get_max_threads();
  omp_set_num_threads(3);
  Context ctx(Device::cpu(), ContextOptions{1});
  std::mt19937_64 rng(7);
  check_forward(ctx, rng, {64, 48, 40}, Activation::relu, {}, kTolFp32);
  EXPECT_EQ(omp_get_max_threads(), 3);
  omp_set_num_threads(before);
}

TEST_P(DenseTest, ForwardSmallShapesEveryActivationWithAndWithoutBias) {
  for (Activation act : kAllActivations) {
    for (Shape s : kSmallShapes) {
      for (bool bias : {true, false}) check_forward(ctx(), rng_, s, act, {bias, true, 0}, kTolFp32);
    }
  }
}

TEST_P(DenseTest, ForwardLargeOddShapes) {
  int i = 0;
  for (Shape s : kLargeShapes) {
    const Activation act = kAllActivations[i++ % 5];
    check_forward(ctx(), rng_, s, act, {true, true, 0}, kTolFp32);
  }
}

TEST_P(DenseTest, ForwardWithoutPre) {
  for (Activation act : kAllActivations) {
    check_forward(ctx(), rng_, {17, 3, 17}, act, {true, false, 0}, kTolFp32);
  }
}

TEST_P(DenseTest, ForwardSubViewsWithLeadingDimensionLargerThanCols) {
  for (Activation act : kAllActivations) {
    check_forward(ctx(), rng_, {3, 17, 5}, act, {true, true, 3}, kTolFp32);
    check_forward(ctx(), rng_, {1, 1, 1}, act, {false, true, 1}, kTolFp32);
  }
  check_forward(ctx(), rng_, {33, 130, 65}, Activation::relu, {true, true, 7}, kTolFp32);
}

TEST_P(DenseTest, BackwardSmallShapesEveryActivation) {
  for (Activation act : kAllActivations) {
    for (Shape s : kSmallShapes) check_backward(ctx(), rng_, s, act, {}, kTolFp32);
  }
}

TEST_P(DenseTest, BackwardLargeOddShapes) {
  int i = 0;
  for (Shape s : kLargeShapes) {
    const Activation act = kAllActivations[(i++ + 2) % 5];
    check_backward(ctx(), rng_, s, act, {}, kTolFp32);
  }
}

TEST_P(DenseTest, BackwardAccumulateAddsToDwAndDb) {
  for (Activation act : kAllActivations) {
    check_backward(ctx(), rng_, {17, 3, 5}, act, {true, true, true, true, 0}, kTolFp32);
    check_backward(ctx(), rng_, {1, 17, 1}, act, {true, true, true, true, 0}, kTolFp32);
  }
  check_backward(ctx(), rng_, {100, 65, 33}, Activation::tanh, {true, true, true, true, 0},
                 kTolFp32);
}

TEST_P(DenseTest, BackwardWithoutDx) {
  for (Activation act : kAllActivations) {
    check_backward(ctx(), rng_, {5, 17, 3}, act, {false, true, false, true, 0}, kTolFp32);
    check_backward(ctx(), rng_, {5, 17, 3}, act, {false, true, true, true, 0}, kTolFp32);
  }
}

TEST_P(DenseTest, BackwardWithoutDb) {
  for (Activation act : kAllActivations) {
    check_backward(ctx(), rng_, {5, 3, 17}, act, {true, false, false, true, 0}, kTolFp32);
    check_backward(ctx(), rng_, {5, 3, 17}, act, {false, false, true, true, 0}, kTolFp32);
  }
}

TEST_P(DenseTest, BackwardWithoutPreForActivationsThatUseY) {
  for (Activation act :
       {Activation::identity, Activation::relu, Activation::sigmoid, Activation::tanh}) {
    check_backward(ctx(), rng_, {17, 5, 3}, act, {true, true, false, false, 0}, kTolFp32);
  }
}

TEST_P(DenseTest, BackwardSubViewsWithLeadingDimensionLargerThanCols) {
  for (Activation act : kAllActivations) {
    check_backward(ctx(), rng_, {3, 17, 5}, act, {true, true, false, true, 2}, kTolFp32);
    check_backward(ctx(), rng_, {4, 5, 6}, act, {true, true, true, true, 1}, kTolFp32);
  }
  check_backward(ctx(), rng_, {33, 130, 65}, Activation::gelu, {true, true, false, true, 5},
                 kTolFp32);
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

// A view that is a block of rows of a bigger matrix (the data pointer is not the buffer start).
TEST_P(DenseTest, ForwardOnRowBlockOfLargerBuffer) {
  const Shape s{6, 7, 5};
  const DenseInputs in = make_inputs(rng_, s);
  auto big_x = upload_matrix(ctx(), in.x, s.batch, s.in, s.in + 2);
  auto w = upload_matrix(ctx(), in.w, s.out, s.in);
  Buffer<float> b = upload(ctx(), in.b);
  auto y = poisoned_matrix<float>(ctx(), s.batch, s.out, s.out + 1);
  // Rows 2..4 of x into rows 2..4 of y; the other rows of y stay poisoned.
  dense_forward(ctx(), big_x.cview().row_block(2, 3), w.cview(), b.view(), Activation::tanh,
                y.view().row_block(2, 3));
  const oracle::Mat xm = to_mat(in.x, s.batch, s.in);
  const oracle::DenseResult ref =
      oracle::dense_forward(xm, to_mat(in.w, s.out, s.in), to_vec(in.b), Activation::tanh);
  const std::vector<float> got = download_matrix(ctx(), y, "y");
  for (std::int64_t r = 0; r < s.batch; ++r) {
    for (std::int64_t c = 0; c < s.out; ++c) {
      const float v = got[std::size_t(r * s.out + c)];
      if (r >= 2 && r < 5) {
        EXPECT_NEAR(v, ref.y.at(r, c), 1e-5) << "row " << r << " col " << c;
      } else {
        EXPECT_TRUE(same_bits(v, poison_value<float>())) << "row " << r << " outside the block";
      }
    }
  }
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
