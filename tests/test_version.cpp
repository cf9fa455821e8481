// The version header, descent::version(), build_info() (what `descent --version` prints) and
// the C API's descent_version().
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "descent/communicator.hpp"
#include "descent/context.hpp"
#include "descent/descent.h"
#include "descent/version.hpp"

namespace descent::test {
namespace {

using ::testing::MatchesRegex;
using ::testing::StartsWith;

TEST(Version, HeaderLibraryAndCApiAgree) {
  const std::string expected = std::to_string(DESCENT_VERSION_MAJOR) + "." +
                               std::to_string(DESCENT_VERSION_MINOR) + "." +
                               std::to_string(DESCENT_VERSION_PATCH);
  EXPECT_EQ(expected, DESCENT_VERSION_STRING);
  EXPECT_EQ(std::string(version()), DESCENT_VERSION_STRING);
  EXPECT_EQ(std::string(descent_version()), DESCENT_VERSION_STRING);
  EXPECT_EQ(DESCENT_VERSION_NUMBER,
            DESCENT_VERSION_MAJOR * 10000 + DESCENT_VERSION_MINOR * 100 + DESCENT_VERSION_PATCH);
}

TEST(Version, BuildDetailsDescribeThisLibrary) {
  const BuildInfo info = build_details();
  EXPECT_EQ(info.version, DESCENT_VERSION_STRING);
  EXPECT_EQ(info.cpu_gemm, cpu_gemm_name());
  EXPECT_EQ(info.cuda, built_with_cuda());
  EXPECT_EQ(info.cuda, !info.cuda_details.empty());
  // A commit hash from git at configure time, or "unknown" outside a checkout.
  EXPECT_THAT(info.git_commit, MatchesRegex("unknown|[0-9a-f]+"));
  EXPECT_EQ(info.mpi, built_with_mpi());
  EXPECT_EQ(info.nccl, built_with_nccl());
  EXPECT_TRUE(!info.nccl || info.mpi) << "NCCL is bootstrapped over MPI";
}

TEST(Version, BuildInfoHasOneLinePerField) {
  const BuildInfo info = build_details();
  const std::string text = build_info();
  EXPECT_THAT(text, StartsWith("descent " + info.version + "\n"));
  const std::string cuda = info.cuda ? "yes (" + info.cuda_details + ")" : "no";
  EXPECT_EQ(text, "descent " + info.version + "\ncommit: " + info.git_commit +
                      "\nCPU GEMM: " + info.cpu_gemm + "\nCUDA: " + cuda +
                      "\nMPI: " + (info.mpi ? "yes" : "no") +
                      "\nNCCL: " + (info.nccl ? "yes" : "no") + "\n");
}

}  // namespace
}  // namespace descent::test
