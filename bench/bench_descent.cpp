// descent's benchmarks: ceilings, ops and whole training steps on one device, all workloads
// from bench/workloads.json. Every rate is also reported as a fraction of a ceiling measured
// earlier in the same run (large GEMM for FLOP/s, large copy for bytes/s).
//
//   bench_descent --descent_device=cpu|cuda[:N] [--descent_threads=N] [--descent_quick]
//                 [--descent_workloads=path] [Google Benchmark flags, e.g. --benchmark_out=x.json]
#include <benchmark/benchmark.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "descent/descent.hpp"
#include "descent/version.hpp"
#include "machine.hpp"
#include "workloads.hpp"

#if defined(DESCENT_BENCH_CUDA)
#include <cuda_runtime.h>
#endif

namespace descent::bench {
namespace {

struct Settings {
  Device device = Device::cpu();
  int threads = 0;
  bool quick = false;
  std::string workloads = DESCENT_BENCH_WORKLOADS;
};
Settings g_settings;
std::unique_ptr<Context> g_ctx;
// Ceilings measured in this run: "gemm/<precision>" in FLOP/s, "copy" in bytes/s.
std::map<std::string, double> g_ceiling;

Context& ctx() { return *g_ctx; }
bool on_gpu() { return g_settings.device.is_cuda(); }

// The version of the JSON layout that docs/bench-json.md describes; a change that would break
// tools/bench-compare.py (a renamed key or benchmark, another unit) gets a new number.
constexpr const char* kSchemaVersion = "1";

// The card (GPU name) or CPU model the benchmarks ran on: a baseline is only compared with a
// run on the same one.
std::string device_name() {
#if defined(DESCENT_BENCH_CUDA)
  if (on_gpu()) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, g_settings.device.index) == cudaSuccess) return prop.name;
    return "unknown GPU";
  }
#endif
  return cpu_model_name();
}

// Times a region on the context's device: CUDA events on the GPU, a steady clock on the CPU.
class RegionTimer {
 public:
  RegionTimer() {
#if defined(DESCENT_BENCH_CUDA)
    if (on_gpu()) {
      cudaEventCreate(&start_);
      cudaEventCreate(&stop_);
    }
#endif
  }
  ~RegionTimer() {
#if defined(DESCENT_BENCH_CUDA)
    if (on_gpu()) {
      cudaEventDestroy(start_);
      cudaEventDestroy(stop_);
    }
#endif
  }
  void start() {
#if defined(DESCENT_BENCH_CUDA)
    if (on_gpu()) {
      cudaEventRecord(start_, static_cast<cudaStream_t>(ctx().stream()));
      return;
    }
#endif
    t0_ = std::chrono::steady_clock::now();
  }
  double seconds() {
#if defined(DESCENT_BENCH_CUDA)
    if (on_gpu()) {
      cudaEventRecord(stop_, static_cast<cudaStream_t>(ctx().stream()));
      cudaEventSynchronize(stop_);
      float ms = 0.0f;
      cudaEventElapsedTime(&ms, start_, stop_);
      return ms * 1e-3;
    }
#endif
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }

 private:
#if defined(DESCENT_BENCH_CUDA)
  cudaEvent_t start_{}, stop_{};
#endif
  std::chrono::steady_clock::time_point t0_;
};

// Runs body() `reps` times per benchmark iteration (reps > 1 amortises launch gaps for very
// short ops) and reports manual time per body() call, plus rates and fractions of ceilings.
template <class Body>
void timed_loop(benchmark::State& state, int warmup, int reps, double flops, double bytes,
                const std::string& flop_ceiling, Body body) {
  for (int i = 0; i < warmup; ++i) body();
  ctx().synchronize();
  RegionTimer timer;
  double total = 0.0;
  std::int64_t calls = 0;
  for (auto _ : state) {
    timer.start();
    for (int r = 0; r < reps; ++r) body();
    const double s = timer.seconds();
    state.SetIterationTime(s / reps);
    total += s;
    calls += reps;
  }
  const double per_call = total / static_cast<double>(calls);
  if (flops > 0) {
    state.counters["flop_per_s"] = flops / per_call;
    if (g_ceiling.count(flop_ceiling)) {
      state.counters["frac_gemm_ceiling"] = flops / per_call / g_ceiling[flop_ceiling];
    }
  }
  if (bytes > 0) {
    state.counters["bytes_per_s"] = bytes / per_call;
    if (g_ceiling.count("copy"))
      state.counters["frac_copy_ceiling"] = bytes / per_call / g_ceiling["copy"];
    if (g_ceiling.count("update")) {
      state.counters["frac_update_ceiling"] = bytes / per_call / g_ceiling["update"];
    }
  }
}

