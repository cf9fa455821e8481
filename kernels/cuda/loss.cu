// Losses: each kernel writes d(loss)/d(input) and per-block partial sums of the loss in one pass
// over the input; finalize_mean then reduces the partials in a fixed order into loss[0].
#include <cmath>
#include <string>

#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/math/activation.hpp"
#include "kernels/math/loss.hpp"

namespace descent::cuda {

namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = kThreads / kWarp;  // one warp per row
// Grids depend on the problem size only (never on the card), so the order of every sum, and so
// the loss bits, are the same on every run.
constexpr std::int64_t kMaxLossBlocks = 1024;

__global__ void __launch_bounds__(kThreads)
    finalize_mean_kernel(const float* partials, std::int64_t n, double count, float* loss,
                         bool accumulate) {
  __shared__ double shared[kThreads];
  double acc = 0.0;
  for (std::int64_t i = threadIdx.x; i < n; i += kThreads) acc += partials[i];
  const double total = block_sum<kThreads>(acc, shared);
  if (threadIdx.x == 0) {
    const float mean = static_cast<float>(total / count);
    loss[0] = accumulate ? loss[0] + mean : mean;
  }
}

// Running (max, Σ exp(x - max)) of a row, merged so that both sides' order cannot matter: every
// operation is commutative, so butterfly partners compute bit-identical results.
struct MaxSum {
  float m, s;
};

// A side that has seen no finite logit holds s = 0 (it adds nothing; its m may be -inf, where
// exp(m - m) would be NaN) or s = NaN (a NaN logit, which must reach the loss: fmaxf drops it
// from m, so the test is on s, not on m == -inf).
__device__ inline MaxSum merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.m, b.m);
  const float sa = a.s == 0.0f ? 0.0f : a.s * expf(a.m - m);
  const float sb = b.s == 0.0f ? 0.0f : b.s * expf(b.m - m);
  return {m, sa + sb};
}

// The gradient of one logit, (p - onehot) · coeff, from its probability p = exp(x - max) / s.
// Both softmax kernels divide each exponential by the row sum; the CPU multiplies by its
// reciprocal instead (see math/loss.hpp).
__device__ inline float softmax_ce_grad(float p, bool is_label, float coeff) {
  return (p - (is_label ? 1.0f : 0.0f)) * coeff;
}

// Thread 0 stores the block's partial sum: the warps' row-loss sums added in warp order. Every
// lane of a warp holds the same sum; lane 0's copy is used.
__device__ inline void store_block_partial(float warp_sum, int warp, int lane, float* partials) {
  __shared__ float warp_sums[kRowsPerBlock];
  if (lane == 0) warp_sums[warp] = warp_sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0.0f;
    for (int w = 0; w < kRowsPerBlock; ++w) s += warp_sums[w];
    partials[blockIdx.x] = s;
  }
}

// One warp per row: max and sum of exponentials in one online pass, then the gradient
// (softmax - onehot) * coeff in a second pass over the (cached) row; no probability matrix.
__global__ void __launch_bounds__(kThreads)
    softmax_cross_entropy_kernel(const float* logits, std::int64_t ld, const std::int32_t* labels,
                                 std::int64_t rows, std::int64_t cols, float coeff, float* grad,
                                 std::int64_t ldg, float* partials) {
  const int warp = static_cast<int>(threadIdx.x) / kWarp;
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  float loss_sum = 0.0f;
  for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * kRowsPerBlock + warp; r < rows;
       r += static_cast<std::int64_t>(gridDim.x) * kRowsPerBlock) {
    const float* x = logits + r * ld;
    MaxSum ms{-INFINITY, 0.0f};
    for (std::int64_t c = lane; c < cols; c += kWarp) {
      const float v = x[c];
      if (v > ms.m) {
        ms.s = ms.s * expf(ms.m - v) + 1.0f;
        ms.m = v;
      } else if (v != -INFINITY) {
        ms.s += expf(v - ms.m);  // NaN logits fall through here and poison the sum, as they should
      }
    }
    for (int offset = kWarp / 2; offset > 0; offset >>= 1) {
      const MaxSum other{__shfl_xor_sync(0xffffffffu, ms.m, offset),
                         __shfl_xor_sync(0xffffffffu, ms.s, offset)};
      ms = merge(ms, other);
    }
    const std::int32_t label = labels[r];
    const bool valid = label >= 0 && label < cols;
    const float row_loss = valid ? detail::softmax_ce_row_loss<float>(ms.s, x[label], ms.m) : NAN;
    if (grad) {
      float* g = grad + r * ldg;
      for (std::int64_t c = lane; c < cols; c += kWarp) {
        const float p = expf(x[c] - ms.m) / ms.s;
        g[c] = valid ? softmax_ce_grad(p, c == label, coeff) : NAN;
      }
    }
    loss_sum += row_loss;  // identical in every lane; lane 0's copy is used
  }
  store_block_partial(loss_sum, warp, lane, partials);
}

