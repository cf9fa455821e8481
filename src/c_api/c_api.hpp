// Internals of the C API shared by its two source files: the handle types behind descent.h's
// opaque pointers and the helpers that check arguments and turn exceptions into statuses.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <vector>

#include "descent/descent.h"
#include "descent/descent.hpp"

// The handles. Each keeps a pointer to the handle it was made from, to check that objects
// passed together belong together.
struct descent_context {
  descent::Context ctx;
  std::string name;
};

struct descent_model {
  descent_context* owner;
  descent::Mlp mlp;
  // Host inputs of a CUDA context are copied here (predict and trainer steps).
  descent::Buffer<float> x_stage;
  descent::Buffer<std::int32_t> labels_stage;
  descent::Buffer<float> targets_stage;
  descent::Buffer<float> loss;  // one float: a loss the C API computes (mse_gradient)
};

// Any optimizer (Sgd, Adam, AdamW); a trainer keeps a reference to *opt, which never moves.
struct descent_optimizer {
  descent_model* model;
  std::unique_ptr<descent::Optimizer> opt;
};

struct descent_dataset {
  descent::Dataset data;
};

// The ranks of a data-parallel run; trainers made with it hold copies (shared state).
struct descent_communicator {
  descent::Communicator comm;
};

struct descent_trainer {
  descent_model* model;
  descent_optimizer* opt;
  descent::Trainer trainer;
};