// n uniform values in [-scale, scale), drawn on the device (host generation of the GPU sizes
// would take longer than the benchmarks).
Buffer<float> random_buffer(std::int64_t n, std::uint64_t seed, float scale = 1.0f) {
  Buffer<float> b(ctx(), n);
  fill_uniform(ctx(), b.view(), -scale, scale, seed);
  return b;
}

Buffer<std::int32_t> random_labels(std::int64_t n, std::int64_t classes, std::uint64_t seed) {
  std::vector<std::int32_t> l(static_cast<std::size_t>(n));
  std::mt19937_64 rng(seed);
  for (auto& v : l) v = static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(classes));
  return Buffer<std::int32_t>(ctx(), l);
}

// ---------------------------------------------------------------- ceilings

void ceiling_gemm(benchmark::State& state, std::string precision, std::int64_t n) {
  ctx().set_math(precision == "tf32" ? MathMode::tf32 : MathMode::fp32);
  Buffer<float> a = random_buffer(n * n, 1), b = random_buffer(n * n, 2);
  Buffer<float> c(ctx(), n * n);
  const double flops = 2.0 * n * n * n;
  if (precision == "bf16") {
    Buffer<bf16> a16(ctx(), n * n), b16(ctx(), n * n), c16(ctx(), n * n);
    convert(ctx(), a.view(), a16.view());
    convert(ctx(), b.view(), b16.view());
    timed_loop(state, 3, 1, flops, 0, "", [&] {
      dense_forward(ctx(), a16.matrix(n, n), b16.matrix(n, n), {}, Activation::identity,
                    c16.matrix(n, n));
    });
  } else {
    timed_loop(state, 3, 1, flops, 0, "", [&] {
      dense_forward(ctx(), a.matrix(n, n), b.matrix(n, n), {}, Activation::identity,
                    c.matrix(n, n));
    });
  }
  g_ceiling["gemm/" + precision] = state.counters["flop_per_s"];
  ctx().set_math(MathMode::fp32);
}

#if defined(__SSE2__)
// A copy with non-temporal stores on every thread: the destination is written without being
// read first, so 2 bytes move per byte copied, as counted. (A copy with ordinary stores also
// reads each destination line before writing it, 3 bytes per byte, and would understate the
// bandwidth an update that reads what it writes can reach.)
void copy_streaming(const float* src, float* dst, std::int64_t n, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t i = 0; i < n / 4; ++i) {
    _mm_stream_ps(dst + 4 * i, _mm_load_ps(src + 4 * i));
  }
  for (std::int64_t i = n / 4 * 4; i < n; ++i) dst[i] = src[i];
  _mm_sfence();
}
#endif

void ceiling_copy(benchmark::State& state, std::int64_t floats) {
  Buffer<float> a = random_buffer(floats, 3), b(ctx(), floats);
  const std::size_t bytes = sizeof(float) * static_cast<std::size_t>(floats);
  timed_loop(state, 3, 1, 0, 2.0 * bytes, "", [&] {
#if defined(__SSE2__)
    if (!on_gpu()) {
      copy_streaming(a.data(), b.data(), floats, ctx().threads());
      return;
    }
#endif
    detail::copy_bytes(ctx(), b.data(), b.device(), a.data(), a.device(), bytes);
  });
  g_ceiling["copy"] = state.counters["bytes_per_s"];
}

