// bench_mpi: what data-parallel training over MPI costs on the CPU, run under mpirun. Three
// measurements, each a median over repetitions after a warm-up, timed with a steady clock around
// ctx.synchronize() (the slowest rank's time when there are several):
//
//   overhead  (mpirun -np 1): the fmnist step with Communicator() against an MPI communicator of
//             one rank, alternated A/B/B/A: what the data-parallel path costs when nothing is
//             summed across processes.
//   overlap   (mpirun -np 2 or more): a model with a gradient of 64 MB or more, for each bucket
//             size: the data-parallel step (t_step), the same step with no sums (a Trainer with
//             Communicator() on every rank, each training alone on its shard: t_nosum) and one
//             MPI_Allreduce of a buffer of the gradient's size (t_sum_alone). The share of the
//             sum hidden behind the backward pass is 1 - (t_step - t_nosum) / t_sum_alone.
//   scaling   (mpirun -np N): the fmnist step on a global batch, N ranks of --threads threads;
//             tools/bench-mpi.sh compares 2 ranks x 1 thread with 1 rank x 2 threads.
//
// Rank 0 prints a readable table and, for each measurement, one line holding a JSON object
// (the only lines that start with '{').
//
//   mpirun -np 1 bench_mpi overhead [--threads=N] [--batch=B] [--steps=S] [--reps=R]
//   mpirun -np 2 bench_mpi overlap [--threads=1] [--bucket-mb=1,4,16,64,all] [--batch=B]
//                                  [--widths=1024,1024,...,10]
//   mpirun -np N bench_mpi scaling [--threads=T] [--batch=B]
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "descent/descent.hpp"
#include "descent/mpi.hpp"
#include "machine.hpp"
#include "workloads.hpp"

