// Context and Device: choosing a device, its threads, stream and math mode.
#include <omp.h>

#include <charconv>
#include <string>

#include "descent/error.hpp"
#include "kernels/backend.hpp"

namespace descent {

Device Device::parse(std::string_view text) {
  if (text == "cpu") return cpu();
  if (text == "cuda") return cuda(0);
  if (text.starts_with("cuda:")) {
    const std::string_view digits = text.substr(5);
    int index = -1;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
    if (ec == std::errc() && end == digits.data() + digits.size() && index >= 0) {
      return cuda(index);
    }
  }
  throw ArgumentError("device: expected 'cpu', 'cuda' or 'cuda:N', got '" + std::string(text) +
                      "'");
}

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index);
}

bool built_with_cuda() {
#if defined(DESCENT_HAS_CUDA)
  return true;
#else
  return false;
#endif
}

int cuda_device_count() { return detail::cuda_device_count(); }

std::string cpu_gemm_name() { return detail::cpu_gemm_name(); }
std::string cpu_bf16_gemm_name() { return detail::cpu_bf16_gemm_name(); }

detail::ContextImpl& detail::impl_of(const Context& ctx) { return *ctx.impl_; }

const detail::Backend& detail::backend_of(const Context& ctx) { return *impl_of(ctx).backend; }

const detail::Backend& detail::backend_for(Device device) {
  return device.is_cuda() ? cuda_backend() : cpu_backend();
}

Context::Context(Device device, ContextOptions options) : impl_(std::make_shared<Impl>()) {
  if (options.threads < 0) {
    throw ArgumentError("threads: expected 0 (all) or a positive count, got " +
                        std::to_string(options.threads));
  }
  impl_->device = device;
  impl_->threads = options.threads > 0 ? options.threads : omp_get_max_threads();
  impl_->math = options.math;
  if (device.is_cuda() && device.index < 0) {
    throw DeviceError("device: CUDA device index must be >= 0, got " + device.str());
  }
  impl_->backend = &detail::backend_for(device);
  impl_->backend->init(*impl_, options.stream);
}

Context::~Context() = default;
Context::Context(const Context&) noexcept = default;
Context& Context::operator=(const Context&) noexcept = default;
// A move copies the handle, so that the moved-from Context stays a valid handle.
Context::Context(Context&& other) noexcept : impl_(other.impl_) {}
Context& Context::operator=(Context&& other) noexcept {
  impl_ = other.impl_;
  return *this;
}

Device Context::device() const { return impl_->device; }
int Context::threads() const { return impl_->threads; }
MathMode Context::math() const { return impl_->math; }
void Context::set_math(MathMode math) { impl_->math = math; }
void* Context::stream() const { return impl_->backend->stream(*impl_); }

void Context::set_stream(void* stream) { impl_->backend->set_stream(*impl_, stream); }

void Context::synchronize() const { impl_->backend->synchronize(*impl_); }

}  // namespace descent
