// Dense layer forward and backward: cuBLASLt matmuls with fused epilogues where cuBLASLt can do
// them, and our own fused activation / activation-gradient / bias-gradient kernels elsewhere.
#include <type_traits>

#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/matmul.cuh"
#include "kernels/math/activation.hpp"

namespace descent::cuda {

namespace {

using detail::Act;

// y = act(z + bias); pre (when set) receives z + bias. z may alias pre or y: each element is
// read and written by the same thread, so no restrict qualifiers.
template <Act A, class Out>
__global__ void bias_activation_kernel(const float* z, std::int64_t ldz, const float* bias,
                                       float* pre, std::int64_t ldp, Out* y, std::int64_t ldy,
                                       std::int64_t rows, std::int64_t cols) {
  const std::int64_t n = rows * cols;
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) {
    const std::int64_t r = i / cols, c = i - r * cols;
    float v = z[r * ldz + c];
    if (bias) v += bias[c];
    if (pre) pre[r * ldp + c] = v;
    store_from_float(&y[r * ldy + c], detail::activate<A>(v));
  }
}

// The bias gradient is a column sum over the batch. Block (32 columns x 8 row-threads) sums one
// chunk of rows into partial[chunk][col]; column_sum_kernel then adds the chunks in order. The
// split depends on the shape only, so db is bit-identical from run to run (no float atomics).
constexpr int kColTile = 32;
constexpr int kRowThreads = 8;

// dz = dy * act'(y, pre) (stored when dz is set) and per-chunk column sums of dz in fp32 (when
// partial is set). Sums use dz before any rounding to bf16.
template <Act A, class T>
__global__ void __launch_bounds__(kColTile* kRowThreads)
    activation_grad_kernel(const T* dy, std::int64_t lddy, const T* y, std::int64_t ldy,
                           const float* pre, std::int64_t ldpre, T* dz, std::int64_t lddz,
                           float* partial, std::int64_t rows, std::int64_t cols,
                           std::int64_t rows_per_chunk) {
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * kColTile + threadIdx.x;
  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.y) * rows_per_chunk;
  const std::int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  float acc = 0.0f;
  if (c < cols) {
    for (std::int64_t r = r0 + threadIdx.y; r < r1; r += kRowThreads) {
      float g = load_as_float(dy + r * lddy + c);
      if constexpr (A != Act::identity) {
        // gelu's derivative needs only z; the others need only y.
        const float yv = A == Act::gelu ? 0.0f : load_as_float(y + r * ldy + c);
        const float zv = A == Act::gelu ? pre[r * ldpre + c] : 0.0f;
        g *= detail::activate_grad<A>(yv, zv);
      }
      if (dz) store_from_float(dz + r * lddz + c, g);
      acc += g;
    }
  }
  if (partial) {
    __shared__ float sums[kRowThreads][kColTile + 1];
    sums[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
      float s = 0.0f;
      for (int k = 0; k < kRowThreads; ++k) s += sums[k][threadIdx.x];
      partial[static_cast<std::int64_t>(blockIdx.y) * cols + c] = s;
    }
  }
}

__global__ void column_sum_kernel(const float* partial, std::int64_t chunks, std::int64_t cols,
                                  float* db, bool accumulate) {
  const std::int64_t c = global_thread();
  if (c >= cols) return;
  float s = 0.0f;
  for (std::int64_t k = 0; k < chunks; ++k) s += partial[k * cols + c];
  db[c] = accumulate ? db[c] + s : s;
}

template <class T>
constexpr cudaDataType_t cuda_type() {
  return std::is_same_v<T, bf16> ? CUDA_R_16BF : CUDA_R_32F;
}

// The matmul of x · wᵀ in cuBLASLt's column-major terms: row-major y [batch, out] is column-major
// [out, batch] with the same ld, so D = op_T(w as [in, out]) · (x as [in, batch]).
template <class In>
LtMatmul forward_matmul(const Context& ctx, MatrixView<const In> x, MatrixView<const In> w) {
  LtMatmul mm;
  mm.op_a = CUBLAS_OP_T;
  mm.op_b = CUBLAS_OP_N;
  mm.a = {w.data, cuda_type<In>(), w.cols, w.rows, w.ld};
  mm.b = {x.data, cuda_type<In>(), x.cols, x.rows, x.ld};
  mm.d_rows = w.rows;
  mm.d_cols = x.rows;
  mm.compute = std::is_same_v<In, bf16> ? CUBLAS_COMPUTE_32F : fp32_compute(ctx);
  return mm;
}

