// Safe output files (descent/output.hpp) and save_checkpoint on top of them: regular files are
// replaced whole, FIFOs are written through, folders and sockets are refused, symbolic links are
// followed, a location check really creates a file, and no temporary file is ever left behind.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <thread>

#include "descent/descent.hpp"
#include "descent/output.hpp"
#include "test_support.hpp"
#include "train_support.hpp"

namespace descent::test {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Every name in `folder` (not recursive).
std::vector<std::string> names_in(const fs::path& folder) {
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator(folder)) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

// A temporary file of write_file_atomic ("NAME.tmp.XXXXXX") left in `folder`.
bool has_temp_file(const fs::path& folder) {
  for (const std::string& n : names_in(folder)) {
    if (n.find(".tmp") != std::string::npos) return true;
  }
  return false;
}

// Reads a FIFO to its end on a thread (opening it blocks until a writer comes).
class FifoReader {
 public:
  explicit FifoReader(std::string path) : path_(std::move(path)) {
    thread_ = std::thread([this] { bytes_ = read_bytes(path_); });
  }
  // Waits for the reader; when no writer ever came, opens the FIFO once so that it ends.
  std::string finish() {
    const int fd = ::open(path_.c_str(), O_WRONLY | O_NONBLOCK);
    if (fd >= 0) ::close(fd);
    thread_.join();
    return bytes_;
  }
  ~FifoReader() {
    if (thread_.joinable()) finish();
  }

 private:
  std::string path_, bytes_;
  std::thread thread_;
};

// The message of the IoError that f throws ("" when it throws nothing).
std::string io_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const IoError& e) {
    return e.what();
  }
  return "";
}

// Runs f as an unprivileged user (nobody) when the tests run as root, for whom folder
// permissions do not apply; returns the IoError message f produced.
std::string io_error_unprivileged(const fs::path& dir, const std::function<void()>& f) {
  if (::geteuid() != 0) return io_error_of(f);
  std::error_code ec;
  fs::permissions(dir,
                  fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                      fs::perms::others_read | fs::perms::others_exec,
                  ec);
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    std::string msg = "could not drop privileges";
    if (::setgid(65534) == 0 && ::setuid(65534) == 0) msg = io_error_of(f);
    const ssize_t w = ::write(fds[1], msg.data(), msg.size());
    ::_exit(w < 0 ? 1 : 0);
  }
  ::close(fds[1]);
  std::string msg;
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) msg.append(buf, n);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return msg;
}

class OutputTest : public ::testing::Test {
 protected:
  TempDir dir;
  // A small model and optimizer with momentum, for checkpoints.
  Context ctx{Device::cpu()};
  Mlp model{ctx, {5, 4, 3}, Activation::relu};
  Sgd sgd{model, SgdOptions{.lr = 0.1f, .momentum = 0.9f}};
};

TEST_F(OutputTest, RegularFileIsReplacedWholeAndKeepsItsPermissions) {
  const std::string path = dir / "out.csv";
  write_file_atomic(path, "first\n", "--metrics");
  EXPECT_EQ(read_bytes(path), "first\n");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  ::chmod(path.c_str(), 0600);
  write_file_atomic(path, "second\n", "--metrics");
  EXPECT_EQ(read_bytes(path), "second\n");
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"out.csv"});
}

extern "C" void remove_temporaries_and_end(int sig) {
  remove_temporary_files();
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

// True while process `pid` holds a file in `folder` open: a save in progress (the file has no
// name, "FOLDER/#INODE (deleted)", or is a named temporary file there).
bool saving_into(pid_t pid, const fs::path& folder) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    const fs::path target = fs::read_symlink(e.path(), ec);
    if (!ec && target.parent_path() == folder) return true;
  }
  return false;
}

