// The CPU backend's fp32 products (kernels/cpu/gemm.cpp, cpu::sgemm): A · B with B aligned as the
// weights are, which sgemm copies off its 32-byte boundary first on CPUs without AVX-512 (oneDNN's
// no-copy kernel runs half as fast on an aligned B), against a float64 sum; the copy changes no
// bit of C, padding and all, and two threads at once each get their own copy.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <thread>

#include "kernels/cpu/gemm.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

// n floats whose first lies `offset` bytes past a 64-byte boundary.
class Floats {
 public:
  Floats(std::size_t n, std::size_t offset)
      : raw_(n + 32),
        data_(raw_.data() +
              (16 - reinterpret_cast<std::uintptr_t>(raw_.data()) / sizeof(float) % 16 +
               offset / sizeof(float)) %
                  16) {}
  float* data() { return data_; }
  float& operator[](std::size_t i) { return data_[i]; }

 private:
  std::vector<float> raw_;
  float* data_;
};

struct Case {
  std::int64_t m, n, k, pad;
  float alpha, beta;
};

void check(std::mt19937_64& rng, const Case& c) {
  SCOPED_TRACE("m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) +
               " k=" + std::to_string(c.k) + " pad=" + std::to_string(c.pad) +
               " beta=" + std::to_string(c.beta));
  const std::int64_t lda = c.k + c.pad, ldb = c.n + c.pad, ldc = c.n + c.pad;
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  const auto size = [](std::int64_t rows, std::int64_t ld) {
    return static_cast<std::size_t>(std::max<std::int64_t>(1, rows * ld));
  };
  Floats a(size(c.m, lda), 0), aligned_b(size(c.k, ldb), 0), off_b(size(c.k, ldb), 16);
  Floats c_aligned(size(c.m, ldc), 0), c_off(size(c.m, ldc), 0);
  for (std::size_t i = 0; i < size(c.m, lda); ++i) a[i] = u(rng);
  for (std::size_t i = 0; i < size(c.k, ldb); ++i) aligned_b[i] = off_b[i] = u(rng);
  std::vector<float> before(size(c.m, ldc));
  for (std::size_t i = 0; i < before.size(); ++i) before[i] = c_aligned[i] = c_off[i] = u(rng);

  // Aligned, B is copied where sgemm_copies_b says so; 16 bytes off, it never is.
  EXPECT_FALSE(cpu::sgemm_copies_b(false, false, c.m, c.n, off_b.data()));
  cpu::sgemm(false, false, c.m, c.n, c.k, c.alpha, a.data(), lda, aligned_b.data(), ldb, c.beta,
             c_aligned.data(), ldc, 2);
  cpu::sgemm(false, false, c.m, c.n, c.k, c.alpha, a.data(), lda, off_b.data(), ldb, c.beta,
             c_off.data(), ldc, 2);
  int bad = 0;
  for (std::int64_t i = 0; i < c.m; ++i) {
    for (std::int64_t j = 0; j < ldc; ++j) {
      const auto at = static_cast<std::size_t>(i * ldc + j);
      if (j >= c.n) {
        if (c_aligned[at] != before[at] && ++bad <= 3) ADD_FAILURE() << "padding written at " << i;
        continue;
      }
      double want = c.beta * static_cast<double>(before[at]);
      double magnitude = std::abs(want);
      for (std::int64_t p = 0; p < c.k; ++p) {
        const double t = c.alpha * static_cast<double>(a[static_cast<std::size_t>(i * lda + p)]) *
                         aligned_b[static_cast<std::size_t>(p * ldb + j)];
        want += t;
        magnitude += std::abs(t);
      }
      // fp32 products and sums in any order: |error| <= (k + 3) · 2⁻²⁴ · Σ|terms|.
      const double bound = static_cast<double>(c.k + 3) * std::ldexp(1.0, -24) * magnitude;
      if (!(std::abs(c_aligned[at] - want) <= bound) && ++bad <= 3) {
        ADD_FAILURE() << "C[" << i << "][" << j << "] = " << c_aligned[at] << ", want " << want
                      << " within " << bound;
      }
      // Where ldb is n, the copy is the same B at another address: the same bits.
      if (c.pad == 0 && c_aligned[at] != c_off[at] && ++bad <= 3) {
        ADD_FAILURE() << "C[" << i << "][" << j << "]: " << c_aligned[at] << " with B aligned, "
                      << c_off[at] << " with B 16 bytes off";
      }
    }
  }
}

