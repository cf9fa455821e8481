// The descent::cuda backend of a build without CUDA: no devices, and every op says how to get one.
#include "backend.hpp"
#include "descent/error.hpp"

namespace descent::cuda {

namespace {
[[noreturn]] void absent() {
  throw DeviceError(
      "descent was built without CUDA support; rebuild with DESCENT_CUDA=ON and the CUDA "
      "toolkit, or use device cpu");
}
}  // namespace

// Every signature is declared by DESCENT_BACKEND_OPS; each body is the same throw.
#define DESCENT_ABSENT(...) \
  __VA_ARGS__ { absent(); }

DESCENT_ABSENT(void dense_forward(const Context&, MatrixView<const float>, MatrixView<const float>,
                                  VectorView<const float>, Activation, MatrixView<float>,
                                  MatrixView<float>))
DESCENT_ABSENT(void dense_backward(const Context&, MatrixView<const float>,
                                   MatrixView<const float>, MatrixView<const float>,
                                   MatrixView<const float>, MatrixView<const float>, Activation,
                                   const DenseGrads&))
DESCENT_ABSENT(void dense_forward(const Context&, MatrixView<const bf16>, MatrixView<const bf16>,
                                  VectorView<const float>, Activation, MatrixView<bf16>,
                                  MatrixView<float>))
DESCENT_ABSENT(void dense_backward(const Context&, MatrixView<const bf16>, MatrixView<const bf16>,
                                   MatrixView<const bf16>, MatrixView<const float>,
                                   MatrixView<const bf16>, Activation, const DenseGradsBf16&))
DESCENT_ABSENT(void mse_loss(const Context&, MatrixView<const float>, MatrixView<const float>,
                             const LossOutput&))
DESCENT_ABSENT(void softmax_cross_entropy(const Context&, MatrixView<const float>,
                                          VectorView<const std::int32_t>, const LossOutput&))
DESCENT_ABSENT(void sigmoid_bce(const Context&, MatrixView<const float>, MatrixView<const float>,
                                const LossOutput&))
DESCENT_ABSENT(void sgd_update(const Context&, VectorView<float>, VectorView<const float>,
                               VectorView<float>, const SgdOptions&, const SgdStep&))
DESCENT_ABSENT(void fill_uniform(const Context&, VectorView<float>, float, float, std::uint64_t,
                                 std::uint64_t))
DESCENT_ABSENT(void fill(const Context&, VectorView<float>, float))
DESCENT_ABSENT(void check_finite(const Context&, VectorView<const float>, std::int32_t*))
DESCENT_ABSENT(void convert(const Context&, VectorView<const float>, VectorView<bf16>))
DESCENT_ABSENT(void convert(const Context&, VectorView<const bf16>, VectorView<float>))
DESCENT_ABSENT(void init_context(Context::Impl&, void*))
DESCENT_ABSENT(void set_stream(Context::Impl&, void*))
DESCENT_ABSENT(void synchronize(const Context::Impl&))
DESCENT_ABSENT(void* allocate(std::size_t, int))
DESCENT_ABSENT(void copy_bytes(const Context::Impl&, void*, const void*, std::size_t))

int device_count() noexcept { return 0; }
void deallocate(void*, int) noexcept {}
void destroy_state(State*) noexcept {}

}  // namespace descent::cuda
