// The job the command runs in: one process, or one rank of an MPI job when an MPI launcher
// (mpirun, mpiexec, srun) started it. Then MPI is initialised for the whole run, the training is
// data parallel over MPI_COMM_WORLD, only rank 0 writes standard output and files, and an error
// on any rank ends the whole job with a message naming that rank.
#pragma once

#include <string>

#include "descent/communicator.hpp"
#include "descent/context.hpp"

namespace descent::app {

class Job {
 public:
  // Initialises MPI when launched by an MPI launcher; throws Error when descent was built
  // without MPI but launched on several ranks (each would train alone).
  Job(int& argc, char**& argv);
  // One process, without MPI.
  Job() = default;
  ~Job();
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  // Launched by an MPI launcher (even on one rank).
  bool under_mpi() const { return mpi_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }
  // This rank's place among the ranks on its node (which GPU it takes).
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }

  // The communicator of every rank, for ctx (a single one without MPI). Collective.
  Communicator communicator(const Context& ctx) const;

  // Writes "<what>: rank R of N: <message>" to standard error and ends the job with `code`: the
  // other ranks may be waiting in a collective for this one.
  [[noreturn]] void abort(const std::string& what, const std::string& message, int code) const;

 private:
  bool mpi_ = false;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
};

// The process's job (made by main).
const Job& job();

}  // namespace descent::app