namespace descent::bench {
namespace {

struct Settings {
  std::string mode;
  int threads = 0;                     // 0: 1 on several ranks, all the CPUs on one
  std::int64_t batch = 0;              // global batch; 0: the mode's default
  int steps = 0;                       // steps per repetition; 0: the mode's default
  int reps = 0;                        // repetitions; 0: the mode's default
  int warmup = 0;                      // warm-up steps per configuration; 0: the mode's default
  std::vector<std::int64_t> widths;    // overlap: the model; empty: the default
  std::vector<std::string> bucket_mb;  // overlap: bucket sizes in MiB, or "all"
  std::string workloads = DESCENT_BENCH_WORKLOADS;
};

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}
bool root() { return world_rank() == 0; }

std::string cpu_model() { return cpu_model_name(); }

// The 1-minute load average: other work on the machine slows every number.
std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string one;
  f >> one;
  return one.empty() ? "?" : one;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Seconds per call of `body`, `calls` times, on the slowest rank: the ranks start together (a
// barrier) and each waits for its queued work before reading the clock.
double time_per_call(const Context& ctx, int calls, const std::function<void()>& body) {
  MPI_Barrier(MPI_COMM_WORLD);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) body();
  ctx.synchronize();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MPI_Allreduce(MPI_IN_PLACE, &s, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return s / calls;
}

// A JSON line: "key": value pairs in the order added.
class JsonLine {
 public:
  JsonLine& add(const std::string& key, const std::string& value) {
    std::string quoted;
    for (char c : value) {
      if (c == '"' || c == '\\') quoted += '\\';
      quoted += c;
    }
    return raw(key, "\"" + quoted + "\"");
  }
  JsonLine& add(const std::string& key, const char* value) { return add(key, std::string(value)); }
  JsonLine& add(const std::string& key, double value) {
    char text[32];
    std::snprintf(text, sizeof text, "%.6g", value);
    return raw(key, text);
  }
  JsonLine& add(const std::string& key, std::int64_t value) {
    return raw(key, std::to_string(value));
  }
  JsonLine& add(const std::string& key, int value) { return raw(key, std::to_string(value)); }
  void print() const { std::printf("{%s}\n", body_.c_str()); }

 private:
  JsonLine& raw(const std::string& key, const std::string& value) {
    if (!body_.empty()) body_ += ", ";
    body_ += "\"" + key + "\": " + value;
    return *this;
  }
  std::string body_;
};

JsonLine common_fields(const std::string& measure, const Context& ctx) {
  JsonLine j;
  j.add("bench", "mpi").add("measure", measure).add("ranks", world_size());
  j.add("threads", ctx.threads()).add("cpu", cpu_model()).add("loadavg_1m", load_average());
  // Open MPI's choice of non-blocking all-reduce algorithm (0: its own rule) decides how fast
  // the step's sums are; recorded so that runs with different settings are not compared.
  const char* alg = std::getenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm");
  if (alg != nullptr) j.add("libnbc_iallreduce_algorithm", alg);
  return j;
}

// ---------------------------------------------------------------- the model and its data

struct Workload {
  std::string name;
  std::vector<std::int64_t> widths;
  Activation activation = Activation::relu;
  Loss loss = Loss::softmax_cross_entropy;
  std::int64_t cpu_batch = 0;
};

Workload read_workload(const std::string& path, const std::string& name) {
  const nlohmann::json spec = read_workloads(path);
  for (const nlohmann::json& w : spec.at("steps")) {
    if (w.at("name").get<std::string>() != name) continue;
    Workload out;
    out.name = name;
    for (const nlohmann::json& x : w.at("widths")) out.widths.push_back(x.get<std::int64_t>());
    out.activation = parse_activation(w.at("activation").get<std::string>().c_str());
    out.loss = parse_loss(w.at("loss").get<std::string>().c_str());
    out.cpu_batch = w.at("cpu_batches").front().get<std::int64_t>();
    return out;
  }
  throw std::runtime_error("bench_mpi: " + path + " has no workload '" + name + "'");
}

std::int64_t parameter_count(const std::vector<std::int64_t>& w) {
  std::int64_t n = 0;
  for (std::size_t i = 0; i + 1 < w.size(); ++i) n += w[i] * w[i + 1] + w[i + 1];
  return n;
}

// This rank's shard of a few rotating global batches of synthetic data (uniform features,
// seeded labels): the step's cost does not depend on the values. Rotating keeps the inputs from
// all being served from cache.
class ShardedBatches {
 public:
  ShardedBatches(const Context& ctx, const Workload& w, std::int64_t global, int rank, int ranks) {
    const Shard s = shard_of(global, rank, ranks);
    const std::int64_t rows = s.rows(), in = w.widths.front(), classes = w.widths.back();
    for (int k = 0; k < kRotate; ++k) {
      xs_.emplace_back(ctx, std::max<std::int64_t>(rows, 1) * in);
      fill_uniform(ctx, xs_.back().view(), -1.0f, 1.0f, 40 + k,
                   static_cast<std::uint64_t>(s.begin * in));
      std::vector<std::int32_t> labels(static_cast<std::size_t>(std::max<std::int64_t>(rows, 1)));
      std::mt19937_64 rng(50 + k + 1000 * static_cast<std::uint64_t>(rank));
      for (auto& l : labels)
        l = static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(classes));
      ls_.emplace_back(ctx, labels);
    }
    for (int k = 0; k < kRotate; ++k) {  // views taken once the vectors stop moving buffers
      Batch b;
      b.x = xs_[k].matrix(rows, in);
      b.labels = ls_[k].view().slice(0, rows);
      b.global_rows = ranks > 1 ? global : 0;
      batches_.push_back(b);
    }
  }
  const Batch& next() {
    const Batch& b = batches_[next_];
    next_ = (next_ + 1) % batches_.size();
    return b;
  }
  // The same rows as a batch of its own: a rank training alone on its shard.
  Batch alone(std::size_t k) const {
    Batch b = batches_[k % batches_.size()];
    b.global_rows = 0;
    return b;
  }
  static constexpr int kRotate = 4;

 private:
  std::vector<Buffer<float>> xs_;
  std::vector<Buffer<std::int32_t>> ls_;
  std::vector<Batch> batches_;
  std::size_t next_ = 0;
};

// The buckets Trainer makes for `bytes` (CommOptions::bucket_bytes): runs of whole layers from
// the last one back, each at least `bytes` long but the last. Counted here for the report only.
int bucket_count(const std::vector<std::int64_t>& w, std::size_t bytes) {
  int buckets = 0;
  std::size_t open = 0;
  for (std::size_t l = w.size() - 1; l-- > 0;) {
    open += static_cast<std::size_t>(w[l] * w[l + 1] + w[l + 1]) * sizeof(float);
    if (open >= bytes || l == 0) {
      ++buckets;
      open = 0;
    }
  }
  return buckets;
}

SgdOptions bench_sgd() {
  SgdOptions so;
  so.lr = 1e-4f;
  so.momentum = 0.9f;
  return so;
}

MlpOptions bench_mlp(std::int64_t max_batch) {
  MlpOptions mo;
  mo.seed = 7;  // the same on every rank: the replicas start equal
  mo.max_batch = std::max<std::int64_t>(max_batch, 1);
  return mo;
}

// ---------------------------------------------------------------- 1. one-rank overhead

// The MPI calls a data-parallel step makes, alone: an MPI_Iallreduce of the batch loss and one
// of each bucket (cut as Trainer cuts them), an MPI_Testall after each layer of the backward
// pass and an MPI_Waitall, on host buffers of the model's size. Seconds per step over many
// steps: what the path adds on one rank, without the noise of timing whole steps.
double mpi_calls_per_step(const Mlp& model, std::size_t bucket_bytes, int steps) {
  std::vector<float> grads(static_cast<std::size_t>(model.parameter_count()), 0.0f), loss(1);
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &comm);
  std::vector<MPI_Request> pending;
  const auto start = [&](float* data, std::int64_t n) {
    MPI_Request r = MPI_REQUEST_NULL;
    MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_FLOAT, MPI_SUM, comm, &r);
    pending.push_back(r);
  };
  const auto t0 = std::chrono::steady_clock::now();
  for (int s = 0; s < steps; ++s) {
    start(loss.data(), 1);
    std::int64_t end = model.parameter_count();
    for (int l = model.layers() - 1; l >= 0; --l) {
      const std::int64_t begin = model.weight_offset(l);
      if (static_cast<std::size_t>(end - begin) * sizeof(float) >= bucket_bytes || l == 0) {
        start(grads.data() + begin, end - begin);
        end = begin;
      }
      int done = 0;
      MPI_Testall(static_cast<int>(pending.size()), pending.data(), &done, MPI_STATUSES_IGNORE);
    }
    MPI_Waitall(static_cast<int>(pending.size()), pending.data(), MPI_STATUSES_IGNORE);
    pending.clear();
  }
  const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MPI_Comm_free(&comm);
  return t / steps;
}