// Rows of up to kRegCols columns live in registers (kChunks float4 a lane), read once with
// 16-byte loads: the kernel moves each byte once (logits in, gradient out) and exponentiates each
// logit once. Needs 16-byte aligned rows; softmax_cross_entropy picks it when they are.
constexpr int kVec = 4;
constexpr int kChunks = 8;
constexpr std::int64_t kRegCols = std::int64_t(kWarp) * kVec * kChunks;

__global__ void __launch_bounds__(kThreads)
    softmax_cross_entropy_rows_kernel(const float* logits, std::int64_t ld,
                                      const std::int32_t* labels, std::int64_t rows,
                                      std::int64_t cols, float coeff, float* grad, std::int64_t ldg,
                                      float* partials) {
  const int warp = static_cast<int>(threadIdx.x) / kWarp;
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  float loss_sum = 0.0f;
  for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * kRowsPerBlock + warp; r < rows;
       r += static_cast<std::int64_t>(gridDim.x) * kRowsPerBlock) {
    const float* x = logits + r * ld;
    float v[kChunks][kVec];
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
      const std::int64_t c0 = (static_cast<std::int64_t>(i) * kWarp + lane) * kVec;
      if (c0 + kVec <= cols) {
        const float4 q = __ldcs(reinterpret_cast<const float4*>(x + c0));  // read once: stream
        v[i][0] = q.x;
        v[i][1] = q.y;
        v[i][2] = q.z;
        v[i][3] = q.w;
      } else {
#pragma unroll
        for (int j = 0; j < kVec; ++j) v[i][j] = c0 + j < cols ? x[c0 + j] : -INFINITY;
      }
    }
    // Max, then Σ exp(x - max). Butterfly reductions of commutative operations leave the same
    // bits in every lane. A NaN logit is skipped by fmaxf but poisons the sum, as it should.
    float m = -INFINITY;
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
#pragma unroll
      for (int j = 0; j < kVec; ++j) m = fmaxf(m, v[i][j]);
    }
    for (int offset = kWarp / 2; offset > 0; offset >>= 1) {
      m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
    }
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        v[i][j] = expf(v[i][j] - m);  // padding (-inf) gives 0
        s += v[i][j];
      }
    }
    for (int offset = kWarp / 2; offset > 0; offset >>= 1) {
      s += __shfl_xor_sync(0xffffffffu, s, offset);
    }
    const std::int32_t label = labels[r];
    const bool valid = label >= 0 && label < cols;
    loss_sum += valid ? detail::softmax_ce_row_loss<float>(s, x[label], m) : NAN;
    float* g = grad + r * ldg;
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
      const std::int64_t c0 = (static_cast<std::int64_t>(i) * kWarp + lane) * kVec;
      float out[kVec];
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        out[j] = valid ? softmax_ce_grad(v[i][j] / s, c0 + j == label, coeff) : NAN;
      }
      if (c0 + kVec <= cols) {
        __stcs(reinterpret_cast<float4*>(g + c0), make_float4(out[0], out[1], out[2], out[3]));
      } else {
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          if (c0 + j < cols) g[c0 + j] = out[j];
        }
      }
    }
  }
  store_block_partial(loss_sum, warp, lane, partials);
}

// The terms of one element, built from math/loss.hpp; coeff = grad_scale / N. What stays here
// (the MSE gradient's rounding, fmaxf, sigmoidf) is the GPU's own form: see math/loss.hpp.
// mean (pred - target)²: grad = 2 (pred - target) * coeff.
struct MseTerm {
  __device__ float operator()(float p, float t, float coeff, float& g) const {
    const float d = detail::mse_residual(p, t);
    g = 2.0f * d * coeff;
    return detail::mse_value<float>(d);
  }
};

