// The CUDA backend's entry points in a build without CUDA: no devices, and a clear error.
#include <string>

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

int device_count() noexcept { return 0; }
void destroy_state(State*) noexcept {}
void init_context(Context::Impl&, void*) { absent(); }
void set_stream(Context::Impl&, void*) { absent(); }
void synchronize(const Context::Impl&) { absent(); }
void* allocate(std::size_t, int) { absent(); }
void deallocate(void*, int) noexcept {}
void copy_bytes(const Context::Impl&, void*, const void*, std::size_t) { absent(); }

void dense_forward(const Context&, MatrixView<const float>, MatrixView<const float>,
                   VectorView<const float>, Activation, MatrixView<float>, MatrixView<float>) {
  absent();
}
void dense_backward(const Context&, MatrixView<const float>, MatrixView<const float>,
                    MatrixView<const float>, MatrixView<const float>, MatrixView<const float>,
                    Activation, const DenseGrads&) {
  absent();
}
void dense_forward(const Context&, MatrixView<const bf16>, MatrixView<const bf16>,
                   VectorView<const float>, Activation, MatrixView<bf16>, MatrixView<float>) {
  absent();
}
void dense_backward(const Context&, MatrixView<const bf16>, MatrixView<const bf16>,
                    MatrixView<const bf16>, MatrixView<const float>, MatrixView<const bf16>,
                    Activation, const DenseGradsBf16&) {
  absent();
}
void mse_loss(const Context&, MatrixView<const float>, MatrixView<const float>,
              const LossOutput&) {
  absent();
}
void softmax_cross_entropy(const Context&, MatrixView<const float>,
                           VectorView<const std::int32_t>, const LossOutput&) {
  absent();
}
void sigmoid_bce(const Context&, MatrixView<const float>, MatrixView<const float>,
                 const LossOutput&) {
  absent();
}
void sgd_update(const Context&, VectorView<float>, VectorView<const float>, VectorView<float>,
                const SgdOptions&, const SgdStep&) {
  absent();
}
void fill_uniform(const Context&, VectorView<float>, float, float, std::uint64_t, std::uint64_t) {
  absent();
}
void fill(const Context&, VectorView<float>, float) { absent(); }
void check_finite(const Context&, VectorView<const float>, std::int32_t*) { absent(); }
void convert(const Context&, VectorView<const float>, VectorView<bf16>) { absent(); }
void convert(const Context&, VectorView<const bf16>, VectorView<float>) { absent(); }

}  // namespace descent::cuda