// The epilogue that does the whole layer inside the matmul, or DEFAULT-with-false when none can.
// GELU is left to our kernel in strict fp32: cuBLASLt does not document the accuracy of its GELU,
// and strict mode promises agreement with the CPU backend's activate<gelu> to ~1e-5.
bool fused_epilogue(Activation act, bool has_bias, bool has_pre, bool gelu_in_lt,
                    cublasLtEpilogue_t& epi) {
  if (has_pre) {
    if (act == Activation::gelu && gelu_in_lt) {
      epi = has_bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
      return true;
    }
    return false;
  }
  switch (act) {
    case Activation::identity:
      epi = has_bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
      return true;
    case Activation::relu:
      epi = has_bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
      return true;
    case Activation::gelu:
      if (!gelu_in_lt) return false;
      epi = has_bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
      return true;
    default:
      return false;
  }
}

template <class In, class Out>
void forward_impl(const Context& ctx, MatrixView<const In> x, MatrixView<const In> w,
                  VectorView<const float> b, Activation act, MatrixView<Out> y,
                  MatrixView<float> pre) {
  constexpr bool kBf16 = std::is_same_v<In, bf16>;
  const std::int64_t rows = y.rows, cols = y.cols;
  if (rows == 0 || cols == 0) return;
  const float* bias = b.empty() ? nullptr : b.data;
  // cuBLASLt reads the bias vector with wide loads.
  const bool bias_in_lt = bias == nullptr || alignment_of(bias) >= 16;
  LtMatmul mm = forward_matmul(ctx, x, w);

  // 1. The whole layer in one matmul. The GELU aux output (the pre-activation) has the type of D,
  //    so it is only used when y is fp32, with cuBLASLt's documented aux ld rule (multiple of 8).
  const bool gelu_in_lt = kBf16 || detail::impl_of(ctx).math == MathMode::tf32;
  const bool aux_ok = !kBf16 && !pre.empty() && pre.ld % 8 == 0 && alignment_of(pre.data) >= 16;
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
  if (bias_in_lt && (pre.empty() || aux_ok) &&
      fused_epilogue(act, bias != nullptr, !pre.empty(), gelu_in_lt, epi)) {
    LtMatmul fused = mm;
    fused.d = y.data;
    fused.d_type = cuda_type<Out>();
    fused.d_ld = y.ld;
    fused.epilogue = epi;
    fused.bias = bias;
    if (!pre.empty()) {
      fused.aux = pre.data;
      fused.aux_ld = pre.ld;
    }
    if (lt_matmul(ctx, fused)) return;
  }

  // 2. The matmul (with the bias when cuBLASLt takes it) into fp32 z, then our kernel for the
  //    rest. z is pre when asked for, else y itself in fp32, else scratch.
  float* z = nullptr;
  std::int64_t ldz = 0;
  if (!pre.empty()) {
    z = pre.data;
    ldz = pre.ld;
  } else if constexpr (!kBf16) {
    z = y.data;
    ldz = y.ld;
  } else {
    z = static_cast<float*>(scratch(ctx, sizeof(float) * rows * cols));
    ldz = cols;
  }
  mm.d = z;
  mm.d_type = CUDA_R_32F;
  mm.d_ld = ldz;
  bool bias_done = false;
  if (bias && bias_in_lt) {
    mm.epilogue = CUBLASLT_EPILOGUE_BIAS;
    mm.bias = bias;
    bias_done = lt_matmul(ctx, mm);
  }
  if (!bias_done) {
    mm.epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    mm.bias = nullptr;
    lt_matmul(ctx, mm);
  }
  const float* bias_left = bias_done ? nullptr : bias;
  if (act == Activation::identity && bias_left == nullptr &&
      static_cast<const void*>(z) == static_cast<const void*>(y.data)) {
    return;
  }
  // pre already holds z + b unless the bias is still to be added (in place, z == pre).
  float* pre_out = (!pre.empty() && bias_left) ? pre.data : nullptr;
  detail::dispatch_activation(static_cast<int>(act), [&](auto a) {
    constexpr Act A = decltype(a)::value;
    bias_activation_kernel<A, Out><<<grid_for(rows * cols), kThreads, 0, stream_of(ctx)>>>(
        z, ldz, bias_left, pre_out, pre.ld, y.data, y.ld, rows, cols);
    DESCENT_LAUNCH_CHECK(bias_activation_kernel);
  });
}