void overhead(const Settings& st, const Context& ctx) {
  if (world_size() != 1) {
    throw std::runtime_error("overhead: run it on one rank (mpirun -np 1)");
  }
  const Workload w = read_workload(st.workloads, "fmnist");
  const std::int64_t batch = st.batch > 0 ? st.batch : w.cpu_batch;
  const int steps = st.steps > 0 ? st.steps : 10, reps = st.reps > 0 ? st.reps : 21;
  const int warmup = st.warmup > 0 ? st.warmup : 3 * ShardedBatches::kRotate;

  Mlp model(ctx, w.widths, w.activation, bench_mlp(batch));
  Sgd sgd(model, bench_sgd());
  const Communicator mpi1 = mpi_communicator(MPI_COMM_WORLD, ctx);
  // Both trainers step the same model: the same memory, the same weights, only the path differs.
  Trainer single(model, w.loss, sgd);
  Trainer parallel(model, w.loss, sgd, mpi1);
  ShardedBatches data(ctx, w, batch, 0, 1);
  for (int i = 0; i < warmup; ++i) single.step(data.next());
  for (int i = 0; i < warmup; ++i) parallel.step(data.next());

  std::vector<double> ta, tb, ratio;
  const auto run = [&](Trainer& t) {
    return time_per_call(ctx, steps, [&] { t.step(data.next()); });
  };
  for (int r = 0; r < reps; ++r) {
    double a = 0, b = 0;
    if (r % 2 == 0) {  // A B, then B A: a drift in the machine's speed cancels
      a = run(single);
      b = run(parallel);
    } else {
      b = run(parallel);
      a = run(single);
    }
    ta.push_back(a);
    tb.push_back(b);
    ratio.push_back(b / a - 1.0);
  }
  single.take_train_loss();
  parallel.take_train_loss();
  const double ma = median(ta), mb = median(tb), paired = median(ratio);
  const double calls = mpi_calls_per_step(model, mpi1.options().bucket_bytes, 10000);
  if (root()) {
    std::printf("# 1-rank overhead: fmnist b%lld, %d threads, %d reps x %d steps (median)\n",
                static_cast<long long>(batch), ctx.threads(), reps, steps);
    std::printf("%-34s %12s\n", "configuration", "ms/step");
    std::printf("%-34s %12.3f\n", "Communicator() (single)", 1e3 * ma);
    std::printf("%-34s %12.3f\n", "MPI communicator, 1 rank", 1e3 * mb);
    std::printf("overhead: %+.2f %% of a step (median of paired reps; medians alone: %+.2f %%)\n",
                100.0 * paired, 100.0 * (mb / ma - 1.0));
    std::printf("the step's MPI calls alone: %.2f us a step, %.4f %% of the single step\n",
                1e6 * calls, 100.0 * calls / ma);
    common_fields("overhead", ctx)
        .add("workload", "fmnist")
        .add("batch", batch)
        .add("steps", steps)
        .add("reps", reps)
        .add("single_ms", 1e3 * ma)
        .add("mpi1_ms", 1e3 * mb)
        .add("overhead_pct", 100.0 * paired)
        .add("overhead_pct_of_medians", 100.0 * (mb / ma - 1.0))
        .add("mpi_calls_us", 1e6 * calls)
        .add("mpi_calls_pct", 100.0 * calls / ma)
        .print();
  }
}