// CPU: a[i] += b[i] on every thread, 12 bytes a float (a read and written, b read): the
// traffic pattern of an optimizer update, which reads every line it writes (no write-allocate
// beyond what is counted), as the ceiling an update is measured against.
void ceiling_update(benchmark::State& state, std::int64_t floats) {
  Buffer<float> a = random_buffer(floats, 3), b = random_buffer(floats, 4);
  float* pa = a.data();
  const float* pb = b.data();
  const int threads = ctx().threads();
  timed_loop(state, 3, 1, 0, 12.0 * static_cast<double>(floats), "", [&] {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (std::int64_t i = 0; i < floats; ++i) pa[i] += pb[i];
  });
  g_ceiling["update"] = state.counters["bytes_per_s"];
}

// ---------------------------------------------------------------- ops

void op_sgd(benchmark::State& state, std::int64_t n) {
  Buffer<float> p = random_buffer(n, 4), g = random_buffer(n, 5), m(ctx(), n);
  SgdOptions o;
  o.lr = 1e-3f;
  o.momentum = 0.9f;
  sgd_update(ctx(), p.view(), g.view(), m.view(), o, SgdStep{.first_step = true});
  // reads p, g, m and writes p, m
  timed_loop(state, 3, 1, 0, 20.0 * n, "",
             [&] { sgd_update(ctx(), p.view(), g.view(), m.view(), o); });
}

void op_adamw(benchmark::State& state, std::int64_t n) {
  Buffer<float> p = random_buffer(n, 4), g = random_buffer(n, 5), m(ctx(), n), v(ctx(), n);
  Buffer<float> lr(ctx(), std::vector<float>{1e-3f}), scalars(ctx(), 4);
  fill(ctx(), m.view(), 0.0f);
  fill(ctx(), v.view(), 0.0f);
  fill(ctx(), scalars.view(), 0.0f);
  AdamOptions o;
  o.weight_decay = 0.01f;
  o.decoupled_weight_decay = true;
  const AdamStep s{.lr_device = lr.data(), .scalars = scalars.data()};
  adam_update(ctx(), p.view(), g.view(), m.view(), v.view(), {}, o, s);
  // reads p, g, m, v and writes p, m, v: 28 bytes a parameter (fp32 model: no bf16 copy)
  timed_loop(state, 3, 1, 0, 28.0 * n, "",
             [&] { adam_update(ctx(), p.view(), g.view(), m.view(), v.view(), {}, o, s); });
}

void op_clip(benchmark::State& state, std::int64_t n) {
  Buffer<float> g = random_buffer(n, 5), out(ctx(), 2);
  clip_grad_norm(ctx(), g.view(), 1.0f, 2.0f, out.data(), out.data() + 1);
  // reads the gradients once: 4 bytes a parameter
  timed_loop(state, 3, 1, 0, 4.0 * n, "",
             [&] { clip_grad_norm(ctx(), g.view(), 1.0f, 2.0f, out.data(), out.data() + 1); });
}

void op_loss(benchmark::State& state, std::string which, std::int64_t rows, std::int64_t cols) {
  // Two input sets, each larger than the GPU's L2 for the GPU sizes, alternate.
  const bool ce = which == "softmax_cross_entropy";
  std::vector<Buffer<float>> x, t;
  std::vector<Buffer<std::int32_t>> labels;
  for (int k = 0; k < 2; ++k) {
    x.push_back(random_buffer(rows * cols, 10 + k, 5.0f));
    if (ce) {
      labels.push_back(random_labels(rows, cols, 30 + k));
    } else {
      t.push_back(random_buffer(rows * cols, 20 + k));
    }
  }
  Buffer<float> grad(ctx(), rows * cols), loss(ctx(), 1);
  int k = 0;
  const double bytes = ce ? 8.0 * rows * cols + 4.0 * rows : 12.0 * rows * cols;
  timed_loop(state, 3, 1, 0, bytes, "", [&] {
    const LossOutput out{loss.view(), grad.matrix(rows, cols)};
    if (ce) {
      softmax_cross_entropy(ctx(), x[k].matrix(rows, cols), labels[k].view(), out);
    } else {
      mse_loss(ctx(), x[k].matrix(rows, cols), t[k].matrix(rows, cols), out);
    }
    k ^= 1;
  });
}

