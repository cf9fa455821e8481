// The descent command: dispatches to train, eval, predict, export or import and turns errors into
// messages and exit codes (0 success, 1 error, 2 usage mistake).
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <optional>
#include <streambuf>

#include "commands.hpp"
#include "descent/error.hpp"
#include "descent/version.hpp"
#include "job.hpp"

namespace {

const char* kUsage =
    "usage: descent <command> [options]\n\n"
    "commands:\n"
    "  train    train an MLP (default: Fashion-MNIST from /usr/share/datasets/fashion-mnist)\n"
    "  eval     evaluate a saved model on a dataset\n"
    "  predict  write a saved model's predictions for new inputs as CSV\n"
    "  export   write a saved model as safetensors (PyTorch) and/or ONNX (ONNX Runtime)\n"
    "  import   read a safetensors file into a checkpoint\n\n"
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
  // An error ends the command with a message and an exit code; on several MPI ranks it ends the
  // whole job from the rank that met it (the others may be waiting for it in a collective).
  const auto fail = [&](const std::string& message, int code) {
    const descent::app::Job& j = descent::app::job();
    if (j.size() > 1) j.abort("descent " + command, message, code);
    std::cerr << "descent " << command << ": " << message << "\n";
    return code;
  };
  try {
    if (command == "train") return descent::app::run_train(argc, argv);
    if (command == "eval") return descent::app::run_eval(argc, argv);
    if (command == "predict") return descent::app::run_predict(argc, argv);
    if (command == "export") return descent::app::run_export(argc, argv);
    if (command == "import") return descent::app::run_import(argc, argv);
    std::cerr << "descent: unknown command '" << command << "'\n\n" << kUsage;
    return 2;
  } catch (const descent::app::UsageError& e) {
    return fail(std::string(e.what()) + "\n(see descent " + command + " --help)", 2);
  } catch (const descent::Error& e) {
    return fail(std::string("error: ") + e.what(), 1);
  } catch (const std::exception& e) {
    return fail(std::string("unexpected error: ") + e.what(), 1);
  }
}

// Discards what it is given: standard output of the ranks other than 0.
class NullBuffer : public std::streambuf {
 protected:
  int overflow(int c) override { return traits_type::not_eof(c); }
  std::streamsize xsputn(const char*, std::streamsize n) override { return n; }
};

}  // namespace

int main(int argc, char** argv) {
  std::optional<descent::app::Job> job;
  try {
    job.emplace(argc, argv);
  } catch (const descent::Error& e) {
    std::cerr << "descent: error: " << e.what() << "\n";
    return 1;
  }
  // Under mpirun only rank 0 writes standard output (errors still go to standard error).
  NullBuffer null;
  std::streambuf* const out = job->is_root() ? std::cout.rdbuf() : std::cout.rdbuf(&null);
  const int status = finish_stdout(run(argc, argv));
  std::cout.rdbuf(out);
  return status;
}
