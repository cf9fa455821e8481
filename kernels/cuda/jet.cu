// Jet activation on the GPU: one thread per element of the value block, which reads and writes
// its partners in the other blocks (kernels/math/jet.hpp, the same code as the CPU's), and the
// bias gradient as fixed chunks of rows summed in a fixed order (no float atomics, so repeat
// runs are bit-identical).
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/math/jet.hpp"

namespace descent::cuda {

namespace {

using detail::JetAct;

// Rows per partial sum of the bias gradient.
constexpr std::int64_t kJetRowChunk = 64;
// Most blocks of the residual loss: its partial sums, one per block, are added by one block.
constexpr std::int64_t kMaxResidualBlocks = 1024;

// One stacked jet matrix as the kernels see it: row r of the value block at data + r * ld, and
// its partner in block b at b * stride further (stride = batch * ld).
template <class T>
struct Stacked {
  T* data;
  std::int64_t ld, stride;
};

template <class T>
Stacked<T> stacked(MatrixView<T> m, std::int64_t batch) {
  return {m.data, m.ld, batch * m.ld};
}

// CUDA kernels

template <JetAct A>
__global__ void jet_forward_kernel(detail::JetShape shape, const float* weights, std::int64_t batch,
                                   std::int64_t cols, const float* bias, Stacked<float> z,
                                   Stacked<float> h) {
  const std::int64_t n = batch * cols;
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) {
    const std::int64_t r = i / cols, j = i - r * cols;
    float* zi = z.data + r * z.ld + j;
    if (bias != nullptr) *zi += bias[j];
    detail::jet_forward_element<A>(shape, weights, zi, z.stride, h.data + r * h.ld + j, h.stride);
  }
}

template <JetAct A>
__global__ void jet_backward_kernel(detail::JetShape shape, const float* weights,
                                    std::int64_t batch, std::int64_t cols, Stacked<const float> z,
                                    Stacked<const float> dh, Stacked<float> dz) {
  const std::int64_t n = batch * cols;
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) {
    const std::int64_t r = i / cols, j = i - r * cols;
    detail::jet_backward_element<A>(shape, weights, z.data + r * z.ld + j, z.stride,
                                    dh.data + r * dh.ld + j, dh.stride, dz.data + r * dz.ld + j,
                                    dz.stride);
  }
}

// partial[c, j] = Σ of z̄ (the value block of dz) over the rows of chunk c, in row order.
__global__ void jet_bias_partial_kernel(const float* dz, std::int64_t ld, std::int64_t batch,
                                        std::int64_t cols, float* partial) {
  const std::int64_t chunks = (batch + kJetRowChunk - 1) / kJetRowChunk;
  for (std::int64_t i = global_thread(); i < chunks * cols; i += grid_stride()) {
    const std::int64_t c = i / cols, j = i - c * cols;
    const std::int64_t r1 = min(batch, (c + 1) * kJetRowChunk);
    float sum = 0.0f;
    for (std::int64_t r = c * kJetRowChunk; r < r1; ++r) sum += dz[r * ld + j];
    partial[i] = sum;
  }
}

// db[j] (+)= Σ_c partial[c, j], in chunk order.
__global__ void jet_bias_sum_kernel(const float* partial, std::int64_t chunks, std::int64_t cols,
                                    float* db, bool accumulate) {
  for (std::int64_t j = global_thread(); j < cols; j += grid_stride()) {
    float sum = 0.0f;
    for (std::int64_t c = 0; c < chunks; ++c) sum += partial[c * cols + j];
    db[j] = accumulate ? db[j] + sum : sum;
  }
}

// Per element: the residual's adjoints to grad; per block: the sum of weight · r² to
// partials[blockIdx.x] (finalize_mean adds the blocks in a fixed order).
__global__ void __launch_bounds__(kThreads)
    pde_residual_kernel(detail::JetShape shape, const float* coefficients, std::int64_t batch,
                        std::int64_t cols, Stacked<const float> y, const float* source,
                        std::int64_t ld_source, float weight, float scale, Stacked<float> grad,
                        float* partials) {
  const std::int64_t n = batch * cols;
  float acc = 0.0f;
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) {
    const std::int64_t r = i / cols, j = i - r * cols;
    const float f = source != nullptr ? source[r * ld_source + j] : 0.0f;
    acc +=
        weight * detail::pde_residual_element(shape, coefficients, y.data + r * y.ld + j, y.stride,
                                              f, scale, grad.data + r * grad.ld + j, grad.stride);
  }
  __shared__ float shared[kThreads];
  const float total = block_sum<kThreads>(acc, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

}  // namespace