namespace descent::c_api {

inline thread_local std::string last_error;

// The status for the exception being handled, and its message in `what`.
inline descent_status current_error(std::string& what) {
  try {
    throw;
  } catch (const Error& e) {
    what = e.what();
    if (dynamic_cast<const ShapeError*>(&e) != nullptr) return DESCENT_ERROR_SHAPE;
    if (dynamic_cast<const ArgumentError*>(&e) != nullptr) return DESCENT_ERROR_ARGUMENT;
    if (dynamic_cast<const DataError*>(&e) != nullptr) return DESCENT_ERROR_DATA;
    if (dynamic_cast<const DeviceError*>(&e) != nullptr) return DESCENT_ERROR_DEVICE;
    if (dynamic_cast<const OutOfMemory*>(&e) != nullptr) return DESCENT_ERROR_OUT_OF_MEMORY;
    if (dynamic_cast<const IoError*>(&e) != nullptr) return DESCENT_ERROR_IO;
    if (dynamic_cast<const NumericError*>(&e) != nullptr) return DESCENT_ERROR_NUMERIC;
    return DESCENT_ERROR_UNKNOWN;
  } catch (const std::bad_alloc&) {
    what = "out of host memory";
    return DESCENT_ERROR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    what = e.what();
    return DESCENT_ERROR_UNKNOWN;
  } catch (...) {
    what = "an exception that is not a std::exception";
    return DESCENT_ERROR_UNKNOWN;
  }
}

// Runs `body`, turning every exception into a status and the thread's last-error message
// "function: message". Nothing escapes: the C caller never sees a C++ exception.
template <class F>
descent_status guarded(const char* function, F&& body) noexcept {
  try {
    last_error.clear();
    body();
    return DESCENT_OK;
  } catch (...) {
    std::string what;
    descent_status status = DESCENT_ERROR_UNKNOWN;
    try {
      status = current_error(what);
      last_error = std::string(function) + ": " + what;
    } catch (...) {
      // No memory even for the message: the status still says what happened.
      status = status == DESCENT_ERROR_UNKNOWN ? DESCENT_ERROR_OUT_OF_MEMORY : status;
    }
    return status;
  }
}

template <class T>
inline T& need(T* handle, const char* name) {
  if (handle == nullptr) throw ArgumentError(std::string(name) + ": NULL handle");
  return *handle;
}

inline void need_ptr(const void* p, const char* name) {
  if (p == nullptr) throw ArgumentError(std::string(name) + ": NULL pointer");
}

// Checks a user matrix [rows, cols] with leading dimension ld.
template <class T>
inline void check_matrix(const T* p, const char* name, std::int64_t rows, std::int64_t cols,
                         std::int64_t ld, const char* ld_name) {
  need_ptr(p, name);
  if (rows < 1) throw ArgumentError("rows: expected >= 1, got " + std::to_string(rows));
  if (cols < 1) throw ArgumentError("cols: expected >= 1, got " + std::to_string(cols));
  if (ld < cols) {
    throw ArgumentError(std::string(ld_name) + ": expected >= " + std::to_string(cols) +
                        " (the row length), got " + std::to_string(ld));
  }
}

// Checks the leading dimension `name` of a user matrix with the model's `outputs` columns.
inline void check_ld(std::int64_t ld, std::int64_t outputs, const char* name) {
  if (ld < outputs) {
    throw ArgumentError(std::string(name) + ": expected >= " + std::to_string(outputs) +
                        " (the model's outputs), got " + std::to_string(ld));
  }
}

// Elements spanned by a [rows, cols] matrix with leading dimension ld.
inline std::int64_t extent(std::int64_t rows, std::int64_t cols, std::int64_t ld) {
  return (rows - 1) * ld + cols;
}

inline Device memory_device(const Context& ctx, descent_memory memory) {
  if (memory == DESCENT_MEMORY_HOST) return Device::cpu();
  if (memory != DESCENT_MEMORY_DEVICE) {
    throw ArgumentError(
        "memory: expected DESCENT_MEMORY_HOST (0) or DESCENT_MEMORY_DEVICE (1), got " +
        std::to_string(static_cast<int>(memory)));
  }
  if (ctx.device().is_cpu()) {
    throw DeviceError(
        "memory: DESCENT_MEMORY_DEVICE given for a cpu context; pass DESCENT_MEMORY_HOST");
  }
  return ctx.device();
}

// A view of user memory on the context's device: in place, or copied to `stage` when host
// memory feeds a CUDA context.
template <class T>
inline const T* on_device(const Context& ctx, const T* p, std::int64_t count, Device where,
                          Buffer<T>& stage) {
  if (where == ctx.device()) return p;
  if (stage.size() < count) {
    ctx.synchronize();  // queued steps may still read the old buffer
    stage = Buffer<T>(ctx, count);
  }
  stage.copy_from_host(ctx, std::span<const T>(p, static_cast<std::size_t>(count)));
  return stage.data();
}

// The same for a user matrix [rows, cols] with leading dimension ld, as a view on the context's
// device.
inline MatrixView<const float> on_device(const Context& ctx, const float* p, std::int64_t rows,
                                         std::int64_t cols, std::int64_t ld, Device where,
                                         Buffer<float>& stage) {
  return MatrixView<const float>(on_device(ctx, p, extent(rows, cols, ld), where, stage), rows,
                                 cols, ctx.device(), ld);
}

// User memory copied to a host vector (from the device when it lives there).
template <class T>
inline std::vector<T> to_host(const Context& ctx, const T* p, std::int64_t count, Device where) {
  std::vector<T> out(static_cast<std::size_t>(count));
  detail::copy_bytes(ctx, out.data(), Device::cpu(), p, where, sizeof(T) * out.size());
  return out;
}

// Rows of a strided matrix packed contiguously.
template <class T>
inline std::vector<T> pack(const std::vector<T>& m, std::int64_t rows, std::int64_t cols,
                           std::int64_t ld) {
  if (ld == cols) return m;
  std::vector<T> out(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    std::memcpy(out.data() + r * cols, m.data() + r * ld, sizeof(T) * cols);
  }
  return out;
}

// Checks that `count` (of a caller's parameter array) is the model's parameter count.
inline void check_parameter_count(const Mlp& mlp, std::int64_t count) {
  if (count != mlp.parameter_count()) {
    throw ShapeError("count: expected " + std::to_string(mlp.parameter_count()) +
                     " (the model's parameter count), got " + std::to_string(count));
  }
}

// Checks that `name` (cols of a matrix, or a dataset's feature count) is the model's inputs.
inline void check_inputs(const Mlp& mlp, std::int64_t cols, const char* name = "cols") {
  if (cols != mlp.inputs()) {
    throw ShapeError(std::string(name) + ": expected " + std::to_string(mlp.inputs()) +
                     (name == std::string("cols") ? "" : " features") + " (the inputs of " +
                     mlp.describe() + "), got " + std::to_string(cols));
  }
}

}  // namespace descent::c_api