// A child process saves 256 MB over and over; the parent sends `sig` while a save is in
// progress. Afterwards the folder holds the file alone, either the previous one or a whole new
// one, and the child ended by the signal.
void signal_during_a_save(const fs::path& folder, int sig) {
  const std::string path = folder / "big.bin";
  write_file_atomic(path, "the previous file", "test");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    struct sigaction sa {};
    sa.sa_handler = remove_temporaries_and_end;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGTERM, &sa, nullptr);
    const std::string big(std::size_t{256} << 20, 'x');
    for (;;) write_file_atomic(path, big, "test");
  }
  const fs::path canonical = fs::canonical(folder);
  bool seen = false;
  for (int i = 0; i < 20000 && !seen; ++i) {
    seen = saving_into(child, canonical);
    if (!seen) std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  ::kill(child, sig);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(seen) << "no save was ever seen in progress";
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == sig);
  EXPECT_EQ(names_in(folder), std::vector<std::string>{"big.bin"})
      << "a temporary file was left behind";
  const std::string kept = read_bytes(path);
  EXPECT_TRUE(kept == "the previous file" || kept.size() == (std::size_t{256} << 20))
      << "the file is neither the previous one nor a whole new one";
}

// A signal that ends the process during a save (the command on several MPI ranks): the handler's
// remove_temporary_files() has nothing or only a name being renamed to remove.
TEST_F(OutputTest, SignalDuringASaveLeavesNoTemporaryFile) {
  signal_during_a_save(dir.path(), SIGTERM);
}

// SIGKILL runs no handler (mpirun sends it one second after SIGTERM; so does a batch system at
// the end of a job): the file being written has no name until it is whole, so nothing is left.
TEST_F(OutputTest, KillDuringASaveLeavesNoTemporaryFile) {
  const char* named = std::getenv("DESCENT_NAMED_TEMPORARY_FILES");
  if (named != nullptr && std::string(named) == "1") {
    GTEST_SKIP() << "DESCENT_NAMED_TEMPORARY_FILES=1: named temporary files, which SIGKILL leaves";
  }
  const int probe = ::open(dir.path().c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
  if (probe < 0) GTEST_SKIP() << "the test folder's file system has no unnamed files (O_TMPFILE)";
  ::close(probe);
  signal_during_a_save(dir.path(), SIGKILL);
}

TEST_F(OutputTest, FifoIsWrittenThroughNotReplaced) {
  const std::string fifo = dir / "metrics.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  FifoReader reader(fifo);
  write_file_atomic(fifo, "epoch,loss\n1,0.5\n", "--metrics");
  EXPECT_EQ(reader.finish(), "epoch,loss\n1,0.5\n");
  struct stat st {};
  ASSERT_EQ(::lstat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode)) << "the FIFO was replaced";
  EXPECT_FALSE(has_temp_file(dir.path()));
  EXPECT_EQ(check_output_location(fifo, "--metrics"), OutputKind::stream);
}

TEST_F(OutputTest, CheckpointThroughAFifoArrivesWhole) {
  const std::string fifo = dir / "ckpt.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  FifoReader reader(fifo);
  save_checkpoint(fifo, model, &sgd);
  const std::string bytes = reader.finish();
  write_bytes(dir / "copy.ckpt", bytes);
  const Checkpoint c = read_checkpoint(dir / "copy.ckpt");
  EXPECT_EQ(c.widths, (std::vector<std::int64_t>{5, 4, 3}));
  EXPECT_EQ(c.params, model.params_to_host());
  struct stat st {};
  ASSERT_EQ(::lstat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
}

TEST_F(OutputTest, DescriptorPathIsWrittenToTheDescriptor) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const std::string path = "/proc/self/fd/" + std::to_string(fds[1]);
  EXPECT_EQ(check_output_location(path, "--metrics"), OutputKind::stream);
  write_file_atomic(path, "via the descriptor", "--metrics");
  ::close(fds[1]);
  std::string got;
  char buf[64];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) got.append(buf, n);
  ::close(fds[0]);
  EXPECT_EQ(got, "via the descriptor");
}

TEST_F(OutputTest, PipeWithoutAReaderIsAnErrorNotADeadProcess) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ::close(fds[0]);
  const std::string path = "/proc/self/fd/" + std::to_string(fds[1]);
  // Without the library's guard, SIGPIPE (default action: terminate) would end the test binary.
  EXPECT_THAT(io_error_of([&] { write_file_atomic(path, "nobody reads this", "--metrics"); }),
              AllOf(HasSubstr("--metrics"), HasSubstr("Broken pipe")));
  ::close(fds[1]);
  sigset_t pending;
  sigemptyset(&pending);
  ASSERT_EQ(sigpending(&pending), 0);
  EXPECT_EQ(sigismember(&pending, SIGPIPE), 0) << "a SIGPIPE was left pending";
}