// ---------------------------------------------------------------- 2. overlap

void overlap(const Settings& st, const Context& ctx) {
  const int ranks = world_size(), rank = world_rank();
  if (ranks < 2) throw std::runtime_error("overlap: run it on 2 ranks or more (mpirun -np 2)");
  Workload w;
  w.name = "overlap";
  w.widths = st.widths;
  if (w.widths.empty()) {
    // 16 layers of 1024 x 1024: 67.2 MB of fp32 gradient in layers of 4.2 MB, so that bucket
    // sizes from 4 MB to the whole gradient give different bucket counts.
    w.widths.assign(17, 1024);
    w.widths.push_back(10);
  }
  const std::int64_t batch = st.batch > 0 ? st.batch : 16 * ranks;
  const int steps = st.steps > 0 ? st.steps : 4, reps = st.reps > 0 ? st.reps : 7;
  const int warmup = st.warmup > 0 ? st.warmup : 2;
  std::vector<std::string> sizes = st.bucket_mb;
  if (sizes.empty()) sizes = {"1", "4", "16", "64", "all"};

  const std::int64_t params = parameter_count(w.widths);
  const std::size_t grad_bytes = static_cast<std::size_t>(params) * sizeof(float);
  Mlp model(ctx, w.widths, w.activation, bench_mlp(shard_of(batch, 0, ranks).rows()));
  Sgd sgd(model, bench_sgd());
  ShardedBatches data(ctx, w, batch, rank, ranks);

  struct Config {
    std::string label;
    std::size_t bucket_bytes = 0;
    int buckets = 0;
    std::unique_ptr<Trainer> trainer;
    std::vector<double> t;
  };
  std::vector<Config> configs;
  for (const std::string& s : sizes) {
    Config c;
    c.label = s == "all" ? "all" : s + " MB";
    c.bucket_bytes =
        s == "all" ? grad_bytes + 1 : static_cast<std::size_t>(std::stod(s) * 1048576.0);
    c.buckets = bucket_count(w.widths, c.bucket_bytes);
    CommOptions co;
    co.bucket_bytes = c.bucket_bytes;
    const Communicator comm = mpi_communicator(MPI_COMM_WORLD, ctx, co);
    c.trainer = std::make_unique<Trainer>(model, w.loss, sgd, comm);
    configs.push_back(std::move(c));
  }
  // Every rank alone on its shard: the same compute, no sums. (The replicas drift apart from
  // here on, which costs the timing nothing.)
  Trainer alone(model, w.loss, sgd);
  std::vector<double> t_alone, t_sum, t_isum;
  std::vector<float> sum_buffer(static_cast<std::size_t>(params), 1.0f);
  MPI_Comm sum_comm = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &sum_comm);
  const auto sum_alone = [&] {
    MPI_Allreduce(MPI_IN_PLACE, sum_buffer.data(), static_cast<int>(params), MPI_FLOAT, MPI_SUM,
                  sum_comm);
  };
  // The same sum as the step starts it (one non-blocking MPI_Iallreduce, then a wait): MPI may
  // pick another algorithm for it than for the blocking call.
  const auto isum_alone = [&] {
    MPI_Request request = MPI_REQUEST_NULL;
    MPI_Iallreduce(MPI_IN_PLACE, sum_buffer.data(), static_cast<int>(params), MPI_FLOAT, MPI_SUM,
                   sum_comm, &request);
    MPI_Wait(&request, MPI_STATUS_IGNORE);
  };

  std::size_t k = 0;
  const auto step_alone = [&] { alone.step(data.alone(k++)); };
  for (Config& c : configs) {
    for (int i = 0; i < warmup; ++i) c.trainer->step(data.next());
  }
  for (int i = 0; i < warmup; ++i) step_alone();
  for (int i = 0; i < warmup; ++i) sum_alone();
  for (int i = 0; i < warmup; ++i) isum_alone();

  for (int r = 0; r < reps; ++r) {
    // Every configuration once per repetition, in an order that turns around each time.
    std::vector<int> order(configs.size() + 3);
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
    if (r % 2) std::reverse(order.begin(), order.end());
    for (int i : order) {
      if (i < static_cast<int>(configs.size())) {
        Trainer& t = *configs[static_cast<std::size_t>(i)].trainer;
        configs[static_cast<std::size_t>(i)].t.push_back(
            time_per_call(ctx, steps, [&] { t.step(data.next()); }));
      } else if (i == static_cast<int>(configs.size())) {
        t_alone.push_back(time_per_call(ctx, steps, step_alone));
      } else if (i == static_cast<int>(configs.size()) + 1) {
        t_sum.push_back(time_per_call(ctx, steps, sum_alone));
      } else {
        t_isum.push_back(time_per_call(ctx, steps, isum_alone));
      }
    }
  }
  MPI_Comm_free(&sum_comm);
  for (Config& c : configs) c.trainer->take_train_loss();
  alone.take_train_loss();

  const double nosum = median(t_alone), sum = median(t_sum), isum = median(t_isum);
  std::string widths;
  for (std::int64_t x : w.widths) widths += (widths.empty() ? "" : "-") + std::to_string(x);
  if (root()) {
    std::printf(
        "# overlap: widths %s (%lld parameters, %.1f MB of fp32 gradient), global batch %lld, "
        "%d ranks x %d threads, %d reps x %d steps (median)\n",
        widths.c_str(), static_cast<long long>(params), grad_bytes / 1e6,
        static_cast<long long>(batch), ranks, ctx.threads(), reps, steps);
    std::printf(
        "t_nosum %.2f ms (each rank alone on its shard), t_sum_alone %.2f ms "
        "(MPI_Allreduce of %.1f MB: %.2f GB/s algorithm bandwidth; MPI_Iallreduce + "
        "MPI_Wait %.2f ms)\n",
        1e3 * nosum, 1e3 * sum, grad_bytes / 1e6, grad_bytes / sum / 1e9, 1e3 * isum);
    if (const char* alg = std::getenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm")) {
      std::printf("Open MPI MPI_Iallreduce algorithm %s (coll_libnbc_iallreduce_algorithm)\n", alg);
    }
    std::printf("%-10s %8s %12s %14s %10s\n", "bucket", "buckets", "t_step ms", "exposed ms",
                "hidden");
  }
  for (const Config& c : configs) {
    const double step = median(c.t), hidden = 1.0 - (step - nosum) / sum;
    if (!root()) continue;
    std::printf("%-10s %8d %12.2f %14.2f %9.0f%%\n", c.label.c_str(), c.buckets, 1e3 * step,
                1e3 * (step - nosum), 100.0 * hidden);
    common_fields("overlap", ctx)
        .add("widths", widths)
        .add("params", params)
        .add("grad_mb", grad_bytes / 1e6)
        .add("batch", batch)
        .add("steps", steps)
        .add("reps", reps)
        .add("bucket", c.label)
        .add("bucket_bytes", static_cast<std::int64_t>(c.bucket_bytes))
        .add("buckets", c.buckets)
        .add("t_step_ms", 1e3 * step)
        .add("t_nosum_ms", 1e3 * nosum)
        .add("t_sum_alone_ms", 1e3 * sum)
        .add("t_isum_alone_ms", 1e3 * isum)
        .add("hidden_fraction", hidden)
        .print();
  }
}

