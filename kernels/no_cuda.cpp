// The CUDA backend of a build without CUDA: no devices, and asking for the backend says how to
// get one.
#include "descent/error.hpp"
#include "kernels/backend.hpp"

namespace descent {

const detail::Backend& detail::cuda_backend() {
  throw DeviceError(
      "descent was built without its CUDA backend; rebuild with -DDESCENT_CUDA=ON on a machine "
      "with the CUDA toolkit, or use device cpu");
}

int detail::cuda_device_count() noexcept { return 0; }

}  // namespace descent
