// Safe output files: atomic replacement of regular files (an unnamed file, fsync, link, rename),
// write-through to character devices and FIFOs, refusal of every other special file, and the
// checks a program makes before it starts work (a writable location, two paths that are one file).
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>

#include "descent/error.hpp"
#include "descent/output.hpp"
#include "input_file.hpp"

namespace descent {

namespace {

// Symbolic links followed before giving up (the kernel's own limit, MAXSYMLINKS, is 40).
constexpr int kMaxLinks = 40;

std::string errno_text(int e) { return std::strerror(e); }

std::string folder_of(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string name_of(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

using detail::in_quotes;  // "'<path>'", as input_file.hpp's messages quote it

// The descriptor that /dev/stdout, /dev/stderr, /dev/fd/N or /proc/self/fd/N names, or -1. Such
// a path means "this process's descriptor N": writing to the descriptor itself keeps the shell's
// redirection (its offset, append mode) where opening the path anew would not.
int fd_path(const std::string& path) {
  if (path == "/dev/stdout") return STDOUT_FILENO;
  if (path == "/dev/stderr") return STDERR_FILENO;
  for (const char* prefix : {"/dev/fd/", "/proc/self/fd/"}) {
    const std::size_t n = std::strlen(prefix);
    if (path.size() > n && path.compare(0, n, prefix) == 0 &&
        path.find_first_not_of("0123456789", n) == std::string::npos && path.size() - n < 9) {
      return std::atoi(path.c_str() + n);
    }
  }
  return -1;
}

// The path that a chain of symbolic links ends at (the path itself when it is no link); the end
// need not exist. A relative link target is relative to the link's folder.
std::string resolve_links(const std::string& path, const std::string& what) {
  std::string p = path;
  for (int i = 0; i < kMaxLinks; ++i) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return p;
    std::string target(PATH_MAX, '\0');
    const ssize_t n = ::readlink(p.c_str(), target.data(), target.size());
    if (n < 0) {
      throw IoError(what + ": cannot read the symbolic link " + in_quotes(p) + ": " +
                    errno_text(errno));
    }
    target.resize(static_cast<std::size_t>(n));
    p = (!target.empty() && target[0] == '/') ? target : folder_of(p) + "/" + target;
  }
  throw IoError(what + ": " + in_quotes(path) + ": more than " + std::to_string(kMaxLinks) +
                " symbolic links in a row (a loop?); give the real file's path");
}

const char* kind_name(mode_t mode) {
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISBLK(mode)) return "a block device";
  return "a special file";
}

// IoError for an existing path that is no regular file and no stream.
[[noreturn]] void refuse_special(const std::string& path, mode_t mode, const std::string& what) {
  std::string hint = S_ISDIR(mode) ? "; name a file inside it, e.g. " + in_quotes(path + "/out")
                                   : "; choose a regular file's path";
  throw IoError(what + ": " + in_quotes(path) + " is " + kind_name(mode) +
                ", expected a regular file (replaced as a whole), a character device or a "
                "FIFO (written through), or a path that does not exist yet" +
                hint);
}

void refuse_trailing_slash(const std::string& path, const std::string& what) {
  if (path.empty()) {
    throw IoError(what + ": the path is empty, expected a file path");
  }
  if (path.back() == '/') {
    throw IoError(what + ": " + in_quotes(path) +
                  " ends with '/' and so names a folder, expected a file path");
  }
}

// Writes all of `bytes` to fd; false with errno set on failure.
bool write_all(int fd, const char* data, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (w == 0) {
      errno = ENOSPC;
      return false;
    }
    data += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// A write to a pipe or FIFO whose reader has gone raises SIGPIPE, which would end the process
// with no message. While this guard lives the calling thread blocks SIGPIPE, so the write fails
// with EPIPE instead and becomes an IoError; a SIGPIPE this write raised is consumed afterwards.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    was_pending_ = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
    blocked_ = pthread_sigmask(SIG_BLOCK, &pipe_, &old_) == 0;
  }
  ~SigpipeGuard() {
    if (!blocked_) return;
    if (!was_pending_) {
      const timespec zero{};
      const int saved = errno;
      while (sigtimedwait(&pipe_, nullptr, &zero) == SIGPIPE) {
      }
      errno = saved;
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_{}, old_{};
  bool was_pending_ = false, blocked_ = false;
};

void write_to_fd(int fd, std::string_view bytes, const std::string& path, const std::string& what) {
  SigpipeGuard guard;
  if (!write_all(fd, bytes.data(), bytes.size())) {
    throw IoError(what + ": writing to " + in_quotes(path) + " failed: " + errno_text(errno));
  }
}

// A character device or FIFO: opened for writing and written in place.
void write_through(const std::string& path, std::string_view bytes, const std::string& what) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOCTTY);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    throw IoError(what + ": cannot open " + in_quotes(path) + " for writing: " + errno_text(errno));
  }
  try {
    write_to_fd(fd, bytes, path, what);
  } catch (...) {
    ::close(fd);
    throw;
  }
  if (::close(fd) != 0 && errno != EINTR) {
    throw IoError(what + ": closing " + in_quotes(path) + " failed: " + errno_text(errno));
  }
}

