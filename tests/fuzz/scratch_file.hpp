// The fuzz targets' scratch files: the readers take paths, so each input is written to a file.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace descent::fuzz {

// An in-memory file (memfd), rewritten for every input and reached through /proc/self/fd/N: a
// regular file to the readers, without a disk file system's cost of truncating and rewriting a
// file thousands of times a second, and nothing left behind.
class ScratchFile {
 public:
  explicit ScratchFile(const char* tag) : fd_(::memfd_create(tag, MFD_CLOEXEC)) {
    if (fd_ < 0) fail("memfd_create");
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~ScratchFile() { ::close(fd_); }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;

  const std::string& write(const void* data, std::size_t size) {
    if (::ftruncate(fd_, 0) != 0) fail("ftruncate");
    const auto* p = static_cast<const char*>(data);
    for (std::size_t done = 0; done < size;) {
      const ssize_t w = ::pwrite(fd_, p + done, size - done, static_cast<off_t>(done));
      if (w <= 0) fail("pwrite");
      done += static_cast<std::size_t>(w);
    }
    return path_;
  }
  const std::string& write(const std::string& bytes) { return write(bytes.data(), bytes.size()); }

 private:
  // The harness itself failed, not the reader under test.
  [[noreturn]] static void fail(const char* what) {
    std::perror(what);
    std::abort();
  }
  int fd_;
  std::string path_;
};

}  // namespace descent::fuzz
