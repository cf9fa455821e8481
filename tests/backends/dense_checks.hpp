// The checks of dense_forward / dense_backward against the float64 oracle, on any Context:
// the op tests (tests/backends/test_dense.cpp, tests/backends/slow/test_dense.cpp) and the
// CPU thread test (tests/test_cpu_threads.cpp).
#pragma once

#include <cmath>
#include <sstream>
#include <string>

#include "test_support.hpp"

namespace descent::test {

struct Shape {
  std::int64_t batch, in, out;
};

inline std::string describe(Shape s, Activation act, const std::string& extra = {}) {
  std::ostringstream os;
  os << "batch " << s.batch << ", in " << s.in << ", out " << s.out << ", " << to_string(act)
     << (extra.empty() ? "" : ", ") << extra;
  return os.str();
}

struct DenseInputs {
  std::vector<float> x, w, b;
};

// Weights scaled by 1/sqrt(in) keep pre-activations O(1), where the activations are not flat.
inline DenseInputs make_inputs(std::mt19937_64& rng, Shape s) {
  const float scale = std::sqrt(3.0f / float(s.in));
  return {random_floats(rng, s.batch * s.in), random_floats(rng, s.out * s.in, -scale, scale),
          random_floats(rng, s.out, -0.5f, 0.5f)};
}

inline VectorView<const float> optional_view(const Buffer<float>& b, bool use) {
  return use ? b.view() : VectorView<const float>{};
}

struct ForwardOptions {
  bool bias = true;
  bool with_pre = true;
  std::int64_t pad = 0;  // ld = cols + pad
};

inline void check_forward(Context& ctx, std::mt19937_64& rng, Shape s, Activation act,
                          ForwardOptions o, double tol) {
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

inline void check_backward(Context& ctx, std::mt19937_64& rng, Shape s, Activation act,
                           BackwardOptions o, double tol) {
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

}  // namespace descent::test
