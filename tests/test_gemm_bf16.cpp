// The CPU backend's bf16 products (kernels/cpu/gemm.cpp): every layout against a float64 sum
// with the bound of fp32 accumulation, on the bf16 units where the CPU has them (this run) and on
// widened copies elsewhere (the sanitizer stage, DESCENT_CPU_ISA=x86-64); and the units are used
// wherever the CPU and the build have them.
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "kernels/cpu/gemm.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

struct GemmCase {
  bool trans_a, trans_b;
  std::int64_t m, n, k, pad;
  bool accumulate;
  bool bf16_out = false, bias = false, relu = false;  // C rounded to bf16 after bias and relu
};

std::string describe(const GemmCase& c) {
  std::ostringstream s;
  s << (c.trans_a ? "Aᵀ" : "A") << "·" << (c.trans_b ? "Bᵀ" : "B") << " m=" << c.m << " n=" << c.n
    << " k=" << c.k << " pad=" << c.pad << (c.accumulate ? " accumulate" : "");
  return s.str();
}

void check_gemm(std::mt19937_64& rng, const GemmCase& c) {
  SCOPED_TRACE(describe(c));
  // Stored shapes (row-major, leading dimension cols + pad).
  const std::int64_t a_rows = c.trans_a ? c.k : c.m, a_cols = c.trans_a ? c.m : c.k;
  const std::int64_t b_rows = c.trans_b ? c.n : c.k, b_cols = c.trans_b ? c.k : c.n;
  const std::int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.n + c.pad;
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<bf16> a(static_cast<std::size_t>(std::max<std::int64_t>(1, a_rows * lda)));
  std::vector<bf16> b(static_cast<std::size_t>(std::max<std::int64_t>(1, b_rows * ldb)));
  for (bf16& v : a) v = to_bf16(u(rng));
  for (bf16& v : b) v = to_bf16(u(rng));
  const std::size_t c_size = static_cast<std::size_t>(std::max<std::int64_t>(1, c.m * ldc));
  std::vector<float> cm(c_size), bias(static_cast<std::size_t>(c.n));
  for (float& v : cm) v = u(rng);
  for (float& v : bias) v = u(rng);
  std::vector<bf16> cb(c_size);
  for (bf16& v : cb) v = to_bf16(u(rng));
  const std::vector<float> before = cm;
  const std::vector<bf16> before_b = cb;
  const auto at_a = [&](std::int64_t i, std::int64_t p) {
    return static_cast<double>(to_float(c.trans_a ? a[p * lda + i] : a[i * lda + p]));
  };
  const auto at_b = [&](std::int64_t p, std::int64_t j) {
    return static_cast<double>(to_float(c.trans_b ? b[j * ldb + p] : b[p * ldb + j]));
  };
  std::vector<float> scratch(
      static_cast<std::size_t>(cpu::gemm_bf16_scratch(c.m, c.n, c.k, c.bf16_out)));
  cpu::Bf16GemmOut out;
  out.f32 = c.bf16_out ? nullptr : cm.data();
  out.b16 = c.bf16_out ? cb.data() : nullptr;
  out.ld = ldc;
  out.accumulate = c.accumulate;
  out.bias = c.bias ? bias.data() : nullptr;
  out.relu = c.relu;
  cpu::gemm_bf16(c.trans_a, c.trans_b, c.m, c.n, c.k, a.data(), lda, b.data(), ldb, out,
                 scratch.empty() ? nullptr : scratch.data(), 2);
  int bad = 0;
  for (std::int64_t i = 0; i < c.m; ++i) {
    for (std::int64_t j = 0; j < ldc; ++j) {
      const std::size_t at = static_cast<std::size_t>(i * ldc + j);
      if (j >= c.n) {
        // The padding is never written.
        const bool same = c.bf16_out ? cb[at].bits == before_b[at].bits : cm[at] == before[at];
        if (!same && ++bad <= 3) ADD_FAILURE() << "padding written at " << i;
        continue;
      }
      double want = c.accumulate ? before[at] : 0.0, magnitude = std::abs(want);
      if (c.bias) {
        want += bias[static_cast<std::size_t>(j)];
        magnitude += std::abs(bias[static_cast<std::size_t>(j)]);
      }
      for (std::int64_t p = 0; p < c.k; ++p) {
        want += at_a(i, p) * at_b(p, j);
        magnitude += std::abs(at_a(i, p) * at_b(p, j));
      }
      // Exact products, fp32 sums in any order: |error| ≤ (k + 2) · 2⁻²⁴ · Σ|terms|; rounding
      // to bf16 adds half a bf16 ulp of the result.
      double bound = static_cast<double>(c.k + 2) * std::ldexp(1.0, -24) * magnitude;
      double got = cm[at];
      if (c.bf16_out) {
        got = to_float(cb[at]);
        if (c.relu) want = std::max(want, 0.0);
        bound += std::ldexp(std::abs(want) + bound, -8);
        if (c.relu && got < 0.0 && ++bad <= 3) ADD_FAILURE() << "relu let " << got << " through";
      }
      if (!(std::abs(got - want) <= bound) && ++bad <= 3) {
        ADD_FAILURE() << "C[" << i << "][" << j << "] = " << got << ", want " << want << " within "
                      << bound;
      }
    }
  }
}

