// The training step of a small MLP over slices of the batch held in cache
// (Backend::dense_slice_step): every layer's forward pass, the loss and every layer's backward
// pass run on kSliceRows rows at a time, so no activation goes to memory and back, and no pass
// over the whole batch separates one layer from the next. The layer-by-layer step (dense.cpp)
// writes every layer's activations for the whole batch, reads them back for the activation's
// derivative and again for the products of the backward pass; for networks as narrow as
// 64-64-64-64-64-64-16 those passes cost as much as the products.
//
// Rows are point-major ([rows, width], as the batch), so the first layer reads x in place and the
// loss reads the targets in place. The three products of a layer are register tiles of descent's
// own (rows × two vectors of columns, each broadcast element feeding two multiply-adds):
//   forward        y [m, out]   = h [m, in] · Wᵀ           (Wᵀ [in, out] made once a step)
//   weights        dW [out, in] += dzᵀ · h                 (the reduction over the slice's rows)
//   input          dh [m, in]   = dz [m, out] · W
// Fixed tasks of rows (a function of the batch alone) keep their own gradient sums, added in task
// order at the end: the same bits for any thread count. This file may fuse multiply-adds
// (-ffp-contract=fast), as jet_products.cpp does.
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "descent/error.hpp"
#include "kernels/backend.hpp"
#include "kernels/cpu/cpu.hpp"
#include "kernels/cpu/fast_exp.hpp"
#include "kernels/cpu/isa.hpp"
#include "kernels/math/activation.hpp"
#include "kernels/math/loss.hpp"

namespace descent::cpu {

namespace {

using detail::Act;

constexpr std::int64_t kSliceRows = 64;

template <int L>
using Floats = FloatLanes<L>;  // isa.hpp

// A product's operands: a(r, k) = a[r · ar + k · ak] (any strides: the transposes are strides),
// b rows ldb floats apart, c rows ldc floats apart.
struct Operands {
  const float* a;
  std::int64_t ar, ak;
  const float* b;
  std::int64_t ldb;
  float* c;
  std::int64_t ldc;
};

// c[r0 .. r0 + R, c0 .. c0 + NV·L) (=, or += when Add) Σ_k a(r, k) b[k, ·]: R × NV accumulators
// of L lanes in registers, each broadcast a(r, k) feeding NV multiply-adds.
template <int L, int R, int NV, bool Add>
DESCENT_ALWAYS_INLINE void tile(const Operands& o, std::int64_t r0, std::int64_t c0,
                                std::int64_t depth) {
  using V = Floats<L>;
  V acc[R][NV];
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = V{};
  }
  const float* a = o.a + r0 * o.ar;
  for (std::int64_t k = 0; k < depth; ++k) {
    V bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) std::memcpy(&bv[v], o.b + k * o.ldb + c0 + v * L, sizeof(V));
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const float s = a[i * o.ar + k * o.ak];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] += s * bv[v];
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* c = o.c + (r0 + i) * o.ldc + c0 + v * L;
      if constexpr (Add) {
        V old;
        std::memcpy(&old, c, sizeof(V));
        acc[i][v] += old;
      }
      std::memcpy(c, &acc[i][v], sizeof(V));
    }
  }
}

// The rows [r0, r0 + rows) of one column block, R at a time, then the last few in one tile of
// their number.
template <int L, int R, int NV, bool Add>
DESCENT_ALWAYS_INLINE void tile_rows(const Operands& o, std::int64_t r0, std::int64_t rows,
                                     std::int64_t c0, std::int64_t depth) {
  if constexpr (R == 1) {
    for (std::int64_t r = r0; r < r0 + rows; ++r) tile<L, 1, NV, Add>(o, r, c0, depth);
  } else {
    std::int64_t r = r0;
    for (; r + R <= r0 + rows; r += R) tile<L, R, NV, Add>(o, r, c0, depth);
    if (r < r0 + rows) tile_rows<L, R - 1, NV, Add>(o, r, r0 + rows - r, c0, depth);
  }
}

// The depth of any product here: a layer's width or a slice's rows.
constexpr std::int64_t kMaxDepth = std::max(detail::kMaxSliceStepWidth, kSliceRows);