// ---------------------------------------------------------------- 3. scaling

void scaling(const Settings& st, const Context& ctx) {
  const int ranks = world_size(), rank = world_rank();
  const Workload w = read_workload(st.workloads, "fmnist");
  const std::int64_t batch = st.batch > 0 ? st.batch : w.cpu_batch;
  const int steps = st.steps > 0 ? st.steps : 10, reps = st.reps > 0 ? st.reps : 9;
  const int warmup = st.warmup > 0 ? st.warmup : 3 * ShardedBatches::kRotate;

  Mlp model(ctx, w.widths, w.activation, bench_mlp(shard_of(batch, 0, ranks).rows()));
  Sgd sgd(model, bench_sgd());
  // One process trains as a user would, with no communicator; several sum over MPI.
  const Communicator comm = ranks > 1 ? mpi_communicator(MPI_COMM_WORLD, ctx) : Communicator();
  Trainer trainer(model, w.loss, sgd, comm);
  ShardedBatches data(ctx, w, batch, rank, ranks);
  for (int i = 0; i < warmup; ++i) trainer.step(data.next());
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    t.push_back(time_per_call(ctx, steps, [&] { trainer.step(data.next()); }));
  }
  trainer.take_train_loss();
  const double step = median(t);
  if (root()) {
    std::printf(
        "# scaling: fmnist, global batch %lld, %d ranks x %d threads (%s), %d reps x %d "
        "steps (median)\n",
        static_cast<long long>(batch), ranks, ctx.threads(), to_string(comm.backend()), reps,
        steps);
    std::printf("%-14s %12s %14s\n", "configuration", "ms/step", "samples/s");
    char label[32];
    std::snprintf(label, sizeof label, "%dx%d", ranks, ctx.threads());
    std::printf("%-14s %12.3f %14.0f\n", label, 1e3 * step, static_cast<double>(batch) / step);
    common_fields("scaling", ctx)
        .add("workload", "fmnist")
        .add("config", label)
        .add("comm", to_string(comm.backend()))
        .add("batch", batch)
        .add("steps", steps)
        .add("reps", reps)
        .add("step_ms", 1e3 * step)
        .add("samples_per_s", static_cast<double>(batch) / step)
        .print();
  }
}

