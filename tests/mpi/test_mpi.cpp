// Data-parallel training under mpirun: every test runs on every rank of MPI_COMM_WORLD (any
// count, 1 included) and compares the ranks' shared training with one process training on the
// whole global batch, computed on each rank alongside. DESCENT_MPI_TEST_DEVICE picks the device
// (cpu, the default, or cuda: NCCL, one GPU per rank). The MpiCheckpoint tests run only when
// DESCENT_MPI_TEST_DIR names a folder shared by the ranks (ctest runs them in two phases, with
// different rank counts).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "descent/descent.h"
#include "descent/descent.hpp"
#include "descent/mpi.hpp"

namespace descent {
namespace {

Device test_device() {
  const char* d = std::getenv("DESCENT_MPI_TEST_DEVICE");
  return Device::parse(d != nullptr && *d != '\0' ? d : "cpu");
}

// One context per process, kept for the whole run (NCCL communicators are made per test).
const Context& context() {
  static const Context ctx(test_device(), ContextOptions{.threads = 1});
  return ctx;
}

Communicator world(CommOptions options = {}) {
  return mpi_communicator(MPI_COMM_WORLD, context(), options);
}

// A seeded synthetic dataset for `loss`: features in [-1, 1]; labels of 4 classes, or targets
// (floats for mse, 0/1 for sigmoid_bce) of 3 outputs. `huge_row` (mse), when >= 0: that row's
// first target is 1e30, whose squared residual overflows: an infinite loss, finite gradients.
Dataset make_data(Loss loss, std::int64_t samples, std::uint64_t seed, std::int64_t huge_row = -1) {
  constexpr std::int64_t kFeatures = 6;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(samples * kFeatures));
  for (float& v : x) v = u(rng);
  if (loss == Loss::softmax_cross_entropy) {
    std::vector<std::int32_t> y(static_cast<std::size_t>(samples));
    for (auto& v : y) v = static_cast<std::int32_t>(rng() % 4);
    return Dataset::from_floats(x, kFeatures, y, 4);
  }
  std::vector<float> t(static_cast<std::size_t>(samples * 3));
  for (float& v : t) v = loss == Loss::mse ? u(rng) : static_cast<float>(rng() % 2);
  if (huge_row >= 0) t[static_cast<std::size_t>(huge_row * 3)] = 1e30f;
  return Dataset::from_floats(x, kFeatures, std::span<const float>(t), 3);
}

std::int64_t outputs_for(Loss loss) { return loss == Loss::softmax_cross_entropy ? 4 : 3; }

enum class Opt { sgd_momentum, adamw_clipped };

// A model, its optimizer and a trainer, single-process or data parallel.
struct Replica {
  Mlp model;
  std::unique_ptr<Optimizer> opt;
  std::unique_ptr<Trainer> trainer;

  Replica(Loss loss, Opt o, const Communicator* comm, std::uint64_t seed = 7,
          std::int64_t hidden = 16)
      : model(context(), {6, hidden, 8, outputs_for(loss)}, Activation::tanh,
              MlpOptions{.seed = seed, .max_batch = 64}) {
    TrainerOptions options;
    if (o == Opt::sgd_momentum) {
      opt = std::make_unique<Sgd>(model, SgdOptions{.lr = 0.1f, .momentum = 0.9f});
    } else {
      opt = std::make_unique<AdamW>(model, AdamOptions{.lr = 0.01f, .weight_decay = 0.01f});
      options.clip_grad_norm = 0.5f;
    }
    options.on_non_finite = NonFinitePolicy::skip;
    trainer = comm != nullptr ? std::make_unique<Trainer>(model, loss, *opt, *comm, options)
                              : std::make_unique<Trainer>(model, loss, *opt, options);
  }
};

// Takes `steps` steps from where the optimizer is, through as many epochs as needed; calls
// after_step after each. Returns the mean training loss of each epoch touched.
std::vector<double> train(Replica& run, BatchLoader& loader, std::int64_t steps,
                          const std::function<void()>& after_step = {}) {
  std::vector<double> losses;
  std::int64_t done = 0;
  while (done < steps) {
    const std::int64_t k = run.opt->steps();
    loader.start_epoch(k / loader.batches(), k % loader.batches());
    Batch b;
    while (done < steps && loader.next(b)) {
      run.trainer->step(b);
      ++done;
      if (after_step) after_step();
    }
    losses.push_back(run.trainer->take_train_loss());
  }
  return losses;
}

// max |a - b| / max |b|: how far the data-parallel weights are from one process's.
double relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return diff / scale;
}