// c [m, n] (=, or += when Add) a [m, depth] · b [depth, n]: columns by two vectors, then one, then
// the last n mod L columns as one vector too: b's columns copied into zero-padded rows of L
// (`packed`, kMaxDepth · L floats), the products into rows of L (`part`, R · L floats), and the n
// mod L columns of those copied to c, so that every column runs the vectors' chain of
// multiply-adds, fused where the variant fuses, and the bits do not depend on which columns a
// variant's L leaves over. (A scalar loop there is vectorised by GCC at -O3 as an in-order
// reduction of unfused products: other bits than the vector columns.)
template <int L, int R, bool Add>
DESCENT_ALWAYS_INLINE void product(const Operands& o, std::int64_t m, std::int64_t n,
                                   std::int64_t depth, float* packed, float* part) {
  std::int64_t c0 = 0;
  for (; c0 + 2 * L <= n; c0 += 2 * L) tile_rows<L, R, 2, Add>(o, 0, m, c0, depth);
  for (; c0 + L <= n; c0 += L) tile_rows<L, R, 1, Add>(o, 0, m, c0, depth);
  const std::int64_t rest = n - c0;
  if (rest == 0) return;
  for (std::int64_t k = 0; k < depth; ++k) {
    float* row = packed + k * L;
    std::fill_n(row, L, 0.0f);
    std::copy_n(o.b + k * o.ldb + c0, rest, row);
  }
  for (std::int64_t r0 = 0; r0 < m; r0 += R) {
    const std::int64_t rows = std::min<std::int64_t>(R, m - r0);
    const Operands t{o.a + r0 * o.ar, o.ar, o.ak, packed, L, part, L};
    for (std::int64_t r = 0; r < rows; ++r) {
      float* c = o.c + (r0 + r) * o.ldc + c0;
      float* p = part + r * L;
      std::fill_n(p, L, 0.0f);
      if constexpr (Add) std::copy_n(c, rest, p);
    }
    tile_rows<L, R, 1, Add>(t, 0, rows, 0, depth);
    for (std::int64_t r = 0; r < rows; ++r)
      std::copy_n(part + r * L, rest, o.c + (r0 + r) * o.ldc + c0);
  }
}

// y = act(y + b) over a slice's rows, in place; gelu, whose derivative needs it, also keeps the
// pre-activation z (the others' derivatives come from y).
template <Act A>
DESCENT_ALWAYS_INLINE void forward_rows(const float* bias, float* y, float* keep_z, std::int64_t m,
                                        std::int64_t n) {
  for (std::int64_t r = 0; r < m; ++r) {
    float* row = y + r * n;
    float* zr = keep_z + r * n;
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) {
      const float z = bias != nullptr ? row[j] + bias[j] : row[j];
      if constexpr (A == Act::gelu) zr[j] = z;
      row[j] = detail::activate<A, FastMath>(z);
    }
  }
}

// dz = dh ⊙ act'(y, z) in place, its column sums added to db (when not null).
template <Act A>
DESCENT_ALWAYS_INLINE void backward_rows(const float* y, const float* kept_z, float* dh, float* db,
                                         std::int64_t m, std::int64_t n) {
  for (std::int64_t r = 0; r < m; ++r) {
    float* g = dh + r * n;
    const float* yr = y + r * n;
    const float* zr = kept_z + r * n;
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) {
      g[j] *= detail::activate_grad<A, FastMath>(yr[j], A == Act::gelu ? zr[j] : 0.0f);
    }
    if (db != nullptr) {
#pragma omp simd
      for (std::int64_t j = 0; j < n; ++j) db[j] += g[j];
    }
  }
}

// The two passes for a run-time activation (a switch, not a generic lambda: a lambda's body is
// not compiled for the calling variant's ISA).
DESCENT_ALWAYS_INLINE void forward_act(Act act, const float* bias, float* y, float* keep_z,
                                       std::int64_t m, std::int64_t n) {
  switch (act) {
    case Act::relu:
      return forward_rows<Act::relu>(bias, y, keep_z, m, n);
    case Act::sigmoid:
      return forward_rows<Act::sigmoid>(bias, y, keep_z, m, n);
    case Act::tanh:
      return forward_rows<Act::tanh>(bias, y, keep_z, m, n);
    case Act::gelu:
      return forward_rows<Act::gelu>(bias, y, keep_z, m, n);
    default:
      return forward_rows<Act::identity>(bias, y, keep_z, m, n);
  }
}
DESCENT_ALWAYS_INLINE void backward_act(Act act, const float* y, const float* kept_z, float* dh,
                                        float* db, std::int64_t m, std::int64_t n) {
  switch (act) {
    case Act::relu:
      return backward_rows<Act::relu>(y, kept_z, dh, db, m, n);
    case Act::sigmoid:
      return backward_rows<Act::sigmoid>(y, kept_z, dh, db, m, n);
    case Act::tanh:
      return backward_rows<Act::tanh>(y, kept_z, dh, db, m, n);
    case Act::gelu:
      return backward_rows<Act::gelu>(y, kept_z, dh, db, m, n);
    default:
      return backward_rows<Act::identity>(y, kept_z, dh, db, m, n);
  }
}

