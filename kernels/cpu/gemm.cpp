// The CPU backend's GEMMs: oneDNN's dnnl_sgemm when found at configure time, else CBLAS; bf16
// products through oneDNN's matmul primitive where the CPU has bf16 units.
#include "kernels/cpu/gemm.hpp"

#include <omp.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "descent/error.hpp"
#include "kernels/backend.hpp"
#include "kernels/cpu/isa.hpp"

#if defined(DESCENT_GEMM_DNNL)
#include <oneapi/dnnl/dnnl.hpp>
#else
#include <cblas.h>
#endif

namespace descent::cpu {

namespace {

// Both libraries size their OpenMP team from the calling thread's nthreads setting; it is set for
// one call only and restored after it (also when it throws), so the caller's own parallel regions
// keep the team size they had.
class TeamForOneCall {
 public:
  explicit TeamForOneCall(int threads) : caller_(omp_get_max_threads()) {
    if (threads != caller_) omp_set_num_threads(threads);
  }
  ~TeamForOneCall() { omp_set_num_threads(caller_); }
  TeamForOneCall(const TeamForOneCall&) = delete;
  TeamForOneCall& operator=(const TeamForOneCall&) = delete;

 private:
  int caller_;
};

}  // namespace

void sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
           const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
           std::int64_t ldc, int threads) {
  const TeamForOneCall team(threads);
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

#if defined(DESCENT_GEMM_DNNL)

namespace {

// One matmul primitive per shape, layout and accumulate flag, created on first use (about a
// millisecond) and kept: a training run has a handful of shapes. Each runs with a scratchpad the
// caller's thread owns, so two contexts on two threads may run the same primitive at once.
struct Bf16Matmul {
  dnnl::matmul primitive;
  std::size_t scratch_bytes = 0;
};

using MatmulKey = std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                             std::int64_t, bool, bool, bool>;

const dnnl::engine& cpu_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// The strides of a row-major matrix with leading dimension ld, read as op(X) (transposed or not).
dnnl::memory::desc matrix_desc(std::int64_t rows, std::int64_t cols, std::int64_t ld,
                               bool transposed, dnnl::memory::data_type type) {
  return dnnl::memory::desc({rows, cols}, type,
                            transposed ? dnnl::memory::dims{1, ld} : dnnl::memory::dims{ld, 1});
}

// The primitive for this call, or null when oneDNN has only its reference code for it.
const Bf16Matmul* bf16_matmul(const MatmulKey& key) {
  static std::mutex mutex;
  static std::map<MatmulKey, std::unique_ptr<Bf16Matmul>> cache;
  const std::lock_guard<std::mutex> lock(mutex);
  if (const auto it = cache.find(key); it != cache.end()) return it->second.get();
  const auto [m, n, k, lda, ldb, ldc, trans_a, trans_b, accumulate] = key;
  using dt = dnnl::memory::data_type;
  const dnnl::matmul::desc desc(matrix_desc(m, k, lda, trans_a, dt::bf16),
                                matrix_desc(k, n, ldb, trans_b, dt::bf16),
                                matrix_desc(m, n, ldc, false, dt::f32));
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (accumulate) {
    dnnl::post_ops sum;
    sum.append_sum(1.0f);
    attr.set_post_ops(sum);
  }
  std::unique_ptr<Bf16Matmul> made;
  try {
    const dnnl::matmul::primitive_desc pd(desc, attr, cpu_engine());
    if (std::string(pd.impl_info_str()).find("ref") == std::string::npos) {
      made = std::make_unique<Bf16Matmul>();
      made->primitive = dnnl::matmul(pd);
      made->scratch_bytes = pd.scratchpad_desc().get_size();
    }
  } catch (const dnnl::error&) {
    made.reset();  // no implementation for this shape: the caller widens to fp32
  }
  // A cache that grows past what any training run needs (shapes chosen call by call) starts over.
  if (cache.size() >= 256) cache.clear();
  return cache.emplace(key, std::move(made)).first->second.get();
}

}  // namespace

bool has_bf16_gemm() {
  static const bool has = [] {
    const auto isa = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
    constexpr auto kBf16 = static_cast<unsigned>(dnnl_cpu_isa_avx512_core_bf16);
    return cpu_isa() == Isa::avx512 && (isa & kBf16) == kBf16;
  }();
  return has;
}

namespace {

// op(A) · op(B) on the bf16 units; false when oneDNN has only its reference code for this layout.
bool gemm_bf16_on_units(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                        const bf16* a, std::int64_t lda, const bf16* b, std::int64_t ldb,
                        bool accumulate, float* c, std::int64_t ldc, int threads) {
  try {
    const Bf16Matmul* mm = bf16_matmul({m, n, k, lda, ldb, ldc, trans_a, trans_b, accumulate});
    if (mm == nullptr) return false;
    thread_local std::vector<unsigned char> scratch;
    if (scratch.size() < mm->scratch_bytes) scratch.resize(mm->scratch_bytes);
    const dnnl::engine& engine = cpu_engine();
    using dt = dnnl::memory::data_type;
    // oneDNN's memory objects take non-const handles; the inputs are only read.
    const dnnl::memory am(matrix_desc(m, k, lda, trans_a, dt::bf16), engine, const_cast<bf16*>(a));
    const dnnl::memory bm(matrix_desc(k, n, ldb, trans_b, dt::bf16), engine, const_cast<bf16*>(b));
    const dnnl::memory cm(matrix_desc(m, n, ldc, false, dt::f32), engine, c);
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}};
    if (mm->scratch_bytes > 0) {
      args.emplace(DNNL_ARG_SCRATCHPAD,
                   dnnl::memory(dnnl::memory::desc({static_cast<std::int64_t>(mm->scratch_bytes)},
                                                   dt::u8, dnnl::memory::dims{1}),
                                engine, scratch.data()));
    }
    const TeamForOneCall team(threads);
    dnnl::stream stream(engine);
    mm->primitive.execute(stream, args);
    stream.wait();
  } catch (const dnnl::error& e) {
    throw Error(std::string("oneDNN's bf16 matmul failed: ") + e.what() + " for m=" +
                std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k));
  }
  return true;
}

}  // namespace