TEST_F(OutputTest, FolderIsRefusedAndLeftAlone) {
  const std::string folder = dir / "runs";
  fs::create_directory(folder);
  write_bytes(folder + "/keep", "x");
  const std::string msg = io_error_of([&] { write_file_atomic(folder, "data", "--metrics"); });
  EXPECT_THAT(msg, AllOf(HasSubstr("--metrics"), HasSubstr(folder), HasSubstr("is a folder")));
  EXPECT_THAT(io_error_of([&] { save_checkpoint(folder, model, &sgd); }),
              AllOf(HasSubstr("save_checkpoint"), HasSubstr("is a folder")));
  EXPECT_THAT(io_error_of([&] { check_output_location(folder, "--checkpoint"); }),
              AllOf(HasSubstr("--checkpoint"), HasSubstr("is a folder")));
  EXPECT_TRUE(fs::is_directory(folder));
  EXPECT_EQ(read_bytes(folder + "/keep"), "x");
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"runs"});
  // A path ending in '/' names a folder even when none exists.
  EXPECT_THAT(io_error_of([&] { write_file_atomic(dir / "new/", "data", "--plot"); }),
              HasSubstr("ends with '/'"));
  EXPECT_THAT(io_error_of([&] { write_file_atomic("", "data", "--plot"); }), HasSubstr("empty"));
}

TEST_F(OutputTest, SocketIsRefusedAndLeftAlone) {
  const std::string path = dir / "s.sock";
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(path.size(), sizeof addr.sun_path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_THAT(io_error_of([&] { write_file_atomic(path, "data", "--metrics"); }),
              AllOf(HasSubstr(path), HasSubstr("is a socket")));
  EXPECT_THAT(io_error_of([&] { save_checkpoint(path, model, &sgd); }), HasSubstr("is a socket"));
  EXPECT_THAT(io_error_of([&] { check_output_location(path, "--plot"); }),
              HasSubstr("is a socket"));
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode)) << "the socket was replaced";
  EXPECT_FALSE(has_temp_file(dir.path()));
  ::close(fd);
}

TEST_F(OutputTest, SymlinkStaysALinkAndItsTargetIsUpdated) {
  const std::string target = dir / "real.ckpt", link = dir / "latest.ckpt";
  write_bytes(target, "old");
  fs::create_symlink("real.ckpt", link);
  save_checkpoint(link, model, &sgd);
  EXPECT_TRUE(fs::is_symlink(link)) << "the link was replaced by a file";
  EXPECT_EQ(fs::read_symlink(link), "real.ckpt");
  EXPECT_EQ(read_checkpoint(target).params, model.params_to_host());
  EXPECT_FALSE(has_temp_file(dir.path()));
  EXPECT_TRUE(same_file(link, target));
}

TEST_F(OutputTest, SymlinkIntoAnotherFolderWritesThere) {
  fs::create_directories(dir.path() / "a");
  fs::create_directories(dir.path() / "b");
  const std::string link = dir / "a/out.csv";
  fs::create_symlink("../b/target.csv", link);  // dangling: the target does not exist yet
  EXPECT_EQ(check_output_location(link, "--metrics"), OutputKind::file);
  EXPECT_TRUE(names_in(dir.path() / "b").empty()) << "the check left a file behind";
  write_file_atomic(link, "one\n", "--metrics");
  write_file_atomic(link, "two\n", "--metrics");
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_EQ(read_bytes(dir / "b/target.csv"), "two\n");
  EXPECT_EQ(names_in(dir.path() / "a"), std::vector<std::string>{"out.csv"});
  EXPECT_EQ(names_in(dir.path() / "b"), std::vector<std::string>{"target.csv"});
}

TEST_F(OutputTest, SymlinkLoopIsAnError) {
  fs::create_symlink("loop2", dir / "loop1");
  fs::create_symlink("loop1", dir / "loop2");
  EXPECT_THAT(io_error_of([&] { write_file_atomic(dir / "loop1", "x", "--plot"); }),
              HasSubstr("--plot"));
  EXPECT_TRUE(fs::is_symlink(dir / "loop1"));
}