// What every task reads: the network, its transposed weights, the batch, the loss.
struct Plan {
  const detail::DenseNetworkLayer* layers;
  int count;
  const std::int64_t* width;  // count + 1
  const float* const* wt;     // per layer Wᵀ [in, out]
  MatrixView<const float> x;
  detail::SliceStepLoss objective;
  float g_scale;  // the loss gradient's factor, as the loss op's (loss.cpp)
  // Per thread: slice rows of every layer's output, two adjoint buffers.
  const std::int64_t* y_at;  // per layer, floats from the thread's memory
  const std::int64_t* z_at;  // per layer: its pre-activations (kept for gelu's derivative)
  std::int64_t dh_at[2];
  // Per task: the gradient, per layer dW [out, in] then db [out].
  const std::int64_t* dw_at;
  const std::int64_t* db_at;
};

// One task: rows [r_begin, r_end) slice by slice; its gradient sums into `grad` (zeroed here),
// its loss sum returned. The products are the variant's tiles (L lanes, R rows).
template <int L, int R>
DESCENT_ALWAYS_INLINE double task_body(const Plan& p, std::int64_t r_begin, std::int64_t r_end,
                                       float* mem, float* grad) {
  const int count = p.count;
  alignas(64) float packed[kMaxDepth * L];  // product's last columns
  alignas(64) float part[R * L];
  std::fill_n(grad, p.db_at[count - 1] + p.width[count], 0.0f);
  double loss = 0.0;
  for (std::int64_t s0 = r_begin; s0 < r_end; s0 += kSliceRows) {
    const std::int64_t m = std::min(kSliceRows, r_end - s0);
    // Forward: every layer's output rows of this slice.
    const float* h = p.x.data + s0 * p.x.ld;
    std::int64_t ldh = p.x.ld;
    for (int l = 0; l < count; ++l) {
      const std::int64_t in = p.width[l], out = p.width[l + 1];
      float* y = mem + p.y_at[l];
      product<L, R, false>(Operands{h, ldh, 1, p.wt[l], out, y, out}, m, out, in, packed, part);
      const detail::DenseNetworkLayer& layer = p.layers[l];
      forward_act(static_cast<Act>(layer.act), layer.b.empty() ? nullptr : layer.b.data, y,
                  mem + p.z_at[l], m, out);
      h = y;
      ldh = out;
    }
    // The loss and its gradient at the outputs, row by row with the loss ops' own rows.
    const std::int64_t out = p.width[count];
    float* dh = mem + p.dh_at[0];
    float* other = mem + p.dh_at[1];
    const detail::SliceStepLoss& o = p.objective;
    for (std::int64_t r = 0; r < m; ++r) {
      const float* yr = h + r * out;
      float* g = dh + r * out;
      switch (o.kind) {
        case detail::SliceLoss::mse:
          loss += mse_row(yr, o.targets.data + (s0 + r) * o.targets.ld, g, out, p.g_scale);
          break;
        case detail::SliceLoss::sigmoid_bce:
          loss += sigmoid_bce_row(yr, o.targets.data + (s0 + r) * o.targets.ld, g, out, p.g_scale);
          break;
        case detail::SliceLoss::softmax_cross_entropy:
          loss += softmax_ce_row(yr, g, out, o.labels.data[s0 + r], p.g_scale);
          break;
      }
    }
    // Backward, last layer first.
    for (int l = count - 1; l >= 0; --l) {
      const std::int64_t in = p.width[l], o = p.width[l + 1];
      const detail::DenseNetworkLayer& layer = p.layers[l];
      const float* y = mem + p.y_at[l];
      float* db = layer.db.empty() ? nullptr : grad + p.db_at[l];
      backward_act(static_cast<Act>(layer.act), y, mem + p.z_at[l], dh, db, m, o);
      const float* hin = l == 0 ? p.x.data + s0 * p.x.ld : mem + p.y_at[l - 1];
      const std::int64_t ldin = l == 0 ? p.x.ld : in;
      // dW [o, in] += Σ_r dz[r, i] h[r, j]
      product<L, R, true>(Operands{dh, 1, o, hin, ldin, grad + p.dw_at[l], in}, o, in, m, packed,
                          part);
      if (l > 0) {
        // dh_prev [m, in] = dz [m, o] · W [o, in]
        product<L, R, false>(Operands{dh, o, 1, layer.w.data, layer.w.ld, other, in}, m, in, o,
                             packed, part);
        std::swap(dh, other);
      }
    }
  }
  return loss;
}

