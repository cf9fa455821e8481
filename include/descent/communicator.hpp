// Communicator: the ranks one model trains across, data parallel. Each rank holds a replica of
// the model and the optimizer, trains on its slice of every global batch, and the gradients are
// summed over the ranks before each update, so every replica takes the same steps.
//
// This header names no MPI or NCCL type: a communicator is made from the Fortran handle of an
// MPI communicator (an int), or from an MPI_Comm through the opt-in descent/mpi.hpp.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "descent/context.hpp"
#include "descent/export.h"

DESCENT_API_BEGIN

namespace descent {

class Mlp;

// What carries the collectives: nothing (one process), MPI (the CPU backend), or NCCL
// bootstrapped over MPI (the CUDA backend, one GPU per rank).
enum class CommBackend { single, mpi, nccl };
// "single", "mpi", "nccl".
const char* to_string(CommBackend backend);

// Whether this build of descent can make MPI / NCCL communicators (DESCENT_MPI, DESCENT_NCCL).
bool built_with_mpi();
bool built_with_nccl();

// Where one rank of a job should run, from the ranks that share its node: a GPU of its own, or
// its share of the node's cores.
struct RankPlacement {
  int local_rank = 0;  // among the ranks of the communicator on this node
  int local_size = 1;
  Device device;       // cuda:(local_rank mod the node's GPUs), or cpu
  int threads = 1;     // CPU threads for the rank's Context
};

// The placement of this rank (collective over the communicator, the Fortran handle of an MPI
// communicator, as Communicator::from_mpi_fortran). kind "cuda": a GPU per rank, in turn over
// the node's GPUs (DeviceError when the node has none); "cpu": threads = OMP_NUM_THREADS when it
// is set, else the cores this process may run on (its affinity mask) when the launcher bound it
// to fewer than the node's, else the node's cores shared out among its ranks (at least 1);
// "auto": "cuda" where the node has a GPU, else "cpu". Make the rank's context from it:
//   const RankPlacement p = place_rank(fortran_comm, "auto");
//   Context ctx(p.device, {.threads = p.threads});
// Throws ArgumentError for another kind or a handle that is not a communicator, DeviceError
// when this build has no MPI.
RankPlacement place_rank(int fortran_comm, std::string_view kind = "auto");

struct CommOptions {
  // NCCL: seconds the ranks wait for the communicator to come up (non-blocking
  // ncclCommInitRankConfig, polled) before the job is aborted with a message naming the rank.
  double init_timeout_seconds = 120.0;
  // NCCL: seconds a rank waits, when the host needs a step's results (the trainer reading its
  // loss), for the work queued on its GPU to finish, checking NCCL for errors meanwhile. A peer
  // that died or a network error would otherwise leave NCCL's kernels spinning and the rank
  // blocked for ever; past the timeout, or on an NCCL error, the communicator is aborted and a
  // DeviceError names the rank. It bounds a whole queue of steps: keep it generous.
  double sync_timeout_seconds = 600.0;
  // Gradients are summed in buckets of whole layers, from the last layer back, each at least
  // this many bytes (the last bucket may be smaller), started as soon as the backward pass has
  // written it, while the layers before it are still being differentiated. The buckets depend
  // only on the model, so they are the same on every rank.
  std::size_t bucket_bytes = std::size_t{4} << 20;
};

class Communicator {
 public:
  // One process alone: rank 0 of 1. Collectives are no-ops and cost nothing.
  Communicator();

  // The ranks of an MPI communicator, given by its Fortran handle (MPI_Comm_c2f(comm) in C; the
  // integer handle, or type(MPI_Comm)%MPI_VAL, in Fortran); see descent/mpi.hpp for an MPI_Comm.
  // Collective: every rank of the communicator calls it, with a context of the same kind.
  // descent duplicates the communicator, so its messages never mix with the caller's. MPI must
  // be initialised by the caller, and finalised only after every descent object that uses the
  // communicator is destroyed.
  //  - a CPU context: the gradients are summed with MPI (non-blocking MPI_Iallreduce);
  //  - a CUDA context: with NCCL on a stream of its own, bootstrapped over the MPI communicator
  //    (one GPU per rank: NCCL refuses two ranks on one GPU). Needs a build with NCCL.
  // Throws DeviceError when this build has no MPI (or no NCCL for a CUDA context).
  static Communicator from_mpi_fortran(int fortran_comm, const Context& ctx,
                                       CommOptions options = {});

  Communicator(const Communicator&) noexcept;
  Communicator& operator=(const Communicator&) noexcept;
  Communicator(Communicator&&) noexcept;
  Communicator& operator=(Communicator&&) noexcept;
  ~Communicator();

  int rank() const;
  int size() const;
  bool is_root() const { return rank() == 0; }
  CommBackend backend() const;
  const CommOptions& options() const;
  // "single process", "MPI rank 1 of 4", "NCCL rank 1 of 4 (over MPI)".
  std::string describe() const;

  // Host collectives: every rank calls them in the same order; they return when done. On one
  // process they return at once.
  void barrier() const;
  // In place: each element becomes its sum over the ranks.
  void sum(std::span<double> values) const;
  void sum(std::span<std::int64_t> values) const;
  // Every rank's value, in rank order.
  std::vector<std::uint64_t> all_gather(std::uint64_t value) const;

  // Sums model.grads() over the ranks in place, after the work queued on the model's context,
  // for a step built by hand (jets, several loss terms) rather than by a Trainer: each rank's
  // gradients of its shard's share of the loss (LossOutput::mean_rows, pde_residual_loss's
  // mean_rows) become the whole batch's on every rank, ready for Optimizer::step. Collective;
  // DeviceError when the model's context is not one this communicator sums (see
  // from_mpi_fortran).
  void sum_gradients(Mlp& model) const;
  // The root's bytes, copied into every other rank's `bytes` (same size on every rank).
  void broadcast(std::span<std::byte> bytes, int root = 0) const;

  // Ends the whole job from this rank: writes "descent: rank R of N: message" (or "descent:
  // message" on one process) to standard error, then aborts every rank (MPI_Abort; the NCCL
  // communicator is aborted first) with `code`. For an error one rank meets alone (a bad file,
  // out of memory), so the other ranks are not left waiting in a collective.
  [[noreturn]] void abort(const std::string& message, int code = 1) const;

  struct Impl;
  Impl& impl() const { return *impl_; }

 private:
  explicit Communicator(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// The rows [begin, end) of a global batch of `rows` rows that `rank` of `ranks` trains on: the
// ranks take consecutive slices, sizes differing by at most one, the larger ones first.
struct Shard {
  std::int64_t begin = 0, end = 0;
  std::int64_t rows() const { return end - begin; }
};
Shard shard_of(std::int64_t rows, int rank, int ranks);

}  // namespace descent

DESCENT_API_END
