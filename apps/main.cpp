// The descent command: dispatches to train or eval and turns errors into messages and exit codes
// (0 success, 1 error, 2 usage mistake).
#include <cstring>
#include <exception>
#include <iostream>

#include "descent/error.hpp"
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
    "descent <command> --help lists a command's options.\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
      std::strcmp(argv[1], "help") == 0) {
    (argc < 2 ? std::cerr : std::cout) << kUsage;
    return argc < 2 ? 2 : 0;
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
