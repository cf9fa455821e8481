// Context: the device everything runs on, with its stream, library handles, workspace and threads.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "descent/export.h"

DESCENT_API_BEGIN

namespace descent {

enum class DeviceKind { cpu, cuda };

// A device: the host CPU or CUDA device `index`.
struct Device {
  DeviceKind kind = DeviceKind::cpu;
  int index = 0;

  static Device cpu() { return {DeviceKind::cpu, 0}; }
  static Device cuda(int index = 0) { return {DeviceKind::cuda, index}; }
  // Parses "cpu", "cuda", "cuda:N"; throws ArgumentError naming the text otherwise.
  static Device parse(std::string_view text);
  std::string str() const;
  bool is_cpu() const { return kind == DeviceKind::cpu; }
  bool is_cuda() const { return kind == DeviceKind::cuda; }
  friend bool operator==(const Device&, const Device&) = default;
};

// How matrix products round on the GPU. fp32 is strict IEEE float (no TF32); tf32 lets
// fp32-storage GEMMs use TF32 tensor cores; bf16 is used by the bf16 overloads of the ops.
// The CPU backend always computes in fp32.
enum class MathMode { fp32, tf32 };

// Number of CUDA devices usable from this process; 0 when descent was built without CUDA or
// when the driver reports any error.
int cuda_device_count();
// True when descent was compiled with its CUDA backend.
bool built_with_cuda();
// Name of the CPU GEMM library the CPU backend calls, e.g. "oneDNN 2.6.3 dnnl_sgemm".
std::string cpu_gemm_name();
// What runs the CPU backend's bf16 products: "oneDNN 2.6.3 matmul on the bf16 units" where the
// CPU has AVX512-BF16 or AMX-BF16 (and DESCENT_CPU_ISA does not cap it below AVX-512), else
// "bf16 widened to fp32, " followed by cpu_gemm_name().
std::string cpu_bf16_gemm_name();

struct ContextOptions {
  int threads = 0;                 // CPU threads for the CPU backend; 0 = all available
  MathMode math = MathMode::fp32;  // GEMM math on the GPU
  void* stream = nullptr;          // a user cudaStream_t to run on; null = the context's own
};

class Context;
namespace detail {
struct ContextImpl;
// The device state behind a Context, for the backends (not part of the public API).
ContextImpl& impl_of(const Context& ctx);
}  // namespace detail

// A device with its state. A cheap shared handle: copies share one device state (stream,
// library handles, workspaces), and every object that needs a Context (Mlp, BatchLoader,
// Trainer) holds a copy, so no order of moves or destructions can leave one dangling. A move is
// a copy: the moved-from Context stays usable. The state is released with its last handle.
class Context {
 public:
  explicit Context(Device device = Device::cpu(), ContextOptions options = {});
  ~Context();
  Context(const Context&) noexcept;
  Context& operator=(const Context&) noexcept;
  Context(Context&&) noexcept;
  Context& operator=(Context&&) noexcept;

  // True when this and `other` are handles of the same device state.
  bool shares_state_with(const Context& other) const { return impl_ == other.impl_; }

  Device device() const;
  int threads() const;
  MathMode math() const;
  void set_math(MathMode math);
  // The cudaStream_t work is queued on (null on the CPU).
  void* stream() const;
  // Runs on a user cudaStream_t from now on (null: back to the context's own stream).
  void set_stream(void* stream);
  // Waits until all queued work on the stream is done.
  void synchronize() const;

  using Impl = detail::ContextImpl;

 private:
  friend detail::ContextImpl& detail::impl_of(const Context& ctx);
  std::shared_ptr<Impl> impl_;
};

}  // namespace descent

DESCENT_API_END
