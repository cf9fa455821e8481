// Opening an input file: a regular file only, with its size known before anything is read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace descent::detail {

// A regular file opened for reading. The constructor opens without blocking (a FIFO or a device
// is refused before any read, so it cannot hang the caller) and throws IoError naming the path
// for a missing or unreadable file, a folder or anything else that is not a regular file.
class InputFile {
 public:
  // `what` prefixes the messages (e.g. "checkpoint" or "load_csv").
  InputFile(const std::string& path, const std::string& what);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  const std::string& path() const { return path_; }
  // The file's size when it was opened.
  std::uint64_t size() const { return size_; }
  // Reads up to n bytes; fewer only at the end of the file. IoError on a read error.
  std::size_t read(void* dst, std::size_t n);
  // The whole file, after checking that its size is at most max_bytes (DataError otherwise,
  // naming `limit_name`). IoError when the file changes size while it is read.
  std::string read_all(std::uint64_t max_bytes, const char* limit_name);

 private:
  std::string path_;
  std::string what_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

// "'<path>'" as messages quote it.
inline std::string in_quotes(const std::string& path) { return "'" + path + "'"; }

// a * b, or false when the product does not fit in 64 bits.
inline bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  return !__builtin_mul_overflow(a, b, &out);
}

}  // namespace descent::detail
