// The binary frame descent's own files share (checkpoints, L-BFGS float64 states): an 8-byte
// magic, u32 format version, u64 payload size, the payload, u32 CRC-32 (zlib) of everything
// before it; values little-endian (native order, checked at compile time). Writer builds one,
// read_frame checks one and Reader walks its payload with every count bounded by what is left.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "descent/error.hpp"

namespace descent::detail {

static_assert(std::endian::native == std::endian::little,
              "descent's files store values in native order, which must be little-endian");

inline constexpr std::size_t kFrameHeaderBytes = 8 + 4 + 8;  // magic, version, payload size
inline constexpr std::size_t kFrameCrcBytes = 4;

std::uint32_t crc_of(const char* data, std::size_t n);

// A frame's bytes: the header on construction, the payload by put*, finish() for the size and
// the CRC.
class Writer {
 public:
  Writer(const char (&magic)[8], std::uint32_t version) {
    bytes_.append(magic, sizeof magic);
    put<std::uint32_t>(version);
    put<std::uint64_t>(0);  // the payload size, set by finish()
  }
  template <class T>
  void put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    bytes_.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  // A count (u64) and the values.
  template <class T>
  void put_values(const std::vector<T>& v) {
    put<std::uint64_t>(v.size());
    bytes_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  void put_string(const std::string& s) {
    put<std::uint32_t>(static_cast<std::uint32_t>(s.size()));
    bytes_.append(s);
  }
  // The whole frame, its size and CRC in place.
  std::string& finish() {
    const std::uint64_t payload = bytes_.size() - kFrameHeaderBytes;
    std::memcpy(bytes_.data() + 12, &payload, sizeof payload);
    put<std::uint32_t>(crc_of(bytes_.data(), bytes_.size()));
    return bytes_;
  }

 private:
  std::string bytes_;
};

// A checked frame: its version and the payload's bytes [begin, end) of `bytes`.
struct Frame {
  std::string bytes;
  std::uint32_t version = 0;
  std::size_t begin = 0, end = 0;
};

// Reads the regular file at `path` (at most max_bytes, which `limit` names: "a checkpoint") and
// checks its frame: IoError for a missing, unreadable or special file, OutOfMemory when it
// cannot be held, DataError for a larger file, another magic, a version outside [1, newest], a
// checksum or size mismatch. `kind` names the format in messages ("descent checkpoint"), `noun`
// the file ("checkpoint"), `op` the caller.
Frame read_frame(const std::string& path, const char (&magic)[8], std::uint32_t newest,
                 std::uint64_t max_bytes, const std::string& kind, const std::string& noun,
                 const char* limit, const char* op);

// Walks a frame's payload; every read is bounded by what is left, and a shortfall or a count
// that runs past the end is a DataError "<where>: inconsistent contents: ...".
class Reader {
 public:
  Reader(const std::string& bytes, std::size_t begin, std::size_t end, std::string where)
      : bytes_(bytes), at_(begin), end_(end), where_(std::move(where)) {}
  Reader(std::string&&, std::size_t, std::size_t, std::string) = delete;  // it keeps a reference
  template <class T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, bytes_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return v;
  }
  // A count (u64) and that many values.
  template <class T>
  std::vector<T> get_values(const char* what) {
    const auto n = get<std::uint64_t>(what);
    if (n > (end_ - at_) / sizeof(T)) {
      fail(std::string(what) + ": count " + std::to_string(n) + " runs past the end");
    }
    std::vector<T> v(n);
    // An empty vector's data() may be null, and memcpy's pointers must not be, even for 0 bytes.
    if (n > 0) std::memcpy(v.data(), bytes_.data() + at_, n * sizeof(T));
    at_ += n * sizeof(T);
    return v;
  }
  std::string get_string(const char* what) {
    const auto n = get<std::uint32_t>(what);
    need(n, what);
    std::string s = bytes_.substr(at_, n);
    at_ += n;
    return s;
  }
  bool done() const { return at_ == end_; }
  std::size_t remaining() const { return end_ - at_; }
  [[noreturn]] void fail(const std::string& what) const {
    throw DataError(where_ + ": inconsistent contents: " + what);
  }

 private:
  void need(std::size_t n, const char* what) const {
    if (end_ - at_ < n) fail(std::string(what) + " runs past the end of the payload");
  }
  const std::string& bytes_;
  std::size_t at_, end_;
  std::string where_;
};

}  // namespace descent::detail