// BCE with logits: grad = (sigmoid(z) - t) * coeff.
struct BceTerm {
  __device__ float operator()(float z, float t, float coeff, float& g) const {
    g = detail::bce_grad(detail::sigmoidf(z), t, coeff);
    return detail::bce_value(fmaxf(z, 0.0f), z, t, detail::bce_exp(z));
  }
};

template <class Term>
__global__ void __launch_bounds__(kThreads)
    elementwise_loss_kernel(const float* pred, std::int64_t ldp, const float* target,
                            std::int64_t ldt, std::int64_t rows, std::int64_t cols, float coeff,
                            float* grad, std::int64_t ldg, float* partials) {
  const std::int64_t n = rows * cols;
  float acc = 0.0f;
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) {
    const std::int64_t r = i / cols, c = i - r * cols;
    float g;
    acc += Term{}(pred[r * ldp + c], target[r * ldt + c], coeff, g);
    if (grad) grad[r * ldg + c] = g;
  }
  __shared__ float shared[kThreads];
  const float total = block_sum<kThreads>(acc, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

template <class Term>
void elementwise_loss(const Context& ctx, MatrixView<const float> pred,
                      MatrixView<const float> target, const LossOutput& out) {
  const std::int64_t elements = pred.rows * pred.cols;
  if (elements == 0) return;
  const unsigned blocks = grid_for(elements, kThreads, kMaxLossBlocks);
  auto* partials = static_cast<float*>(scratch(ctx, sizeof(float) * blocks));
  // The mean is over the whole batch's elements (LossOutput::mean_rows for a shard).
  const std::int64_t n = (out.mean_rows > 0 ? out.mean_rows : pred.rows) * pred.cols;
  const float coeff = static_cast<float>(static_cast<double>(out.grad_scale) / n);
  elementwise_loss_kernel<Term><<<blocks, kThreads, 0, stream_of(ctx)>>>(
      pred.data, pred.ld, target.data, target.ld, pred.rows, pred.cols, coeff, out.grad.data,
      out.grad.ld, partials);
  DESCENT_LAUNCH_CHECK(elementwise_loss_kernel);
  finalize_mean(ctx, partials, blocks, static_cast<double>(n), out.loss.data, out.accumulate);
}

}  // namespace

void finalize_mean(const Context& ctx, const float* partials, std::int64_t n_partials, double count,
                   float* loss, bool accumulate) {
  finalize_mean_kernel<<<1, kThreads, 0, stream_of(ctx)>>>(partials, n_partials, count, loss,
                                                           accumulate);
  DESCENT_LAUNCH_CHECK(finalize_mean_kernel);
}

void mse_loss(const Context& ctx, MatrixView<const float> pred, MatrixView<const float> target,
              const LossOutput& out) {
  elementwise_loss<MseTerm>(ctx, pred, target, out);
}

void sigmoid_bce(const Context& ctx, MatrixView<const float> logits,
                 MatrixView<const float> targets, const LossOutput& out) {
  elementwise_loss<BceTerm>(ctx, logits, targets, out);
}

void softmax_cross_entropy(const Context& ctx, MatrixView<const float> logits,
                           VectorView<const std::int32_t> labels, const LossOutput& out) {
  const std::int64_t rows = logits.rows;
  if (rows == 0) return;
  const unsigned blocks = grid_for_rows(rows, kRowsPerBlock, kMaxLossBlocks);
  auto* partials = static_cast<float*>(scratch(ctx, sizeof(float) * blocks));
  const std::int64_t n = out.mean_rows > 0 ? out.mean_rows : rows;  // the whole batch's rows
  const float coeff = static_cast<float>(static_cast<double>(out.grad_scale) / n);
  const bool rows_fit = out.grad.data != nullptr && logits.cols <= kRegCols &&
                        logits.ld % kVec == 0 && out.grad.ld % kVec == 0 &&
                        alignment_of(logits.data) >= 16 && alignment_of(out.grad.data) >= 16;
  if (rows_fit) {
    softmax_cross_entropy_rows_kernel<<<blocks, kThreads, 0, stream_of(ctx)>>>(
        logits.data, logits.ld, labels.data, rows, logits.cols, coeff, out.grad.data, out.grad.ld,
        partials);
    DESCENT_LAUNCH_CHECK(softmax_cross_entropy_rows_kernel);
  } else {
    softmax_cross_entropy_kernel<<<blocks, kThreads, 0, stream_of(ctx)>>>(
        logits.data, logits.ld, labels.data, rows, logits.cols, coeff, out.grad.data, out.grad.ld,
        partials);
    DESCENT_LAUNCH_CHECK(softmax_cross_entropy_kernel);
  }
  finalize_mean(ctx, partials, blocks, static_cast<double>(n), out.loss.data, out.accumulate);
}

