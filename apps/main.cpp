// The descent command: dispatches to train or eval and turns errors into messages and exit codes
// (0 success, 1 error, 2 usage mistake).
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>

#include "descent/error.hpp"
#include "descent/version.hpp"
#include "options.hpp"

namespace descent::app {
int run_train(int argc, char** argv);
int run_eval(int argc, char** argv);
}  // namespace descent::app

namespace {

const char* kUsage =
    "usage: descent <command> [options]\n\n"
    "commands:\n"
    "  train    train an MLP (default: Fashion-MNIST from /usr/share/datasets/fashion-mnist)\n"
    "  eval     evaluate a saved model on a dataset\n\n"
    "descent <command> --help lists a command's options; descent --version tells the version,\n"
    "the git commit, the CPU GEMM library and whether CUDA, MPI and NCCL are built in.\n";

// Everything written to stdout must have arrived (a full disk or /dev/full is an error, not a
// silent loss): flush both layers and look at their error state. A command that already failed
// has said why; one message is enough.
int finish_stdout(int status) {
  errno = 0;
  std::cout.flush();
  const bool cout_ok = static_cast<bool>(std::cout);
  const int flushed = std::fflush(stdout);
  if (status != 0 || (cout_ok && flushed == 0 && std::ferror(stdout) == 0)) return status;
  const int e = errno != 0 ? errno : EIO;
  std::cerr << "descent: error: writing to standard output failed: " << std::strerror(e) << "\n";
  return 1;
}

int run(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
      std::strcmp(argv[1], "help") == 0) {
    (argc < 2 ? std::cerr : std::cout) << kUsage;
    return argc < 2 ? 2 : 0;
  }
  if (std::strcmp(argv[1], "--version") == 0 || std::strcmp(argv[1], "version") == 0) {
    std::cout << descent::build_info();
    return 0;
  }
  const std::string command = argv[1];
  try {
    if (command == "train") return descent::app::run_train(argc, argv);
    if (command == "eval") return descent::app::run_eval(argc, argv);
    std::cerr << "descent: unknown command '" << command << "'\n\n" << kUsage;
    return 2;
  } catch (const descent::app::UsageError& e) {
    std::cerr << "descent " << command << ": " << e.what() << "\n(see descent " << command
              << " --help)\n";
    return 2;
  } catch (const descent::Error& e) {
    std::cerr << "descent " << command << ": error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "descent " << command << ": unexpected error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) { return finish_stdout(run(argc, argv)); }