std::uint64_t hash_of(const std::vector<float>& v) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  for (std::size_t i = 0; i < v.size() * sizeof(float); ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

// Whether every rank holds the same bits.
bool same_on_every_rank(const Communicator& comm, const std::vector<float>& v) {
  const std::vector<std::uint64_t> all = comm.all_gather(hash_of(v));
  for (std::uint64_t h : all) {
    if (h != all[0]) return false;
  }
  return true;
}

// 181 samples in global batches of 30: the ranks' shards differ in size when 30 does not divide
// evenly, and the last batch holds 1 row, so on more than one rank some shards are empty.
constexpr std::int64_t kSamples = 181, kBatch = 30, kSteps = 20;

struct Case {
  Loss loss;
  Opt opt;
};

class MpiTraining : public ::testing::TestWithParam<Case> {};

TEST_P(MpiTraining, RanksTakeTheStepsOfOneProcessOnTheGlobalBatch) {
  const auto [loss, o] = GetParam();
  const Communicator comm = world();
  const Dataset data = make_data(loss, kSamples, 11);
  const LoaderOptions lo{.batch_size = kBatch, .shuffle = true, .seed = 3};

  Replica one(loss, o, nullptr);
  BatchLoader whole(context(), data, lo);
  const std::vector<double> one_losses = train(one, whole, kSteps);

  Replica ranks(loss, o, &comm);
  BatchLoader shards(context(), data, lo, comm);
  int diverged = 0;
  const std::vector<double> losses = train(ranks, shards, kSteps, [&] {
    if (!same_on_every_rank(comm, ranks.model.params_to_host())) ++diverged;
  });
  EXPECT_EQ(diverged, 0) << "steps after which the replicas' parameters differed";
  EXPECT_EQ(ranks.opt->steps(), kSteps);

  const double rel = relative_difference(ranks.model.params_to_host(), one.model.params_to_host());
  EXPECT_LE(rel, 1e-6) << comm.describe() << ": parameters after " << kSteps << " steps";
  if (comm.is_root()) {
    std::printf("%d ranks: max |w - w_one| / max |w_one| = %.3g after %lld steps\n", comm.size(),
                rel, static_cast<long long>(kSteps));
  }
  if (comm.size() == 1) {
    EXPECT_EQ(rel, 0.0) << "one rank sums nothing: the same bits";
  }
  ASSERT_EQ(losses.size(), one_losses.size());
  for (std::size_t e = 0; e < losses.size(); ++e) {
    EXPECT_NEAR(losses[e], one_losses[e], 1e-6 * std::abs(one_losses[e])) << "epoch " << e;
  }
  std::vector<double> mine = losses;
  EXPECT_TRUE(same_on_every_rank(comm, std::vector<float>(mine.begin(), mine.end())))
      << "every rank reports the same training loss";
}

INSTANTIATE_TEST_SUITE_P(Losses, MpiTraining,
                         ::testing::Values(Case{Loss::mse, Opt::sgd_momentum},
                                           Case{Loss::softmax_cross_entropy, Opt::sgd_momentum},
                                           Case{Loss::sigmoid_bce, Opt::sgd_momentum},
                                           Case{Loss::softmax_cross_entropy, Opt::adamw_clipped}),
                         [](const auto& info) {
                           return std::string(to_string(info.param.loss)) +
                                  (info.param.opt == Opt::sgd_momentum ? "_sgd" : "_adamw_clip");
                         });

TEST(MpiEvaluation, ShardedTestSetGivesOneProcessResult) {
  const Communicator comm = world();
  const Loss loss = Loss::softmax_cross_entropy;
  const Dataset train_data = make_data(loss, kSamples, 11), test_data = make_data(loss, 157, 12);
  Replica run(loss, Opt::sgd_momentum, &comm);
  BatchLoader shards(context(), train_data, {.batch_size = kBatch, .seed = 3}, comm);
  train(run, shards, 12);
  BatchLoader test_shards(context(), test_data, {.batch_size = 64, .shuffle = false}, comm);
  BatchLoader test_whole(context(), test_data, {.batch_size = 64, .shuffle = false});
  const EvalResult sharded = run.trainer->evaluate(test_shards);
  const EvalResult whole = evaluate(run.model, loss, test_whole);
  EXPECT_EQ(sharded.samples, 157);
  EXPECT_EQ(sharded.accuracy, whole.accuracy);
  EXPECT_NEAR(sharded.loss, whole.loss, 1e-6 * whole.loss);
}

TEST(MpiTraining, BucketSizesDoNotChangeTheSteps) {
  const Loss loss = Loss::mse;
  const Dataset data = make_data(loss, kSamples, 11);
  const LoaderOptions lo{.batch_size = kBatch, .seed = 3};
  std::vector<std::vector<float>> params;
  for (std::size_t bytes : {std::size_t{1}, std::size_t{256}, std::size_t{1} << 30}) {
    const Communicator comm = world(CommOptions{.bucket_bytes = bytes});
    Replica run(loss, Opt::sgd_momentum, &comm, 7, 40);
    BatchLoader shards(context(), data, lo, comm);
    train(run, shards, 10);
    params.push_back(run.model.params_to_host());
  }
  EXPECT_LE(relative_difference(params[0], params[2]), 1e-6) << "one bucket per layer vs one";
  EXPECT_LE(relative_difference(params[1], params[2]), 1e-6) << "256-byte buckets vs one";
}

// The bad row (the first of the last rank's shard of the first, unshuffled batch) makes that
// rank's loss infinite and its gradients finite: only the summed loss tells the other ranks.
TEST(MpiTraining, NonFiniteLossOnOneRankSkipsTheStepOnEveryRank) {
  const Communicator comm = world();
  const Loss loss = Loss::mse;
  const Shard last = shard_of(kBatch, comm.size() - 1, comm.size());
  const Dataset data = make_data(loss, kSamples, 11, last.begin);
  const LoaderOptions lo{.batch_size = kBatch, .shuffle = false};
  Replica run(loss, Opt::sgd_momentum, &comm);
  const std::vector<float> before = run.model.params_to_host();
  BatchLoader shards(context(), data, lo, comm);
  Batch b;
  shards.next(b);
  run.trainer->step(b);
  EXPECT_EQ(run.trainer->skipped_steps(), 1) << comm.describe();
  EXPECT_EQ(run.model.params_to_host(), before) << "the update is skipped on every rank";
  shards.next(b);
  run.trainer->step(b);
  EXPECT_EQ(run.trainer->skipped_steps(), 1);
  EXPECT_NE(run.model.params_to_host(), before) << "the next step trains";
  EXPECT_TRUE(same_on_every_rank(comm, run.model.params_to_host()));

  // The error policy: every rank throws for the same step.
  Replica strict(loss, Opt::sgd_momentum, &comm);
  strict.trainer->set_non_finite_policy(NonFinitePolicy::error);
  shards.start_epoch(0);
  shards.next(b);
  std::string message;
  try {
    strict.trainer->step(b);
    strict.trainer->check_numerics();
  } catch (const NumericError& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("step 1 (1-based)"), std::string::npos) << message;
}

TEST(MpiTraining, MismatchedReplicasAreRefusedOnEveryRank) {
  const Communicator comm = world();
  if (comm.size() == 1) GTEST_SKIP() << "needs 2 or more ranks";
  const Loss loss = Loss::softmax_cross_entropy;
  const bool odd = comm.rank() == comm.size() - 1;
  const auto message_of = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const ArgumentError& e) {
      return std::string(e.what());
    }
    return std::string("no ArgumentError");
  };
  const std::string seed =
      message_of([&] { Replica r(loss, Opt::sgd_momentum, &comm, odd ? 8 : 7); });
  EXPECT_NE(seed.find("the model's parameters"), std::string::npos) << seed;
  EXPECT_NE(seed.find("rank " + std::to_string(comm.size() - 1) + " differs from rank 0"),
            std::string::npos)
      << seed;
  const std::string width =
      message_of([&] { Replica r(loss, Opt::sgd_momentum, &comm, 7, odd ? 17 : 16); });
  EXPECT_NE(width.find("architecture"), std::string::npos) << width;
  const Dataset data = make_data(loss, kSamples, 11);
  const std::string batch = message_of(
      [&] { BatchLoader l(context(), data, {.batch_size = odd ? kBatch + 1 : kBatch}, comm); });
  EXPECT_NE(batch.find("BatchLoader"), std::string::npos) << batch;
}

