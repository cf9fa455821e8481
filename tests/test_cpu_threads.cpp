// The CPU backend on the Context's threads: its results do not depend on how many there are, and
// it leaves the caller's OpenMP settings alone.
#include <omp.h>

#include <limits>

#include "backends/dense_checks.hpp"
#include "descent/descent.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// The CPU backend runs its GEMM on the Context's threads without changing the caller's OpenMP
// setting (a library does not change global state).
TEST(DenseCpu, GemmLeavesTheCallersOpenMpThreadCountAlone) {
  const int before = omp_get_max_threads();
  omp_set_num_threads(3);
  Context ctx(Device::cpu(), ContextOptions{1});
  std::mt19937_64 rng(7);
  check_forward(ctx, rng, {64, 48, 40}, Activation::relu, {}, kTolFp32);
  EXPECT_EQ(omp_get_max_threads(), 3);
  omp_set_num_threads(before);
}

// The CPU reduction is chunked by a fixed size, not by thread: one thread and two give the same
// bits (a plain OpenMP reduction would not).
TEST(ClipGradNorm, CpuResultDoesNotDependOnTheThreadCount) {
  std::mt19937_64 rng(seed_for_current_test());
  // Values of very different sizes, so that the summation order shows in the last bits.
  std::vector<float> g = random_floats(rng, 5 * 16384 + 77);
  for (std::size_t i = 0; i < g.size(); i += 3) g[i] *= 1000.0f;
  for (std::size_t i = 1; i < g.size(); i += 7) g[i] *= 1e-3f;
  const auto run = [&](int threads) {
    Context ctx(Device::cpu(), ContextOptions{.threads = threads});
    EXPECT_EQ(ctx.threads(), threads);
    const Buffer<float> gb = upload(ctx, g);
    Buffer<float> out(ctx, 4);
    clip_grad_norm(ctx, gb.view(), 1.0f, 2.0f, out.data(), out.data() + 1);
    clip_grad_norm(ctx, gb.view(), 1.0f, kInf, out.data() + 2, out.data() + 3);
    return out.to_host(ctx);
  };
  const std::vector<float> one = run(1), two = run(2);
  EXPECT_TRUE(bit_identical(one, two)) << "norm_2, scale_2, norm_inf, scale_inf";
  oracle::Vec ref = to_vec(g);
  EXPECT_TRUE(close_to(one[0], oracle::clip_grad_norm(ref, 1.0, 2.0), 1e-7));
}

}  // namespace
}  // namespace descent::test
