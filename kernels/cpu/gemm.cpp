// The CPU backend's GEMM: oneDNN's dnnl_sgemm when found at configure time, else CBLAS.
#include "kernels/cpu/gemm.hpp"

#include <omp.h>

#include <string>

#include "descent/error.hpp"
#include "kernels/backend.hpp"

#if defined(DESCENT_GEMM_DNNL)
#include <oneapi/dnnl/dnnl.h>
#else
#include <cblas.h>
#endif

namespace descent::cpu {

void sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
           const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
           std::int64_t ldc, int threads) {
  // Both libraries size their OpenMP team from the calling thread's nthreads setting; it is set
  // for this call only and restored after it (also when it throws), so the caller's own parallel
  // regions keep the team size they had.
  const int caller_threads = omp_get_max_threads();
  struct RestoreThreads {
    int n;
    ~RestoreThreads() { omp_set_num_threads(n); }
  } restore{caller_threads};
  if (threads != caller_threads) omp_set_num_threads(threads);
#if defined(DESCENT_GEMM_DNNL)
  const dnnl_status_t status = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha,
                                          a, lda, b, ldb, beta, c, ldc);
  if (status != dnnl_success) {
    throw Error("dnnl_sgemm failed with status " + std::to_string(static_cast<int>(status)) +
                " for m=" + std::to_string(m) + " n=" + std::to_string(n) +
                " k=" + std::to_string(k));
  }
#else
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
              static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
#endif
}

}  // namespace descent::cpu

const char* descent::detail::cpu_gemm_name() { return DESCENT_CPU_GEMM_NAME; }
