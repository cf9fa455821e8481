// The interface behind a Communicator (include/descent/communicator.hpp): host collectives for
// bookkeeping, and gradient sums ordered with a context's queued work. The base class is the
// single process, where every collective is a no-op; src/comm/mpi.cpp and src/comm/nccl.cpp
// implement the others.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "descent/communicator.hpp"

namespace descent {

struct Communicator::Impl {
  int rank = 0;
  int size = 1;
  CommBackend backend = CommBackend::single;
  CommOptions options;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  virtual ~Impl() = default;

  // ---- host collectives (blocking; every rank calls them in the same order)
  virtual void barrier() {}
  virtual void sum_f64(double* /*values*/, std::size_t /*n*/) {}
  virtual void sum_i64(std::int64_t* /*values*/, std::size_t /*n*/) {}
  virtual void all_gather_u64(std::uint64_t value, std::uint64_t* out) { out[0] = value; }
  virtual void broadcast(void* /*bytes*/, std::size_t /*n*/, int /*root*/) {}
  // Writes the message (naming this rank when there are several) and ends every rank.
  [[noreturn]] virtual void abort(const std::string& message, int code);

  // ---- gradient sums, in the order of ctx's queued work
  // Throws DeviceError (naming `op`) unless this communicator can sum ctx's memory.
  virtual void check_context(const Context& /*ctx*/, const char* /*op*/) const {}
  // Sums data[0, n) in place over the ranks once the work queued on ctx before this call is
  // done; returns without waiting for it. The buffer must not be touched until finish_sums.
  virtual void start_sum(const Context& /*ctx*/, float* /*data*/, std::size_t /*n*/) {}
  // Lets started sums progress (MPI progresses non-blocking collectives inside MPI calls).
  virtual void poll() {}
  // The work queued on ctx after this call sees every started sum complete.
  virtual void finish_sums(const Context& /*ctx*/) {}
  // Whether start_sum/finish_sums may be recorded into a captured CUDA graph.
  virtual bool capturable() const { return true; }
  // Returns once the work queued on ctx so far (sums included) is done, before the host reads
  // its results; throws DeviceError instead of waiting for ever when the sums fail (NCCL: an
  // asynchronous error, or CommOptions::sync_timeout_seconds passed).
  virtual void wait(const Context& /*ctx*/) {}

  // "MPI rank 1 of 4" and the like.
  std::string describe() const;
};

// FNV-1a over bytes, continuing from `hash`: a fingerprint to compare across ranks.
inline std::uint64_t fingerprint(const void* bytes, std::size_t n,
                                 std::uint64_t hash = 0xcbf29ce484222325ull) {
  const auto* p = static_cast<const unsigned char*>(bytes);
  for (std::size_t i = 0; i < n; ++i) hash = (hash ^ p[i]) * 0x100000001b3ull;
  return hash;
}
template <class T>
std::uint64_t fingerprint_of(const T& value, std::uint64_t hash = 0xcbf29ce484222325ull) {
  return fingerprint(&value, sizeof value, hash);
}

// Collective: throws ArgumentError on every rank when `hash` differs between ranks, naming the
// ranks whose value differs from rank 0's and what it fingerprints ("op: <what> differs ...").
void check_same_on_every_rank(const Communicator& comm, std::uint64_t hash, const char* op,
                              const std::string& what);

// src/comm/mpi.cpp (a build with MPI): this rank's index among the ranks of the communicator on
// its node, and their count (MPI_Comm_split_type, shared memory).
void local_rank_and_size(int fortran_comm, int* local_rank, int* local_size);
// src/comm/mpi.cpp (a build with MPI): the MPI communicator of Fortran handle `fortran_comm`,
// duplicated.
std::shared_ptr<Communicator::Impl> make_mpi_communicator(int fortran_comm,
                                                          const CommOptions& options);
// src/comm/nccl.cpp (a build with NCCL): an NCCL communicator for ctx's GPU over the ranks of
// `mpi`, which it keeps for the host collectives and its bootstrap.
std::shared_ptr<Communicator::Impl> make_nccl_communicator(std::shared_ptr<Communicator::Impl> mpi,
                                                           const Context& ctx,
                                                           const CommOptions& options);

}  // namespace descent
