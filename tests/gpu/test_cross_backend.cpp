// The CPU and the GPU backend train the same model the same way: bit-identical initial weights,
// 20 SGD steps that agree within fp32 tolerance, and fill_uniform draws the same numbers (runs that
// repeat bit for bit on one backend: tests/backends/slow/test_repeat.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "descent/descent.hpp"
#include "short_run.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

TEST(CrossBackend, InitialWeightsAreBitIdentical) {
  DESCENT_REQUIRE_CUDA_OR_SKIP();
  const Dataset data = short_run::dataset(1);
  const auto cpu = short_run::train(Device::cpu(), Activation::relu, 0, data);
  const auto gpu = short_run::train(Device::cuda(0), Activation::relu, 0, data);
  ASSERT_EQ(cpu.size(), gpu.size());
  EXPECT_EQ(std::memcmp(cpu.data(), gpu.data(), cpu.size() * sizeof(float)), 0);
}

TEST(CrossBackend, TwentyStepsAgreeWithinFp32Tolerance) {
  DESCENT_REQUIRE_CUDA_OR_SKIP();
  const Dataset data = short_run::dataset(2);
  for (Activation act : {Activation::relu, Activation::tanh, Activation::gelu}) {
    SCOPED_TRACE(to_string(act));
    const auto start = short_run::train(Device::cpu(), act, 0, data);
    const auto cpu = short_run::train(Device::cpu(), act, 20, data);
    const auto gpu = short_run::train(Device::cuda(0), act, 20, data);
    // The weights moved, and both backends moved them the same way.
    EXPECT_GT(rel_error(cpu, start), 1e-3);
    EXPECT_TRUE(close_to(gpu, cpu, 2e-5));
  }
}

// The CPU and the GPU draw the same numbers for the same arguments.
TEST(FillUniformAcrossBackends, CpuAndGpuBitIdentical) {
  DESCENT_REQUIRE_CUDA_OR_SKIP();
  Context cpu(Device::cpu()), gpu(Device::cuda(0));
  for (auto [n, seed, offset] : {std::tuple<std::int64_t, std::uint64_t, std::uint64_t>{1, 0, 0},
                                 {1003, 77, 5},
                                 {1 << 20, 0xfeedfacecafebeefull, 123456789}}) {
    SCOPED_TRACE(cat("n ", n));
    Buffer<float> a = poisoned<float>(cpu, n), b = poisoned<float>(gpu, n);
    fill_uniform(cpu, a.view(), -0.3f, 0.7f, seed, offset);
    fill_uniform(gpu, b.view(), -0.3f, 0.7f, seed, offset);
    EXPECT_EQ(count_bit_differences(a.to_host(cpu), b.to_host(gpu)), 0);
  }
}

}  // namespace
}  // namespace descent::test