// ---- the C API's MPI entry point on handles that are not (intra)communicators: an error status
// naming the handle on every rank, never an abort from inside MPI, and the caller's error
// handlers as they were.

MPI_Errhandler world_errhandler() {
  MPI_Errhandler h = MPI_ERRHANDLER_NULL;
  MPI_Comm_get_errhandler(MPI_COMM_WORLD, &h);
  MPI_Errhandler_free(&h);  // the handle stays comparable; only the reference is dropped
  return h;
}

// descent_communicator_create_mpi on `handle`: its status, with *out and the message checked.
descent_status create_c_communicator(int handle, std::string* message) {
  descent_context* ctx = nullptr;
  EXPECT_EQ(descent_context_create("cpu", 1, &ctx), DESCENT_OK);
  descent_communicator* comm = reinterpret_cast<descent_communicator*>(std::uintptr_t{16});
  const descent_status s = descent_communicator_create_mpi(ctx, handle, &comm);
  *message = descent_last_error();
  if (s == DESCENT_OK) {
    descent_communicator_destroy(comm);
  } else {
    EXPECT_EQ(comm, nullptr) << "*out is not NULL after a failure";
  }
  descent_context_destroy(ctx);
  return s;
}

// A physics-informed step built by hand, data parallel: each rank's shard of a global batch of
// interior points through a jet, its share of the residual's mean (mean_rows) and of a boundary
// term's (LossOutput::mean_rows), the gradients summed over the ranks, an Adam step: the same
// parameters as one process taking the whole batch (to float rounding of the sums' order).
// A PINN loss on rows [i0, i1) of an interior batch and [b0, b1) of a boundary batch of global
// sizes `interior` and `boundary`: evaluate() leaves this shard's share of the gradients of the
// whole batch's loss in the model (summed over the ranks when `over` is given) and returns the
// whole batch's loss (summed over the ranks too).
struct PinnShard {
  static constexpr std::int64_t interior = 24, boundary = 8;
  std::vector<float> xi, f, xb, ub;
  PdeResidual residual;

  PinnShard() : xi(interior * 2), f(interior), xb(boundary * 2), ub(boundary) {
    std::mt19937_64 rng(11);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (std::vector<float>* v : {&xi, &f, &xb, &ub}) {
      for (float& x : *v) x = u(rng);
    }
    residual.a = 0.5f;
    residual.b = {1.0f, 0.0f};
    residual.c = -0.1f;
    residual.d = {0.0f, 1.0f};
  }