// One jet activation pass, tanh, in the shape of examples/pinn.cpp's Burgers jets: `rows`
// points, `cols` columns, K = 2 directions with weights {0, 1} and the second-order block (four
// stacked blocks). Forward adds a zero bias to z in place (every pass sees the same values) and
// writes h; backward writes dz and sums db. Per value element either reads and writes 4 floats
// of each of its blocks: 48 bytes (forward: z read and written back, h written; backward: z and
// dh read, dz written). ns_per_value: the time per value element (one column of one point).
void op_jet(benchmark::State& state, bool backward, std::int64_t rows, std::int64_t cols) {
  Buffer<float> weights(ctx(), std::vector<float>{0.0f, 1.0f});
  JetBlocks blocks;
  blocks.batch = rows;
  blocks.directions = 2;
  blocks.weights = std::as_const(weights).view();
  const std::int64_t stacked = blocks.rows();
  Buffer<float> z = random_buffer(stacked * cols, 40, 2.0f), h(ctx(), stacked * cols);
  Buffer<float> dh = random_buffer(stacked * cols, 41), dz(ctx(), stacked * cols);
  Buffer<float> b(ctx(), cols), db(ctx(), cols);
  fill(ctx(), b.view(), 0.0f);
  const double values = double(rows) * double(cols);
  timed_loop(state, 3, 1, 0, 48.0 * values, "", [&] {
    if (backward) {
      jet_activation_backward(
          ctx(), blocks, JetActivation::tanh, std::as_const(z).matrix(stacked, cols),
          std::as_const(dh).matrix(stacked, cols), dz.matrix(stacked, cols), db.view());
    } else {
      jet_activation_forward(ctx(), blocks, JetActivation::tanh, std::as_const(b).view(),
                             z.matrix(stacked, cols), h.matrix(stacked, cols));
    }
  });
  state.counters["ns_per_value"] = 48.0 / state.counters["bytes_per_s"] * 1e9;
}

// ---------------------------------------------------------------- whole training steps

double step_flops(const std::vector<std::int64_t>& w, std::int64_t batch) {
  double f = 0;
  for (std::size_t i = 0; i + 1 < w.size(); ++i) {
    f += (i == 0 ? 4.0 : 6.0) * static_cast<double>(batch) * w[i] * w[i + 1];
  }
  return f;
}

// The model a step or forward benchmark runs: seed 7, sized for `batch`, fp32 or bf16, fused
// or layer by layer.
Mlp bench_model(const std::vector<std::int64_t>& widths, const std::string& act, std::int64_t batch,
                const std::string& precision, bool fused) {
  MlpOptions mo;
  mo.seed = 7;
  mo.max_batch = batch;
  mo.precision = precision == "bf16" ? Precision::bf16 : Precision::fp32;
  mo.fused_layers = fused;
  return Mlp(ctx(), widths, parse_activation(act.c_str()), mo);
}

