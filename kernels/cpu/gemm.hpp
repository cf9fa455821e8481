// Row-major single-precision GEMM of the CPU backend, on the library chosen at configure time.
#pragma once

#include <cstdint>

#include "descent/bf16.hpp"

namespace descent::cpu {

// C = alpha · op(A) · op(B) + beta · C, all row-major; op(X) = Xᵀ when trans_X is true.
// C is m x n, op(A) m x k, op(B) k x n. Runs on `threads` OpenMP threads.
// Where sgemm_copies_b, B is first copied (k · n floats, against 2 · m · n · k flops) to scratch
// of the calling thread's, 16 bytes past a 32-byte boundary: oneDNN 2.6.3's AVX2 sgemm reads an
// untransposed B in place (its no-copy kernel, which it forces where 1/m + 1/n >= 0.0038, e.g. a
// batch of 256 rows against 1024 columns) and, with B 32-byte aligned as descent's weights are,
// runs that at about half the speed of its packed path: every dense layer's input gradient
// dz · W (measured on an AVX2-only EPYC, one thread: 256 x 1024 x 1024 in 12.0 ms with B aligned,
// 6.6 ms with B 16 bytes off; docs/benchmarks.md).
void sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
           const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
           std::int64_t ldc, int threads);
// Whether sgemm copies B for these operands (oneDNN on a CPU without AVX-512; see above).
bool sgemm_copies_b(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, const float* b);

// Where gemm_bf16 puts C = op(A) · op(B) (m x n, leading dimension ld) and what it does on the
// way: exactly one of f32 (then optionally C += the product, `accumulate`) and b16 (then C is
// rounded to bf16 after an optional bias [n] added to every row and an optional relu).
struct Bf16GemmOut {
  float* f32 = nullptr;
  bf16* b16 = nullptr;
  std::int64_t ld = 0;
  bool accumulate = false;
  const float* bias = nullptr;
  bool relu = false;
};

// op(A) · op(B) with A and B in bf16 (same layout conventions as sgemm), products and sums in
// fp32 (a product of two bf16 values is exact in fp32), to `out`. Where has_bf16_gemm(), on the
// CPU's bf16 units (AVX512-BF16 or AMX, through oneDNN's matmul primitive with the bias, relu and
// rounding fused); elsewhere A and B are widened into `scratch` (gemm_bf16_scratch floats), sgemm
// runs on the copies and a pass adds the bias, applies relu and rounds.
void gemm_bf16(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
               const bf16* a, std::int64_t lda, const bf16* b, std::int64_t ldb,
               const Bf16GemmOut& out, float* scratch, int threads);

// Floats of scratch gemm_bf16 needs for these sizes and output type: 0 where has_bf16_gemm().
std::int64_t gemm_bf16_scratch(std::int64_t m, std::int64_t n, std::int64_t k, bool bf16_out);

// Whether bf16 products run on bf16 units here: oneDNN found at configure time, a CPU with
// AVX512-BF16 or AMX-BF16, and the AVX-512 variant of the loops chosen (DESCENT_CPU_ISA=avx2 or
// x86-64 turns it off). Cached.
bool has_bf16_gemm();

// What runs gemm_bf16 here, e.g. "oneDNN 2.6.3 matmul on avx512_core_bf16".
const char* bf16_gemm_name();

}  // namespace descent::cpu