// Flushes a folder's entries (the rename) to disk; a failure here loses nothing already written,
// so it is not an error.
void sync_folder(const std::string& folder) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// The temporary files that exist right now (created, not yet renamed or removed), for
// remove_temporary_files() in a signal handler: fixed slots of plain memory, since a handler may
// run between any two instructions and may only read. The main code blocks SIGINT and SIGTERM
// while it creates, renames or removes one of these files and updates its slot, so a handler
// never sees a slot that disagrees with the file system.
struct TempSlot {
  volatile std::sig_atomic_t used = 0;
  char path[PATH_MAX] = {};
};
TempSlot g_temp_slots[16];

// SIGINT and SIGTERM held back for this thread while it lives (delivered at its end).
class HoldStopSignals {
 public:
  HoldStopSignals() {
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, &old_);
  }
  ~HoldStopSignals() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  HoldStopSignals(const HoldStopSignals&) = delete;
  HoldStopSignals& operator=(const HoldStopSignals&) = delete;

 private:
  sigset_t old_;
};

// Records `tmp` in a free slot for remove_temporary_files(); the slot, or -1 when all are taken
// (the file is then simply not removed by a signal handler). Call with the stop signals held.
int record_temporary(const std::string& tmp) {
  if (tmp.size() >= PATH_MAX) return -1;
  for (int i = 0; i < static_cast<int>(std::size(g_temp_slots)); ++i) {
    if (g_temp_slots[i].used != 0) continue;
    std::memcpy(g_temp_slots[i].path, tmp.c_str(), tmp.size() + 1);
    g_temp_slots[i].used = 1;
    return i;
  }
  return -1;
}

void release_temporary(int slot) {
  if (slot >= 0) g_temp_slots[slot].used = 0;
}

// Creates a temporary file from `tmp` (a mkstemp template, filled in) and records it in a slot;
// -1 with errno set when it cannot be created.
int create_temporary(std::string& tmp, int& slot) {
  const HoldStopSignals hold;
  const int fd = ::mkstemp(tmp.data());
  slot = fd < 0 ? -1 : record_temporary(tmp);
  return fd;
}

// Renames (or, with target empty, removes) the temporary file of `slot` and frees the slot, with
// no signal handler running in between; returns rename's or unlink's result.
int finish_temporary(const std::string& tmp, int slot, const std::string& target) {
  const HoldStopSignals hold;
  const int r = target.empty() ? ::unlink(tmp.c_str()) : std::rename(tmp.c_str(), target.c_str());
  const int e = errno;
  release_temporary(slot);
  errno = e;
  return r;
}

// Gives fd permissions `mode`, writes `bytes` to it and flushes it; on failure the step that
// failed and its errno (fd stays open either way).
struct WriteFailure {
  const char* step = nullptr;
  int error = 0;
};
WriteFailure write_and_sync(int fd, std::string_view bytes, mode_t mode) {
  if (::fchmod(fd, mode) != 0) return {"setting the permissions of", errno};
  if (!write_all(fd, bytes.data(), bytes.size())) return {"writing", errno};
  if (::fsync(fd) != 0) return {"flushing", errno};
  return {};
}