TEST(CpuGemmF32, AnAlignedBAgreesWithTheFloat64SumAndWithBOffItsBoundary) {
  std::mt19937_64 rng(20261204);
  for (const float beta : {0.0f, 1.0f}) {
    check(rng, {256, 1024, 64, 0, 1.0f, beta});  // a layer's input gradient (B copied here)
    check(rng, {64, 96, 80, 0, 0.5f, beta});
    check(rng, {33, 40, 17, 3, 1.0f, beta});     // padded rows: the copy packs them
    check(rng, {2048, 2048, 8, 0, 1.0f, beta});  // 1/m + 1/n below 0.0038: never copied
  }
  // Which operands are copied: only an untransposed, 32-byte aligned B, for the shapes oneDNN
  // runs in place, and only on CPUs without AVX-512 (its own kernels there) with oneDNN.
  alignas(64) static float b[8];
  const bool copies = cpu::sgemm_copies_b(false, false, 256, 1024, b);
  EXPECT_FALSE(cpu::sgemm_copies_b(true, false, 256, 1024, b));
  EXPECT_FALSE(cpu::sgemm_copies_b(false, true, 256, 1024, b));
  EXPECT_FALSE(cpu::sgemm_copies_b(false, false, 256, 1024, b + 4));
  EXPECT_FALSE(cpu::sgemm_copies_b(false, false, 4096, 1024, b));
  const std::string gemm = cpu_gemm_name();
  if (gemm.rfind("oneDNN", 0) == 0 && !__builtin_cpu_supports("avx512f")) {
    EXPECT_TRUE(copies);
  } else {
    EXPECT_FALSE(copies) << gemm;
  }
}

// Two threads at once, each copying its own B: each result equals the one computed alone.
TEST(CpuGemmF32, TwoThreadsAtOnceEachCopyTheirOwnB) {
  constexpr std::int64_t m = 256, n = 512, k = 96;
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Floats a(m * k, 0), b0(k * n, 0), b1(k * n, 0);
  for (std::int64_t i = 0; i < m * k; ++i) a[static_cast<std::size_t>(i)] = u(rng);
  for (std::int64_t i = 0; i < k * n; ++i) {
    b0[static_cast<std::size_t>(i)] = u(rng);
    b1[static_cast<std::size_t>(i)] = u(rng);
  }
  std::vector<float> alone0(m * n), alone1(m * n), at_once0(m * n), at_once1(m * n);
  cpu::sgemm(false, false, m, n, k, 1.0f, a.data(), k, b0.data(), n, 0.0f, alone0.data(), n, 1);
  cpu::sgemm(false, false, m, n, k, 1.0f, a.data(), k, b1.data(), n, 0.0f, alone1.data(), n, 1);
  for (int round = 0; round < 20; ++round) {
    std::thread other([&] {
      cpu::sgemm(false, false, m, n, k, 1.0f, a.data(), k, b1.data(), n, 0.0f, at_once1.data(), n,
                 1);
    });
    cpu::sgemm(false, false, m, n, k, 1.0f, a.data(), k, b0.data(), n, 0.0f, at_once0.data(), n, 1);
    other.join();
    ASSERT_EQ(at_once0, alone0);
    ASSERT_EQ(at_once1, alone1);
  }
}

}  // namespace
}  // namespace descent::test
