// The library's version and how it was built: what `descent --version` prints.
#pragma once

#include <string>

#include "descent/export.h"
#include "descent/version.h"

DESCENT_API_BEGIN

namespace descent {

// The library's version, "MAJOR.MINOR.PATCH" (DESCENT_VERSION_STRING of the build that made the
// library, which may differ from the header a program was compiled against).
const char* version();

// How this library was built, as the fields of build_info().
struct BuildInfo {
  std::string version;       // "MAJOR.MINOR.PATCH"
  std::string git_commit;    // the commit at configure time, "unknown" outside a git checkout
  std::string cpu_gemm;      // the CPU GEMM library, e.g. "oneDNN 3.0.0 dnnl_sgemm"
  bool cuda = false;         // the CUDA backend is built in
  std::string cuda_details;  // e.g. "CUDA 13.0.48, architectures 80,90" (empty without CUDA)
  bool mpi = false;          // the MPI communicator is built in
  bool nccl = false;         // the NCCL communicator is built in
};

// The fields of build_info().
BuildInfo build_details();

// What `descent --version` prints: one "key: value" line per field, the first line
// "descent MAJOR.MINOR.PATCH", each line ending in '\n'. For example:
//
//     descent 0.1.0
//     commit: 44e3acb1f2c9
//     CPU GEMM: oneDNN 3.0.0 dnnl_sgemm
//     CUDA: yes (CUDA 13.0.48, architectures 80,90)
//     MPI: no
//     NCCL: no
std::string build_info();

}  // namespace descent

DESCENT_API_END