// A file without a name in `folder` (O_TMPFILE): until it is linked it is in no folder, so a
// process that dies while writing it, even by SIGKILL or a power cut, leaves nothing behind.
// -1 with errno set when it cannot be made; EOPNOTSUPP, EISDIR or EINVAL mean the file system or
// kernel has no unnamed files and a named temporary file must do.
int open_unnamed(const std::string& folder) {
  // DESCENT_NAMED_TEMPORARY_FILES=1 takes the fallback everywhere (to test it on any machine).
  static const bool named_only = [] {
    const char* v = std::getenv("DESCENT_NAMED_TEMPORARY_FILES");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  if (named_only) {
    errno = EOPNOTSUPP;
    return -1;
  }
  int fd;
  do {
    fd = ::open(folder.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

bool unnamed_unsupported(int e) { return e == EOPNOTSUPP || e == EISDIR || e == EINVAL; }

// A name for a temporary file next to `target` that nobody can guess ahead.
std::string temporary_name(const std::string& target) {
  static constexpr char kDigits[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  unsigned char random[8] = {};
  if (::getrandom(random, sizeof random, 0) != static_cast<ssize_t>(sizeof random)) {
    const auto t =
        static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    std::memcpy(random, &t, sizeof random);
  }
  std::string name = target + ".tmp.";
  for (const unsigned char r : random) name += kDigits[r % (sizeof kDigits - 1)];
  return name;
}

// Gives the unnamed file `fd` the name `target`, replacing what was there in one step: it is
// linked under a fresh temporary name and renamed over the target, with a slot recording the
// name for the few instructions in between. 0, or -1 with errno set (then nothing was named).
int publish_unnamed(int fd, const std::string& target) {
  const std::string proc = "/proc/self/fd/" + std::to_string(fd);
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::string tmp = temporary_name(target);
    const HoldStopSignals hold;
    const int slot = record_temporary(tmp);
    int r = ::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, tmp.c_str(), AT_SYMLINK_FOLLOW);
    if (r != 0 && errno == ENOENT) {
      // No /proc: linking the descriptor itself needs CAP_DAC_READ_SEARCH.
      r = ::linkat(fd, "", AT_FDCWD, tmp.c_str(), AT_EMPTY_PATH);
    }
    int e = errno;
    if (r == 0) {
      r = std::rename(tmp.c_str(), target.c_str());
      e = errno;
      if (r != 0) ::unlink(tmp.c_str());
    }
    release_temporary(slot);
    if (r == 0 || e != EEXIST) {
      errno = e;
      return r;
    }
  }
  errno = EEXIST;
  return -1;
}

// Replaces `target` by a file holding `bytes`: written to a file with no name (or, where the
// file system has none, to a named temporary file next to it), flushed, then renamed over it.
void replace_file(const std::string& target, const std::string& path, std::string_view bytes,
                  const std::string& what, mode_t mode) {
  const auto failed = [&](const std::string& step, const std::string& file, int e) {
    return IoError(what + ": " + step + " " + file + " failed: " + errno_text(e) + "; " +
                   in_quotes(path) + " was left as it was");
  };
  const std::string unnamed = "a temporary file for " + in_quotes(path);
  const int ufd = open_unnamed(folder_of(target));
  if (ufd >= 0) {
    if (const WriteFailure f = write_and_sync(ufd, bytes, mode); f.step != nullptr) {
      ::close(ufd);
      throw failed(f.step, unnamed, f.error);
    }
    const int r = publish_unnamed(ufd, target);
    const int e = errno;
    ::close(ufd);
    if (r == 0) {
      sync_folder(folder_of(target));
      return;
    }
    // A folder where files cannot be linked (no /proc and no CAP_DAC_READ_SEARCH, or a file
    // system without links) gets a named temporary file below.
    if (e != ENOENT && e != EPERM && e != EOPNOTSUPP && e != EXDEV && e != EMLINK) {
      throw failed("renaming", unnamed + " to " + in_quotes(target), e);
    }
  } else if (!unnamed_unsupported(errno)) {
    throw IoError(what + ": cannot create a temporary file in the folder " +
                  in_quotes(folder_of(target)) + " for " + in_quotes(path) + ": " + errno_text(errno) +
                  "; check that the folder exists and is writable");
  }
  std::string tmp = target + ".tmp.XXXXXX";
  int slot = -1;
  const int fd = create_temporary(tmp, slot);
  if (fd < 0) {
    throw IoError(what + ": cannot create a temporary file in the folder " +
                  in_quotes(folder_of(target)) + " for " + in_quotes(path) + ": " + errno_text(errno) +
                  "; check that the folder exists and is writable");
  }
  WriteFailure f = write_and_sync(fd, bytes, mode);
  if (f.step != nullptr) {
    ::close(fd);
  } else if (::close(fd) != 0) {
    f = {"closing", errno};
  }
  if (f.step != nullptr) {
    finish_temporary(tmp, slot, "");
    throw failed(f.step, in_quotes(tmp), f.error);
  }
  if (finish_temporary(tmp, slot, target) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw failed("renaming", in_quotes(tmp) + " to " + in_quotes(target), e);
  }
  sync_folder(folder_of(target));
}

}  // namespace

void remove_temporary_files() noexcept {
  for (TempSlot& slot : g_temp_slots) {
    if (slot.used != 0) ::unlink(slot.path);
  }
}

void write_file_atomic(const std::string& path, std::string_view bytes, const std::string& what) {
  refuse_trailing_slash(path, what);
  if (const int fd = fd_path(path); fd >= 0) {
    write_to_fd(fd, bytes, path, what);
    return;
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode)) {
      write_through(path, bytes, what);
      return;
    }
    if (!S_ISREG(st.st_mode)) refuse_special(path, st.st_mode, what);
    replace_file(resolve_links(path, what), path, bytes, what, st.st_mode & 07777);
    return;
  }
  if (errno != ENOENT) {
    throw IoError(what + ": cannot inspect " + in_quotes(path) + ": " + errno_text(errno));
  }
  replace_file(resolve_links(path, what), path, bytes, what, 0644);
}

