// Exceptions thrown by descent: every message names the argument, the value found and the value
// expected.
#pragma once

#include <stdexcept>
#include <string>

#include "descent/export.h"

DESCENT_API_BEGIN

namespace descent {

// Base of every exception descent throws.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// A matrix or vector has the wrong shape, or shapes disagree.
class ShapeError : public Error {
 public:
  using Error::Error;
};

// An argument value is invalid (null data, negative learning rate, label out of range, ...).
class ArgumentError : public Error {
 public:
  using Error::Error;
};

// A dataset or input file is malformed.
class DataError : public Error {
 public:
  using Error::Error;
};

// A device is missing, unusable, or buffers live on different devices.
class DeviceError : public Error {
 public:
  using Error::Error;
};

// An allocation failed on the host or the device.
class OutOfMemory : public Error {
 public:
  using Error::Error;
};

// A file could not be read or written.
class IoError : public Error {
 public:
  using Error::Error;
};

// A loss or gradient became NaN or infinite.
class NumericError : public Error {
 public:
  using Error::Error;
};

}  // namespace descent

DESCENT_API_END