TEST(CpuGemmBf16, EveryLayoutAgreesWithTheFloat64Sum) {
  std::mt19937_64 rng(20261202);
  for (const bool ta : {false, true}) {
    for (const bool tb : {false, true}) {
      for (const bool acc : {false, true}) {
        check_gemm(rng, {ta, tb, 1, 1, 1, 0, acc});
        check_gemm(rng, {ta, tb, 17, 33, 65, 0, acc});
        check_gemm(rng, {ta, tb, 64, 48, 1000, 3, acc});
        check_gemm(rng, {ta, tb, 257, 10, 31, 5, acc});
      }
      // To bf16, with every epilogue.
      for (const bool bias : {false, true}) {
        for (const bool relu : {false, true}) {
          check_gemm(rng, {ta, tb, 17, 33, 65, 0, false, true, bias, relu});
          check_gemm(rng, {ta, tb, 64, 48, 1000, 3, false, true, bias, relu});
        }
      }
    }
  }
}

TEST(CpuGemmBf16, AnEmptySumIsZeroOrLeavesTheAccumulator) {
  std::mt19937_64 rng(7);
  check_gemm(rng, {false, true, 5, 7, 0, 2, false});
  check_gemm(rng, {true, false, 5, 7, 0, 0, true});
  check_gemm(rng, {false, false, 0, 7, 9, 0, false});
  check_gemm(rng, {false, true, 5, 7, 0, 1, false, true, true, true});
}

// Two threads (two contexts, say) running the same primitive at once, each with its own scratch:
// every result equals the one computed alone, bit for bit.
TEST(CpuGemmBf16, TwoThreadsAtOnceGiveTheBitsOfOne) {
  constexpr std::int64_t m = 96, n = 80, k = 300;
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<bf16> a(m * k), b(n * k);
  for (bf16& v : a) v = to_bf16(u(rng));
  for (bf16& v : b) v = to_bf16(u(rng));
  const auto product = [&](std::vector<bf16>& c) {
    std::vector<float> scratch(static_cast<std::size_t>(cpu::gemm_bf16_scratch(m, n, k, true)) + 1);
    cpu::Bf16GemmOut out;
    out.b16 = c.data();
    out.ld = n;
    cpu::gemm_bf16(false, true, m, n, k, a.data(), k, b.data(), k, out, scratch.data(), 1);
  };
  std::vector<bf16> alone(m * n);
  product(alone);
  std::vector<std::vector<bf16>> results(2, std::vector<bf16>(m * n));
  std::vector<int> mismatches(2, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int repeat = 0; repeat < 50; ++repeat) {
        product(results[t]);
        for (std::int64_t i = 0; i < m * n; ++i) {
          mismatches[t] += results[t][i].bits != alone[i].bits;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(mismatches[0], 0);
  EXPECT_EQ(mismatches[1], 0);
}

// A CPU that advertises AVX512-BF16 (or AMX-BF16) runs the bf16 products on those units when
// descent has oneDNN and nothing capped the ISA: the fast path is not lost silently.
TEST(CpuGemmBf16, TheBf16UnitsAreUsedWhereTheCpuHasThem) {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string text((std::istreambuf_iterator<char>(cpuinfo)), std::istreambuf_iterator<char>());
  const bool units =
      text.find(" avx512_bf16") != std::string::npos || text.find(" amx_bf16") != std::string::npos;
  const bool onednn = cpu_gemm_name().find("oneDNN") != std::string::npos;
  const bool capped = std::getenv("DESCENT_CPU_ISA") != nullptr;
  if (!units || !onednn || capped) {
    EXPECT_FALSE(cpu::has_bf16_gemm() && !units);
    GTEST_SKIP() << "no bf16 units here (or no oneDNN, or DESCENT_CPU_ISA set): "
                 << cpu::bf16_gemm_name();
  }
  EXPECT_TRUE(cpu::has_bf16_gemm()) << cpu::bf16_gemm_name();
  EXPECT_NE(std::string(cpu::bf16_gemm_name()).find("bf16 units"), std::string::npos);
}

}  // namespace
}  // namespace descent::test