OutputKind check_output_location(const std::string& path, const std::string& what) {
  refuse_trailing_slash(path, what);
  if (const int fd = fd_path(path); fd >= 0) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || (flags & O_ACCMODE) == O_RDONLY) {
      throw IoError(what + ": " + in_quotes(path) + " names descriptor " + std::to_string(fd) +
                    ", which is not open for writing");
    }
    return OutputKind::stream;
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode)) {
      // Opening a FIFO would wait for its reader; the permission check is what can be done now.
      if (::access(path.c_str(), W_OK) != 0) {
        throw IoError(what + ": " + in_quotes(path) + " is not writable: " + errno_text(errno));
      }
      return OutputKind::stream;
    }
    if (!S_ISREG(st.st_mode)) refuse_special(path, st.st_mode, what);
  } else if (errno != ENOENT) {
    throw IoError(what + ": cannot inspect " + in_quotes(path) + ": " + errno_text(errno));
  }
  const std::string target = resolve_links(path, what);
  const std::string folder = folder_of(target);
  struct stat fst {};
  if (::stat(folder.c_str(), &fst) != 0) {
    throw IoError(what + ": " + in_quotes(path) + ": the folder " + in_quotes(folder) +
                  " does not exist (" + errno_text(errno) +
                  "); create it first or choose another path");
  }
  if (!S_ISDIR(fst.st_mode)) {
    throw IoError(what + ": " + in_quotes(path) + ": " + in_quotes(folder) +
                  " is not a folder; choose another path");
  }
  // Create (and remove) a real temporary file: only that proves the save at the end will work
  // (permissions, a read-only file system, ACLs, a full inode table). A file with no name is
  // tried first, as the save will: it can be left behind by nothing.
  if (const int ufd = open_unnamed(folder); ufd >= 0) {
    ::close(ufd);
    return OutputKind::file;
  } else if (!unnamed_unsupported(errno)) {
    throw IoError(what + ": cannot create a file in the folder " + in_quotes(folder) + " for " +
                  in_quotes(path) + ": " + errno_text(errno) +
                  "; choose a writable folder or fix its permissions");
  }
  std::string tmp = target + ".tmp.XXXXXX";
  int slot = -1;
  const int fd = create_temporary(tmp, slot);
  if (fd < 0) {
    throw IoError(what + ": cannot create a file in the folder " + in_quotes(folder) + " for " +
                  in_quotes(path) + ": " + errno_text(errno) +
                  "; choose a writable folder or fix its permissions");
  }
  ::close(fd);
  finish_temporary(tmp, slot, "");
  return OutputKind::file;
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {
  }, sb{};
  const bool ea = ::stat(a.c_str(), &sa) == 0, eb = ::stat(b.c_str(), &sb) == 0;
  if (ea && eb) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  if (ea != eb) return false;
  // Neither exists yet: compare the resolved folder and the name.
  const auto identity = [](const std::string& p) {
    std::string target;
    try {
      target = resolve_links(p, "same_file");
    } catch (const IoError&) {
      target = p;
    }
    const std::string folder = folder_of(target);
    char* real = ::realpath(folder.c_str(), nullptr);
    std::string id = real != nullptr ? real : folder;
    std::free(real);
    return id + "/" + name_of(target);
  };
  return identity(a) == identity(b);
}

}  // namespace descent