template <class T>
void backward_impl(const Context& ctx, MatrixView<const T> x, MatrixView<const T> w,
                   MatrixView<const T> y, MatrixView<const float> pre, MatrixView<const T> dy,
                   Activation act, const DenseGradsOf<T>& grads) {
  const std::int64_t batch = dy.rows, out = dy.cols, in = x.cols;
  if (batch == 0 || out == 0) return;
  cudaStream_t stream = stream_of(ctx);

  // Row chunks of the bias-gradient reduction: fixed by the shape, and within grid.y's limit.
  std::int64_t rows_per_chunk = 256;
  if ((batch + rows_per_chunk - 1) / rows_per_chunk > 65535) {
    rows_per_chunk = ((batch + 65534) / 65535 + kRowThreads - 1) / kRowThreads * kRowThreads;
  }
  const std::int64_t chunks = (batch + rows_per_chunk - 1) / rows_per_chunk;

  const bool need_dz = act != Activation::identity;
  const bool need_db = !grads.db.empty();
  ScratchLayout layout;
  const std::size_t dz_at = need_dz ? layout.add(sizeof(T) * batch * out) : 0;
  const std::size_t partial_at = need_db ? layout.add(sizeof(float) * chunks * out) : 0;
  char* base = layout.bytes ? static_cast<char*>(scratch(ctx, layout.bytes)) : nullptr;

  // Identity: dz is dy itself, no copy.
  const T* dz = dy.data;
  std::int64_t lddz = dy.ld;
  T* dz_out = nullptr;
  if (need_dz) {
    dz_out = reinterpret_cast<T*>(base + dz_at);
    dz = dz_out;
    lddz = out;
  }
  float* partial = need_db ? reinterpret_cast<float*>(base + partial_at) : nullptr;

  if (need_dz || need_db) {
    const dim3 block(kColTile, kRowThreads);
    const dim3 grid(static_cast<unsigned>((out + kColTile - 1) / kColTile),
                    static_cast<unsigned>(chunks));
    detail::dispatch_activation(static_cast<int>(act), [&](auto a) {
      constexpr Act A = decltype(a)::value;
      activation_grad_kernel<A, T><<<grid, block, 0, stream>>>(dy.data, dy.ld, y.data, y.ld,
                                                               pre.data, pre.ld, dz_out, out,
                                                               partial, batch, out, rows_per_chunk);
      DESCENT_LAUNCH_CHECK(activation_grad_kernel);
    });
  }
  if (need_db) {
    column_sum_kernel<<<grid_for(out, kThreads, 1 << 30), kThreads, 0, stream>>>(
        partial, chunks, out, grads.db.data, grads.accumulate);
    DESCENT_LAUNCH_CHECK(column_sum_kernel);
  }

  const cublasComputeType_t compute =
      std::is_same_v<T, bf16> ? CUBLAS_COMPUTE_32F : fp32_compute(ctx);
  if (!grads.dw.empty()) {
    // dw [out, in] row-major = column-major [in, out] = (x as [in, batch]) · (dz as [out, batch])ᵀ
    LtMatmul mm;
    mm.op_a = CUBLAS_OP_N;
    mm.op_b = CUBLAS_OP_T;
    mm.a = {x.data, cuda_type<T>(), in, batch, x.ld};
    mm.b = {dz, cuda_type<T>(), out, batch, lddz};
    mm.d = grads.dw.data;
    mm.d_type = CUDA_R_32F;
    mm.d_rows = in;
    mm.d_cols = out;
    mm.d_ld = grads.dw.ld;
    mm.compute = compute;
    mm.beta = grads.accumulate ? 1.0f : 0.0f;
    lt_matmul(ctx, mm);
  }
  if (!grads.dx.empty()) {
    // dx [batch, in] row-major = column-major [in, batch] = (w as [in, out]) · (dz as [out, batch])
    LtMatmul mm;
    mm.op_a = CUBLAS_OP_N;
    mm.op_b = CUBLAS_OP_N;
    mm.a = {w.data, cuda_type<T>(), in, out, w.ld};
    mm.b = {dz, cuda_type<T>(), out, batch, lddz};
    mm.d = grads.dx.data;
    mm.d_type = cuda_type<T>();
    mm.d_rows = in;
    mm.d_cols = batch;
    mm.d_ld = grads.dx.ld;
    mm.compute = compute;
    lt_matmul(ctx, mm);
  }
}

}  // namespace

void dense_forward(const Context& ctx, MatrixView<const float> x, MatrixView<const float> w,
                   VectorView<const float> b, Activation act, MatrixView<float> y,
                   MatrixView<float> pre) {
  forward_impl(ctx, x, w, b, act, y, pre);
}

void dense_forward(const Context& ctx, MatrixView<const bf16> x, MatrixView<const bf16> w,
                   VectorView<const float> b, Activation act, MatrixView<bf16> y,
                   MatrixView<float> pre) {
  forward_impl(ctx, x, w, b, act, y, pre);
}

void dense_backward(const Context& ctx, MatrixView<const float> x, MatrixView<const float> w,
                    MatrixView<const float> y, MatrixView<const float> pre,
                    MatrixView<const float> dy, Activation act, const DenseGrads& grads) {
  backward_impl(ctx, x, w, y, pre, dy, act, grads);
}

void dense_backward(const Context& ctx, MatrixView<const bf16> x, MatrixView<const bf16> w,
                    MatrixView<const bf16> y, MatrixView<const float> pre,
                    MatrixView<const bf16> dy, Activation act, const DenseGradsBf16& grads) {
  backward_impl(ctx, x, w, y, pre, dy, act, grads);
}

}  // namespace descent::cuda
