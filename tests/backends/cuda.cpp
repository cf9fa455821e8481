// The backend of the GPU test executables' parameterised cases (descent_gpu_tests,
// descent_slow_gpu_tests): cuda:0, skipped without a usable CUDA device (BackendTest::SetUp).
#include "test_support.hpp"

namespace descent::test {

std::vector<Device> backends_under_test() { return {Device::cuda(0)}; }

}  // namespace descent::test