const char* bf16_gemm_name() {
  static const std::string name =
      has_bf16_gemm() ? "oneDNN " + std::to_string(dnnl_version()->major) + "." +
                            std::to_string(dnnl_version()->minor) + "." +
                            std::to_string(dnnl_version()->patch) + " matmul on the bf16 units"
                      : std::string("bf16 widened to fp32, ") + DESCENT_CPU_GEMM_NAME;
  return name.c_str();
}

#else

bool has_bf16_gemm() { return false; }

const char* bf16_gemm_name() { return "bf16 widened to fp32, " DESCENT_CPU_GEMM_NAME; }

#endif

std::int64_t gemm_bf16_scratch(std::int64_t m, std::int64_t n, std::int64_t k) {
  return has_bf16_gemm() ? 0 : (m + n) * k;
}

namespace {

// A contiguous fp32 copy of the rows x cols bf16 matrix x (leading dimension ld) at `out`.
void widen(const bf16* x, std::int64_t rows, std::int64_t cols, std::int64_t ld, float* out,
           int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t j = 0; j < cols; ++j) out[r * cols + j] = to_float(x[r * ld + j]);
  }
}

}  // namespace

void gemm_bf16(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
               const bf16* a, std::int64_t lda, const bf16* b, std::int64_t ldb, bool accumulate,
               float* c, std::int64_t ldc, float* scratch, int threads) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    // An empty sum: the product is zero.
    if (!accumulate) {
      for (std::int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    }
    return;
  }
#if defined(DESCENT_GEMM_DNNL)
  if (has_bf16_gemm() &&
      gemm_bf16_on_units(trans_a, trans_b, m, n, k, a, lda, b, ldb, accumulate, c, ldc, threads)) {
    return;
  }
#endif
  // Stored shapes: A is k x m when transposed, else m x k; B is n x k when transposed, else k x n.
  std::vector<float> own;
  if (scratch == nullptr) {
    // A layout the units' code does not take, on a CPU that has them: the caller reserved nothing.
    own.resize(static_cast<std::size_t>((m + n) * k));
    scratch = own.data();
  }
  float* af = scratch;
  float* bf = scratch + m * k;
  const std::int64_t a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;
  const std::int64_t b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
  widen(a, a_rows, a_cols, lda, af, threads);
  widen(b, b_rows, b_cols, ldb, bf, threads);
  sgemm(trans_a, trans_b, m, n, k, 1.0f, af, a_cols, bf, b_cols, accumulate ? 1.0f : 0.0f, c, ldc,
        threads);
}

}  // namespace descent::cpu

const char* descent::detail::cpu_gemm_name() { return DESCENT_CPU_GEMM_NAME; }
const char* descent::detail::cpu_bf16_gemm_name() { return descent::cpu::bf16_gemm_name(); }
