// The fused forward pass of a stack of hidden layers of one width (16 to 128): one kernel runs
// every layer, with the activations of a tile of rows kept in shared memory from one layer to
// the next, so that only the stack's input, the weights and each layer's output (which the
// backward pass reads) cross device memory.
//
// A block of kWarps warps takes tiles of kTileRows rows (16 per warp) in turn. Per layer, the
// block stages the layer's bf16 weights in shared memory; each warp multiplies its own 16 rows
// by them with WMMA (bf16 in, fp32 accumulation), then, one 16 x 16 accumulator tile at a time,
// adds the bias, applies the activation in fp32, rounds to bf16 and writes the result both to
// device memory (the layer's output) and over its rows in shared memory (the next layer's
// input). A warp reads and writes only its own rows, so the layers meet at one block barrier
// each, around the weights. Rows past the end of the batch are zeros and are never written.
#include <cuda_bf16.h>
#include <mma.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/fused_mlp.cuh"
#include "kernels/math/activation.hpp"

namespace descent::cuda {

namespace {

namespace wmma = nvcuda::wmma;

constexpr int kWarps = 4;
constexpr int kFusedThreads = 32 * kWarps;
constexpr int kTileRows = 16 * kWarps;
constexpr int kMaxLayers = 16;  // layers per launch (a longer stack takes several launches)

// The layers of one launch, passed by value as a kernel parameter.
struct Stack {
  detail::FusedLayer layer[kMaxLayers];
  int count = 0;
};

// bf16 row stride in shared memory: 8 more than the width, so that the rows of a WMMA tile fall
// in different banks (and every tile stays 32-byte aligned, as WMMA needs).
template <int W>
constexpr int kLd = W + 8;

template <int W>
constexpr std::size_t shared_bytes() {
  return sizeof(__nv_bfloat16) *
         (static_cast<std::size_t>(W) * kLd<W> +          // weights
          static_cast<std::size_t>(kTileRows) * kLd<W>)+  // rows
         sizeof(float) *
         kWarps * 16 * 16;  // one accumulator tile per warp
}

__device__ inline float activate_at_run_time(Activation act, float z) {
  switch (act) {
    case Activation::relu:
      return detail::activate<detail::Act::relu>(z);
    case Activation::sigmoid:
      return detail::activate<detail::Act::sigmoid>(z);
    case Activation::tanh:
      return detail::activate<detail::Act::tanh>(z);
    case Activation::gelu:
      return detail::activate<detail::Act::gelu>(z);
    default:
      return z;
  }
}

__device__ inline __nv_bfloat16 as_nv(bf16 v) { return __nv_bfloat16_raw{v.bits}; }

template <int W>
__global__ void __launch_bounds__(kFusedThreads)
    fused_hidden_forward_kernel(const bf16* __restrict__ x, std::int64_t ld_x, std::int64_t rows,
                                Stack stack) {
  constexpr int ld = kLd<W>;
  constexpr int kTiles = W / 16;  // 16 x 16 tiles across a row of the layer
  extern __shared__ __align__(128) unsigned char shared[];
  auto* weights = reinterpret_cast<__nv_bfloat16*>(shared);             // [W][ld]: W_l, row = out
  __nv_bfloat16* tile_rows = weights + W * ld;                          // [kTileRows][ld]
  auto* staged = reinterpret_cast<float*>(tile_rows + kTileRows * ld);  // [kWarps][16 * 16]
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  __nv_bfloat16* mine = tile_rows + warp * 16 * ld;  // this warp's 16 rows
  float* acc_tile = staged + warp * 16 * 16;

  const std::int64_t tiles = (rows + kTileRows - 1) / kTileRows;
  for (std::int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const std::int64_t first_row = tile * kTileRows + warp * 16;
    for (int e = lane; e < 16 * W; e += 32) {
      const int r = e / W, c = e % W;
      const std::int64_t row = first_row + r;
      mine[r * ld + c] = row < rows ? as_nv(x[row * ld_x + c]) : __float2bfloat16(0.0f);
    }
    for (int l = 0; l < stack.count; ++l) {
      const detail::FusedLayer& layer = stack.layer[l];
      __syncthreads();  // every warp is done with the previous layer's weights
      for (int e = static_cast<int>(threadIdx.x); e < W * W; e += kFusedThreads) {
        weights[(e / W) * ld + e % W] = as_nv(layer.w[e]);
      }
      __syncthreads();

      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kTiles];
#pragma unroll
      for (int n = 0; n < kTiles; ++n) wmma::fill_fragment(acc[n], 0.0f);
        // Not unrolled: at W = 128 the eight accumulator tiles take 64 registers a thread, and
        // unrolled loads of the next k's tiles would spill.
#pragma unroll 1
      for (int k = 0; k < kTiles; ++k) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
        wmma::load_matrix_sync(a, mine + k * 16, ld);
#pragma unroll
        for (int n = 0; n < kTiles; ++n) {
          // Wᵀ as a column-major matrix: element (k, n) is W[n][k], at n * ld + k.
          wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
          wmma::load_matrix_sync(b, weights + n * 16 * ld + k * 16, ld);
          wmma::mma_sync(acc[n], a, b, acc[n]);
        }
      }
      // Every product of this warp's rows is done: its rows may now be overwritten.
      const int r = lane / 2, c0 = (lane % 2) * 8;  // each lane: 8 neighbours in one row
      const std::int64_t row = first_row + r;
#pragma unroll
      for (int n = 0; n < kTiles; ++n) {
        wmma::store_matrix_sync(acc_tile, acc[n], 16, wmma::mem_row_major);
        __syncwarp();
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const int col = n * 16 + c0 + j;
          const float z = acc_tile[r * 16 + c0 + j] + layer.b[col];
          const bf16 y = to_bf16(activate_at_run_time(layer.act, z));
          mine[r * ld + col] = as_nv(y);
          if (row < rows) {
            layer.y[row * W + col] = y;
            if (layer.pre != nullptr) layer.pre[row * W + col] = z;
          }
        }
        __syncwarp();
      }
    }
  }
}

