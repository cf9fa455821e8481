// Trainer and Sgd: a step equals the ops done by hand (bit for bit, schedules and partial batches
// included), no allocation per step, non-finite losses (error and skip), evaluation, fit.
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <new>
#include <optional>

#include "descent/descent.hpp"
#include "test_support.hpp"
#include "train_support.hpp"

// ---------------------------------------------------------------- allocation counter
//
// The test binary's operator new/delete, so a test can count the allocations of a training step.
// Counting is off unless a test turns it on; memory always comes from malloc/free.
namespace {
std::atomic<bool> g_count_allocations{false};
std::atomic<long> g_allocations{0};

void* counted_alloc(std::size_t n, std::size_t align) {
  if (g_count_allocations.load(std::memory_order_relaxed)) g_allocations.fetch_add(1);
  if (n == 0) n = 1;
  void* p = align > alignof(std::max_align_t)
                ? std::aligned_alloc(align, (n + align - 1) / align * align)
                : std::malloc(n);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(std::size_t n) { return counted_alloc(n, 0); }
void* operator new[](std::size_t n) { return counted_alloc(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace descent::test {
namespace {

struct AllocationCount {
  AllocationCount() {
    g_allocations = 0;
    g_count_allocations = true;
  }
  ~AllocationCount() { g_count_allocations = false; }
  long count() const { return g_allocations.load(); }
};

class TrainerTest : public BackendTest {};

std::vector<float> host_params(const Mlp& m) { return m.params_to_host(); }

TEST_P(TrainerTest, LearnsSeparableBlobs) {
  const Dataset train = blobs(600, 10, 3, seed_), test = blobs(200, 10, 3, seed_, seed_ + 1);
  Mlp model(ctx(), {10, 32, 3}, Activation::relu, {Init::torch_default, 1, 64});
  Sgd sgd(model, {0.05f, 0.9f});
  Trainer trainer(model, Loss::softmax_cross_entropy, sgd);
  BatchLoader tl(ctx(), train, {32, true, 5});
  BatchLoader vl(ctx(), test, {64, false});
  std::int64_t calls = 0, batch_calls = 0;
  FitOptions fo;
  fo.epochs = 4;
  fo.on_epoch = [&](const EpochStats& s) {
    ++calls;
    EXPECT_EQ(s.epoch, calls);
    EXPECT_EQ(s.epochs, 4);
    EXPECT_TRUE(s.has_test);
    EXPECT_GT(s.samples_per_second, 0.0);
  };
  fo.on_batch = [&](std::int64_t, std::int64_t n) {
    ++batch_calls;
    EXPECT_EQ(n, 19);
  };
  const std::vector<EpochStats> h = trainer.fit(tl, &vl, fo);
  ASSERT_EQ(h.size(), 4u);
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(batch_calls, 4 * 19);
  EXPECT_LT(h.back().train_loss, h.front().train_loss);
  EXPECT_LT(h.back().test.loss, 0.2);
  EXPECT_GT(h.back().test.accuracy, 0.95);
  EXPECT_EQ(h.back().test.samples, 200);
  EXPECT_EQ(sgd.steps(), 4 * 19);
}

// The explicit loop of trainer.hpp's comment, as a user writes it.
TEST_P(TrainerTest, ExplicitLoopReadsNaturally) {
  const Dataset train = blobs(300, 8, 4, seed_), test = blobs(100, 8, 4, seed_, seed_ + 1);
  BatchLoader loader(ctx(), train, {.batch_size = 32, .seed = 7});
  BatchLoader test_loader(ctx(), test, {.batch_size = 100, .shuffle = false});
  const std::int64_t epochs = 3;
  Mlp model(ctx(), {8, 32, 4}, Activation::relu);
  Sgd sgd(model, {.lr = 0.05f, .momentum = 0.9f}, LrSchedule::cosine(epochs * loader.batches()));
  Trainer trainer(model, Loss::softmax_cross_entropy, sgd);
  double first = 0.0, last = 0.0;
  for (std::int64_t e = 0; e < epochs; ++e) {
    for (const Batch& b : loader.epoch(e)) trainer.step(b);
    last = trainer.take_train_loss();
    if (e == 0) first = last;
  }
  EXPECT_LT(last, first);
  EXPECT_GT(trainer.evaluate(test_loader).accuracy, 0.9);
  EXPECT_EQ(sgd.steps(), epochs * 10);
}

// Six steps through a loader (16, 16, 16, 2 rows: the final partial batch, then a new epoch) with
// momentum, weight decay and a cosine schedule give bit-identical weights to the ops by hand. On
// the GPU this covers the eager first steps, the captures and the replays.
TEST_P(TrainerTest, StepsEqualTheOpsByHandBitForBit) {
  const Dataset data = blobs(50, 7, 4, seed_);
  const SgdOptions opt{0.1f, 0.9f, 0.0f, 0.01f, false, false};
  const LrSchedule sched = LrSchedule::cosine(10, 0.01f);
  Mlp model(ctx(), {7, 12, 4}, Activation::tanh, {Init::torch_default, 9, 16});
  Sgd sgd(model, opt, sched);
  Trainer trainer(model, Loss::softmax_cross_entropy, sgd);
  Mlp ref(ctx(), {7, 12, 4}, Activation::tanh, {Init::torch_default, 9, 16});
  Buffer<float> momentum(ctx(), ref.parameter_count());
  Buffer<float> loss(ctx(), 1);
  BatchLoader loader(ctx(), data, {16, true, 3});
  std::int64_t k = 0;
  for (std::int64_t epoch = 0; epoch < 3; ++epoch) {
    for (const Batch& b : loader.epoch(epoch)) {
      trainer.step(b);
      const ForwardPass pass = ref.forward(b.x);
      softmax_cross_entropy(ctx(), pass.output, b.labels, {loss.view(), pass.output_grad});
      ref.backward(pass);
      SgdOptions o = opt;
      o.lr = sched.at(opt.lr, k);
      SgdStep s;
      s.first_step = k == 0;
      sgd_update(ctx(), ref.params(), ref.grads(), momentum.view(), o, s);
      ++k;
      ASSERT_TRUE(bit_identical(host_params(model), host_params(ref))) << "after step " << k;
    }
  }
  EXPECT_EQ(k, 12);
  EXPECT_EQ(sgd.steps(), 12);
  if (on_gpu()) {
    EXPECT_GE(trainer.graphs(), 1);
  }
  EXPECT_TRUE(bit_identical(sgd.momentum_to_host(), momentum.to_host(ctx())));
}

// bf16 storage: the step is the bf16 ops by hand (convert the input, bf16 layers, fp32 logits
// and loss, bf16 gradients, SGD writing the bf16 weight copy), and it still learns.
TEST_P(TrainerTest, Bf16StepsEqualTheOpsByHandAndLearn) {
  const Dataset data = blobs(64, 6, 3, seed_), test = blobs(200, 6, 3, seed_, seed_ + 1);
  MlpOptions mo{Init::torch_default, 6, 32, Precision::bf16};
  Mlp model(ctx(), {6, 16, 3}, Activation::gelu, mo);
  Sgd sgd(model, {0.1f, 0.9f});
  Trainer trainer(model, Loss::softmax_cross_entropy, sgd);
  // The reference: an fp32-storage model used only for its flat buffers and views.
  Mlp ref(ctx(), {6, 16, 3}, Activation::gelu, {Init::torch_default, 6, 32});
  Buffer<bf16> w16(ctx(), ref.parameter_count()), x16(ctx(), 32 * 6), h16(ctx(), 32 * 16),
      y16(ctx(), 32 * 3), dy16(ctx(), 32 * 3), dh16(ctx(), 32 * 16);
  Buffer<float> pre(ctx(), 32 * 16), logits(ctx(), 32 * 3), dlogits(ctx(), 32 * 3),
      momentum(ctx(), ref.parameter_count()), loss(ctx(), 1);
  convert(ctx(), ref.params(), w16.view());
  const auto w = [&](int l) {
    return MatrixView<const bf16>(w16.data() + ref.weight_offset(l), l == 0 ? 16 : 3,
                                  l == 0 ? 6 : 16, w16.device());
  };
  BatchLoader loader(ctx(), data, {32, true, 4});
  std::int64_t k = 0;
  for (std::int64_t e = 0; e < 2; ++e) {
    for (const Batch& b : loader.epoch(e)) {
      trainer.step(b);
      const std::int64_t r = b.rows();
      convert(ctx(), VectorView<const float>(b.x.data, r * 6, b.x.device),
              x16.view().slice(0, r * 6));
      dense_forward(ctx(), MatrixView<const bf16>(x16.matrix(r, 6)), w(0), ref.bias(0),
                    Activation::gelu, h16.matrix(r, 16), pre.matrix(r, 16));
      dense_forward(ctx(), MatrixView<const bf16>(h16.matrix(r, 16)), w(1), ref.bias(1),
                    Activation::identity, y16.matrix(r, 3));
      convert(ctx(), VectorView<const bf16>(y16.view().slice(0, r * 3)),
              logits.view().slice(0, r * 3));
      softmax_cross_entropy(ctx(), logits.matrix(r, 3), b.labels,
                            {loss.view(), dlogits.matrix(r, 3)});
      convert(ctx(), VectorView<const float>(dlogits.view().slice(0, r * 3)),
              dy16.view().slice(0, r * 3));
      DenseGradsBf16 g1{dh16.matrix(r, 16), ref.weight_grad(1), ref.bias_grad(1), false};
      dense_backward(ctx(), MatrixView<const bf16>(h16.matrix(r, 16)), w(1),
                     MatrixView<const bf16>(y16.matrix(r, 3)), {},
                     MatrixView<const bf16>(dy16.matrix(r, 3)), Activation::identity, g1);
      DenseGradsBf16 g0{{}, ref.weight_grad(0), ref.bias_grad(0), false};
      dense_backward(ctx(), MatrixView<const bf16>(x16.matrix(r, 6)), w(0),
                     MatrixView<const bf16>(h16.matrix(r, 16)), pre.matrix(r, 16),
                     MatrixView<const bf16>(dh16.matrix(r, 16)), Activation::gelu, g0);
      SgdStep s;
      s.first_step = k++ == 0;
      s.params_bf16 = w16.view();
      sgd_update(ctx(), ref.params(), ref.grads(), momentum.view(), {0.1f, 0.9f}, s);
      ASSERT_TRUE(bit_identical(host_params(model), host_params(ref))) << "after step " << k;
    }
  }
  // The model's bf16 copy is its fp32 parameters rounded.
  Buffer<float> widened(ctx(), model.parameter_count());
  convert(ctx(), VectorView<const bf16>(model.params_bf16()), widened.view());
  EXPECT_TRUE(bit_identical(widened.to_host(ctx()), to_float_vec(to_bf16_vec(host_params(model)))));
  BatchLoader train_loader(ctx(), data, {16, true, 5});
  BatchLoader test_loader(ctx(), test, {50, false});
  const std::vector<EpochStats> h = trainer.fit(train_loader, &test_loader, 20);
  EXPECT_GT(h.back().test.accuracy, 0.9);
}

// After three warm-up epochs (every geometry seen twice; on the GPU: captured), the steps and
// batches of the fourth epoch, `steps` of them, call operator new not once.
void expect_epoch_allocates_nothing(Trainer& trainer, BatchLoader& loader, int steps) {
  for (std::int64_t e = 0; e < 3; ++e) {
    for (const Batch& b : loader.epoch(e)) trainer.step(b);
  }
  trainer.take_train_loss();
  loader.start_epoch(3);
  Batch b;
  long allocations = 0;
  int taken = 0;
  {
    AllocationCount count;
    while (loader.next(b)) {
      trainer.step(b);
      ++taken;
    }
    allocations = count.count();
  }
  EXPECT_EQ(taken, steps);
  EXPECT_EQ(allocations, 0) << "operator new calls during " << taken << " steps and batches";
  EXPECT_TRUE(std::isfinite(trainer.take_train_loss()));
}

TEST_P(TrainerTest, AStepAllocatesNothing) {
  const Dataset data = blobs(100, 20, 5, seed_);
  Mlp model(ctx(), {20, 64, 32, 5}, Activation::gelu, {Init::torch_default, 1, 32});
  Sgd sgd(model, {0.01f, 0.9f}, LrSchedule::step(10, 0.5f));
  Trainer trainer(model, Loss::softmax_cross_entropy, sgd);
  BatchLoader loader(ctx(), data, {32, true, 1});  // 32, 32, 32, 4 rows
  expect_epoch_allocates_nothing(trainer, loader, 4);
}

// The same with the mean squared error on a narrow network, batches of 2048 rows (on the CPU the
// whole-network slice step, Backend::dense_slice_step; the layer-by-layer step at this size
// would not pass on the CPU: oneDNN's sgemm allocates its own buffers for such products).
TEST_P(TrainerTest, AnMseStepOfANarrowNetworkAllocatesNothing) {
  const std::int64_t rows = 4096, in = 16, out = 4;
  const std::vector<float> x = random_floats(rng_, rows * in), y = random_floats(rng_, rows * out);
  const Dataset data = Dataset::from_floats(x, in, y, out);
  Mlp model(ctx(), {in, 64, 64, out}, Activation::relu, {Init::torch_default, 1, 2048});
  Sgd sgd(model, {0.01f, 0.9f});
  Trainer trainer(model, Loss::mse, sgd);
  BatchLoader loader(ctx(), data, {2048, true, 1});
  expect_epoch_allocates_nothing(trainer, loader, 2);
}

// Batches whose input holds a NaN at the third step.
struct NanBatches {
  Buffer<float> good_x, bad_x;
  Buffer<std::int32_t> labels;
  Batch good, bad;
  NanBatches(const Context& ctx, std::mt19937_64& rng) {
    std::vector<float> x = random_floats(rng, 8 * 5);
    good_x = upload(ctx, x);
    x[13] = std::numeric_limits<float>::quiet_NaN();
    bad_x = upload(ctx, x);
    labels = upload(ctx, random_labels(rng, 8, 3));
    good = {good_x.matrix(8, 5), labels.view(), {}};
    bad = {bad_x.matrix(8, 5), labels.view(), {}};
  }
};

TEST_P(TrainerTest, NonFiniteLossIsANumericErrorNamingTheStep) {
  // tanh carries the NaN to the loss (relu would map it to 0).
  Mlp model(ctx(), {5, 6, 3}, Activation::tanh, {Init::torch_default, 2, 8});
  Sgd sgd(model, {0.1f, 0.9f});
  Trainer trainer(model, Loss::softmax_cross_entropy, sgd);
  NanBatches nb(ctx(), rng_);
  trainer.step(nb.good);
  trainer.step(nb.good);
  const std::vector<float> before = host_params(model);
  const auto bad_step = [&] {
    trainer.step(nb.bad);
    trainer.check_numerics();  // on the GPU the step itself does not wait for the loss
  };
  EXPECT_THROW_THAT(bad_step(), NumericError,
                    ::testing::AllOf(::testing::HasSubstr("step 3"), ::testing::HasSubstr("nan"),
                                     ::testing::HasSubstr("skip")));
  EXPECT_TRUE(bit_identical(host_params(model), before)) << "the bad step changed the weights";
}

// A NumericError is reported once; the good steps after the bad one are kept (their updates and
// their losses), and a later bad step is reported on its own, by its own step number.
TEST_P(TrainerTest, NumericErrorIsReportedOnceAndLosesNoStep) {
  Mlp model(ctx(), {5, 6, 3}, Activation::tanh, {Init::torch_default, 2, 8});
  Sgd sgd(model, {0.1f, 0.9f});
  TrainerOptions to;
  to.non_finite_hint = "--on-nan skip";
  Trainer trainer(model, Loss::softmax_cross_entropy, sgd, to);
  NanBatches nb(ctx(), rng_);
  trainer.step(nb.good);
  // The reference: the same good steps on a twin that never meets the bad batch.
  Mlp twin(ctx(), {5, 6, 3}, Activation::tanh, {Init::torch_default, 2, 8});
  Sgd twin_sgd(twin, {0.1f, 0.9f});
  Trainer twin_trainer(twin, Loss::softmax_cross_entropy, twin_sgd);
  twin_trainer.step(nb.good);
  twin_sgd.set_steps(twin_sgd.steps() + 1);  // the bad step counts as taken: same schedule
  const auto bad_then_good = [&] {
    trainer.step(nb.bad);
    trainer.step(nb.good);  // on the GPU this one is queued before the error is seen
    trainer.check_numerics();
  };
  EXPECT_THROW_THAT(bad_then_good(), NumericError,
                    ::testing::AllOf(::testing::HasSubstr("step 2"),
                                     ::testing::HasSubstr("skip such steps: --on-nan skip")));
  if (!on_gpu()) trainer.step(nb.good);  // the CPU threw from the bad step itself
  twin_trainer.step(nb.good);
  EXPECT_NO_THROW(trainer.check_numerics()) << "the same error was reported twice";
  EXPECT_EQ(sgd.steps(), 3);
  EXPECT_EQ(trainer.skipped_steps(), 1);
  EXPECT_TRUE(bit_identical(host_params(model), host_params(twin)));
  const double loss = trainer.take_train_loss(), twin_loss = twin_trainer.take_train_loss();
  EXPECT_TRUE(std::isfinite(loss));
  EXPECT_NEAR(loss, twin_loss, 1e-6 * std::fabs(twin_loss)) << "a good step's loss was dropped";
  // A later bad step is a new error, named by its own step.
  const auto bad_step = [&] {
    trainer.step(nb.bad);
    trainer.check_numerics();
  };
  EXPECT_THROW_THAT(bad_step(), NumericError, ::testing::HasSubstr("step 4"));
  EXPECT_EQ(trainer.skipped_steps(), 2);
  EXPECT_NO_THROW(trainer.take_train_loss());
}

TEST_P(TrainerTest, SkipPolicySkipsTheNonFiniteStep) {
  // tanh carries the NaN to the loss (relu would map it to 0).
  Mlp model(ctx(), {5, 6, 3}, Activation::tanh, {Init::torch_default, 2, 8});
  Sgd sgd(model, {0.1f, 0.9f});
  TrainerOptions to;
  to.on_non_finite = NonFinitePolicy::skip;
  Trainer trainer(model, Loss::softmax_cross_entropy, sgd, to);
  NanBatches nb(ctx(), rng_);
  trainer.step(nb.good);
  trainer.step(nb.good);
  const std::vector<float> before = host_params(model);
  const std::vector<float> momentum_before = sgd.momentum_to_host();
  trainer.step(nb.bad);
  EXPECT_TRUE(bit_identical(host_params(model), before));
  EXPECT_TRUE(bit_identical(sgd.momentum_to_host(), momentum_before));
  EXPECT_EQ(trainer.skipped_steps(), 1);
  trainer.step(nb.good);
  EXPECT_EQ(sgd.steps(), 4);
  EXPECT_FALSE(bit_identical(host_params(model), before));
  EXPECT_TRUE(std::isfinite(trainer.take_train_loss()));
  EXPECT_EQ(trainer.skipped_steps(), 1);
}

// The device scratch the ops share is freed and regrown when an op needs more (an evaluation of
// a larger batch in bf16, an op of the user's on the same context) after a step was captured:
// the captured graph pointed into the old block, so the trainer must capture again, not replay.
// Bit for bit the same as a run without graphs that does the same in between.
TEST_P(TrainerTest, ScratchGrownAfterACapturedStepIsNotReplayedInto) {
  for (const Precision precision : {Precision::fp32, Precision::bf16}) {
    SCOPED_TRACE(precision == Precision::bf16 ? "bf16" : "fp32");
    const Dataset data = blobs(48, 6, 3, seed_), big = blobs(4096, 6, 3, seed_, seed_ + 1);
    const auto run = [&](bool graphs) {
      Context c(GetParam());
      MlpOptions mo{Init::torch_default, 4, 4096, precision};
      Mlp model(c, {6, 256, 256, 3}, Activation::tanh, mo);
      Sgd sgd(model, {0.05f, 0.9f});
      TrainerOptions to;
      to.cuda_graphs = graphs;
      Trainer trainer(model, Loss::softmax_cross_entropy, sgd, to);
      BatchLoader loader(c, data, {16, false, 3});
      BatchLoader big_loader(c, big, {4096, false, 3});
      // dense_backward of a tanh layer needs a dz of rows · out floats in scratch: 16 MiB.
      const std::int64_t rows = 4096, in = 8, out = 1024;
      const Buffer<float> x = upload(c, random_floats(rng_, rows * in));
      const Buffer<float> w = upload(c, random_floats(rng_, out * in));
      const Buffer<float> y = upload(c, random_floats(rng_, rows * out));
      const Buffer<float> dy = upload(c, random_floats(rng_, rows * out));
      Buffer<float> dw(c, out * in);
      for (int epoch = 0; epoch < 4; ++epoch) {
        for (const Batch& b : loader.epoch(epoch)) trainer.step(b);
        if (epoch == 1) trainer.evaluate(big_loader);  // bf16: a z of 4096 · 256 floats
        if (epoch == 2) {
          DenseGrads g;
          g.dw = dw.matrix(out, in);
          dense_backward(c, x.matrix(rows, in), w.matrix(out, in), y.matrix(rows, out), {},
                         dy.matrix(rows, out), Activation::tanh, g);
        }
      }
      EXPECT_TRUE(std::isfinite(trainer.take_train_loss()));
      if (graphs && GetParam().is_cuda()) {
        EXPECT_GE(trainer.graphs(), 1);
      }
      return host_params(model);
    };
    const std::uint64_t seed = seed_;
    rng_.seed(seed);
    const std::vector<float> captured = run(true);
    rng_.seed(seed);
    const std::vector<float> eager = run(false);
    EXPECT_TRUE(bit_identical(captured, eager));
  }
}

// A stream that cannot be captured (the legacy default stream, cudaStreamLegacy): the capture
// fails and the step runs eagerly, which must not trip over the capture's error left behind.
TEST_P(TrainerTest, UncapturableStreamFallsBackToEagerSteps) {
  if (!GetParam().is_cuda()) GTEST_SKIP() << "the CPU backend captures nothing";
  const Dataset data = blobs(48, 6, 3, seed_);
  const auto run = [&](void* stream, bool graphs) {
    Context c(GetParam(), ContextOptions{.stream = stream});
    Mlp model(c, {6, 16, 3}, Activation::tanh, {Init::torch_default, 4, 16});
    Sgd sgd(model, {0.05f, 0.9f});
    TrainerOptions to;
    to.cuda_graphs = graphs;
    Trainer trainer(model, Loss::softmax_cross_entropy, sgd, to);
    BatchLoader loader(c, data, {16, false, 3});
    for (int epoch = 0; epoch < 3; ++epoch) {
      for (const Batch& b : loader.epoch(epoch)) trainer.step(b);
    }
    EXPECT_EQ(trainer.graphs(), 0);
    EXPECT_TRUE(std::isfinite(trainer.take_train_loss()));
    return host_params(model);
  };
  void* const legacy = reinterpret_cast<void*>(std::uintptr_t{1});  // cudaStreamLegacy
  std::vector<float> fallback;
  ASSERT_NO_THROW(fallback = run(legacy, true));
  EXPECT_TRUE(bit_identical(fallback, run(legacy, false)));
}

// torch initialises SGD's momentum buffer to the gradient on the first update that actually
// happens: after a first step skipped for a non-finite loss, the next one is that first update
// (buffer = g, not (1 - dampening) g), so the run equals one that never saw the bad batch.
TEST_P(TrainerTest, SgdDampeningFirstAppliedUpdateAfterASkippedStep) {
  const SgdOptions so{0.1f, 0.9f, 0.5f};
  TrainerOptions to;
  to.on_non_finite = NonFinitePolicy::skip;
  NanBatches nb(ctx(), rng_);
  Mlp model(ctx(), {5, 6, 3}, Activation::tanh, {Init::torch_default, 2, 8});
  Sgd sgd(model, so);
  Trainer trainer(model, Loss::softmax_cross_entropy, sgd, to);
  Mlp twin(ctx(), {5, 6, 3}, Activation::tanh, {Init::torch_default, 2, 8});
  Sgd twin_sgd(twin, so);
  Trainer twin_trainer(twin, Loss::softmax_cross_entropy, twin_sgd, to);
  trainer.step(nb.bad);
  EXPECT_EQ(trainer.skipped_steps(), 1);
  for (int k = 0; k < 3; ++k) {
    SCOPED_TRACE("good step " + std::to_string(k + 1));
    trainer.step(nb.good);
    twin_trainer.step(nb.good);
    EXPECT_TRUE(bit_identical(sgd.momentum_to_host(), twin_sgd.momentum_to_host()))
        << "the momentum after the first applied update is not the gradient";
    EXPECT_TRUE(bit_identical(host_params(model), host_params(twin)));
  }
  // A restored buffer that holds updates stays initialised; an all-zero one (no update
  // applied yet) does not.
  Mlp resumed(ctx(), {5, 6, 3}, Activation::tanh, {Init::torch_default, 2, 8});
  Sgd resumed_sgd(resumed, so);
  resumed.params_from_host(host_params(model));
  resumed_sgd.momentum_from_host(sgd.momentum_to_host());
  resumed_sgd.set_steps(sgd.steps());
  Trainer resumed_trainer(resumed, Loss::softmax_cross_entropy, resumed_sgd, to);
  trainer.step(nb.good);
  resumed_trainer.step(nb.good);
  EXPECT_TRUE(bit_identical(host_params(model), host_params(resumed)));
}

// Every dependent holds a handle of its Context: the Context object it was made with may be
// moved away and destroyed first, and training goes on bit for bit as if it were still there.
TEST_P(TrainerTest, ContextMovedOrDestroyedBeforeItsDependents) {
  const Dataset data = blobs(40, 4, 3, seed_);
  const auto train = [&](bool drop_context) {
    std::optional<Context> owner(std::in_place, GetParam());
    Mlp model(*owner, {4, 6, 3}, Activation::relu, {Init::torch_default, 5, 8});
    Sgd sgd(model, {0.1f, 0.9f});
    Trainer trainer(model, Loss::softmax_cross_entropy, sgd);
    BatchLoader loader(*owner, data, {8, true, 3});
    if (drop_context) {
      std::optional<Context> moved(std::move(*owner));
      owner.reset();
      moved.reset();
    }
    for (int epoch = 0; epoch < 2; ++epoch) {
      for (const Batch& b : loader.epoch(epoch)) trainer.step(b);
    }
    const double loss = trainer.take_train_loss();
    EXPECT_TRUE(std::isfinite(loss));
    EXPECT_EQ(trainer.evaluate(loader).samples, 40);
    return host_params(model);
  };
  const std::vector<float> kept = train(false), dropped = train(true);
  EXPECT_TRUE(bit_identical(kept, dropped));
}

TEST_P(TrainerTest, ContextCopiesShareOneDeviceState) {
  Context a(GetParam());
  Context b(std::move(a));  // a move is a copy of the handle: `a` stays usable
  EXPECT_EQ(a.device(), GetParam());
  EXPECT_TRUE(a.shares_state_with(b));
  Context c = b;
  EXPECT_TRUE(c.shares_state_with(a));
  c.set_math(MathMode::tf32);
  EXPECT_EQ(a.math(), MathMode::tf32);
  EXPECT_FALSE(Context(GetParam()).shares_state_with(a));
  Mlp model(a, {3, 2}, Activation::identity);
  EXPECT_TRUE(model.context().shares_state_with(b));
}

// Evaluation needs no optimizer: the free evaluate gives what a Trainer's evaluate gives.
TEST_P(TrainerTest, EvaluateWithoutAnOptimizerEqualsTheTrainers) {
  const Dataset data = blobs(37, 4, 3, seed_);
  Mlp model(ctx(), {4, 5, 3}, Activation::relu, {Init::torch_default, 4, 10});
  BatchLoader loader(ctx(), data, {10, true, 8});
  std::int64_t calls = 0;
  const EvalResult alone =
      evaluate(model, Loss::softmax_cross_entropy, loader, [&](std::int64_t b, std::int64_t n) {
        EXPECT_EQ(n, 4);
        EXPECT_EQ(b, ++calls);
      });
  EXPECT_EQ(calls, 4);
  Sgd sgd(model, {});
  Trainer trainer(model, Loss::softmax_cross_entropy, sgd);
  const EvalResult with = trainer.evaluate(loader);
  EXPECT_EQ(alone.samples, 37);
  EXPECT_EQ(alone.samples, with.samples);
  EXPECT_EQ(alone.loss, with.loss);
  EXPECT_EQ(alone.accuracy, with.accuracy);
  Mlp single(ctx(), {4, 1}, Activation::identity);
  EXPECT_THROW_THAT(evaluate(single, Loss::softmax_cross_entropy, loader), ArgumentError,
                    ::testing::HasSubstr("evaluate: softmax_cross_entropy needs at least 2"));
}

// Data already in the context's memory is evaluated in place, in slices, and gives what a
// loader over the same rows in the same order gives, bit for bit; a strided matrix works too.
TEST_P(TrainerTest, EvaluateInPlaceEqualsTheLoaders) {
  const Dataset data = blobs(37, 4, 3, seed_);
  Mlp model(ctx(), {4, 5, 3}, Activation::relu, {Init::torch_default, 4, 10});
  BatchLoader loader(ctx(), data, {10, false, 0});
  const EvalResult by_loader = evaluate(model, Loss::softmax_cross_entropy, loader);
  // The same rows with a leading dimension of 6 (two unused columns of NaN, never read).
  const std::int64_t ld = 6;
  std::vector<float> host(static_cast<std::size_t>(37 * ld), std::nanf(""));
  for (std::int64_t r = 0; r < 37; ++r) data.copy_features(r, host.data() + r * ld);
  Buffer<float> x(ctx(), host);
  Buffer<std::int32_t> labels(ctx(), data.labels());
  Batch all;
  all.x = MatrixView<const float>(x.data(), 37, 4, x.device(), ld);
  all.labels = VectorView<const std::int32_t>(labels.data(), 37, labels.device());
  const EvalResult in_place = evaluate(model, Loss::softmax_cross_entropy, all, 10);
  EXPECT_EQ(in_place.samples, 37);
  EXPECT_EQ(in_place.loss, by_loader.loss);
  EXPECT_EQ(in_place.accuracy, by_loader.accuracy);
  Sgd sgd(model, {});
  Trainer trainer(model, Loss::softmax_cross_entropy, sgd);
  EXPECT_EQ(trainer.evaluate(all, 10).loss, by_loader.loss);
  EXPECT_THROW_THAT(trainer.evaluate(all, 0), ArgumentError,
                    ::testing::HasSubstr("batch_size: must be >= 1, got 0"));
  Batch unlabeled;
  unlabeled.x = all.x;
  EXPECT_THROW_THAT(trainer.evaluate(unlabeled), ArgumentError, ::testing::HasSubstr("labels"));
}

TEST_P(TrainerTest, EvaluateCountsArgMaxAndAveragesOverSamples) {
  const Dataset data = blobs(37, 4, 3, seed_);
  Mlp model(ctx(), {4, 5, 3}, Activation::relu, {Init::torch_default, 4, 10});
  Sgd sgd(model, {});
  Trainer trainer(model, Loss::softmax_cross_entropy, sgd);
  BatchLoader loader(ctx(), data, {10, true, 8});  // shuffled and partial: same result
  const EvalResult r = trainer.evaluate(loader);
  EXPECT_EQ(r.samples, 37);
  // By hand, one batch of everything.
  Context cpu;
  Mlp ref(cpu, {4, 5, 3}, Activation::relu, {Init::torch_default, 4, 37});
  std::vector<float> x(37 * 4);
  for (std::int64_t i = 0; i < 37; ++i) data.copy_features(i, x.data() + i * 4);
  const ForwardPass pass = ref.forward(MatrixView<const float>(x.data(), 37, 4, Device::cpu()));
  const MatrixView<const float> out = pass.output;
  Buffer<float> loss(cpu, 1);
  softmax_cross_entropy(cpu, out,
                        VectorView<const std::int32_t>(data.labels().data(), 37, Device::cpu()),
                        {loss.view(), pass.output_grad});
  int correct = 0;
  for (int i = 0; i < 37; ++i) {
    const float* z = out.data + i * 3;
    const int best = static_cast<int>(std::max_element(z, z + 3) - z);
    correct += best == data.labels()[static_cast<std::size_t>(i)];
  }
  EXPECT_DOUBLE_EQ(r.accuracy, correct / 37.0);
  EXPECT_TRUE(close_to(r.loss, loss.data()[0], 1e-5));
}

TEST_P(TrainerTest, RegressionWithMseLearns) {
  std::vector<float> x, t;
  for (int i = 0; i < 256; ++i) {
    const float a = static_cast<float>(i % 16) / 8.0f - 1.0f,
                b = static_cast<float>(i / 16) / 8.0f - 1.0f;
    x.push_back(a);
    x.push_back(b);
    t.push_back(0.5f * a - 0.25f * b + 0.1f);
  }
  const Dataset data = Dataset::from_floats(x, 2, t, 1);
  Mlp model(ctx(), {2, 16, 1}, Activation::tanh, {Init::torch_default, 5, 64});
  Sgd sgd(model, {0.05f, 0.9f});
  Trainer trainer(model, Loss::mse, sgd);
  BatchLoader loader(ctx(), data, {64, true, 2});
  const std::vector<EpochStats> h = trainer.fit(loader, &loader, 30);
  EXPECT_LT(h.back().train_loss, 0.1 * h.front().train_loss);
  EXPECT_TRUE(std::isnan(h.back().test.accuracy));
}

DESCENT_INSTANTIATE_BACKENDS(TrainerTest);

// ---------------------------------------------------------------- Adam, AdamW and clipping

class AdamTrainerTest : public BackendTest {};
DESCENT_INSTANTIATE_BACKENDS(AdamTrainerTest);

// The gradients the model holds, on the host.
std::vector<float> host_grads(Mlp& m) {
  const VectorView<float> g = m.grads();
  std::vector<float> out(static_cast<std::size_t>(g.size));
  detail::copy_bytes(m.context(), out.data(), Device::cpu(), g.data, g.device,
                     out.size() * sizeof(float));
  return out;
}

TEST_P(AdamTrainerTest, AdamAndAdamWWithClippingLearnSeparableBlobs) {
  const Dataset train = blobs(600, 10, 3, seed_), test = blobs(200, 10, 3, seed_, seed_ + 1);
  struct Variant {
    const char* name;
    AdamOptions opt;
    float clip, norm_type;
  };
  const Variant variants[] = {
      {"adam", adam_options(0.01f, 0.0f, false, false), 0.0f, 2.0f},
      {"adamw + clip 2-norm", adam_options(0.01f, 0.01f, false, true), 1.0f, 2.0f},
      {"adam amsgrad + clip inf-norm", adam_options(0.01f, 1e-4f, true, false), 0.5f,
       std::numeric_limits<float>::infinity()},
  };
  for (const Variant& v : variants) {
    SCOPED_TRACE(v.name);
    Mlp model(ctx(), {10, 32, 3}, Activation::relu, {Init::torch_default, 1, 64});
    Adam adam(model, v.opt);
    TrainerOptions to;
    to.clip_grad_norm = v.clip;
    to.clip_norm_type = v.norm_type;
    Trainer trainer(model, Loss::softmax_cross_entropy, adam, to);
    BatchLoader tl(ctx(), train, {32, true, 5});
    BatchLoader vl(ctx(), test, {64, false});
    const std::vector<EpochStats> h = trainer.fit(tl, &vl, 4);
    ASSERT_EQ(h.size(), 4u);
    EXPECT_LT(h.back().train_loss, h.front().train_loss);
    EXPECT_LT(h.back().test.loss, 0.2);
    EXPECT_GT(h.back().test.accuracy, 0.95);
    EXPECT_EQ(adam.steps(), 4 * 19);
    EXPECT_EQ(adam.state_to_host("step"), std::vector<float>{4.0f * 19.0f});
    if (v.clip > 0.0f) {
      EXPECT_TRUE(std::isfinite(trainer.last_grad_norm()));
      EXPECT_GT(trainer.last_grad_norm(), 0.0f);
    } else {
      EXPECT_TRUE(std::isnan(trainer.last_grad_norm())) << "no clipping: no norm";
    }
  }
}

// A step with clipping is the ops by hand, bit for bit: forward, loss, backward,
// clip_grad_norm into a device pair (norm, scale), adam_update reading the scale, the rate of a
// cosine schedule and the update count from the device. Over 12 steps (16, 16, 16, 2 rows and
// new epochs); on the GPU this covers the eager steps, the captures and the replays.
TEST_P(AdamTrainerTest, StepsWithClippingEqualTheOpsByHandBitForBit) {
  const Dataset data = blobs(50, 7, 4, seed_);
  struct Config {
    const char* name;
    AdamOptions opt;
    float max_norm, norm_type;
  };
  const Config configs[] = {
      {"adam + weight_decay, 2-norm", adam_options(0.05f, 0.01f, false, false), 0.5f, 2.0f},
      {"adamw + amsgrad, inf-norm", adam_options(0.05f, 0.05f, true, true), 0.1f,
       std::numeric_limits<float>::infinity()},
  };
  for (const Config& c : configs) {
    SCOPED_TRACE(c.name);
    const LrSchedule sched = LrSchedule::cosine(10, 0.001f);
    Mlp model(ctx(), {7, 12, 4}, Activation::tanh, {Init::torch_default, 9, 16});
    Adam adam(model, c.opt, sched);
    EXPECT_EQ(adam.kind(),
              c.opt.decoupled_weight_decay ? OptimizerKind::adamw : OptimizerKind::adam);
    TrainerOptions to;
    to.clip_grad_norm = c.max_norm;
    to.clip_norm_type = c.norm_type;
    Trainer trainer(model, Loss::softmax_cross_entropy, adam, to);
    EXPECT_TRUE(std::isnan(trainer.last_grad_norm())) << "no step taken yet";
    Mlp ref(ctx(), {7, 12, 4}, Activation::tanh, {Init::torch_default, 9, 16});
    const std::int64_t n = ref.parameter_count();
    Buffer<float> m(ctx(), n), v(ctx(), n), vmax(ctx(), n), scalars(ctx(), 4), lr(ctx(), 1),
        clip(ctx(), 2), loss(ctx(), 1);
    for (Buffer<float>* b : {&m, &v, &vmax, &scalars}) fill(ctx(), b->view(), 0.0f);
    BatchLoader loader(ctx(), data, {16, true, 3});
    std::int64_t k = 0, clipped = 0;
    for (std::int64_t epoch = 0; epoch < 3; ++epoch) {
      for (const Batch& b : loader.epoch(epoch)) {
        trainer.step(b);
        const ForwardPass pass = ref.forward(b.x);
        softmax_cross_entropy(ctx(), pass.output, b.labels, {loss.view(), pass.output_grad});
        ref.backward(pass);
        clip_grad_norm(ctx(), ref.grads(), c.max_norm, c.norm_type, clip.data(), clip.data() + 1);
        const float rate = sched.at(c.opt.lr, k);
        lr.copy_from_host(ctx(), std::span<const float>(&rate, 1));
        AdamStep s;
        s.grad_scale_device = clip.data() + 1;
        s.lr_device = lr.data();
        s.scalars = scalars.data();
        adam_update(ctx(), ref.params(), ref.grads(), m.view(), v.view(),
                    c.opt.amsgrad ? vmax.view() : VectorView<float>{}, c.opt, s);
        ++k;
        ASSERT_TRUE(bit_identical(host_params(model), host_params(ref))) << "after step " << k;
        const std::vector<float> norm_scale = clip.to_host(ctx());
        EXPECT_TRUE(same_bits(trainer.last_grad_norm(), norm_scale[0])) << "after step " << k;
        clipped += norm_scale[1] < 1.0f;
      }
    }
    EXPECT_EQ(k, 12);
    EXPECT_GT(clipped, 0) << "max_norm never clipped: the test does not exercise clipping";
    EXPECT_TRUE(bit_identical(adam.state_to_host("exp_avg"), m.to_host(ctx())));
    EXPECT_TRUE(bit_identical(adam.state_to_host("exp_avg_sq"), v.to_host(ctx())));
    if (c.opt.amsgrad) {
      EXPECT_TRUE(bit_identical(adam.state_to_host("max_exp_avg_sq"), vmax.to_host(ctx())));
    }
    EXPECT_EQ(adam.state_to_host("step"), std::vector<float>{12.0f});
  }
}

// Trains 12 steps with AdamW and the given clipping; the final parameters.
std::vector<float> adamw_run(const Context& ctx, const Dataset& data, float max_norm,
                             float norm_type = 2.0f) {
  Mlp model(ctx, {7, 12, 4}, Activation::tanh, {Init::torch_default, 9, 16});
  AdamW adamw(model, adam_options(0.02f, 0.01f, true, true));
  TrainerOptions to;
  to.clip_grad_norm = max_norm;
  to.clip_norm_type = norm_type;
  Trainer trainer(model, Loss::softmax_cross_entropy, adamw, to);
  BatchLoader loader(ctx, data, {16, true, 3});
  for (std::int64_t epoch = 0; epoch < 3; ++epoch) {
    for (const Batch& b : loader.epoch(epoch)) trainer.step(b);
  }
  EXPECT_TRUE(std::isfinite(trainer.take_train_loss()));
  if (max_norm > 0.0f) {
    EXPECT_TRUE(std::isfinite(trainer.last_grad_norm()));
  } else {
    EXPECT_TRUE(std::isnan(trainer.last_grad_norm()));
  }
  return host_params(model);
}

// Two runs are bit-identical; a max_norm above every gradient norm (scale exactly 1) equals no
// clipping bit for bit, and a tiny one changes the trajectory.
TEST_P(AdamTrainerTest, ClippingIsDeterministicAndOnlyActsBelowTheNorm) {
  const Dataset data = blobs(50, 7, 4, seed_);
  const std::vector<float> off = adamw_run(ctx(), data, 0.0f);
  EXPECT_TRUE(bit_identical(adamw_run(ctx(), data, 0.0f), off)) << "two runs without clipping";
  const std::vector<float> clipped = adamw_run(ctx(), data, 0.3f);
  EXPECT_TRUE(bit_identical(adamw_run(ctx(), data, 0.3f), clipped)) << "two runs with clipping";
  EXPECT_TRUE(bit_identical(adamw_run(ctx(), data, 1e30f), off)) << "a huge max_norm";
  EXPECT_TRUE(
      bit_identical(adamw_run(ctx(), data, 1e30f, std::numeric_limits<float>::infinity()), off))
      << "a huge max_norm, inf-norm";
  EXPECT_FALSE(bit_identical(clipped, off)) << "max_norm 0.3 changed nothing";
  const std::vector<float> tiny = adamw_run(ctx(), data, 1e-4f);
  double moved = 0.0;
  for (std::size_t i = 0; i < off.size(); ++i)
    moved = std::max(moved, double(std::fabs(tiny[i] - off[i])));
  EXPECT_GT(moved, 1e-4) << "a tiny max_norm barely changed the trajectory";
}

// With SGD and no momentum a clipped step moves the parameters by exactly lr · scale · g, whose
// 2-norm is lr · max_norm · norm / (norm + 1e-6); last_grad_norm is the 2-norm (or the largest
// magnitude) of the step's gradients, which clipping leaves untouched.
TEST_P(AdamTrainerTest, ClippedSgdStepMovesTheParametersByLrTimesMaxNorm) {
  const Dataset data = blobs(50, 7, 4, seed_);
  for (const float norm_type : {2.0f, std::numeric_limits<float>::infinity()}) {
    SCOPED_TRACE("norm_type " + std::to_string(norm_type));
    Mlp model(ctx(), {7, 12, 4}, Activation::tanh, {Init::torch_default, 9, 16});
    Sgd sgd(model, {0.1f});
    const float max_norm = 0.01f;
    TrainerOptions to;
    to.clip_grad_norm = max_norm;
    to.clip_norm_type = norm_type;
    Trainer trainer(model, Loss::softmax_cross_entropy, sgd, to);
    BatchLoader loader(ctx(), data, {16, true, 3});
    for (const Batch& b : loader.epoch(0)) {
      const std::vector<float> before = host_params(model);
      trainer.step(b);
      const std::vector<float> after = host_params(model), g = host_grads(model);
      double step2 = 0.0, g2 = 0.0, gmax = 0.0;
      for (std::size_t i = 0; i < g.size(); ++i) {
        const double d = double(after[i]) - before[i];
        step2 += d * d;
        g2 += double(g[i]) * g[i];
        gmax = std::max(gmax, std::fabs(double(g[i])));
      }
      const double norm = std::isinf(norm_type) ? gmax : std::sqrt(g2);
      EXPECT_TRUE(close_to(trainer.last_grad_norm(), norm, 1e-6)) << "last_grad_norm";
      ASSERT_GT(norm, 2.0 * max_norm) << "the gradients are too small to be clipped";
      // Each parameter rounds to its float (a few 1e-8 against steps of about 1e-4).
      const double scale = max_norm / (norm + 1e-6);
      EXPECT_TRUE(close_to(std::sqrt(step2), 0.1 * scale * std::sqrt(g2), 1e-3)) << "step length";
    }
  }
}

// Turning clipping on before the first step is the same as asking for it at construction;
// turning it off later (on the GPU: the captured steps that clip are dropped) gives the steps of
// a trainer that never clipped, from the same state.
TEST_P(AdamTrainerTest, SetClipGradNormTurnsClippingOnAndOff) {
  const Dataset data = blobs(50, 7, 4, seed_);
  const auto make = [&](Mlp& model) {
    return Adam(model, adam_options(0.02f, 0.0f, false, false));
  };
  Mlp a(ctx(), {7, 12, 4}, Activation::tanh, {Init::torch_default, 9, 16});
  Mlp b(ctx(), {7, 12, 4}, Activation::tanh, {Init::torch_default, 9, 16});
  Adam adam_a = make(a), adam_b = make(b);
  TrainerOptions to;
  to.clip_grad_norm = 1e-3f;
  Trainer ta(a, Loss::softmax_cross_entropy, adam_a, to);
  Trainer tb(b, Loss::softmax_cross_entropy, adam_b);
  tb.set_clip_grad_norm(1e-3f);
  BatchLoader loader(ctx(), data, {16, true, 3});
  for (std::int64_t epoch = 0; epoch < 2; ++epoch) {
    for (const Batch& batch : loader.epoch(epoch)) {
      ta.step(batch);
      tb.step(batch);
    }
  }
  ASSERT_TRUE(bit_identical(host_params(a), host_params(b)));
  EXPECT_GT(ta.last_grad_norm(), 1e-3f);
  // A third model takes a's state and never clips; a stops clipping.
  Mlp c(ctx(), {7, 12, 4}, Activation::tanh, {Init::torch_default, 9, 16});
  Adam adam_c = make(c);
  c.params_from_host(host_params(a));
  for (const std::string& name : adam_a.state_names()) {
    adam_c.state_from_host(name, adam_a.state_to_host(name));
  }
  adam_c.set_steps(adam_a.steps());
  Trainer tc(c, Loss::softmax_cross_entropy, adam_c);
  ta.set_clip_grad_norm(0.0f);
  EXPECT_TRUE(std::isnan(ta.last_grad_norm())) << "clipping is off";
  for (std::int64_t epoch = 2; epoch < 4; ++epoch) {
    for (const Batch& batch : loader.epoch(epoch)) {
      ta.step(batch);
      tb.step(batch);
      tc.step(batch);
    }
  }
  EXPECT_TRUE(bit_identical(host_params(a), host_params(c))) << "a still clips";
  EXPECT_FALSE(bit_identical(host_params(a), host_params(b)));
}

// A step skipped for a non-finite loss leaves Adam's parameters and moments alone and does not
// count as an update: the next step's bias correction is that of the third update, so the run
// equals a twin that never met the bad batch (constant rate: the schedule position does not
// matter). Clipping on: the NaN norm's scale is never applied.
// Adam with eps 0 and an input feature that is always 0: that feature's weights have a zero
// gradient, and the first update divides 0 by 0. The error names that cause, not the
// learning rate; with torch's eps the same run stays finite.
TEST_P(AdamTrainerTest, EpsZeroNamesItselfAsTheCauseOfNaN) {
  const Dataset base = blobs(64, 4, 3, seed_);
  std::vector<float> x(64 * 4);
  std::vector<std::int32_t> y(64);
  for (std::int64_t i = 0; i < 64; ++i) {
    y[static_cast<std::size_t>(i)] = base.labels()[static_cast<std::size_t>(i)];
    for (std::int64_t j = 1; j < 4; ++j) {
      x[static_cast<std::size_t>(i * 4 + j)] =
          base.float_features()[static_cast<std::size_t>(i * 4 + j)];
    }
  }
  const Dataset data = Dataset::from_floats(x, 4, y, 3);
  for (const float eps : {0.0f, 1e-8f}) {
    Mlp model(ctx(), {4, 6, 3}, Activation::tanh, {Init::torch_default, 2, 8});
    AdamOptions o = adam_options(0.01f, 0.0f, false, false);
    o.eps = eps;
    Adam adam(model, o);
    Trainer trainer(model, Loss::softmax_cross_entropy, adam);
    BatchLoader loader(ctx(), data, {.batch_size = 32, .shuffle = false});
    const auto train = [&] {
      for (const Batch& b : loader.epoch(0)) trainer.step(b);
      return trainer.take_train_loss();
    };
    if (eps == 0.0f) {
      EXPECT_THROW_THAT(train(), NumericError,
                        ::testing::AllOf(::testing::HasSubstr("eps 0"),
                                         ::testing::HasSubstr("layer 0 weight [0, 0]"),
                                         ::testing::Not(::testing::HasSubstr("Lower the"))));
    } else {
      EXPECT_TRUE(std::isfinite(train()));
    }
  }
}

TEST_P(AdamTrainerTest, SkippedStepIsNotAnUpdate) {
  Mlp model(ctx(), {5, 6, 3}, Activation::tanh, {Init::torch_default, 2, 8});
  Adam adam(model, adam_options(0.01f, 0.01f, true, false));
  TrainerOptions to;
  to.on_non_finite = NonFinitePolicy::skip;
  to.clip_grad_norm = 0.5f;
  Trainer trainer(model, Loss::softmax_cross_entropy, adam, to);
  Mlp twin(ctx(), {5, 6, 3}, Activation::tanh, {Init::torch_default, 2, 8});
  Adam twin_adam(twin, adam_options(0.01f, 0.01f, true, false));
  TrainerOptions twin_to;
  twin_to.clip_grad_norm = 0.5f;
  Trainer twin_trainer(twin, Loss::softmax_cross_entropy, twin_adam, twin_to);
  NanBatches nb(ctx(), rng_);
  trainer.step(nb.good);
  trainer.step(nb.good);
  const std::vector<float> before = host_params(model);
  std::vector<std::vector<float>> state_before;
  for (const std::string& name : adam.state_names())
    state_before.push_back(adam.state_to_host(name));
  trainer.step(nb.bad);
  EXPECT_TRUE(bit_identical(host_params(model), before)) << "the bad step changed the weights";
  std::size_t i = 0;
  for (const std::string& name : adam.state_names()) {
    EXPECT_TRUE(bit_identical(adam.state_to_host(name), state_before[i++])) << name;
  }
  EXPECT_EQ(adam.steps(), 3);
  EXPECT_EQ(adam.state_to_host("step"), std::vector<float>{2.0f});
  trainer.step(nb.good);
  EXPECT_EQ(trainer.skipped_steps(), 1);
  for (int s = 0; s < 3; ++s) twin_trainer.step(nb.good);
  EXPECT_TRUE(bit_identical(host_params(model), host_params(twin)));
  EXPECT_EQ(adam.state_to_host("step"), std::vector<float>{3.0f});
}

// last_grad_norm is the norm of this trainer's latest step: NaN before its first step, also
// when the optimizer arrives with steps already taken (resumed from a checkpoint).
TEST_P(AdamTrainerTest, LastGradNormIsNaNBeforeTheTrainersFirstStep) {
  const Dataset data = blobs(32, 7, 4, seed_);
  Mlp model(ctx(), {7, 12, 4}, Activation::tanh, {Init::torch_default, 9, 16});
  Adam adam(model, adam_options(0.01f, 0.0f, false, false));
  adam.set_steps(5);  // as load_checkpoint leaves a resumed optimizer
  TrainerOptions to;
  to.clip_grad_norm = 1.0f;
  Trainer trainer(model, Loss::softmax_cross_entropy, adam, to);
  EXPECT_TRUE(std::isnan(trainer.last_grad_norm()))
      << "no step was taken by this trainer, got " << trainer.last_grad_norm();
  BatchLoader loader(ctx(), data, {16, false, 0});
  for (const Batch& b : loader.epoch(0)) trainer.step(b);
  EXPECT_TRUE(std::isfinite(trainer.last_grad_norm()));
}

// A bf16 model's Adam step writes the bf16 copy of the new parameters, and it learns.
TEST_P(AdamTrainerTest, Bf16ModelTrainsWithAdamW) {
  const Dataset data = blobs(64, 6, 3, seed_), test = blobs(200, 6, 3, seed_, seed_ + 1);
  MlpOptions mo{Init::torch_default, 6, 32, Precision::bf16};
  Mlp model(ctx(), {6, 16, 3}, Activation::gelu, mo);
  AdamW adamw(model, adam_options(0.02f, 0.01f, false, true));
  TrainerOptions to;
  to.clip_grad_norm = 1.0f;
  Trainer trainer(model, Loss::softmax_cross_entropy, adamw, to);
  BatchLoader train_loader(ctx(), data, {16, true, 5});
  BatchLoader test_loader(ctx(), test, {50, false});
  const std::vector<EpochStats> h = trainer.fit(train_loader, &test_loader, 20);
  EXPECT_GT(h.back().test.accuracy, 0.9);
  Buffer<float> widened(ctx(), model.parameter_count());
  convert(ctx(), VectorView<const bf16>(model.params_bf16()), widened.view());
  EXPECT_TRUE(bit_identical(widened.to_host(ctx()), to_float_vec(to_bf16_vec(host_params(model)))));
}

// A label the model has no output for is refused on every device, by Trainer::step before the
// step runs: scanned in a batch of the user's (on a GPU, read back), compared with the dataset's
// classes in a loader's. Nothing changes.
TEST_P(TrainerTest, LabelsBeyondTheOutputsAreRefusedAndChangeNothing) {
  Mlp model(ctx(), {4, 8, 3}, Activation::relu);
  Sgd sgd(model, {.lr = 0.1f});
  Trainer trainer(model, Loss::softmax_cross_entropy, sgd);
  const std::vector<float> before = host_params(model);
  const Buffer<float> x = upload(ctx(), std::vector<float>(5 * 4, 0.5f));
  const Buffer<std::int32_t> labels = upload(ctx(), std::vector<std::int32_t>{0, 1, 2, 3, 0});
  Batch b;
  b.x = MatrixView<const float>(x.data(), 5, 4, ctx().device());
  b.labels = VectorView<const std::int32_t>(labels.data(), 5, ctx().device());
  EXPECT_THROW_THAT(trainer.step(b), ArgumentError,
                    ::testing::HasSubstr("batch.labels[3] = 3 is outside [0, 3)"));
  const Dataset four = blobs(40, 4, 4, seed_);
  BatchLoader loader(ctx(), four, {.batch_size = 8});
  Batch from_loader;
  ASSERT_TRUE(loader.next(from_loader));
  EXPECT_EQ(from_loader.labels_below, 4);
  EXPECT_THROW_THAT(trainer.step(from_loader), ArgumentError,
                    ::testing::HasSubstr("they lie in [0, 4)"));
  EXPECT_THROW(trainer.fit(loader, nullptr, 1), ArgumentError);
  EXPECT_THROW(trainer.evaluate(loader), ArgumentError);
  EXPECT_TRUE(bit_identical(host_params(model), before));
  EXPECT_EQ(sgd.steps(), 0);
}

// Binary cross-entropy's targets are probabilities, checked by Trainer::step on every device:
// scanned unless the batch says they are known to lie in [0, 1] (a loader's, from its dataset).
TEST_P(TrainerTest, BceTargetsOutsideZeroOneAreRefusedAndChangeNothing) {
  Mlp model(ctx(), {4, 8, 2}, Activation::relu);
  Sgd sgd(model, {.lr = 0.1f});
  Trainer trainer(model, Loss::sigmoid_bce, sgd);
  const std::vector<float> before = host_params(model);
  const std::vector<float> features(5 * 4, 0.5f);
  const std::vector<float> targets = {0, 1, 0.5f, 1, 1, 0, 1.5f, 0, 0, 0};
  const Buffer<float> x = upload(ctx(), features), t = upload(ctx(), targets);
  Batch b;
  b.x = MatrixView<const float>(x.data(), 5, 4, ctx().device());
  b.targets = MatrixView<const float>(t.data(), 5, 2, ctx().device());
  EXPECT_THROW_THAT(trainer.step(b), ArgumentError,
                    ::testing::HasSubstr("batch.targets[3, 0] = 1.5"));
  const Dataset regression = Dataset::from_floats(features, 4, targets, 2);
  EXPECT_FALSE(regression.targets_in_unit());
  BatchLoader loader(ctx(), regression, {.batch_size = 5, .shuffle = false});
  EXPECT_THROW(trainer.fit(loader, nullptr, 1), ArgumentError);
  EXPECT_TRUE(bit_identical(host_params(model), before));
  EXPECT_EQ(sgd.steps(), 0);
  std::vector<float> in_unit = targets;
  in_unit[6] = 1.0f;
  EXPECT_TRUE(Dataset::from_floats(features, 4, in_unit, 2).targets_in_unit());
}

}  // namespace
}  // namespace descent::test