#if DESCENT_HAS_ISA_VARIANTS
#define DESCENT_TARGET_AVX2_FMA_SLICES __attribute__((target("avx2,fma")))
#else
#define DESCENT_TARGET_AVX2_FMA_SLICES
#endif
using TaskFn = double (*)(const Plan&, std::int64_t, std::int64_t, float*, float*);
double task_base(const Plan& p, std::int64_t b, std::int64_t e, float* mem, float* grad) {
  return task_body<4, 6>(p, b, e, mem, grad);
}
DESCENT_TARGET_AVX2_FMA_SLICES double task_avx2(const Plan& p, std::int64_t b, std::int64_t e,
                                                float* mem, float* grad) {
  return task_body<8, 6>(p, b, e, mem, grad);
}
DESCENT_TARGET_AVX512 double task_avx512(const Plan& p, std::int64_t b, std::int64_t e, float* mem,
                                         float* grad) {
  return task_body<16, 12>(p, b, e, mem, grad);
}
#if DESCENT_HAS_AVX512_BLOCKS
// The AVX-512 blocks on AVX2 vectors (DESCENT_CPU_ISA=avx512-blocks: kernels/cpu/isa.hpp).
DESCENT_TARGET_AVX2_FMA_SLICES double task_avx512_blocks(const Plan& p, std::int64_t b,
                                                         std::int64_t e, float* mem, float* grad) {
  return task_body<16, 12>(p, b, e, mem, grad);
}
#else
#define task_avx512_blocks task_avx2  // never chosen
#endif

TaskFn task_variant() {
#if DESCENT_HAS_ISA_VARIANTS
  switch (cpu_isa()) {
    case Isa::avx512:
      return &task_avx512;
    case Isa::avx2:
      if (avx512_blocks_on_avx2()) return &task_avx512_blocks;
      __builtin_cpu_init();
      if (__builtin_cpu_supports("fma")) return &task_avx2;
      break;
    default:
      break;
  }
#endif
  return &task_base;
}

// Rows per task: a function of the batch alone (so the bits do not depend on the thread count),
// whole slices, about an eighth of the batch so that several threads have work, at most 1024
// rows unless that would make more than 64 tasks (each holds a copy of the gradient).
std::int64_t task_rows(std::int64_t batch) {
  const auto slices = [](std::int64_t n) { return (n + kSliceRows - 1) / kSliceRows * kSliceRows; };
  const std::int64_t most = std::max<std::int64_t>(1024, slices((batch + 63) / 64));
  return std::clamp<std::int64_t>(slices((batch + 7) / 8), kSliceRows, most);
}

}  // namespace