template <int W>
void launch(const Context& ctx, MatrixView<const bf16> x, const Stack& stack) {
  constexpr std::size_t bytes = shared_bytes<W>();
  // Above 48 KiB a kernel must ask for its shared memory (W = 128 takes 55 KiB), once per
  // device; asked outside any capture, since the first launch of a geometry runs eagerly.
  static std::atomic<std::uint64_t> asked{0};
  const int device = ctx.device().index;
  const std::uint64_t bit = device < 64 ? std::uint64_t{1} << device : 0;
  if (bytes > 48 * 1024 && (bit == 0 || (asked.load() & bit) == 0)) {
    state_of(ctx);  // the context's device made current
    DESCENT_CUDA_CHECK(cudaFuncSetAttribute(fused_hidden_forward_kernel<W>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(bytes)));
    asked.fetch_or(bit);
  }
  const std::int64_t tiles = (x.rows + kTileRows - 1) / kTileRows;
  const unsigned blocks = grid_for_rows(tiles);
  fused_hidden_forward_kernel<W>
      <<<blocks, kFusedThreads, bytes, stream_of(ctx)>>>(x.data, x.ld, x.rows, stack);
  DESCENT_LAUNCH_CHECK(fused_hidden_forward_kernel);
}

}  // namespace

bool fused_width(std::int64_t width) {
  return width == 16 || width == 32 || width == 64 || width == 128;
}

void fused_hidden_forward(const Context& ctx, MatrixView<const bf16> x,
                          const detail::FusedLayer* layers, int count) {
  // Validated by detail::fused_hidden_forward (src/ops.cpp): a width fused_width takes.
  if (x.rows == 0 || count == 0) return;
  for (int first = 0; first < count; first += kMaxLayers) {
    Stack stack;
    stack.count = count - first < kMaxLayers ? count - first : kMaxLayers;
    for (int i = 0; i < stack.count; ++i) stack.layer[i] = layers[first + i];
    // A later launch starts from the last output of the one before.
    const MatrixView<const bf16> in =
        first == 0 ? x
                   : MatrixView<const bf16>(layers[first - 1].y, x.rows, x.cols, x.device, x.cols);
    switch (x.cols) {
      case 16:
        launch<16>(ctx, in, stack);
        break;
      case 32:
        launch<32>(ctx, in, stack);
        break;
      case 64:
        launch<64>(ctx, in, stack);
        break;
      default:
        launch<128>(ctx, in, stack);
        break;
    }
  }
}

}  // namespace descent::cuda
