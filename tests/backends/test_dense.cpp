// dense_forward / dense_backward on every backend against the float64 oracle: small shapes,
// every option, padded views (the large shapes, tf32 and bf16: tests/backends/slow/test_dense.cpp).
#include "backends/dense_checks.hpp"

namespace descent::test {
namespace {

// Small shapes run for every activation and option.
const Shape kSmallShapes[] = {{1, 1, 1},  {1, 3, 17}, {3, 17, 1},
                              {17, 3, 3}, {5, 1, 17}, {2, 17, 17}};

class DenseTest : public BackendTest {};
DESCENT_INSTANTIATE_BACKENDS(DenseTest);

TEST_P(DenseTest, ForwardSmallShapesEveryActivationWithAndWithoutBias) {
  for (Activation act : kAllActivations) {
    for (Shape s : kSmallShapes) {
      for (bool bias : {true, false}) check_forward(ctx(), rng_, s, act, {bias, true, 0}, kTolFp32);
    }
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

}  // namespace
}  // namespace descent::test
