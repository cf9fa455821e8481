// Buffer<T> owns memory on a Context's device; MatrixView/VectorView are non-owning views.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "descent/bf16.hpp"
#include "descent/context.hpp"
#include "descent/export.h"

DESCENT_API_BEGIN

namespace descent {

// Row-major view of `rows` x `cols` elements, row r starting at data + r * ld.
// Batch runs along rows: a batch of inputs X is [batch, features].
template <class T>
struct MatrixView {
  T* data = nullptr;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t ld = 0;
  Device device{};

  MatrixView() = default;
  MatrixView(T* data_, std::int64_t rows_, std::int64_t cols_, Device device_,
             std::int64_t ld_ = -1)
      : data(data_), rows(rows_), cols(cols_), ld(ld_ < 0 ? cols_ : ld_), device(device_) {}
  // A view of mutable data converts to a view of const data.
  template <class U>
  requires(std::is_same_v<T, const U>)
      MatrixView(const MatrixView<U>& v)  // NOLINT(google-explicit-constructor)
      : data(v.data), rows(v.rows), cols(v.cols), ld(v.ld), device(v.device) {}

  bool empty() const { return data == nullptr; }
  std::int64_t size() const { return rows * cols; }
  bool contiguous() const { return ld == cols; }
  // Rows [first, first + count).
  MatrixView row_block(std::int64_t first, std::int64_t count) const {
    return MatrixView(data + first * ld, count, cols, device, ld);
  }
};

// Contiguous view of `size` elements.
template <class T>
struct VectorView {
  T* data = nullptr;
  std::int64_t size = 0;
  Device device{};

  VectorView() = default;
  VectorView(T* data_, std::int64_t size_, Device device_)
      : data(data_), size(size_), device(device_) {}
  template <class U>
  requires(std::is_same_v<T, const U>)
      VectorView(const VectorView<U>& v)  // NOLINT(google-explicit-constructor)
      : data(v.data), size(v.size), device(v.device) {}

  bool empty() const { return data == nullptr; }
  VectorView slice(std::int64_t first, std::int64_t count) const {
    return VectorView(data + first, count, device);
  }
  // The same elements seen as a rows x cols row-major matrix (rows * cols == size).
  MatrixView<T> as_matrix(std::int64_t rows, std::int64_t cols) const {
    return MatrixView<T>(data, rows, cols, device);
  }
};

namespace detail {
// sizeof(T) * count in bytes; throws ArgumentError for a negative count or a byte count that
// does not fit in a ptrdiff_t (so it can never wrap into a short allocation).
std::size_t checked_bytes(std::int64_t count, std::size_t element_size);
// Raw memory on a device; throw OutOfMemory / DeviceError with the size asked for.
void* allocate(const Context& ctx, std::size_t bytes);
void deallocate(Device device, void* ptr) noexcept;
// Copies `bytes` between any two devices, ordered on the context's stream; the call returns
// when the copy is done when either side is the host.
void copy_bytes(const Context& ctx, void* dst, Device dst_device, const void* src,
                Device src_device, std::size_t bytes);
// Throws ArgumentError: `count` elements at `offset` do not fit a buffer of `size`.
[[noreturn]] void throw_out_of_buffer(std::int64_t offset, std::int64_t count, std::int64_t size);
}  // namespace detail

// Owning, move-only array of `size` elements of T on a Context's device. Contents start
// undefined. A Buffer may outlive the Context it was made with (it frees by device).
template <class T>
class Buffer {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  Buffer() = default;
  Buffer(const Context& ctx, std::int64_t size)
      : data_(static_cast<T*>(detail::allocate(ctx, detail::checked_bytes(size, sizeof(T))))),
        size_(size),
        device_(ctx.device()) {}
  // A buffer filled with a copy of host data.
  Buffer(const Context& ctx, std::span<const T> host) : Buffer(ctx, std::int64_t(host.size())) {
    copy_from_host(ctx, host);
  }
  ~Buffer() { detail::deallocate(device_, data_); }
  Buffer(Buffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)),
        device_(o.device_) {}
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      detail::deallocate(device_, data_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      device_ = o.device_;
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  T* data() { return data_; }
  const T* data() const { return data_; }
  std::int64_t size() const { return size_; }
  Device device() const { return device_; }

  VectorView<T> view() { return VectorView<T>(data_, size_, device_); }
  VectorView<const T> view() const { return VectorView<const T>(data_, size_, device_); }
  // The first rows * cols elements as a row-major matrix.
  MatrixView<T> matrix(std::int64_t rows, std::int64_t cols) {
    return MatrixView<T>(data_, rows, cols, device_);
  }
  MatrixView<const T> matrix(std::int64_t rows, std::int64_t cols) const {
    return MatrixView<const T>(data_, rows, cols, device_);
  }

  // Copies host[0 .. n) to elements [offset, offset + n); ArgumentError when they do not fit.
  void copy_from_host(const Context& ctx, std::span<const T> host, std::int64_t offset = 0) {
    if (offset < 0 || offset > size_ || std::int64_t(host.size()) > size_ - offset) {
      detail::throw_out_of_buffer(offset, std::int64_t(host.size()), size_);
    }
    detail::copy_bytes(ctx, data_ + offset, device_, host.data(), Device::cpu(),
                       sizeof(T) * host.size());
  }
  std::vector<T> to_host(const Context& ctx) const {
    std::vector<T> out(static_cast<std::size_t>(size_));
    detail::copy_bytes(ctx, out.data(), Device::cpu(), data_, device_, sizeof(T) * size_);
    return out;
  }

 private:
  T* data_ = nullptr;
  std::int64_t size_ = 0;
  Device device_{};
};

// The rows × cols elements of a view on any device, copied densely (row-major) into host memory;
// returns once the copy is done (after the work queued before it), e.g. a model's output:
// `to_host(ctx, model.forward(x).output)`.
template <class T>
std::vector<std::remove_const_t<T>> to_host(const Context& ctx, MatrixView<T> m) {
  using U = std::remove_const_t<T>;
  std::vector<U> out(static_cast<std::size_t>(m.rows * m.cols));
  if (out.empty()) return out;
  if (m.ld == m.cols) {
    detail::copy_bytes(ctx, out.data(), Device::cpu(), m.data, m.device, sizeof(U) * out.size());
  } else {
    for (std::int64_t r = 0; r < m.rows; ++r) {
      detail::copy_bytes(ctx, out.data() + r * m.cols, Device::cpu(), m.data + r * m.ld, m.device,
                         sizeof(U) * static_cast<std::size_t>(m.cols));
    }
  }
  return out;
}

}  // namespace descent

DESCENT_API_END
