// Opening an input file: a regular file only, with its size known before anything is read.
#include "input_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "descent/error.hpp"

namespace descent::detail {

namespace {

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

}  // namespace

InputFile::InputFile(const std::string& path, const std::string& what) : path_(path), what_(what) {
  // O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever; fstat then refuses it.
  fd_ = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd_ < 0) {
    throw IoError(what_ + ": cannot open " + in_quotes(path) + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd_);
    throw IoError(what_ + ": cannot stat " + in_quotes(path) + ": " + why);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd_);
    throw IoError(what_ + ": " + in_quotes(path) + " is " + kind_of(st.st_mode) +
                  ", expected a regular file");
  }
  size_ = static_cast<std::uint64_t>(st.st_size);
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

std::size_t InputFile::read(void* dst, std::size_t n) {
  auto* p = static_cast<char*>(dst);
  std::size_t done = 0;
  while (done < n) {
    const ssize_t r = ::read(fd_, p + done, n - done);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw IoError(what_ + ": error while reading " + in_quotes(path_) + ": " + std::strerror(errno));
    }
    if (r == 0) break;
    done += static_cast<std::size_t>(r);
  }
  return done;
}

std::string InputFile::read_all(std::uint64_t max_bytes, const char* limit_name) {
  if (size_ > max_bytes) {
    throw DataError(what_ + ": " + in_quotes(path_) + " holds " + std::to_string(size_) +
                    " bytes, more than the " + std::to_string(max_bytes) + " bytes " + limit_name +
                    " allows");
  }
  std::string bytes(static_cast<std::size_t>(size_), '\0');
  const std::size_t got = read(bytes.data(), bytes.size());
  char extra = 0;
  if (got != bytes.size() || read(&extra, 1) != 0) {
    throw IoError(what_ + ": " + in_quotes(path_) + " changed size while it was read (" +
                  std::to_string(size_) + " bytes when opened)");
  }
  return bytes;
}

}  // namespace descent::detail