void dense_slice_step(const Context& ctx, const detail::DenseNetworkLayer* layers, int count,
                      MatrixView<const float> x, const detail::SliceStepLoss& objective,
                      std::int64_t mean_rows, VectorView<float> loss) {
  // Fixed-size bookkeeping and the workspace only: a step allocates nothing.
  constexpr int kMax = detail::kMaxSliceStepLayers;
  std::array<std::int64_t, kMax + 1> width{};
  std::array<std::int64_t, kMax> wt_at{}, y_at{}, z_at{}, dw_at{}, db_at{};
  std::array<const float*, kMax> wt{};
  if (count < 1 || count > kMax) {
    throw ArgumentError("dense_slice_step: " + std::to_string(count) + " layers; 1 to " +
                        std::to_string(kMax) + " expected");
  }
  width[0] = layers[0].w.cols;
  for (int l = 0; l < count; ++l) width[l + 1] = layers[l].w.rows;
  for (int l = 0; l <= count; ++l) {
    if (width[l] < 1 || width[l] > detail::kMaxSliceStepWidth) {
      throw ArgumentError("dense_slice_step: a layer of " + std::to_string(width[l]) +
                          " features; 1 to " + std::to_string(detail::kMaxSliceStepWidth) +
                          " expected");
    }
  }
  const std::int64_t batch = x.rows, out = width[count];
  // Memory: the transposed weights, per thread the slice rows, per task the gradient and the
  // loss.
  std::int64_t wt_floats = 0, thread_floats = 0, params = 0;
  const auto lines = [](std::int64_t n) { return (n + 15) / 16 * 16; };
  const std::int64_t widest = *std::max_element(width.begin(), width.begin() + count + 1);
  for (int l = 0; l < count; ++l) {
    wt_at[l] = wt_floats;
    wt_floats += lines(width[l] * width[l + 1]);
    y_at[l] = thread_floats;
    thread_floats += lines(kSliceRows * width[l + 1]);
    z_at[l] = thread_floats;
    if (layers[l].act == Activation::gelu) thread_floats += lines(kSliceRows * width[l + 1]);
    dw_at[l] = params;
    params += width[l] * width[l + 1];
    db_at[l] = params;
    params += width[l + 1];
  }
  const std::int64_t dh0 = thread_floats, dh1 = dh0 + lines(kSliceRows * widest);
  thread_floats = dh1 + lines(kSliceRows * widest);
  const std::int64_t per_task = task_rows(batch), tasks = (batch + per_task - 1) / per_task;
  const int threads = static_cast<int>(std::min<std::int64_t>(ctx.threads(), tasks));
  const std::int64_t grad_floats = lines(params), loss_floats = lines(2 * tasks);
  float* const memory =
      cpu::workspace(ctx, static_cast<std::size_t>(wt_floats + threads * thread_floats +
                                                   tasks * grad_floats + loss_floats));
  float* const thread_memory = memory + wt_floats;
  float* const sums = thread_memory + threads * thread_floats;
  double* const task_loss =
      reinterpret_cast<double*>(sums + tasks * grad_floats);  // 64-byte aligned
  for (int l = 0; l < count; ++l) {
    float* t = memory + wt_at[l];
    const MatrixView<const float>& w = layers[l].w;
    for (std::int64_t i = 0; i < w.rows; ++i) {
      for (std::int64_t j = 0; j < w.cols; ++j) t[j * w.rows + i] = w.data[i * w.ld + j];
    }
    wt[l] = t;
  }
  // The mean's count and the gradient's factor, as mse_loss, sigmoid_bce and
  // softmax_cross_entropy (loss.cpp) compute them.
  const bool per_row = objective.kind == detail::SliceLoss::softmax_cross_entropy;
  const double n = static_cast<double>(mean_rows) * static_cast<double>(per_row ? 1 : out);
  const float g_scale = per_row ? 1.0f / static_cast<float>(mean_rows)
                        : objective.kind == detail::SliceLoss::mse ? static_cast<float>(2.0 / n)
                                                                   : static_cast<float>(1.0 / n);
  const Plan plan{layers,      count,      width.data(), wt.data(),
                  x,           objective,  g_scale,      y_at.data(),
                  z_at.data(), {dh0, dh1}, dw_at.data(), db_at.data()};
  static const TaskFn task = task_variant();
#pragma omp parallel num_threads(threads)
  {
    float* const mem = thread_memory + std::int64_t(omp_get_thread_num()) * thread_floats;
#pragma omp for schedule(static)
    for (std::int64_t t = 0; t < tasks; ++t) {
      task_loss[t] = task(plan, t * per_task, std::min(batch, (t + 1) * per_task), mem,
                          sums + t * grad_floats);
    }
  }
  // The tasks' sums in task order, written to the layers' gradients.
#pragma omp parallel for num_threads(ctx.threads()) schedule(static)
  for (std::int64_t e = 0; e < params; ++e) {
    float s = 0.0f;
    for (std::int64_t t = 0; t < tasks; ++t) s += sums[t * grad_floats + e];
    sums[e] = s;  // task 0's row holds the total (each e read before it is written)
  }
  for (int l = 0; l < count; ++l) {
    const detail::DenseNetworkLayer& layer = layers[l];
    const float* dw = sums + dw_at[l];
    for (std::int64_t i = 0; i < width[l + 1]; ++i) {
      std::copy_n(dw + i * width[l], width[l], layer.dw.data + i * layer.dw.ld);
    }
    if (!layer.db.empty()) std::copy_n(sums + db_at[l], width[l + 1], layer.db.data);
  }
  double total = 0.0;
  for (std::int64_t t = 0; t < tasks; ++t) total += task_loss[t];
  loss.data[0] = static_cast<float>(total / n);
}

}  // namespace descent::cpu
