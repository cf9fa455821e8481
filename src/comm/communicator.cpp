// Communicator: the handle, the single-process communicator, the shard arithmetic, and the
// choice between MPI and NCCL.
#include "descent/communicator.hpp"

#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "comm/comm_impl.hpp"
#include "descent/error.hpp"
#include "descent/model.hpp"
#include "enum_names.hpp"

namespace descent {

namespace {
constexpr detail::EnumName<CommBackend> kBackendNames[] = {
    {CommBackend::single, "single"}, {CommBackend::mpi, "mpi"}, {CommBackend::nccl, "nccl"}};
}  // namespace

const char* to_string(CommBackend backend) { return detail::name_of(kBackendNames, backend); }

bool built_with_mpi() {
#if DESCENT_HAS_MPI
  return true;
#else
  return false;
#endif
}

bool built_with_nccl() {
#if DESCENT_HAS_NCCL
  return true;
#else
  return false;
#endif
}

std::string Communicator::Impl::describe() const {
  switch (backend) {
    case CommBackend::single:
      return "single process";
    case CommBackend::mpi:
      return "MPI rank " + std::to_string(rank) + " of " + std::to_string(size);
    case CommBackend::nccl:
      return "NCCL rank " + std::to_string(rank) + " of " + std::to_string(size) + " (over MPI)";
  }
  return "unknown";
}

void Communicator::Impl::abort(const std::string& message, int code) {
  std::fprintf(stderr, "descent: %s\n", message.c_str());
  std::fflush(stderr);
  std::exit(code);
}

Communicator::Communicator() : impl_(std::make_shared<Impl>()) {}
Communicator::Communicator(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Communicator::Communicator(const Communicator&) noexcept = default;
Communicator& Communicator::operator=(const Communicator&) noexcept = default;
// A moved-from handle stays usable (as a copy): a Context-like handle never dangles.
Communicator::Communicator(Communicator&& other) noexcept : impl_(other.impl_) {}
Communicator& Communicator::operator=(Communicator&& other) noexcept {
  impl_ = other.impl_;
  return *this;
}
Communicator::~Communicator() = default;

namespace {

// The cores this process may run on (its affinity mask), and the node's.
int affinity_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
  return CPU_COUNT(&set);
}

}  // namespace

RankPlacement place_rank(int fortran_comm, std::string_view kind) {
  if (kind != "auto" && kind != "cpu" && kind != "cuda") {
    throw ArgumentError("place_rank: kind: expected 'auto', 'cpu' or 'cuda', got '" +
                        std::string(kind) + "'");
  }
  RankPlacement p;
#if DESCENT_HAS_MPI
  local_rank_and_size(fortran_comm, &p.local_rank, &p.local_size);
#else
  (void)fortran_comm;
  throw DeviceError("place_rank: this build of descent has no MPI (DESCENT_MPI)");
#endif
  const int gpus = cuda_device_count();
  if (kind == "cuda" && gpus == 0) {
    throw DeviceError("place_rank: kind 'cuda', but this node has no usable CUDA device" +
                      std::string(built_with_cuda() ? "" : " (descent was built without CUDA)"));
  }
  if (kind == "cuda" || (kind == "auto" && gpus > 0)) {
    p.device = Device::cuda(p.local_rank % gpus);
    p.threads = 1;
    return p;
  }
  p.device = Device::cpu();
  const char* omp = std::getenv("OMP_NUM_THREADS");
  const int node_cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const int mine = affinity_cores();
  if (omp != nullptr && *omp != '\0') {
    p.threads = std::max(1, omp_get_max_threads());
  } else if (mine > 0 && mine < node_cores) {
    p.threads = mine;  // the launcher bound this rank to its cores
  } else {
    p.threads = std::max(1, node_cores / std::max(1, p.local_size));
  }
  return p;
}

Communicator Communicator::from_mpi_fortran(int fortran_comm, const Context& ctx,
                                            CommOptions options) {
  if (options.bucket_bytes == 0) {
    throw ArgumentError("Communicator: bucket_bytes: must be >= 1, got 0");
  }
  if (!(options.init_timeout_seconds > 0.0)) {
    throw ArgumentError("Communicator: init_timeout_seconds: must be > 0, got " +
                        std::to_string(options.init_timeout_seconds));
  }
  if (!(options.sync_timeout_seconds > 0.0)) {
    throw ArgumentError("Communicator: sync_timeout_seconds: must be > 0, got " +
                        std::to_string(options.sync_timeout_seconds));
  }
#if DESCENT_HAS_MPI
  std::shared_ptr<Impl> mpi = make_mpi_communicator(fortran_comm, options);
  if (ctx.device().is_cpu()) return Communicator(std::move(mpi));
#if DESCENT_HAS_NCCL
  return Communicator(make_nccl_communicator(std::move(mpi), ctx, options));
#else
  throw DeviceError("Communicator: " + ctx.device().str() +
                    ": data-parallel training on CUDA devices needs NCCL, and this descent was "
                    "built without it (DESCENT_NCCL)");
#endif
#else
  (void)fortran_comm;
  (void)ctx;
  throw DeviceError(
      "Communicator: this descent was built without MPI (DESCENT_MPI): it trains in one "
      "process only");
#endif
}

int Communicator::rank() const { return impl_->rank; }
int Communicator::size() const { return impl_->size; }
CommBackend Communicator::backend() const { return impl_->backend; }
const CommOptions& Communicator::options() const { return impl_->options; }
std::string Communicator::describe() const { return impl_->describe(); }

void Communicator::barrier() const { impl_->barrier(); }

void Communicator::sum_gradients(Mlp& model) const {
  impl_->check_context(model.context(), "Communicator::sum_gradients");
  if (size() == 1) return;
  const VectorView<float> g = model.grads();
  impl_->start_sum(model.context(), g.data, static_cast<std::size_t>(g.size));
  impl_->finish_sums(model.context());
}
void Communicator::sum(std::span<double> values) const {
  impl_->sum_f64(values.data(), values.size());
}
void Communicator::sum(std::span<std::int64_t> values) const {
  impl_->sum_i64(values.data(), values.size());
}
std::vector<std::uint64_t> Communicator::all_gather(std::uint64_t value) const {
  std::vector<std::uint64_t> out(static_cast<std::size_t>(impl_->size));
  impl_->all_gather_u64(value, out.data());
  return out;
}
void Communicator::broadcast(std::span<std::byte> bytes, int root) const {
  if (root < 0 || root >= impl_->size) {
    throw ArgumentError("Communicator::broadcast: root: expected 0 .. " +
                        std::to_string(impl_->size - 1) + ", got " + std::to_string(root));
  }
  impl_->broadcast(bytes.data(), bytes.size(), root);
}

void Communicator::abort(const std::string& message, int code) const {
  impl_->abort(message, code);
  std::abort();  // not reached: every implementation ends the process
}

void check_same_on_every_rank(const Communicator& comm, std::uint64_t hash, const char* op,
                              const std::string& what) {
  if (comm.size() == 1) return;
  const std::vector<std::uint64_t> all = comm.all_gather(hash);
  std::string differ;
  int count = 0;
  for (std::size_t r = 1; r < all.size(); ++r) {
    if (all[r] != all[0]) {
      differ += (count++ == 0 ? "" : ", ") + std::to_string(r);
    }
  }
  if (count > 0) {
    throw ArgumentError(std::string(op) + ": " + what + " differs between the ranks: rank" +
                        (count > 1 ? "s " : " ") + differ + (count > 1 ? " differ" : " differs") +
                        " from rank 0 (of " + std::to_string(comm.size()) +
                        "); every rank must be given the same");
  }
}

Shard shard_of(std::int64_t rows, int rank, int ranks) {
  if (ranks < 1 || rank < 0 || rank >= ranks || rows < 0) {
    throw ArgumentError("shard_of: expected rows >= 0 and 0 <= rank < ranks, got rows " +
                        std::to_string(rows) + ", rank " + std::to_string(rank) + ", ranks " +
                        std::to_string(ranks));
  }
  const std::int64_t q = rows / ranks, extra = rows % ranks;
  Shard s;
  s.begin = rank * q + std::min<std::int64_t>(rank, extra);
  s.end = s.begin + q + (rank < extra ? 1 : 0);
  return s;
}

}  // namespace descent
