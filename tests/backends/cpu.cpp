// The backend of the CPU test executables' parameterised cases (descent_tests, descent_slow_tests).
#include "test_support.hpp"

namespace descent::test {

std::vector<Device> backends_under_test() { return {Device::cpu()}; }

}  // namespace descent::test