  static Mlp model() {
    MlpOptions o;
    o.seed = 5;
    return Mlp(context(), {2, 12, 12, 1}, Activation::tanh, o);
  }

  // The evaluation of `model` on the shard, as a closure.
  // one_call: the residual term by pde_residual_step instead of jet_forward, pde_residual_loss
  // and jet_backward.
  std::function<float()> evaluation(Mlp& model, const Communicator* over, Shard si, Shard sb,
                                    bool one_call = false) const {
    struct Data {
      Buffer<float> x_in, f_in, x_b, u_b, loss;
      Jet jet;
    };
    const auto d = std::make_shared<Data>(Data{
        Buffer<float>(context(), std::span<const float>(xi).subspan(si.begin * 2, si.rows() * 2)),
        Buffer<float>(context(), std::span<const float>(f).subspan(si.begin, si.rows())),
        Buffer<float>(context(), std::span<const float>(xb).subspan(sb.begin * 2, sb.rows() * 2)),
        Buffer<float>(context(), std::span<const float>(ub).subspan(sb.begin, sb.rows())),
        Buffer<float>(context(), 2), Jet(model, {})});
    return [this, &model, over, si, sb, d, one_call] {
      const ForwardPass pass = model.forward(d->x_b.matrix(sb.rows(), 2));
      LossOutput out;
      out.loss = VectorView<float>(d->loss.data(), 1, context().device());
      out.grad = pass.output_grad;
      out.mean_rows = over != nullptr ? boundary : 0;
      mse_loss(context(), pass.output, d->u_b.matrix(sb.rows(), 1), out);
      model.backward(pass);
      const VectorView<float> residual_loss(d->loss.data() + 1, 1, context().device());
      const std::int64_t mean_rows = over != nullptr ? interior : 0;
      if (one_call) {
        pde_residual_step(model, d->x_in.matrix(si.rows(), 2), d->jet, residual,
                          d->f_in.matrix(si.rows(), 1), residual_loss, 1.0f, true, mean_rows);
      } else {
        jet_forward(model, d->x_in.matrix(si.rows(), 2), d->jet);
        jet_backward(model, d->jet,
                     pde_residual_loss(d->jet, residual, d->f_in.matrix(si.rows(), 1),
                                       residual_loss, 1.0f, false, mean_rows));
      }
      const std::vector<float> l = d->loss.to_host(context());
      double total[1] = {double(l[0]) + double(l[1])};
      if (over != nullptr) {
        over->sum_gradients(model);
        over->sum(total);
      }
      return float(total[0]);
    };
  }
};

// Both ways of computing the residual term: three calls, and pde_residual_step.
TEST(MpiJets, ShardedPinnStepsEqualOneProcess) {
  for (bool one_call : {false, true}) {
    SCOPED_TRACE(one_call ? "pde_residual_step" : "three calls");
    const Communicator comm = world();
    const PinnShard pinn;
    const std::int64_t interior = PinnShard::interior, boundary = PinnShard::boundary;

    // Three Adam steps on the given shard.
    const auto train = [&](const Communicator* over, Shard si, Shard sb) {
      Mlp model = PinnShard::model();
      AdamOptions ao;
      ao.lr = 1e-2f;
      Adam adam(model, ao);
      const std::function<float()> evaluate = pinn.evaluation(model, over, si, sb, one_call);
      for (int step = 0; step < 3; ++step) {
        evaluate();
        adam.step();
      }
      return model.params_to_host();
    };
    const std::vector<float> sharded = train(&comm, shard_of(interior, comm.rank(), comm.size()),
                                             shard_of(boundary, comm.rank(), comm.size()));
    const std::vector<float> whole =
        train(nullptr, shard_of(interior, 0, 1), shard_of(boundary, 0, 1));
    ASSERT_EQ(sharded.size(), whole.size());
    for (std::size_t i = 0; i < whole.size(); ++i) {
      EXPECT_NEAR(sharded[i], whole[i], 2e-5f * (1.0f + std::abs(whole[i]))) << "parameter " << i;
    }
    if (comm.size() == 1) {
      for (std::size_t i = 0; i < whole.size(); ++i) ASSERT_EQ(sharded[i], whole[i]) << i;
    }
    Mlp other(context(), {2, 3, 1});
    EXPECT_NO_THROW(comm.sum_gradients(other));
  }
}