// ---------------------------------------------------------------- command line

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream s(text);
  std::string part;
  while (std::getline(s, part, ',')) {
    if (!part.empty()) out.push_back(part);
  }
  return out;
}

Settings parse(int argc, char** argv) {
  Settings st;
  const auto value = [](const std::string& a, const char* key) -> const char* {
    const std::string k = std::string("--") + key + "=";
    return a.rfind(k, 0) == 0 ? a.c_str() + k.size() : nullptr;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (const char* v = value(a, "threads")) {
      st.threads = std::stoi(v);
    } else if (const char* v = value(a, "batch")) {
      st.batch = std::stoll(v);
    } else if (const char* v = value(a, "steps")) {
      st.steps = std::stoi(v);
    } else if (const char* v = value(a, "reps")) {
      st.reps = std::stoi(v);
    } else if (const char* v = value(a, "warmup")) {
      st.warmup = std::stoi(v);
    } else if (const char* v = value(a, "widths")) {
      for (const std::string& x : split(v)) st.widths.push_back(std::stoll(x));
    } else if (const char* v = value(a, "bucket-mb")) {
      st.bucket_mb = split(v);
    } else if (const char* v = value(a, "workloads")) {
      st.workloads = v;
    } else if (a[0] != '-' && st.mode.empty()) {
      st.mode = a;
    } else {
      throw std::runtime_error("unknown argument '" + a +
                               "' (usage: bench_mpi overhead|overlap|scaling [--threads=N] "
                               "[--batch=B] [--steps=S] [--reps=R] [--warmup=W] "
                               "[--widths=a,b,...] [--bucket-mb=1,4,all])");
    }
  }
  if (st.mode != "overhead" && st.mode != "overlap" && st.mode != "scaling") {
    throw std::runtime_error(
        "the first argument names the measurement: overhead, overlap or "
        "scaling (got '" +
        st.mode + "')");
  }
  return st;
}

}  // namespace
}  // namespace descent::bench

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int code = 0;
  try {
    using namespace descent::bench;
    const Settings st = parse(argc, argv);
    descent::ContextOptions options;
    // Several ranks on one machine share its cores: one thread each unless told otherwise.
    options.threads = st.threads > 0 ? st.threads : (world_size() > 1 ? 1 : 0);
    // Everything made here is gone before MPI_Finalize: the communicators free their duplicates.
    descent::Context ctx(descent::Device::cpu(), options);
    if (st.mode == "overhead") {
      overhead(st, ctx);
    } else if (st.mode == "overlap") {
      overlap(st, ctx);
    } else {
      scaling(st, ctx);
    }
    std::fflush(stdout);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_mpi: rank %d: %s\n", descent::bench::world_rank(), e.what());
    // The other ranks may be waiting in a collective: end them all.
    MPI_Abort(MPI_COMM_WORLD, 1);
    code = 1;
  }
  MPI_Finalize();
  return code;
}