// kernel launchers

void jet_activation_forward(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                            VectorView<const float> b, MatrixView<float> z, MatrixView<float> h) {
  const cudaStream_t stream = stream_of(ctx);
  const detail::JetShape shape{blocks.directions, blocks.second_order};
  const std::int64_t n = blocks.batch * z.cols;
  detail::dispatch_jet_activation(static_cast<int>(act), [&](auto a) {
    constexpr JetAct A = decltype(a)::value;
    jet_forward_kernel<A><<<grid_for(n), kThreads, 0, stream>>>(
        shape, blocks.weights.data, blocks.batch, z.cols, b.data, stacked(z, blocks.batch),
        stacked(h, blocks.batch));
    DESCENT_LAUNCH_CHECK(jet_forward_kernel);
  });
}

void jet_activation_backward(const Context& ctx, const JetBlocks& blocks, JetActivation act,
                             MatrixView<const float> z, MatrixView<const float> dh,
                             MatrixView<float> dz, VectorView<float> db, bool accumulate) {
  const cudaStream_t stream = stream_of(ctx);
  const detail::JetShape shape{blocks.directions, blocks.second_order};
  const std::int64_t cols = z.cols, n = blocks.batch * cols;
  detail::dispatch_jet_activation(static_cast<int>(act), [&](auto a) {
    constexpr JetAct A = decltype(a)::value;
    jet_backward_kernel<A><<<grid_for(n), kThreads, 0, stream>>>(
        shape, blocks.weights.data, blocks.batch, cols, stacked(z, blocks.batch),
        stacked(dh, blocks.batch), stacked(dz, blocks.batch));
    DESCENT_LAUNCH_CHECK(jet_backward_kernel);
  });
  if (db.empty()) return;
  const std::int64_t chunks = (blocks.batch + kJetRowChunk - 1) / kJetRowChunk;
  float* partial =
      static_cast<float*>(scratch(ctx, sizeof(float) * static_cast<std::size_t>(chunks * cols)));
  jet_bias_partial_kernel<<<grid_for(chunks * cols), kThreads, 0, stream>>>(
      dz.data, dz.ld, blocks.batch, cols, partial);
  DESCENT_LAUNCH_CHECK(jet_bias_partial_kernel);
  jet_bias_sum_kernel<<<grid_for(cols), kThreads, 0, stream>>>(partial, chunks, cols, db.data,
                                                               accumulate);
  DESCENT_LAUNCH_CHECK(jet_bias_sum_kernel);
}

void pde_residual_loss(const Context& ctx, const JetBlocks& blocks, MatrixView<const float> y,
                       VectorView<const float> coefficients, MatrixView<const float> source,
                       float weight, VectorView<float> loss, bool accumulate,
                       MatrixView<float> grad) {
  const cudaStream_t stream = stream_of(ctx);
  const detail::JetShape shape{blocks.directions, blocks.second_order};
  const std::int64_t n = blocks.batch * y.cols;
  const double count = static_cast<double>(n);
  const unsigned grid = grid_for(n, kThreads, kMaxResidualBlocks);
  auto* partials = static_cast<float*>(scratch(ctx, sizeof(float) * grid));
  pde_residual_kernel<<<grid, kThreads, 0, stream>>>(
      shape, coefficients.data, blocks.batch, y.cols, stacked(y, blocks.batch), source.data,
      source.ld, weight, static_cast<float>(2.0 * weight / count), stacked(grad, blocks.batch),
      partials);
  DESCENT_LAUNCH_CHECK(pde_residual_kernel);
  finalize_mean(ctx, partials, grid, count, loss.data, accumulate);
}

}  // namespace descent::cuda
