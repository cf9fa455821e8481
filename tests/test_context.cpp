// Device parsing, Context construction and options, Buffer round trips on every backend.
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

TEST(Context, CudaIndexOutOfRangeThrowsDeviceError) {
  DESCENT_REQUIRE_CUDA_OR_SKIP();
  EXPECT_THROW_THAT(Context ctx(Device::cuda(cuda_device_count() + 7)), DeviceError,
                    HasSubstr(std::to_string(cuda_device_count() + 7)));
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

// ---------------------------------------------------------------- buffers on every backend

class BufferTest : public BackendTest {};
DESCENT_INSTANTIATE_BACKENDS(BufferTest);

TEST_P(BufferTest, RoundTripsHostData) {
  const std::vector<float> host = random_floats(rng_, 1023);
  Buffer<float> b = upload(ctx(), host);
  EXPECT_EQ(b.size(), 1023);
  EXPECT_EQ(b.device(), GetParam());
  EXPECT_EQ(b.to_host(ctx()), host);
  std::vector<std::int32_t> ints(17);
  std::iota(ints.begin(), ints.end(), -8);
  EXPECT_EQ(upload(ctx(), ints).to_host(ctx()), ints);
  const std::vector<bf16> halves = to_bf16_vec(host);
  const std::vector<bf16> back = upload(ctx(), halves).to_host(ctx());
  for (std::size_t i = 0; i < back.size(); ++i) ASSERT_EQ(back[i].bits, halves[i].bits);
}

TEST_P(BufferTest, CopyFromHostAtOffset) {
  Buffer<float> b = upload(ctx(), std::vector<float>(10, 1.0f));
  const std::vector<float> part = {2.0f, 3.0f, 4.0f};
  b.copy_from_host(ctx(), std::span<const float>(part), 6);
  EXPECT_EQ(b.to_host(ctx()), (std::vector<float>{1, 1, 1, 1, 1, 1, 2, 3, 4, 1}));
}

// A copy that does not fit is refused before any byte moves (no write past the end).
TEST_P(BufferTest, CopyFromHostThatDoesNotFitIsRefused) {
  Buffer<float> b = upload(ctx(), std::vector<float>(10, 1.0f));
  const std::vector<float> part = {2.0f, 3.0f, 4.0f};
  for (std::int64_t offset : {std::int64_t{8}, std::int64_t{-1}, std::int64_t{11},
                              std::numeric_limits<std::int64_t>::max()}) {
    SCOPED_TRACE(offset);
    EXPECT_THROW_THAT(b.copy_from_host(ctx(), std::span<const float>(part), offset),
                      ArgumentError, ::testing::HasSubstr("do not fit a buffer of 10"));
  }
  EXPECT_EQ(b.to_host(ctx()), std::vector<float>(10, 1.0f));
}

// to_host of a view: its rows and columns, densely, whatever its leading dimension.
TEST_P(BufferTest, ViewToHostSkipsThePadding) {
  const Buffer<float> b = upload(ctx(), std::vector<float>{1, 2, 3, 9, 4, 5, 6, 9});
  EXPECT_EQ(to_host(ctx(), MatrixView<const float>(b.data(), 2, 3, b.device(), 4)),
            (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(to_host(ctx(), b.matrix(2, 4)), (std::vector<float>{1, 2, 3, 9, 4, 5, 6, 9}));
  EXPECT_TRUE(to_host(ctx(), MatrixView<const float>()).empty());
}

TEST_P(BufferTest, EmptyAndMoved) {
  Buffer<float> empty(ctx(), 0);
  EXPECT_EQ(empty.size(), 0);
  EXPECT_TRUE(empty.view().empty());
  EXPECT_TRUE(empty.to_host(ctx()).empty());
  Buffer<float> a = upload(ctx(), std::vector<float>{1.5f, 2.5f});
  Buffer<float> b(std::move(a));
  EXPECT_EQ(a.size(), 0);  // NOLINT(bugprone-use-after-move): moved-from state is specified
  EXPECT_EQ(b.to_host(ctx()), (std::vector<float>{1.5f, 2.5f}));
  Buffer<float> c;
  c = std::move(b);
  EXPECT_EQ(c.to_host(ctx()), (std::vector<float>{1.5f, 2.5f}));
}

TEST_P(BufferTest, ViewsDescribeTheBuffer) {
  Buffer<float> b = poisoned<float>(ctx(), 12);
  const MatrixView<float> m = b.matrix(3, 4);
  EXPECT_EQ(m.rows, 3);
  EXPECT_EQ(m.cols, 4);
  EXPECT_EQ(m.ld, 4);
  EXPECT_TRUE(m.contiguous());
  EXPECT_EQ(m.device, GetParam());
  EXPECT_EQ(m.row_block(1, 2).data, b.data() + 4);
  const VectorView<float> v = b.view().slice(5, 3);
  EXPECT_EQ(v.data, b.data() + 5);
  EXPECT_EQ(v.as_matrix(1, 3).cols, 3);
}

TEST_P(BufferTest, SynchronizeAfterWork) {
  Buffer<float> b = poisoned<float>(ctx(), 1 << 16);
  fill(ctx(), b.view(), 3.0f);
  EXPECT_NO_THROW(ctx().synchronize());
  for (float v : b.to_host(ctx())) ASSERT_EQ(v, 3.0f);
}

}  // namespace
}  // namespace descent::test
