// The command's MPI job (see job.hpp).
#include "job.hpp"

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "descent/error.hpp"

#if DESCENT_HAS_MPI
#include <mpi.h>
#endif

namespace descent::app {

namespace {

const Job* g_job = nullptr;

// Launchers say who started a process in its environment: OpenMPI's mpirun, PMIx (OpenMPI 5,
// Slurm), and PMI (MPICH's Hydra, Intel MPI, Slurm).
bool launched_by_mpi(int& size) {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"}) {
    if (const char* v = std::getenv(name); v != nullptr && *v != '\0') {
      size = std::atoi(v);
      return true;
    }
  }
  if (std::getenv("PMIX_RANK") != nullptr || std::getenv("PMI_RANK") != nullptr) {
    size = 0;  // unknown until MPI says
    return true;
  }
  return false;
}

}  // namespace

Job::Job(int& argc, char**& argv) {
  int launched_size = 1;
  const bool launched = launched_by_mpi(launched_size);
#if DESCENT_HAS_MPI
  if (launched) {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    mpi_ = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local_rank_);
    MPI_Comm_size(node, &local_size_);
    MPI_Comm_free(&node);
  }
#else
  (void)argc;
  (void)argv;
  if (launched && launched_size > 1) {
    throw DeviceError("launched on " + std::to_string(launched_size) +
                      " MPI ranks, but this descent was built without MPI (DESCENT_MPI): each "
                      "rank would train alone. Run it as one process, or build with MPI");
  }
#endif
  g_job = this;
}

Job::~Job() {
  if (g_job == this) g_job = nullptr;
#if DESCENT_HAS_MPI
  if (mpi_) MPI_Finalize();
#endif
}

Communicator Job::communicator(const Context& ctx) const {
#if DESCENT_HAS_MPI
  if (mpi_)
    return Communicator::from_mpi_fortran(static_cast<int>(MPI_Comm_c2f(MPI_COMM_WORLD)), ctx);
#endif
  (void)ctx;
  return Communicator();
}

void Job::abort(const std::string& what, const std::string& message, int code) const {
  std::cout.flush();
  // One write, so that the launcher's own messages cannot land inside the line.
  const std::string line = what + ": rank " + std::to_string(rank_) + " of " +
                           std::to_string(size_) + ": " + message + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
#if DESCENT_HAS_MPI
  if (mpi_) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::_Exit(code);
}

const Job& job() {
  static const Job single;  // outside main's job (a test calling the command's code): one process
  return g_job != nullptr ? *g_job : single;
}

}  // namespace descent::app
