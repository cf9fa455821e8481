// Row-major single-precision GEMM of the CPU backend, on the library chosen at configure time.
#pragma once

#include <cstdint>

namespace descent::cpu {

// C = alpha · op(A) · op(B) + beta · C, all row-major; op(X) = Xᵀ when trans_X is true.
// C is m x n, op(A) m x k, op(B) k x n. Runs on `threads` OpenMP threads.
void sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
           const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
           std::int64_t ldc, int threads);

}  // namespace descent::cpu
