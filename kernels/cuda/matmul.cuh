// Launch header of the cuBLASLt matmul family: column-major D = op(A)·op(B) (+ beta·D) with an
// optional epilogue, planned once per shape and cached in the context's State.
#pragma once

#include "kernels/cuda/common.cuh"

namespace descent::cuda {

// One column-major operand: `rows` x `cols` as stored (before the op), leading dimension ld.
struct LtMatrix {
  const void* data = nullptr;
  cudaDataType_t type = CUDA_R_32F;
  std::int64_t rows = 0, cols = 0, ld = 0;
};

struct LtMatmul {
  cublasOperation_t op_a = CUBLAS_OP_N, op_b = CUBLAS_OP_N;
  LtMatrix a, b;
  void* d = nullptr;  // also C when beta != 0
  cudaDataType_t d_type = CUDA_R_32F;
  std::int64_t d_rows = 0, d_cols = 0, d_ld = 0;
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  float beta = 0.0f;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const float* bias = nullptr;  // fp32, one per row of D
  void* aux = nullptr;          // GELU input (pre-activation), same type as D
  std::int64_t aux_ld = 0;
};

// Runs the matmul on the context's stream. Returns false, having queued nothing, when cuBLASLt
// supports no algorithm for this combination (e.g. an epilogue with these types or alignments);
// the caller then takes a plainer path. A DEFAULT-epilogue matmul that is unsupported throws.
bool lt_matmul(const Context& ctx, const LtMatmul& mm);

// The compute type for fp32-storage matmuls under the context's math mode.
cublasComputeType_t fp32_compute(const Context& ctx);

}  // namespace descent::cuda