// optimizer: "sgd" (momentum 0.9, the workloads' step), "adamw", or "adamw+clip" (AdamW with
// gradient clipping by global norm 1).
// fused: MlpOptions::fused_layers (the hidden layers of one width in one kernel).
void step(benchmark::State& state, std::vector<std::int64_t> widths, std::string act,
          std::string loss_name, std::int64_t batch, std::string precision, std::string optimizer,
          bool fused) {
  ctx().set_math(precision == "tf32" ? MathMode::tf32 : MathMode::fp32);
  Mlp model = bench_model(widths, act, batch, precision, fused);
  std::unique_ptr<Optimizer> opt;
  if (optimizer == "sgd") {
    SgdOptions so;
    so.lr = 1e-3f;
    so.momentum = 0.9f;
    opt = std::make_unique<Sgd>(model, so);
  } else {
    opt = std::make_unique<AdamW>(model);
  }
  const Loss loss = parse_loss(loss_name.c_str());
  TrainerOptions to;
  if (optimizer == "adamw+clip") to.clip_grad_norm = 1.0f;
  Trainer trainer(model, loss, *opt, to);
  // Four batches rotate, so inputs are not all served from cache.
  constexpr int kRotate = 4;
  std::vector<Buffer<float>> xs, ts;
  std::vector<Buffer<std::int32_t>> ls;
  std::vector<Batch> batches;
  for (int k = 0; k < kRotate; ++k) {
    xs.push_back(random_buffer(batch * widths.front(), 40 + k));
    if (loss == Loss::softmax_cross_entropy) {
      ls.push_back(random_labels(batch, widths.back(), 50 + k));
    } else {
      ts.push_back(random_buffer(batch * widths.back(), 60 + k));
    }
  }
  for (int k = 0; k < kRotate; ++k) {  // views taken once the vectors stop moving buffers
    Batch b;
    b.x = xs[k].matrix(batch, widths.front());
    if (loss == Loss::softmax_cross_entropy) {
      b.labels = ls[k].view();
    } else {
      b.targets = ts[k].matrix(batch, widths.back());
    }
    batches.push_back(b);
  }
  int k = 0;
  const int warmup = 3 * kRotate;  // eager, capture, replay for every geometry
  timed_loop(state, warmup, kRotate, step_flops(widths, batch), 0, "gemm/" + precision, [&] {
    trainer.step(batches[static_cast<std::size_t>(k)]);
    k = (k + 1) % kRotate;
  });
  trainer.take_train_loss();
  state.counters["samples_per_s"] =
      state.counters["flop_per_s"] / step_flops(widths, batch) * batch;
  ctx().set_math(MathMode::fp32);
}

// The forward pass alone (inference), layer by layer or fused; FLOPs: 2 · batch · Σ in · out.
void forward(benchmark::State& state, std::vector<std::int64_t> widths, std::string act,
             std::int64_t batch, std::string precision, bool fused) {
  Mlp model = bench_model(widths, act, batch, precision, fused);
  Buffer<float> x = random_buffer(batch * widths.front(), 40);
  double flops = 0.0;
  for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
    flops += 2.0 * static_cast<double>(batch) * static_cast<double>(widths[l] * widths[l + 1]);
  }
  timed_loop(state, 3, 1, flops, 0, "gemm/" + precision,
             [&] { model.forward(std::as_const(x).matrix(batch, widths.front())); });
  state.counters["samples_per_s"] =
      state.counters["flop_per_s"] / flops * static_cast<double>(batch);
}

// The matrix products of one training step alone, same shapes and precision, no bias,
// activation, loss or update: what the step would cost if everything else were free. Per layer
// (in -> out): forward [B,in]·[out,in]ᵀ, weight gradient (M=out, N=in, K=B) and, except for the
// first layer, input gradient (M=B, N=in, K=out).
void gemms(benchmark::State& state, std::vector<std::int64_t> widths, std::int64_t batch,
           std::string precision) {
  ctx().set_math(precision == "tf32" ? MathMode::tf32 : MathMode::fp32);
  struct Product {
    std::int64_t m, n, k;
  };
  std::vector<Product> products;
  for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
    const std::int64_t in = widths[l], out = widths[l + 1];
    products.push_back({batch, out, in});
    products.push_back({out, in, batch});
    if (l > 0) products.push_back({batch, in, out});
  }
  std::int64_t most = 0;
  for (const auto& p : products) most = std::max({most, p.m * p.k, p.n * p.k, p.m * p.n});
  Buffer<float> a = random_buffer(most, 70), b = random_buffer(most, 71), c(ctx(), most);
  Buffer<bf16> a16(ctx(), most), b16(ctx(), most), c16(ctx(), most);
  convert(ctx(), a.view(), a16.view());
  convert(ctx(), b.view(), b16.view());
  const bool half = precision == "bf16";
  timed_loop(state, 3, 1, step_flops(widths, batch), 0, "gemm/" + precision, [&] {
    for (const auto& p : products) {
      if (half) {
        dense_forward(ctx(), a16.matrix(p.m, p.k), b16.matrix(p.n, p.k), {}, Activation::identity,
                      c16.matrix(p.m, p.n));
      } else {
        dense_forward(ctx(), a.matrix(p.m, p.k), b.matrix(p.n, p.k), {}, Activation::identity,
                      c.matrix(p.m, p.n));
      }
    }
  });
  ctx().set_math(MathMode::fp32);
}