// L-BFGS data parallel: every rank's closure sums the gradients and the loss over the ranks, so
// every rank takes the same line-search decisions; two step() calls on shards match one process
// on the whole batch, and the replicas hold the same bits.
TEST(MpiJets, ShardedLbfgsStepsEqualOneProcessAndKeepTheReplicasEqual) {
  const Communicator comm = world();
  const PinnShard pinn;
  std::vector<std::int64_t> iterations;  // the sharded run's, then the whole batch's
  const auto train = [&](const Communicator* over, Shard si, Shard sb) {
    Mlp model = PinnShard::model();
    LbfgsOptions o;
    o.strong_wolfe = true;
    o.max_iter = 6;
    LBfgs lbfgs(model, o);
    const std::function<float()> evaluate = pinn.evaluation(model, over, si, sb);
    for (int step = 0; step < 2; ++step) lbfgs.step(evaluate);
    iterations.push_back(lbfgs.iterations());
    return model.params_to_host();
  };
  const std::vector<float> sharded =
      train(&comm, shard_of(PinnShard::interior, comm.rank(), comm.size()),
            shard_of(PinnShard::boundary, comm.rank(), comm.size()));
  const std::vector<float> whole =
      train(nullptr, shard_of(PinnShard::interior, 0, 1), shard_of(PinnShard::boundary, 0, 1));
  EXPECT_EQ(iterations[0], iterations[1]) << "the same decisions on the shards as on the whole";
  EXPECT_GE(iterations[0], 6);
  ASSERT_EQ(sharded.size(), whole.size());
  for (std::size_t i = 0; i < whole.size(); ++i) {
    EXPECT_NEAR(sharded[i], whole[i], 1e-4f * (1.0f + std::abs(whole[i]))) << "parameter " << i;
  }
  std::vector<float> root = sharded;
  comm.broadcast(std::as_writable_bytes(std::span<float>(root)));
  for (std::size_t i = 0; i < root.size(); ++i) {
    ASSERT_EQ(sharded[i], root[i]) << "rank " << comm.rank() << " parameter " << i;
  }
}

