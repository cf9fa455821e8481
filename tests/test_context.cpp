// Device parsing, Context construction and options, and the backend tables (Buffer round trips:
// tests/backends/test_buffer.cpp).
#include <cstdlib>
#include <limits>
#include <numeric>

#include "kernels/backend.hpp"
#include "test_support.hpp"

namespace descent::test {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;

TEST(Device, ParsesCpuAndCuda) {
  EXPECT_EQ(Device::parse("cpu"), Device::cpu());
  EXPECT_EQ(Device::parse("cuda"), Device::cuda(0));
  EXPECT_EQ(Device::parse("cuda:0"), Device::cuda(0));
  EXPECT_EQ(Device::parse("cuda:3"), Device::cuda(3));
  EXPECT_TRUE(Device::parse("cpu").is_cpu());
  EXPECT_TRUE(Device::parse("cuda:1").is_cuda());
}

TEST(Device, StrRoundTrips) {
  EXPECT_EQ(Device::cpu().str(), "cpu");
  for (Device d : {Device::cpu(), Device::cuda(0), Device::cuda(2)}) {
    EXPECT_EQ(Device::parse(d.str()), d) << d.str();
  }
  EXPECT_THAT(Device::cuda(2).str(), HasSubstr("2"));
}

TEST(Device, RejectsBadText) {
  for (const char* bad : {"bogus", "", "gpu", "cuda:", "cuda:x", "cuda:-1", "cpu:0x", "CUDA!"}) {
    SCOPED_TRACE(bad);
    EXPECT_THROW(Device::parse(bad), ArgumentError);
  }
  EXPECT_THROW_THAT(Device::parse("bogus"), ArgumentError, HasSubstr("bogus"));
}

TEST(Device, DevicesCompare) {
  EXPECT_NE(Device::cpu(), Device::cuda(0));
  EXPECT_NE(Device::cuda(0), Device::cuda(1));
}

TEST(Activations, NamesRoundTrip) {
  for (Activation a : kAllActivations) EXPECT_EQ(parse_activation(to_string(a)), a);
  EXPECT_STREQ(to_string(Activation::gelu), "gelu");
  EXPECT_THROW_THAT(parse_activation("swish"), ArgumentError, HasSubstr("swish"));
}

TEST(Build, CudaQueriesAreConsistent) {
  if (!built_with_cuda()) {
    EXPECT_EQ(cuda_device_count(), 0);
  }
  EXPECT_GE(cuda_device_count(), 0);
  EXPECT_FALSE(cpu_gemm_name().empty());
}

TEST(Context, CpuDefaults) {
  Context ctx;
  EXPECT_EQ(ctx.device(), Device::cpu());
  EXPECT_GE(ctx.threads(), 1);
  EXPECT_EQ(ctx.math(), MathMode::fp32);
  EXPECT_EQ(ctx.stream(), nullptr);
  EXPECT_NO_THROW(ctx.synchronize());
}

TEST(Context, CpuOptions) {
  Context one(Device::cpu(), ContextOptions{1, MathMode::fp32, nullptr});
  EXPECT_EQ(one.threads(), 1);
  Context two(Device::cpu(), ContextOptions{2, MathMode::tf32, nullptr});
  EXPECT_EQ(two.threads(), 2);
  EXPECT_EQ(two.math(), MathMode::tf32);
  two.set_math(MathMode::fp32);
  EXPECT_EQ(two.math(), MathMode::fp32);
}

TEST(Context, MoveKeepsTheDevice) {
  Context a(Device::cpu(), ContextOptions{1});
  Context b(std::move(a));
  EXPECT_EQ(b.device(), Device::cpu());
  EXPECT_EQ(b.threads(), 1);
  Context c;
  c = std::move(b);
  EXPECT_EQ(c.threads(), 1);
}

TEST(Context, CudaWithoutGpuThrowsDeviceError) {
  if (cuda_available()) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_THROW_THAT(Context ctx(Device::cuda(0)), DeviceError,
                    AnyOf(HasSubstr("cuda"), HasSubstr("CUDA")));
}

// ---------------------------------------------------------------- the backend interface

// Every backend fills every required entry of the table; an optional capability (capture,
// streaming) comes whole or not at all; the table a Context uses is its device's.
TEST(Backends, TablesAreCompleteAndChosenByDevice) {
  std::vector<const detail::Backend*> tables{&detail::cpu_backend()};
  if (built_with_cuda()) {
    tables.push_back(&detail::cuda_backend());
  } else {
    EXPECT_THROW_THAT(detail::cuda_backend(), DeviceError, HasSubstr("DESCENT_CUDA=ON"));
  }
  for (const detail::Backend* t : tables) {
    SCOPED_TRACE(t->name);
#define DESCENT_EXPECT_ENTRY(e) EXPECT_NE(t->e, nullptr) << #e
    DESCENT_EXPECT_ENTRY(init);
    DESCENT_EXPECT_ENTRY(set_stream);
    DESCENT_EXPECT_ENTRY(synchronize);
    DESCENT_EXPECT_ENTRY(memory_bytes);
    DESCENT_EXPECT_ENTRY(memory_bytes_are);
    DESCENT_EXPECT_ENTRY(allocate);
    DESCENT_EXPECT_ENTRY(deallocate);
    DESCENT_EXPECT_ENTRY(copy);
    DESCENT_EXPECT_ENTRY(copy_rows);
    DESCENT_EXPECT_ENTRY(dense_forward);
    DESCENT_EXPECT_ENTRY(dense_backward);
    DESCENT_EXPECT_ENTRY(dense_forward_bf16);
    DESCENT_EXPECT_ENTRY(dense_backward_bf16);
    DESCENT_EXPECT_ENTRY(mse_loss);
    DESCENT_EXPECT_ENTRY(softmax_cross_entropy);
    DESCENT_EXPECT_ENTRY(sigmoid_bce);
    DESCENT_EXPECT_ENTRY(sgd_update);
    DESCENT_EXPECT_ENTRY(adam_update);
    DESCENT_EXPECT_ENTRY(clip_grad_norm);
    DESCENT_EXPECT_ENTRY(fill_uniform);
    DESCENT_EXPECT_ENTRY(fill);
    DESCENT_EXPECT_ENTRY(check_finite);
    DESCENT_EXPECT_ENTRY(to_bf16);
    DESCENT_EXPECT_ENTRY(to_float);
    DESCENT_EXPECT_ENTRY(store_float);
    DESCENT_EXPECT_ENTRY(reset_stats);
    DESCENT_EXPECT_ENTRY(record_batch);
    DESCENT_EXPECT_ENTRY(count_correct);
    DESCENT_EXPECT_ENTRY(count_correct_binary);
    DESCENT_EXPECT_ENTRY(gather_rows_u8);
    DESCENT_EXPECT_ENTRY(gather_rows);
    DESCENT_EXPECT_ENTRY(gather_labels);
#undef DESCENT_EXPECT_ENTRY
    const bool graphs = t->begin_capture != nullptr;
    EXPECT_EQ(t->end_capture != nullptr, graphs);
    EXPECT_EQ(t->abort_capture != nullptr, graphs);
    EXPECT_EQ(t->launch != nullptr, graphs);
    EXPECT_EQ(t->destroy_graph != nullptr, graphs);
    const bool staging = t->create_stager != nullptr;
    EXPECT_EQ(t->destroy_stager != nullptr, staging);
    EXPECT_EQ(t->stager_acquire != nullptr, staging);
    EXPECT_EQ(t->stager_submit != nullptr, staging);
    EXPECT_EQ(t->stager_release != nullptr, staging);
    EXPECT_EQ(t->fused_hidden_forward != nullptr, t->fused_width != nullptr);
    // A device that reads host memory needs no staging; one that does not, does.
    EXPECT_NE(t->host_memory, staging);
  }
  EXPECT_EQ(&detail::backend_of(Context(Device::cpu())), &detail::cpu_backend());
  if (cuda_available()) {
    EXPECT_EQ(&detail::backend_of(Context(Device::cuda(0))), &detail::cuda_backend());
  }
}

// The fused pass is validated like every op, before any backend runs it.
TEST(FusedValidation, RefusedOnTheCpuAndWithBadLayers) {
  Context cpu;
  Buffer<bf16> x(cpu, 4 * 32);
  const MatrixView<const bf16> xv(x.data(), 4, 32, cpu.device());
  detail::FusedLayer layer;
  EXPECT_THROW_THAT(detail::fused_hidden_forward(cpu, xv, &layer, 1), DeviceError,
                    ::testing::HasSubstr("fused_hidden_forward: ctx: the cpu backend has no"));
}

TEST(Backends, OnlyTheCudaBackendHasAFusedPath) {
  EXPECT_EQ(detail::cpu_backend().fused_hidden_forward, nullptr);
  EXPECT_EQ(detail::cpu_backend().fused_width, nullptr);
  if (built_with_cuda()) {
    EXPECT_NE(detail::cuda_backend().fused_hidden_forward, nullptr);
  }
}

}  // namespace
}  // namespace descent::test