// ---------------------------------------------------------------- registration

void register_all() {
  const nlohmann::json spec = read_workloads(g_settings.workloads);
  const bool gpu = on_gpu();
  const std::string dev = gpu ? "cuda" : "cpu";
  std::vector<std::string> precisions;
  for (const auto& p : spec.at("precisions").at(dev)) precisions.push_back(p.get<std::string>());
  const int iters = g_settings.quick ? 3 : 0;
  auto finish = [&](benchmark::internal::Benchmark* b) {
    b->UseManualTime()->Unit(benchmark::kMillisecond);
    if (iters > 0) b->Iterations(iters);
  };
  for (const auto& p : precisions) {
    const std::int64_t n = gpu ? 8192 : 2048;
    finish(benchmark::RegisterBenchmark(("ceiling/gemm/" + p + "/" + std::to_string(n)).c_str(),
                                        ceiling_gemm, p, n));
  }
  const std::int64_t copy_floats = gpu ? (std::int64_t(1) << 28) : (std::int64_t(1) << 25);
  finish(benchmark::RegisterBenchmark("ceiling/copy", ceiling_copy, copy_floats));
  if (!gpu) finish(benchmark::RegisterBenchmark("ceiling/update", ceiling_update, copy_floats));
  for (const auto& op : spec.at("ops")) {
    const std::string name = op.at("name").get<std::string>();
    if (name == "sgd_momentum") {
      const std::int64_t n = op.at(gpu ? "params" : "cpu_params").get<std::int64_t>();
      finish(benchmark::RegisterBenchmark(("op/sgd_momentum/n=" + std::to_string(n)).c_str(),
                                          op_sgd, n));
    } else if (name == "adamw" || name == "clip_grad_norm") {
      const std::int64_t n = op.at(gpu ? "params" : "cpu_params").get<std::int64_t>();
      finish(benchmark::RegisterBenchmark(("op/" + name + "/n=" + std::to_string(n)).c_str(),
                                          name == "adamw" ? op_adamw : op_clip, n));
    } else if (name == "jet_tanh") {
      const std::int64_t rows = op.at(gpu ? "rows" : "cpu_rows").get<std::int64_t>(),
                         cols = op.at("cols").get<std::int64_t>();
      for (const bool backward : {false, true}) {
        finish(benchmark::RegisterBenchmark(
            ("op/jet_tanh_" + std::string(backward ? "backward/" : "forward/") +
             std::to_string(rows) + "x" + std::to_string(cols))
                .c_str(),
            op_jet, backward, rows, cols));
      }
    } else {
      const std::int64_t rows = op.at(gpu ? "rows" : "cpu_rows").get<std::int64_t>(),
                         cols = op.at("cols").get<std::int64_t>();
      finish(benchmark::RegisterBenchmark(
          ("op/" + name + "/" + std::to_string(rows) + "x" + std::to_string(cols)).c_str(), op_loss,
          name, rows, cols));
    }
  }
  for (const auto& w : spec.at("steps")) {
    std::vector<std::int64_t> widths;
    for (const auto& x : w.at("widths")) widths.push_back(x.get<std::int64_t>());
    for (const auto& b : w.at(gpu ? "batches" : "cpu_batches")) {
      for (const auto& p : precisions) {
        const std::string name = "step/" + w.at("name").get<std::string>() + "/b" +
                                 std::to_string(b.get<std::int64_t>()) + "/" + p;
        finish(benchmark::RegisterBenchmark(
            name.c_str(), step, widths, w.at("activation").get<std::string>(),
            w.at("loss").get<std::string>(), b.get<std::int64_t>(), p, std::string("sgd"), false));
        if (gpu && p == "bf16" && w.at("name").get<std::string>() == "tiny") {
          // The fused hidden layers (MlpOptions::fused_layers) against the layer-by-layer step,
          // and the forward pass alone both ways.
          const std::string tag = "/b" + std::to_string(b.get<std::int64_t>()) + "/" + p;
          finish(benchmark::RegisterBenchmark(("step/tiny-fused" + tag).c_str(), step, widths,
                                              w.at("activation").get<std::string>(),
                                              w.at("loss").get<std::string>(),
                                              b.get<std::int64_t>(), p, std::string("sgd"), true));
          for (const bool fused : {false, true}) {
            finish(benchmark::RegisterBenchmark(
                ((fused ? "forward/tiny-fused" : "forward/tiny") + tag).c_str(), forward, widths,
                w.at("activation").get<std::string>(), b.get<std::int64_t>(), p, fused));
          }
        }
        if (w.at("name").get<std::string>() == "fmnist") {  // what AdamW and clipping add to a step
          for (const std::string o : {"adamw", "adamw+clip"}) {
            const std::string oname = "step/fmnist-" +
                                      std::string(o == "adamw" ? "adamw" : "adamw-clip") + "/b" +
                                      std::to_string(b.get<std::int64_t>()) + "/" + p;
            finish(benchmark::RegisterBenchmark(
                oname.c_str(), step, widths, w.at("activation").get<std::string>(),
                w.at("loss").get<std::string>(), b.get<std::int64_t>(), p, o, false));
          }
        }
        const std::string gname = "gemms/" + w.at("name").get<std::string>() + "/b" +
                                  std::to_string(b.get<std::int64_t>()) + "/" + p;
        finish(
            benchmark::RegisterBenchmark(gname.c_str(), gemms, widths, b.get<std::int64_t>(), p));
      }
    }
  }
}

}  // namespace
}  // namespace descent::bench

