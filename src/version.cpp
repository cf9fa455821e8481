// The library's version and build description (version.hpp); the values come from CMake.
#include "descent/version.hpp"

#include "descent/context.hpp"

#ifndef DESCENT_GIT_COMMIT
#define DESCENT_GIT_COMMIT "unknown"
#endif
#ifndef DESCENT_CUDA_DETAILS
#define DESCENT_CUDA_DETAILS ""
#endif
#ifndef DESCENT_HAS_MPI
#define DESCENT_HAS_MPI 0
#endif
#ifndef DESCENT_HAS_NCCL
#define DESCENT_HAS_NCCL 0
#endif

namespace descent {

const char* version() { return DESCENT_VERSION_STRING; }

BuildInfo build_details() {
  BuildInfo info;
  info.version = DESCENT_VERSION_STRING;
  info.git_commit = DESCENT_GIT_COMMIT[0] != '\0' ? DESCENT_GIT_COMMIT : "unknown";
  info.cpu_gemm = cpu_gemm_name();
  info.cuda = built_with_cuda();
  info.cuda_details = info.cuda ? DESCENT_CUDA_DETAILS : "";
  info.mpi = DESCENT_HAS_MPI != 0;
  info.nccl = DESCENT_HAS_NCCL != 0;
  return info;
}

std::string build_info() {
  const BuildInfo info = build_details();
  auto yes_no = [](bool built, const std::string& details) {
    if (!built) return std::string("no");
    return details.empty() ? std::string("yes") : "yes (" + details + ")";
  };
  std::string text = "descent " + info.version + "\n";
  text += "commit: " + info.git_commit + "\n";
  text += "CPU GEMM: " + info.cpu_gemm + "\n";
  text += "CUDA: " + yes_no(info.cuda, info.cuda_details) + "\n";
  text += "MPI: " + yes_no(info.mpi, "") + "\n";
  text += "NCCL: " + yes_no(info.nccl, "") + "\n";
  return text;
}

}  // namespace descent
