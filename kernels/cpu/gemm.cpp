// The CPU backend's GEMMs: oneDNN's dnnl_sgemm when found at configure time, else CBLAS; bf16
// products through oneDNN's matmul primitive where the CPU has bf16 units.
#include "kernels/cpu/gemm.hpp"

#include <omp.h>

#include <algorithm>
#include <cstdint>
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

#if defined(DESCENT_GEMM_DNNL)
// B's copy for sgemm_copies_b: per calling thread, grown to the largest copied B and kept.
thread_local std::vector<float> b_copy;

// B's k rows of n floats copied to b_copy, 16 bytes past a 32-byte boundary (leading dimension
// n); returns the copy.
const float* copy_b_off_boundary(const float* b, std::int64_t ldb, std::int64_t k, std::int64_t n,
                                 int threads) {
  const auto need = static_cast<std::size_t>(k * n + 8);
  if (b_copy.size() < need) b_copy.resize(need);
  const auto at = reinterpret_cast<std::uintptr_t>(b_copy.data());
  float* dst = b_copy.data() + ((16 + 4 - (at / sizeof(float)) % 8) % 8);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t r = 0; r < k; ++r) std::copy_n(b + r * ldb, n, dst + r * n);
  return dst;
}
#endif

}  // namespace

bool sgemm_copies_b(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, const float* b) {
#if defined(DESCENT_GEMM_DNNL)
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  return !trans_a && !trans_b && !avx512 && m > 0 && n > 0 &&
         reinterpret_cast<std::uintptr_t>(b) % 32 == 0 &&
         1.0 / static_cast<double>(m) + 1.0 / static_cast<double>(n) >= 0.0038;
#else
  (void)trans_a, (void)trans_b, (void)m, (void)n, (void)b;
  return false;
#endif
}

void sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
           const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
           std::int64_t ldc, int threads) {
  const TeamForOneCall team(threads);
#if defined(DESCENT_GEMM_DNNL)
  if (k > 0 && sgemm_copies_b(trans_a, trans_b, m, n, b)) {
    b = copy_b_off_boundary(b, ldb, k, n, threads);
    ldb = n;
  }
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

// One matmul primitive per shape, layout and epilogue, created on first use (about a millisecond)
// and kept: a training run has a handful of shapes. Each runs with a scratchpad the caller's
// thread owns, so two contexts on two threads may run the same primitive at once.
struct Bf16Matmul {
  dnnl::matmul primitive;
  std::size_t scratch_bytes = 0;
};

// m, n, k, lda, ldb, ldc, trans_a, trans_b, to bf16, accumulate, bias, relu.
using MatmulKey = std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                             std::int64_t, bool, bool, bool, bool, bool, bool>;

const dnnl::engine& cpu_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

using dt = dnnl::memory::data_type;

// The strides of a row-major matrix with leading dimension ld, read as op(X) (transposed or not).
dnnl::memory::desc matrix_desc(std::int64_t rows, std::int64_t cols, std::int64_t ld,
                               bool transposed, dt type) {
  return dnnl::memory::desc({rows, cols}, type,
                            transposed ? dnnl::memory::dims{1, ld} : dnnl::memory::dims{ld, 1});
}

dnnl::memory::desc bias_desc(std::int64_t n) {
  return dnnl::memory::desc({1, n}, dt::f32, dnnl::memory::dims{n, 1});
}

// The primitive for this call, or null when oneDNN has only its reference code for it. Shared:
// a cache that starts over leaves the primitives other threads are running alive.
std::shared_ptr<const Bf16Matmul> bf16_matmul(const MatmulKey& key) {
  static std::mutex mutex;
  static std::map<MatmulKey, std::shared_ptr<const Bf16Matmul>> cache;
  const std::lock_guard<std::mutex> lock(mutex);
  if (const auto it = cache.find(key); it != cache.end()) return it->second;
  const auto [m, n, k, lda, ldb, ldc, trans_a, trans_b, bf16_out, accumulate, bias, relu] = key;
  const dnnl::memory::desc c = matrix_desc(m, n, ldc, false, bf16_out ? dt::bf16 : dt::f32);
  const dnnl::memory::desc a = matrix_desc(m, k, lda, trans_a, dt::bf16);
  const dnnl::memory::desc b = matrix_desc(k, n, ldb, trans_b, dt::bf16);
  const dnnl::matmul::desc desc =
      bias ? dnnl::matmul::desc(a, b, bias_desc(n), c) : dnnl::matmul::desc(a, b, c);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::post_ops post;
  if (accumulate) post.append_sum(1.0f);
  if (relu) post.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
  attr.set_post_ops(post);
  std::shared_ptr<Bf16Matmul> made;
  try {
    const dnnl::matmul::primitive_desc pd(desc, attr, cpu_engine());
    if (std::string(pd.impl_info_str()).find("ref") == std::string::npos) {
      made = std::make_shared<Bf16Matmul>();
      made->primitive = dnnl::matmul(pd);
      made->scratch_bytes = pd.scratchpad_desc().get_size();
    }
  } catch (const dnnl::error&) {
    made.reset();  // no implementation for this shape: the caller widens to fp32
  }
  // A cache that grows past what any training run needs (shapes chosen call by call) starts over.
  if (cache.size() >= 256) cache.clear();
  cache.emplace(key, made);
  return made;
}

// op(A) · op(B) on the bf16 units; false when oneDNN has only its reference code for this call.
bool gemm_bf16_on_units(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                        const bf16* a, std::int64_t lda, const bf16* b, std::int64_t ldb,
                        const Bf16GemmOut& out, int threads) {
  const bool bf16_out = out.b16 != nullptr;
  try {
    const std::shared_ptr<const Bf16Matmul> mm =
        bf16_matmul({m, n, k, lda, ldb, out.ld, trans_a, trans_b, bf16_out, out.accumulate,
                     out.bias != nullptr, out.relu});
    if (mm == nullptr) return false;
    thread_local std::vector<unsigned char> scratch;
    if (scratch.size() < mm->scratch_bytes) scratch.resize(mm->scratch_bytes);
    const dnnl::engine& engine = cpu_engine();
    // oneDNN's memory objects take non-const handles; the inputs are only read.
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC,
         dnnl::memory(matrix_desc(m, k, lda, trans_a, dt::bf16), engine, const_cast<bf16*>(a))},
        {DNNL_ARG_WEIGHTS,
         dnnl::memory(matrix_desc(k, n, ldb, trans_b, dt::bf16), engine, const_cast<bf16*>(b))},
        {DNNL_ARG_DST,
         bf16_out ? dnnl::memory(matrix_desc(m, n, out.ld, false, dt::bf16), engine, out.b16)
                  : dnnl::memory(matrix_desc(m, n, out.ld, false, dt::f32), engine, out.f32)}};
    if (out.bias != nullptr) {
      args.emplace(DNNL_ARG_BIAS, dnnl::memory(bias_desc(n), engine, const_cast<float*>(out.bias)));
    }
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

bool has_bf16_gemm() {
  static const bool has = [] {
    const auto isa = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
    constexpr auto kBf16 = static_cast<unsigned>(dnnl_cpu_isa_avx512_core_bf16);
    return cpu_isa() == Isa::avx512 && (isa & kBf16) == kBf16;
  }();
  return has;
}

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

std::int64_t gemm_bf16_scratch(std::int64_t m, std::int64_t n, std::int64_t k, bool to_bf16) {
  return has_bf16_gemm() ? 0 : (m + n) * k + (to_bf16 ? m * n : 0);
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
               const bf16* a, std::int64_t lda, const bf16* b, std::int64_t ldb,
               const Bf16GemmOut& out, float* scratch, int threads) {
  if (m == 0 || n == 0) return;
  const bool bf16_out = out.b16 != nullptr;
#if defined(DESCENT_GEMM_DNNL)
  if (k > 0 && has_bf16_gemm() &&
      gemm_bf16_on_units(trans_a, trans_b, m, n, k, a, lda, b, ldb, out, threads)) {
    return;
  }
#endif
  std::vector<float> own;
  if (scratch == nullptr) {
    // A layout the units' code does not take, on a CPU that has them: the caller reserved nothing.
    own.resize(static_cast<std::size_t>((m + n) * k + (bf16_out ? m * n : 0)));
    scratch = own.data();
  }
  // Stored shapes: A is k x m when transposed, else m x k; B is n x k when transposed, else k x n.
  float* af = scratch;
  float* bf = scratch + m * k;
  float* c = bf16_out ? scratch + (m + n) * k : out.f32;
  const std::int64_t ldc = bf16_out ? n : out.ld;
  const std::int64_t a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;
  const std::int64_t b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
  widen(a, a_rows, a_cols, lda, af, threads);
  widen(b, b_rows, b_cols, ldb, bf, threads);
  if (k > 0) {
    sgemm(trans_a, trans_b, m, n, k, 1.0f, af, a_cols, bf, b_cols,
          out.accumulate && !bf16_out ? 1.0f : 0.0f, c, ldc, threads);
  } else if (bf16_out || !out.accumulate) {
    // An empty sum (which the GEMM libraries refuse): zero.
    for (std::int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
  }
  if (!bf16_out && out.bias == nullptr && !out.relu) return;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t i = 0; i < m; ++i) {
    float* ci = c + i * ldc;
    if (out.bias != nullptr) {
      for (std::int64_t j = 0; j < n; ++j) ci[j] += out.bias[j];
    }
    if (out.relu) {
      for (std::int64_t j = 0; j < n; ++j) ci[j] = ci[j] < 0.0f ? 0.0f : ci[j];
    }
    if (bf16_out) {
      bf16* oi = out.b16 + i * out.ld;
      for (std::int64_t j = 0; j < n; ++j) oi[j] = to_bf16(ci[j]);
    }
  }
}

}  // namespace descent::cpu

const char* descent::detail::cpu_gemm_name() { return DESCENT_CPU_GEMM_NAME; }
const char* descent::detail::cpu_bf16_gemm_name() { return descent::cpu::bf16_gemm_name(); }