int main(int argc, char** argv) {
  using descent::bench::g_settings;
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--descent_device=", 0) == 0) {
      const std::string d = a.substr(17);
      g_settings.device = d == "auto" ? (descent::cuda_device_count() > 0 ? descent::Device::cuda()
                                                                          : descent::Device::cpu())
                                      : descent::Device::parse(d);
    } else if (a.rfind("--descent_threads=", 0) == 0) {
      g_settings.threads = std::stoi(a.substr(18));
    } else if (a.rfind("--descent_workloads=", 0) == 0) {
      g_settings.workloads = a.substr(20);
    } else if (a == "--descent_quick") {
      g_settings.quick = true;
    } else {
      rest.push_back(argv[i]);
    }
  }
  int rest_argc = static_cast<int>(rest.size());
  try {
    descent::ContextOptions options;
    options.threads = g_settings.threads;
    descent::bench::g_ctx = std::make_unique<descent::Context>(g_settings.device, options);
    // The stable part of the JSON output (docs/bench-json.md): tools/bench-compare.py reads it.
    const descent::BuildInfo build = descent::build_details();
    benchmark::AddCustomContext("descent_bench_schema", descent::bench::kSchemaVersion);
    benchmark::AddCustomContext("descent_version", build.version);
    benchmark::AddCustomContext("descent_git_commit", build.git_commit);
    benchmark::AddCustomContext("descent_device", g_settings.device.str());
    benchmark::AddCustomContext("descent_device_name", descent::bench::device_name());
    benchmark::AddCustomContext("descent_cpu_gemm", descent::cpu_gemm_name());
    benchmark::AddCustomContext("descent_threads",
                                std::to_string(descent::bench::g_ctx->threads()));
    descent::bench::register_all();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_descent: %s\n", e.what());
    return 1;
  }
  benchmark::Initialize(&rest_argc, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  descent::bench::g_ctx.reset();
  return 0;
}