// L-BFGS in float64 data parallel: each rank evaluates its shard with JetF64, the terms weighted
// by its share of the global batch, and the closure sums the gradient and the loss over the ranks
// (Communicator::sum on doubles), so every rank takes the same decisions; two steps on the
// shards match one process on the whole batch to float64 rounding, and the replicas hold the
// same bits.
TEST(MpiJets, ShardedFloat64LbfgsStepsEqualOneProcess) {
  const Communicator comm = world();
  const PinnShard pinn;
  const Mlp model = PinnShard::model();
  const JetF64 jet(model, {});
  const std::vector<double> xi(pinn.xi.begin(), pinn.xi.end()), f(pinn.f.begin(), pinn.f.end());
  const std::vector<double> xb(pinn.xb.begin(), pinn.xb.end()), ub(pinn.ub.begin(), pinn.ub.end());
  std::vector<std::int64_t> iterations;
  // resume: after the first step the root saves the optimizer's state, and every rank goes on
  // from the file with a fresh optimizer and x zeroed first.
  const auto train = [&](const Communicator* over, Shard si, Shard sb, bool resume = false) {
    const auto part = [](const std::vector<double>& v, Shard s, std::int64_t cols) {
      return std::vector<double>(v.begin() + s.begin * cols,
                                 v.begin() + (s.begin + s.rows()) * cols);
    };
    const std::vector<double> my_xi = part(xi, si, 2), my_f = part(f, si, 1);
    const std::vector<double> my_xb = part(xb, sb, 2), my_ub = part(ub, sb, 1);
    const double wi = double(si.rows()) / double(PinnShard::interior);
    const double wb = double(sb.rows()) / double(PinnShard::boundary);
    std::vector<double> x = params_f64(model);
    LbfgsOptions o;
    o.strong_wolfe = true;
    o.max_iter = 6;
    LBfgsF64 lbfgs(o);
    const LBfgsF64::Closure evaluate = [&](std::span<const double> p, std::span<double> g) {
      double loss[1] = {jet.mse_step(p, my_xb, my_ub, g, wb, false) +
                        jet.pde_residual_step(p, my_xi, pinn.residual, my_f, g, wi)};
      if (over != nullptr) {
        over->sum(g);
        over->sum(loss);
      }
      return loss[0];
    };
    for (int step = 0; step < 2; ++step) {
      lbfgs.step(x, evaluate);
      if (resume && step == 0) {
        // The root saves into a folder of its own (under DESCENT_MPI_TEST_DIR, which every
        // rank sees, when set) and broadcasts the file's path, or an empty one when it failed:
        // no rank waits for a root that threw.
        std::array<char, 512> path{};
        if (comm.is_root()) {
          try {
            const char* shared = std::getenv("DESCENT_MPI_TEST_DIR");
            const std::filesystem::path base = shared != nullptr
                                                   ? std::filesystem::path(shared)
                                                   : std::filesystem::temp_directory_path();
            std::filesystem::create_directories(base);
            std::string folder = (base / "descent-mpi-XXXXXX").string();
            if (::mkdtemp(folder.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
            const std::string file = folder + "/lbfgs.state";
            lbfgs.save(file, x);
            std::copy_n(file.c_str(), std::min(file.size(), path.size() - 1), path.data());
          } catch (const std::exception& e) {
            ADD_FAILURE() << "the root could not save: " << e.what();
          }
        }
        comm.broadcast(std::as_writable_bytes(std::span<char>(path)));
        if (path[0] == '\0') break;
        lbfgs = LBfgsF64(o);
        std::fill(x.begin(), x.end(), 0.0);
        lbfgs.load(path.data(), x);
        comm.barrier();
        if (comm.is_root())
          std::filesystem::remove_all(std::filesystem::path(path.data()).parent_path());
      }
    }
    iterations.push_back(lbfgs.iterations());
    return x;
  };
  const std::vector<double> sharded =
      train(&comm, shard_of(PinnShard::interior, comm.rank(), comm.size()),
            shard_of(PinnShard::boundary, comm.rank(), comm.size()));
  const std::vector<double> whole =
      train(nullptr, shard_of(PinnShard::interior, 0, 1), shard_of(PinnShard::boundary, 0, 1));
  EXPECT_EQ(iterations[0], iterations[1]) << "the same decisions on the shards as on the whole";
  ASSERT_EQ(sharded.size(), whole.size());
  for (std::size_t i = 0; i < whole.size(); ++i) {
    EXPECT_NEAR(sharded[i], whole[i], 1e-9 * (1.0 + std::abs(whole[i]))) << "parameter " << i;
  }
  std::vector<double> root = sharded;
  comm.broadcast(std::as_writable_bytes(std::span<double>(root)));
  EXPECT_EQ(sharded, root) << "rank " << comm.rank();
  // Saved by one rank after the first step and loaded by all: the same bits as straight on.
  const std::vector<double> resumed =
      train(&comm, shard_of(PinnShard::interior, comm.rank(), comm.size()),
            shard_of(PinnShard::boundary, comm.rank(), comm.size()), true);
  EXPECT_EQ(iterations[2], iterations[0]);
  EXPECT_EQ(resumed, sharded) << "rank " << comm.rank();
}

// From C: each rank's own boundary term, the gradients summed over the ranks, one SGD step: every
// rank holds the same parameters afterwards (without the sum they would differ with the data).
TEST(MpiCApi, SummedGradientsKeepTheReplicasEqual) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int fortran = static_cast<int>(MPI_Comm_c2f(MPI_COMM_WORLD));
  descent_context* ctx = nullptr;
  descent_communicator* comm = nullptr;
  descent_model* model = nullptr;
  descent_optimizer* opt = nullptr;
  ASSERT_EQ(descent_context_create("cpu", 1, &ctx), DESCENT_OK) << descent_last_error();
  ASSERT_EQ(descent_communicator_create_mpi(ctx, fortran, &comm), DESCENT_OK)
      << descent_last_error();
  const std::int64_t widths[] = {2, 4, 1};
  ASSERT_EQ(descent_model_create(ctx, widths, 3, "tanh", 3, &model), DESCENT_OK);
  ASSERT_EQ(descent_optimizer_create(model, 0.5f, 0, 0, 0, nullptr, 0, 0, &opt), DESCENT_OK);
  const float x[] = {0.1f * float(rank + 1), -0.3f, 0.7f, 0.2f * float(rank)};
  const float y[] = {float(rank), -1.0f};
  ASSERT_EQ(descent_model_mse_gradient(model, x, 2, 2, 2, y, 1, DESCENT_MEMORY_HOST,
                                       1.0f / float(size), nullptr),
            DESCENT_OK)
      << descent_last_error();
  ASSERT_EQ(descent_communicator_sum_gradients(comm, model), DESCENT_OK) << descent_last_error();
  ASSERT_EQ(descent_optimizer_step(opt), DESCENT_OK);
  std::int64_t count = 0;
  ASSERT_EQ(descent_model_parameter_count(model, &count), DESCENT_OK);
  std::vector<float> p(static_cast<std::size_t>(count)), root(p.size());
  ASSERT_EQ(descent_model_get_params(model, p.data(), count), DESCENT_OK);
  root = p;
  MPI_Bcast(root.data(), static_cast<int>(root.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
  for (std::size_t i = 0; i < p.size(); ++i) ASSERT_EQ(p[i], root[i]) << "parameter " << i;
  EXPECT_EQ(descent_communicator_sum_gradients(comm, nullptr), DESCENT_ERROR_ARGUMENT);
  descent_optimizer_destroy(opt);
  descent_model_destroy(model);
  descent_communicator_destroy(comm);
  descent_context_destroy(ctx);
}

// Uneven rows per rank through the C API (a domain decomposition: rank r holds r + 1 rows): two
// data-parallel steps equal one process stepping on all the rows, and the replicas stay equal.
TEST(MpiCApi, UnevenRowsPerRankGiveTheWholeBatchsStep) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int fortran = static_cast<int>(MPI_Comm_c2f(MPI_COMM_WORLD));
  const std::int64_t total = std::int64_t(size) * (size + 1) / 2;
  std::vector<float> x, y;
  for (std::int64_t i = 0; i < total; ++i) {
    x.push_back(std::sin(0.9f * float(i)));
    x.push_back(std::cos(0.4f * float(i)));
    y.push_back(0.5f * float(i % 3) - 0.4f);
  }
  const std::int64_t first = std::int64_t(rank) * (rank + 1) / 2, mine = rank + 1;
  const auto train = [&](descent_communicator* comm, std::int64_t begin, std::int64_t rows) {
    descent_context* ctx = nullptr;
    descent_model* model = nullptr;
    descent_optimizer* opt = nullptr;
    descent_trainer* trainer = nullptr;
    std::vector<float> p;
    EXPECT_EQ(descent_context_create("cpu", 1, &ctx), DESCENT_OK);
    const std::int64_t widths[] = {2, 6, 1};
    EXPECT_EQ(descent_model_create(ctx, widths, 3, "tanh", 3, &model), DESCENT_OK);
    EXPECT_EQ(descent_optimizer_create(model, 0.3f, 0, 0, 0, nullptr, 0, 0, &opt), DESCENT_OK);
    const descent_status made =
        comm != nullptr ? descent_trainer_create_parallel(model, opt, "mse", comm, &trainer)
                        : descent_trainer_create(model, opt, "mse", &trainer);
    EXPECT_EQ(made, DESCENT_OK) << descent_last_error();
    for (int step = 0; step < 2; ++step) {
      EXPECT_EQ(descent_trainer_step(trainer, x.data() + 2 * begin, rows, 2, 2, nullptr,
                                     y.data() + begin, 1, DESCENT_MEMORY_HOST),
                DESCENT_OK)
          << descent_last_error();
    }
    std::int64_t count = 0;
    EXPECT_EQ(descent_model_parameter_count(model, &count), DESCENT_OK);
    p.resize(static_cast<std::size_t>(count));
    EXPECT_EQ(descent_model_get_params(model, p.data(), count), DESCENT_OK);
    descent_trainer_destroy(trainer);
    descent_optimizer_destroy(opt);
    descent_model_destroy(model);
    descent_context_destroy(ctx);
    return p;
  };
  descent_context* comm_ctx = nullptr;
  descent_communicator* comm = nullptr;
  ASSERT_EQ(descent_context_create("cpu", 1, &comm_ctx), DESCENT_OK);
  ASSERT_EQ(descent_communicator_create_mpi(comm_ctx, fortran, &comm), DESCENT_OK)
      << descent_last_error();
  const std::vector<float> sharded = train(comm, first, mine);
  const std::vector<float> whole = train(nullptr, 0, total);
  ASSERT_EQ(sharded.size(), whole.size());
  for (std::size_t i = 0; i < whole.size(); ++i) {
    EXPECT_NEAR(sharded[i], whole[i], 1e-6f * (1.0f + std::abs(whole[i]))) << "parameter " << i;
  }
  std::vector<float> root = sharded;
  MPI_Bcast(root.data(), static_cast<int>(root.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
  for (std::size_t i = 0; i < root.size(); ++i) ASSERT_EQ(sharded[i], root[i]) << i;
  descent_communicator_destroy(comm);
  descent_context_destroy(comm_ctx);
}

// The ranks of one node (mpirun on this machine) each get their own place: local ranks 0 .. n-1,
// the CPU where there is no GPU, and a share of the cores that, summed over the ranks, does not
// oversubscribe the node unless there are more ranks than cores (then one thread each).
TEST(MpiPlacement, RanksOfANodeShareItOut) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int fortran = static_cast<int>(MPI_Comm_c2f(MPI_COMM_WORLD));
  const RankPlacement p = place_rank(fortran, "cpu");
  EXPECT_EQ(p.local_size, size);
  std::vector<int> locals(static_cast<std::size_t>(size));
  MPI_Allgather(&p.local_rank, 1, MPI_INT, locals.data(), 1, MPI_INT, MPI_COMM_WORLD);
  std::sort(locals.begin(), locals.end());
  for (int r = 0; r < size; ++r) EXPECT_EQ(locals[static_cast<std::size_t>(r)], r);
  EXPECT_TRUE(p.device.is_cpu());
  EXPECT_GE(p.threads, 1);
  if (std::getenv("OMP_NUM_THREADS") == nullptr) {
    int total = 0;
    MPI_Allreduce(&p.threads, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    const int cores = static_cast<int>(std::thread::hardware_concurrency());
    EXPECT_LE(total, std::max(cores, size)) << "the ranks would oversubscribe the node";
  }
  if (cuda_device_count() == 0) {
    EXPECT_TRUE(place_rank(fortran, "auto").device.is_cpu());
    EXPECT_THROW(place_rank(fortran, "cuda"), DeviceError);
  }
  EXPECT_THROW(place_rank(fortran, "gpu"), ArgumentError);
  descent_context* ctx = nullptr;
  int local = -1;
  ASSERT_EQ(descent_context_create_for_rank(fortran, "cpu", &local, &ctx), DESCENT_OK)
      << descent_last_error();
  EXPECT_EQ(local, p.local_rank);
  descent_context_destroy(ctx);
}

TEST(MpiCApi, BadFortranHandlesAreRefusedWithAStatus) {
  const MPI_Errhandler before = world_errhandler();
  MPI_Comm freed = MPI_COMM_NULL;
  ASSERT_EQ(MPI_Comm_dup(MPI_COMM_SELF, &freed), MPI_SUCCESS);
  const int freed_handle = static_cast<int>(MPI_Comm_c2f(freed));
  MPI_Comm_free(&freed);
  const int null_handle = static_cast<int>(MPI_Comm_c2f(MPI_COMM_NULL));
  for (const int handle : {-1, 12345, INT_MAX, INT_MIN, freed_handle, null_handle}) {
    SCOPED_TRACE("Fortran handle " + std::to_string(handle));
    std::string message;
    EXPECT_EQ(create_c_communicator(handle, &message), DESCENT_ERROR_ARGUMENT) << message;
    EXPECT_NE(message.find("descent_communicator_create_mpi: "), std::string::npos) << message;
    EXPECT_NE(message.find("Fortran handle " + std::to_string(handle) + ")"), std::string::npos)
        << message;
  }
  EXPECT_EQ(world_errhandler(), before) << "MPI_COMM_WORLD's error handler changed";
}

TEST(MpiCApi, GoodHandleLeavesTheCallersErrorHandlerAlone) {
  const MPI_Errhandler before = world_errhandler();
  std::string message;
  EXPECT_EQ(create_c_communicator(static_cast<int>(MPI_Comm_c2f(MPI_COMM_WORLD)), &message),
            DESCENT_OK)
      << message;
  EXPECT_EQ(world_errhandler(), before) << "MPI_COMM_WORLD's error handler changed";
}

TEST(MpiCApi, IntercommunicatorIsRefusedOnEveryRank) {
  int size = 0, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (size < 2) GTEST_SKIP() << "an intercommunicator needs 2 or more ranks";
  // Two groups, even and odd world ranks; each group's leader is its lowest world rank.
  MPI_Comm half = MPI_COMM_NULL, inter = MPI_COMM_NULL;
  ASSERT_EQ(MPI_Comm_split(MPI_COMM_WORLD, rank % 2, rank, &half), MPI_SUCCESS);
  ASSERT_EQ(MPI_Intercomm_create(half, 0, MPI_COMM_WORLD, rank % 2 == 0 ? 1 : 0, 99, &inter),
            MPI_SUCCESS);
  std::string message;
  EXPECT_EQ(create_c_communicator(static_cast<int>(MPI_Comm_c2f(inter)), &message),
            DESCENT_ERROR_ARGUMENT);
  EXPECT_NE(message.find("intercommunicator"), std::string::npos) << message;
  MPI_Comm_free(&inter);
  MPI_Comm_free(&half);
}

// ---- checkpoints across rank counts: one phase saves after 10 steps on its ranks, another
// resumes on (possibly) another number of ranks.

std::string checkpoint_dir() {
  const char* d = std::getenv("DESCENT_MPI_TEST_DIR");
  return d != nullptr ? d : "";
}

TEST(MpiCheckpoint, SaveAfterTenSteps) {
  const std::string dir = checkpoint_dir();
  if (dir.empty()) GTEST_SKIP() << "DESCENT_MPI_TEST_DIR is not set";
  const Communicator comm = world();
  const Loss loss = Loss::softmax_cross_entropy;
  const Dataset data = make_data(loss, kSamples, 11);
  Replica run(loss, Opt::adamw_clipped, &comm);
  BatchLoader shards(context(), data, {.batch_size = kBatch, .seed = 3}, comm);
  train(run, shards, 10);
  if (comm.is_root()) {
    std::filesystem::create_directories(dir);
    save_checkpoint(dir + "/ten.ckpt", run.model, run.opt.get(),
                    {{"ranks", std::to_string(comm.size())}});
  }
  comm.barrier();
}

TEST(MpiCheckpoint, ResumeEqualsUninterruptedRun) {
  const std::string dir = checkpoint_dir();
  if (dir.empty()) GTEST_SKIP() << "DESCENT_MPI_TEST_DIR is not set";
  const Communicator comm = world();
  const Loss loss = Loss::softmax_cross_entropy;
  const Dataset data = make_data(loss, kSamples, 11);
  const LoaderOptions lo{.batch_size = kBatch, .seed = 3};

  Replica resumed(loss, Opt::adamw_clipped, &comm, /*seed, overwritten by the checkpoint=*/99);
  const Checkpoint c = read_checkpoint(dir + "/ten.ckpt");
  restore(c, resumed.model, resumed.opt.get());
  // The trainer checks that every rank restored the same state.
  TrainerOptions options;
  options.on_non_finite = NonFinitePolicy::skip;
  options.clip_grad_norm = 0.5f;
  resumed.trainer = std::make_unique<Trainer>(resumed.model, loss, *resumed.opt, comm, options);
  BatchLoader shards(context(), data, lo, comm);
  train(resumed, shards, 10);
  EXPECT_EQ(resumed.opt->steps(), 20);

  Replica one(loss, Opt::adamw_clipped, nullptr);
  BatchLoader whole(context(), data, lo);
  train(one, whole, 20);
  EXPECT_LE(relative_difference(resumed.model.params_to_host(), one.model.params_to_host()), 1e-6)
      << "saved on " << c.get("ranks") << " ranks, resumed on " << comm.size();
  EXPECT_TRUE(same_on_every_rank(comm, resumed.model.params_to_host()));

  if (c.get("ranks") == std::to_string(comm.size())) {
    Replica straight(loss, Opt::adamw_clipped, &comm);
    BatchLoader again(context(), data, lo, comm);
    train(straight, again, 20);
    EXPECT_EQ(resumed.model.params_to_host(), straight.model.params_to_host())
        << "on as many ranks as saved it, resuming changes no bit";
  }
}

}  // namespace
}  // namespace descent

// MPI around GoogleTest. Every rank runs every test; a rank whose test fails exits non-zero, and
// mpirun reports it.
int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  const int status = RUN_ALL_TESTS();
  MPI_Finalize();
  return status;
}