// ---------------------------------------------------------------- range checks
// Each thread that meets a failing value lowers *first to its index; the host then reads *first
// and, when one failed, the value itself.

namespace {

__global__ void first_label_outside_kernel(const std::int32_t* labels, std::int64_t n,
                                           std::int64_t classes, unsigned long long* first) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int32_t v = labels[i];
    if (v < 0 || v >= classes) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

__global__ void first_target_outside_unit_kernel(const float* t, std::int64_t rows,
                                                 std::int64_t cols, std::int64_t ld,
                                                 unsigned long long* first) {
  const std::int64_t n = rows * cols;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const float v = t[(i / cols) * ld + i % cols];
    if (!(v >= 0.0f && v <= 1.0f)) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

constexpr unsigned long long kNone = ~0ull;

// Scratch for the answer, set to kNone; refuses a stream being captured (the answer must be read
// back before the call returns).
unsigned long long* start_check(const Context& ctx, const char* what) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  DESCENT_CUDA_CHECK(cudaStreamIsCapturing(stream_of(ctx), &capture));
  if (capture != cudaStreamCaptureStatusNone) {
    throw DeviceError(std::string("the ") + what +
                      " cannot be checked while the stream is being captured into a CUDA graph "
                      "(the check reads its answer back); check them before capturing");
  }
  auto* first = static_cast<unsigned long long*>(scratch(ctx, sizeof(unsigned long long)));
  DESCENT_CUDA_CHECK(cudaMemsetAsync(first, 0xff, sizeof *first, stream_of(ctx)));
  return first;
}

template <class T>
T read_back(const Context& ctx, const void* src) {
  T value{};
  DESCENT_CUDA_CHECK(
      cudaMemcpyAsync(&value, src, sizeof value, cudaMemcpyDeviceToHost, stream_of(ctx)));
  DESCENT_CUDA_CHECK(cudaStreamSynchronize(stream_of(ctx)));
  return value;
}

}  // namespace

detail::ValueCheck find_label_outside(const Context& ctx, VectorView<const std::int32_t> labels,
                                      std::int64_t classes) {
  if (labels.size == 0) return {};
  unsigned long long* first = start_check(ctx, "labels");
  first_label_outside_kernel<<<grid_for(labels.size), kThreads, 0, stream_of(ctx)>>>(
      labels.data, labels.size, classes, first);
  DESCENT_LAUNCH_CHECK(first_label_outside_kernel);
  const auto at = read_back<unsigned long long>(ctx, first);
  if (at == kNone) return {};
  const auto i = static_cast<std::int64_t>(at);
  return {i, double(read_back<std::int32_t>(ctx, labels.data + i))};
}

detail::ValueCheck find_target_outside_unit(const Context& ctx, MatrixView<const float> targets) {
  const std::int64_t n = targets.rows * targets.cols;
  if (n == 0) return {};
  unsigned long long* first = start_check(ctx, "targets");
  first_target_outside_unit_kernel<<<grid_for(n), kThreads, 0, stream_of(ctx)>>>(
      targets.data, targets.rows, targets.cols, targets.ld, first);
  DESCENT_LAUNCH_CHECK(first_target_outside_unit_kernel);
  const auto at = read_back<unsigned long long>(ctx, first);
  if (at == kNone) return {};
  const auto i = static_cast<std::int64_t>(at);
  const float* value = targets.data + (i / targets.cols) * targets.ld + i % targets.cols;
  return {i, double(read_back<float>(ctx, value))};
}

}  // namespace descent::cuda
