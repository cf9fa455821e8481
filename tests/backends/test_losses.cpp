// mse_loss, softmax_cross_entropy and sigmoid_bce on every backend against the float64 oracle.
#include <cmath>
#include <cstring>
#include <sstream>

#include "test_support.hpp"

namespace descent::test {
namespace {

enum class Kind { mse, cross_entropy, bce };

const char* name(Kind k) {
  switch (k) {
    case Kind::mse:
      return "mse";
    case Kind::cross_entropy:
      return "softmax_cross_entropy";
    case Kind::bce:
      return "sigmoid_bce";
  }
  return "?";
}

struct LossData {
  std::int64_t rows = 0, cols = 0;
  std::vector<float> pred;           // prediction or logits
  std::vector<float> target;         // mse, bce
  std::vector<std::int32_t> labels;  // cross entropy
};

LossData random_data(std::mt19937_64& rng, Kind k, std::int64_t rows, std::int64_t cols) {
  LossData d{rows, cols, random_floats(rng, rows * cols, -3.0f, 3.0f), {}, {}};
  if (k == Kind::mse) d.target = random_floats(rng, rows * cols, -2.0f, 2.0f);
  if (k == Kind::bce) {
    d.target = random_floats(rng, rows * cols, 0.0f, 1.0f);
    // Hard 0/1 targets are the common case in practice.
    for (std::size_t i = 0; i < d.target.size(); i += 3) d.target[i] = float(i / 3 % 2);
  }
  if (k == Kind::cross_entropy) d.labels = random_labels(rng, rows, cols);
  return d;
}

oracle::LossResult reference(Kind k, const LossData& d) {
  const oracle::Mat p = to_mat(d.pred, d.rows, d.cols);
  switch (k) {
    case Kind::mse:
      return oracle::mse(p, to_mat(d.target, d.rows, d.cols));
    case Kind::cross_entropy:
      return oracle::softmax_cross_entropy(p, d.labels);
    case Kind::bce:
      return oracle::sigmoid_bce(p, to_mat(d.target, d.rows, d.cols));
  }
  return {};
}

struct RunOptions {
  std::int64_t pad = 0;
  bool accumulate = false;
  float grad_scale = 1.0f;
};

// The loss value is compared relative to max(|ref|, 1e-2), since a perfect prediction has loss 0.
::testing::AssertionResult value_close(double got, double want, double tol) {
  const double err = std::abs(got - want) / std::max(std::abs(want), 1e-2);
  if (std::isfinite(got) && err <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "loss " << got << ", expected " << want
                                       << " (scaled error " << err << " > " << tol << ")";
}

void run_and_check(Context& ctx, Kind k, const LossData& d, RunOptions o, double tol = kTolFp32) {
  std::ostringstream what;
  what << name(k) << " " << d.rows << "x" << d.cols << " pad " << o.pad
       << (o.accumulate ? " accumulate" : "") << " grad_scale " << o.grad_scale;
  SCOPED_TRACE(what.str());
  const oracle::LossResult ref = reference(k, d);
  const float loss0 = 0.75f;

  auto pred = upload_matrix(ctx, d.pred, d.rows, d.cols, d.cols + o.pad);
  DeviceMatrix<float> target;
  if (!d.target.empty()) target = upload_matrix(ctx, d.target, d.rows, d.cols, d.cols + 2 * o.pad);
  Buffer<std::int32_t> labels;
  if (!d.labels.empty()) labels = upload(ctx, d.labels);
  Buffer<float> loss =
      o.accumulate ? upload(ctx, std::vector<float>{loss0}) : poisoned<float>(ctx, 1);
  auto grad = poisoned_matrix<float>(ctx, d.rows, d.cols, d.cols + o.pad);

  LossOutput out{loss.view(), grad.view(), o.accumulate, o.grad_scale};
  switch (k) {
    case Kind::mse:
      mse_loss(ctx, pred.cview(), target.cview(), out);
      break;
    case Kind::cross_entropy:
      softmax_cross_entropy(ctx, pred.cview(), std::as_const(labels).view(), out);
      break;
    case Kind::bce:
      sigmoid_bce(ctx, pred.cview(), target.cview(), out);
      break;
  }
  const double want_value = ref.value + (o.accumulate ? loss0 : 0.0);
  EXPECT_TRUE(value_close(loss.to_host(ctx)[0], want_value, tol)) << "loss value";
  oracle::Vec want_grad = ref.grad.v;
  for (double& g : want_grad) g *= o.grad_scale;
  EXPECT_TRUE(close_to(download_matrix(ctx, grad, "grad"), want_grad, tol)) << "gradient";
}

constexpr Kind kAllKinds[] = {Kind::mse, Kind::cross_entropy, Kind::bce};

struct RowsCols {
  std::int64_t rows, cols;
};
constexpr RowsCols kShapes[] = {{1, 1},   {1, 3},     {3, 1},    {1, 1023},
                                {17, 10}, {1000, 17}, {3, 1023}, {257, 3}};

class LossTest : public BackendTest {};
DESCENT_INSTANTIATE_BACKENDS(LossTest);

TEST_P(LossTest, ValueAndGradientMatchOracleForOddShapes) {
  for (Kind k : kAllKinds) {
    for (RowsCols s : kShapes) run_and_check(ctx(), k, random_data(rng_, k, s.rows, s.cols), {});
  }
}

TEST_P(LossTest, LargeBatch) {
  for (Kind k : kAllKinds) run_and_check(ctx(), k, random_data(rng_, k, 4099, 10), {});
}

TEST_P(LossTest, SubViewsWithLeadingDimensionLargerThanCols) {
  for (Kind k : kAllKinds) {
    run_and_check(ctx(), k, random_data(rng_, k, 17, 10), {3, false, 1.0f});
    run_and_check(ctx(), k, random_data(rng_, k, 1, 3), {1, false, 1.0f});
  }
}

// Data parallel: a shard of rows [begin, end) of a batch of n rows, with mean_rows = n, writes
// its share of the batch's mean: the shards' values add up to the batch's, and each row's
// gradient is the batch's (the same bits on the CPU, where a row's terms do not depend on the
// other rows).
TEST_P(LossTest, ShardsWriteTheirShareOfTheWholeBatchsMean) {
  constexpr std::int64_t kRows = 23, kCols = 7;
  const std::int64_t cuts[] = {0, 9, 10, kRows};
  for (Kind k : kAllKinds) {
    SCOPED_TRACE(name(k));
    const LossData d = random_data(rng_, k, kRows, kCols);
    const oracle::LossResult whole = reference(k, d);
    const auto run = [&](std::int64_t begin, std::int64_t end, std::int64_t mean_rows,
                         std::vector<float>& grad_out) {
      LossData part{end - begin, kCols, {}, {}, {}};
      part.pred.assign(d.pred.begin() + begin * kCols, d.pred.begin() + end * kCols);
      if (!d.target.empty()) {
        part.target.assign(d.target.begin() + begin * kCols, d.target.begin() + end * kCols);
      }
      if (!d.labels.empty()) part.labels.assign(d.labels.begin() + begin, d.labels.begin() + end);
      auto pred = upload_matrix(ctx(), part.pred, part.rows, kCols, kCols);
      DeviceMatrix<float> target;
      if (!part.target.empty()) target = upload_matrix(ctx(), part.target, part.rows, kCols, kCols);
      Buffer<std::int32_t> labels;
      if (!part.labels.empty()) labels = upload(ctx(), part.labels);
      Buffer<float> loss = poisoned<float>(ctx(), 1);
      auto grad = poisoned_matrix<float>(ctx(), part.rows, kCols, kCols);
      LossOutput out{loss.view(), grad.view()};
      out.mean_rows = mean_rows;
      if (k == Kind::mse) mse_loss(ctx(), pred.cview(), target.cview(), out);
      if (k == Kind::cross_entropy) {
        softmax_cross_entropy(ctx(), pred.cview(), std::as_const(labels).view(), out);
      }
      if (k == Kind::bce) sigmoid_bce(ctx(), pred.cview(), target.cview(), out);
      grad_out = download_matrix(ctx(), grad, "grad");
      return static_cast<double>(loss.to_host(ctx())[0]);
    };
    std::vector<float> whole_grad, shard_grad;
    const double whole_value = run(0, kRows, 0, whole_grad);
    double sum = 0.0;
    std::vector<float> joined;
    for (std::size_t i = 0; i + 1 < std::size(cuts); ++i) {
      sum += run(cuts[i], cuts[i + 1], kRows, shard_grad);
      joined.insert(joined.end(), shard_grad.begin(), shard_grad.end());
    }
    EXPECT_TRUE(value_close(sum, whole.value, kTolFp32)) << "the shards' values summed";
    EXPECT_TRUE(value_close(whole_value, whole.value, kTolFp32));
    EXPECT_TRUE(close_to(joined, whole.grad.v, kTolFp32)) << "the shards' gradients";
    if (GetParam().is_cpu()) {
      EXPECT_EQ(joined, whole_grad) << "the same bits on the CPU";
    }
    std::vector<float> unused;
    EXPECT_THROW(run(0, 9, 8, unused), ArgumentError) << "mean_rows below the shard's rows";
  }
}

TEST_P(LossTest, AccumulateAddsValueToLoss) {
  for (Kind k : kAllKinds) {
    run_and_check(ctx(), k, random_data(rng_, k, 17, 10), {0, true, 1.0f});
    run_and_check(ctx(), k, random_data(rng_, k, 1, 1), {0, true, 1.0f});
  }
}

TEST_P(LossTest, AccumulateTwiceSumsBothValues) {
  const LossData a = random_data(rng_, Kind::cross_entropy, 9, 4);
  const LossData b = random_data(rng_, Kind::cross_entropy, 9, 4);
  Buffer<float> loss = poisoned<float>(ctx(), 1);
  auto grad = poisoned_matrix<float>(ctx(), 9, 4);
  for (const LossData* d : {&a, &b}) {
    auto logits = upload_matrix(ctx(), d->pred, 9, 4);
    Buffer<std::int32_t> labels = upload(ctx(), d->labels);
    softmax_cross_entropy(ctx(), logits.cview(), std::as_const(labels).view(),
                          {loss.view(), grad.view(), d == &b, 1.0f});
  }
  const double want =
      reference(Kind::cross_entropy, a).value + reference(Kind::cross_entropy, b).value;
  EXPECT_TRUE(value_close(loss.to_host(ctx())[0], want, kTolFp32));
  EXPECT_TRUE(
      close_to(download_matrix(ctx(), grad), reference(Kind::cross_entropy, b).grad.v, kTolFp32));
}

TEST_P(LossTest, GradScaleScalesGradientOnly) {
  for (Kind k : kAllKinds) {
    run_and_check(ctx(), k, random_data(rng_, k, 17, 10), {0, false, 0.25f});
    run_and_check(ctx(), k, random_data(rng_, k, 5, 3), {1, true, 1024.0f});
  }
}

// Logits of ±1e4: exp overflows in float unless the loss is computed stably.
TEST_P(LossTest, ExtremeLogitsStayFiniteAndCorrect) {
  const std::int64_t rows = 64, cols = 7;
  for (Kind k : {Kind::cross_entropy, Kind::bce}) {
    LossData d = random_data(rng_, k, rows, cols);
    std::bernoulli_distribution coin(0.5);
    for (float& v : d.pred) v = coin(rng_) ? 1e4f : -1e4f;
    run_and_check(ctx(), k, d, {});
  }
}

// A NaN logit (or target) poisons the loss on every backend and in every ISA variant of the CPU
// loops: a clamp or max that drops the NaN would give a finite, wrong loss.
TEST_P(LossTest, NaNInputMakesTheLossNaN) {
  for (Kind kind : {Kind::cross_entropy, Kind::mse, Kind::bce}) {
    for (const std::int64_t cols : {3, 17, 40}) {  // shorter and longer than a vector of lanes
      SCOPED_TRACE(cat(name(kind), " cols ", cols));
      LossData d = random_data(rng_, kind, 4, cols);
      d.pred[static_cast<std::size_t>(2 * cols + cols / 2)] = std::nanf("");
      auto pred = upload_matrix(ctx(), d.pred, 4, cols);
      DeviceMatrix<float> target;
      if (!d.target.empty()) target = upload_matrix(ctx(), d.target, 4, cols);
      Buffer<std::int32_t> labels;
      if (!d.labels.empty()) labels = upload(ctx(), d.labels);
      Buffer<float> loss = poisoned<float>(ctx(), 1);
      auto grad = poisoned_matrix<float>(ctx(), 4, cols);
      const LossOutput out{loss.view(), grad.view()};
      if (kind == Kind::mse) mse_loss(ctx(), pred.cview(), target.cview(), out);
      if (kind == Kind::bce) sigmoid_bce(ctx(), pred.cview(), target.cview(), out);
      if (kind == Kind::cross_entropy) {
        softmax_cross_entropy(ctx(), pred.cview(), std::as_const(labels).view(), out);
      }
      EXPECT_TRUE(std::isnan(loss.to_host(ctx())[0])) << loss.to_host(ctx())[0];
    }
  }
}

TEST_P(LossTest, CrossEntropyRowsWhereOneLogitDominates) {
  const std::int64_t rows = 40, cols = 11;
  LossData d = random_data(rng_, Kind::cross_entropy, rows, cols);
  std::uniform_int_distribution<std::int32_t> pick(0, std::int32_t(cols - 1));
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int32_t hot = pick(rng_);
    // Rows alternate: a dominant logit of 1e4 or 100 (exp(100) overflows float), labelled on the
    // dominant class or elsewhere; some rows are all-equal extremes.
    const float big = r % 4 < 2 ? 1e4f : 100.0f;
    d.pred[std::size_t(r * cols + hot)] = big;
    d.labels[std::size_t(r)] = r % 2 == 0 ? hot : (hot + 1) % std::int32_t(cols);
    if (r % 10 == 9) {
      for (std::int64_t c = 0; c < cols; ++c)
        d.pred[std::size_t(r * cols + c)] = r % 20 == 9 ? 1e4f : -1e4f;
    }
  }
  run_and_check(ctx(), Kind::cross_entropy, d, {});
}

TEST_P(LossTest, BceMixOfExtremeAndModerateLogits) {
  LossData d = random_data(rng_, Kind::bce, 33, 5);
  for (std::size_t i = 0; i < d.pred.size(); i += 4) d.pred[i] = (i % 8 == 0) ? 1e4f : -1e4f;
  for (std::size_t i = 1; i < d.pred.size(); i += 4) d.pred[i] *= 30.0f;  // up to ±90
  run_and_check(ctx(), Kind::bce, d, {});
}

TEST_P(LossTest, MseOfPerfectPredictionIsZero) {
  const std::vector<float> p = random_floats(rng_, 12);
  auto pred = upload_matrix(ctx(), p, 3, 4);
  auto target = upload_matrix(ctx(), p, 3, 4);
  Buffer<float> loss = poisoned<float>(ctx(), 1);
  auto grad = poisoned_matrix<float>(ctx(), 3, 4);
  mse_loss(ctx(), pred.cview(), target.cview(), {loss.view(), grad.view()});
  EXPECT_EQ(loss.to_host(ctx())[0], 0.0f);
  for (float g : download_matrix(ctx(), grad)) EXPECT_EQ(g, 0.0f);
}

// The bits of floats (poisoned outputs are NaN, which no float comparison finds equal).
std::vector<std::uint32_t> bits_of(const std::vector<float>& v) {
  std::vector<std::uint32_t> bits(v.size());
  if (!v.empty()) std::memcpy(bits.data(), v.data(), v.size() * sizeof(float));
  return bits;
}

// The range checks are the same on every device (on a GPU the op reads its answer back), and a
// refused call writes nothing.
TEST_P(LossTest, CrossEntropyLabelOutOfRange) {
  for (std::int32_t bad : {3, -1, 1 << 30}) {
    SCOPED_TRACE("label " + std::to_string(bad));
    const LossData d = random_data(rng_, Kind::cross_entropy, 5, 3);
    std::vector<std::int32_t> labels = d.labels;
    labels[3] = bad;
    auto logits = upload_matrix(ctx(), d.pred, 5, 3);
    Buffer<std::int32_t> lab = upload(ctx(), labels);
    Buffer<float> loss = poisoned<float>(ctx(), 1);
    auto grad = poisoned_matrix<float>(ctx(), 5, 3);
    const std::vector<float> loss_before = loss.to_host(ctx());
    const std::vector<float> grad_before = download_matrix(ctx(), grad);
    const LossOutput out{loss.view(), grad.view()};
    EXPECT_THROW_THAT(softmax_cross_entropy(ctx(), logits.cview(), std::as_const(lab).view(), out),
                      ArgumentError,
                      ::testing::AllOf(NamesArgument("labels"),
                                       ::testing::HasSubstr("labels[3] = " + std::to_string(bad))));
    EXPECT_EQ(bits_of(loss.to_host(ctx())), bits_of(loss_before));
    EXPECT_EQ(bits_of(download_matrix(ctx(), grad)), bits_of(grad_before));
  }
}

// Binary cross-entropy's targets are probabilities: a target outside [0, 1] (or NaN) is refused
// on every device.
TEST_P(LossTest, BceTargetOutsideZeroOneIsRefused) {
  for (float bad : {1.5f, -0.25f, std::numeric_limits<float>::quiet_NaN(), 200.0f}) {
    SCOPED_TRACE("target " + std::to_string(bad));
    const LossData d = random_data(rng_, Kind::bce, 5, 3);
    std::vector<float> target = d.target;
    target[7] = bad;
    auto logits = upload_matrix(ctx(), d.pred, 5, 3);
    auto t = upload_matrix(ctx(), target, 5, 3);
    Buffer<float> loss = poisoned<float>(ctx(), 1);
    auto grad = poisoned_matrix<float>(ctx(), 5, 3);
    const std::vector<float> grad_before = download_matrix(ctx(), grad);
    const LossOutput out{loss.view(), grad.view()};
    EXPECT_THROW_THAT(sigmoid_bce(ctx(), logits.cview(), t.cview(), out), ArgumentError,
                      ::testing::AllOf(NamesArgument("targets"), ::testing::HasSubstr("[2, 1]"),
                                       ::testing::HasSubstr("[0, 1]")));
    EXPECT_EQ(bits_of(download_matrix(ctx(), grad)), bits_of(grad_before));
  }
}

}  // namespace
}  // namespace descent::test