TEST_F(OutputTest, ReadOnlyFolderFailsAndLeavesTheOldFile) {
  const fs::path ro = dir.path() / "ro";
  fs::create_directory(ro);
  const std::string path = (ro / "m.ckpt").string();
  save_checkpoint(path, model, &sgd);
  const std::string before = read_bytes(path);
  fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                          fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec);
  const std::string save =
      io_error_unprivileged(dir.path(), [&] { save_checkpoint(path, model, &sgd); });
  EXPECT_THAT(save, AllOf(HasSubstr("save_checkpoint"), HasSubstr("temporary file"),
                          HasSubstr("Permission denied")));
  const std::string check =
      io_error_unprivileged(dir.path(), [&] { check_output_location(path, "--checkpoint"); });
  EXPECT_THAT(check, AllOf(HasSubstr("--checkpoint"), HasSubstr("Permission denied")));
  fs::permissions(ro, fs::perms::owner_all);
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_EQ(names_in(ro), std::vector<std::string>{"m.ckpt"});
}

TEST_F(OutputTest, MissingFolderIsAClearErrorAndNothingIsCreated) {
  const std::string path = dir / "no/such/folder/m.ckpt";
  EXPECT_THAT(io_error_of([&] { check_output_location(path, "--checkpoint"); }),
              AllOf(HasSubstr("--checkpoint"), HasSubstr("does not exist")));
  EXPECT_THAT(io_error_of([&] { save_checkpoint(path, model, &sgd); }),
              HasSubstr("No such file or directory"));
  EXPECT_TRUE(names_in(dir.path()).empty());
}

TEST_F(OutputTest, LocationCheckCreatesAndRemovesARealFile) {
  const std::string path = dir / "m.ckpt";
  EXPECT_EQ(check_output_location(path, "--checkpoint"), OutputKind::file);
  EXPECT_TRUE(names_in(dir.path()).empty());
  write_bytes(path, "keep");
  EXPECT_EQ(check_output_location(path, "--checkpoint"), OutputKind::file);
  EXPECT_EQ(read_bytes(path), "keep");
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"m.ckpt"});
  // /proc lets root pass access(W_OK) but creates no file there: only a real file proves it.
  if (!fs::is_directory("/proc/self")) return;
  EXPECT_THAT(
      io_error_of([] { check_output_location("/proc/descent-check.ckpt", "--checkpoint"); }),
      AllOf(HasSubstr("--checkpoint"), HasSubstr("cannot create a file")));
}

TEST_F(OutputTest, FailedWriteLeavesNoTemporaryFile) {
  // A write that fails after the temporary file exists: the file-size limit makes write() fail
  // with EFBIG (SIGXFSZ ignored), as a full disk would.
  const std::string path = dir / "big.ckpt";
  write_bytes(path, "old");
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit lim{16, 16};
    ::setrlimit(RLIMIT_FSIZE, &lim);
    const std::string msg = io_error_of([&] { save_checkpoint(path, model, &sgd); });
    ::_exit(msg.find("was left as it was") != std::string::npos ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "no IoError for a failed write";
  EXPECT_EQ(read_bytes(path), "old");
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"big.ckpt"});
}

TEST_F(OutputTest, SameFileSeesLinksAndSpellings) {
  write_bytes(dir / "a", "1");
  write_bytes(dir / "b", "2");
  fs::create_hard_link(dir / "a", dir / "hard");
  fs::create_symlink(dir / "a", dir / "soft");
  fs::create_directory(dir.path() / "sub");
  EXPECT_TRUE(same_file(dir / "a", dir / "hard"));
  EXPECT_TRUE(same_file(dir / "soft", dir / "a"));
  EXPECT_TRUE(same_file(dir / "a", dir / "sub/../a"));
  EXPECT_FALSE(same_file(dir / "a", dir / "b"));
  // Files that do not exist yet: the same when their resolved folder and name agree.
  EXPECT_TRUE(same_file(dir / "new", dir / "./sub/../new"));
  EXPECT_FALSE(same_file(dir / "new", dir / "sub/new"));
  EXPECT_FALSE(same_file(dir / "new", dir / "a"));
  fs::create_symlink("sub/target", dir / "dangling");
  EXPECT_TRUE(same_file(dir / "dangling", dir / "sub/target"));
}

}  // namespace
}  // namespace descent::test
