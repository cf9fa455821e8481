// The NCCL communicator (the CUDA backend): gradient sums as in-place ncclAllReduce on a side
// stream of the backend (kernels/cuda/side_stream.cu), forked from and joined back to the
// context's stream, so that they overlap the backward pass and can be captured into the step's
// CUDA graph. The MPI communicator it wraps carries the bootstrap and every host collective.
// The CUDA runtime is reached only through the Backend table.
#include <nccl.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "comm/comm_impl.hpp"
#include "descent/error.hpp"
#include "kernels/backend.hpp"

namespace descent {

namespace {

using Clock = std::chrono::steady_clock;

// How long a rank sleeps between polls of a non-blocking NCCL call: short next to NCCL's own
// setup (milliseconds to seconds), long enough not to keep a core busy.
constexpr auto kPollInterval = std::chrono::microseconds(200);

Clock::time_point deadline_after(double seconds) {
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// Ranks as "rank 2" or "ranks 0, 1 and 3".
std::string list_ranks(const std::vector<int>& ranks) {
  std::string s = ranks.size() > 1 ? "ranks " : "rank ";
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    if (i > 0) s += i + 1 == ranks.size() ? " and " : ", ";
    s += std::to_string(ranks[i]);
  }
  return s;
}

class NcclCommunicator final : public Communicator::Impl {
 public:
  NcclCommunicator(std::shared_ptr<Communicator::Impl> mpi, const Context& ctx,
                   const CommOptions& o)
      : mpi_(std::move(mpi)),
        ctx_(ctx),
        backend_(detail::backend_of(ctx)),
        device_(ctx.device().index),
        side_(nullptr, backend_.destroy_side_stream) {
    rank = mpi_->rank;
    size = mpi_->size;
    backend = CommBackend::nccl;
    options = o;
    if (!ctx.device().is_cuda()) {
      throw DeviceError(prefix() + ctx.device().str() +
                        " is not a CUDA device: NCCL sums GPU "
                        "memory (a cpu context takes an MPI communicator)");
    }
    // Each step below that can fail on one rank alone is followed by a collective that tells
    // every rank, so all of them throw instead of the others waiting for the one that did.
    try {
      prepare_device_and_check_gpus();
      init(broadcast_id());
    } catch (...) {
      release();
      throw;
    }
  }

  ~NcclCommunicator() override { release(); }

  // ---- host collectives: over MPI
  void barrier() override { mpi_->barrier(); }
  void sum_f64(double* values, std::size_t n) override { mpi_->sum_f64(values, n); }
  void sum_i64(std::int64_t* values, std::size_t n) override { mpi_->sum_i64(values, n); }
  void all_gather_u64(std::uint64_t value, std::uint64_t* out) override {
    mpi_->all_gather_u64(value, out);
  }
  void broadcast(void* bytes, std::size_t n, int root) override { mpi_->broadcast(bytes, n, root); }

  // NCCL first: its kernels may be waiting on ranks that MPI_Abort is about to end.
  [[noreturn]] void abort(const std::string& message, int code) override {
    if (comm_ != nullptr) {
      backend_.clear_error(ctx_);  // makes the device current
      ncclCommAbort(comm_);
      comm_ = nullptr;
    }
    mpi_->abort(message, code);
    std::_Exit(code);  // not reached: MPI's abort ends the process
  }

  void check_context(const Context& ctx, const char* op) const override {
    const Device d = ctx.device();
    if (!d.is_cuda() || d.index != device_) {
      throw DeviceError(std::string(op) + ": the communicator (" + describe() +
                        ") sums memory on " + Device::cuda(device_).str() + ", the context is on " +
                        d.str() + "; make the communicator from a context on the same device");
    }
  }

  // Fork: the communication stream waits for what ctx's stream has queued so far (the bucket's
  // gradients), then sums in place. During a capture the event wait pulls the communication
  // stream into the capture, so the sum becomes a node of the graph.
  void start_sum(const Context& ctx, float* data, std::size_t n) override {
    if (n == 0) return;
    if (comm_ == nullptr) throw DeviceError(prefix() + aborted_);
    device_call([&] { backend_.side_fork(*side_, ctx); });
    check_nccl(ncclAllReduce(data, data, n, ncclFloat, ncclSum, comm_, side_stream()),
               "ncclAllReduce");
    started_ = true;
  }

  // NCCL progresses on the GPU and in its own threads; an error it met (a peer gone, the
  // network) is reported here, at the next step, rather than at the next wait.
  void poll() override { check_async_error("a gradient sum"); }

  // Join: ctx's stream waits for every sum queued on the communication stream. Without a
  // started sum there is nothing to join, and during a capture the communication stream would
  // not be part of it (waiting on its event would break the capture).
  void finish_sums(const Context& ctx) override {
    if (!started_) return;
    device_call([&] { backend_.side_join(*side_, ctx); });
    started_ = false;
  }

  bool capturable() const override { return true; }

  // Polls instead of cudaStreamSynchronize, which never returns while NCCL's kernels wait for a
  // peer that is gone: between queries of an event recorded after ctx's queued work, NCCL is
  // asked for an asynchronous error, and the wait is bounded by sync_timeout_seconds. On either
  // failure the communicator is aborted (which ends its kernels, so the stream drains) and every
  // later sum is refused.
  void wait(const Context& ctx) override {
    if (comm_ == nullptr) throw DeviceError(prefix() + aborted_);
    device_call([&] { backend_.side_mark(*side_, ctx); });
    const Clock::time_point deadline = deadline_after(options.sync_timeout_seconds);
    for (;;) {
      bool done = false;
      device_call([&] { done = backend_.side_mark_done(*side_); });
      if (done) return;
      check_async_error("the queued gradient sums");
      if (Clock::now() >= deadline) {
        fail("the work queued on " + Device::cuda(device_).str() + " (its gradient sums) did not " +
             "finish within " + std::to_string(options.sync_timeout_seconds) +
             " s (CommOptions::sync_timeout_seconds): is a peer rank gone or stuck, or the "
             "network between the nodes down?");
      }
      std::this_thread::sleep_for(kPollInterval);
    }
  }

 private:
  std::string prefix() const {
    return "Communicator: NCCL rank " + std::to_string(rank) + " of " + std::to_string(size) + ": ";
  }

  cudaStream_t side_stream() const {
    return static_cast<cudaStream_t>(backend_.side_stream(*side_));
  }

  // Runs a call into the backend; its DeviceError is rethrown naming this rank.
  template <class F>
  void device_call(F&& f) const {
    try {
      f();
    } catch (const DeviceError& e) {
      throw DeviceError(prefix() + e.what());
    }
  }

  // Aborts the communicator (its kernels return, so the streams that wait for them drain) and
  // throws `why`, naming this rank; every later use of the communicator throws too.
  [[noreturn]] void fail(const std::string& why) {
    aborted_ = "the communicator was aborted: " + why;
    broken_ = true;
    if (comm_ != nullptr) {
      ncclCommAbort(comm_);
      comm_ = nullptr;
    }
    backend_.clear_error(ctx_);  // an error of the aborted kernels must not surface later
    throw DeviceError(prefix() + aborted_);
  }

  // Throws (aborting the communicator) when NCCL reports an asynchronous error.
  void check_async_error(const char* during) {
    if (comm_ == nullptr) throw DeviceError(prefix() + aborted_);
    ncclResult_t state = ncclSuccess;
    const ncclResult_t rc = ncclCommGetAsyncError(comm_, &state);
    if (rc != ncclSuccess) state = rc;
    // A non-blocking communicator is ncclInProgress while a call it accepted is still setting up.
    if (state == ncclSuccess || state == ncclInProgress) return;
    fail(std::string("NCCL reported an error during ") + during + ": " + nccl_error(state));
  }

  // NCCL's own words for a failure: the code's meaning and, when it has one, the detail.
  std::string nccl_error(ncclResult_t rc) const {
    std::string s = std::string(ncclGetErrorString(rc));
    const char* last = ncclGetLastError(comm_);
    if (last != nullptr && *last != '\0') s += std::string(": ") + last;
    return s;
  }

  // Polls the non-blocking communicator while it reports work in progress, until `deadline`;
  // returns its state then (still ncclInProgress when the deadline passed).
  ncclResult_t wait_while_in_progress(Clock::time_point deadline) const {
    ncclResult_t state = ncclInProgress;
    for (;;) {
      const ncclResult_t rc = ncclCommGetAsyncError(comm_, &state);
      if (rc != ncclSuccess) return rc;
      if (state != ncclInProgress || Clock::now() >= deadline) return state;
      std::this_thread::sleep_for(kPollInterval);
    }
  }

  // A non-blocking communicator may answer any call with ncclInProgress (the first collective
  // between two ranks connects them): the call is then done once the communicator's state
  // leaves it. A rank whose peers never arrive gives up after init_timeout_seconds.
  void check_nccl(ncclResult_t rc, const char* what) {
    if (rc == ncclInProgress)
      rc = wait_while_in_progress(deadline_after(options.init_timeout_seconds));
    if (rc == ncclSuccess) return;
    broken_ = true;
    if (rc == ncclInProgress) {
      throw DeviceError(prefix() + what + " did not complete within " +
                        std::to_string(options.init_timeout_seconds) +
                        " s (CommOptions::init_timeout_seconds): are the other ranks still "
                        "running, and calling it too?");
    }
    throw DeviceError(prefix() + what + " failed: " + nccl_error(rc));
  }

  // NCCL refuses two ranks on one GPU, with a message that does not say which: find them first
  // by the GPUs' UUIDs (unique across nodes, unlike the PCI bus id). A rank that cannot set up
  // its GPU contributes 0, and every rank learns that it failed.
  void prepare_device_and_check_gpus() {
    std::uint64_t mine = 0;
    std::string error, bus = "unknown";
    try {
      // The device current (NCCL's init uses it), the communication stream and its events.
      device_call([&] {
        side_.reset(backend_.create_side_stream(ctx_));
        const detail::DeviceIdentity id = backend_.device_identity(ctx_);
        mine = fingerprint(id.uuid, sizeof id.uuid);
        bus = id.pci_bus;
      });
      if (mine == 0) mine = 1;
    } catch (const DeviceError& e) {
      error = e.what();
    }
    std::vector<std::uint64_t> all(static_cast<std::size_t>(size));
    mpi_->all_gather_u64(mine, all.data());
    if (!error.empty()) throw DeviceError(error);
    std::vector<int> failed, shared;
    for (int r = 0; r < size; ++r) {
      if (all[static_cast<std::size_t>(r)] == 0) failed.push_back(r);
      if (all[static_cast<std::size_t>(r)] == mine) shared.push_back(r);
    }
    if (!failed.empty()) {
      throw DeviceError(prefix() + list_ranks(failed) + " could not set up " +
                        (failed.size() > 1 ? "their GPUs" : "its GPU") + " (see the message from " +
                        (failed.size() > 1 ? "those ranks" : "it") +
                        "); no NCCL communicator was made");
    }
    std::vector<int> others;  // the first group of ranks that share a GPU, for the other ranks
    for (int r = 0; r < size && others.empty(); ++r) {
      for (int q = r + 1; q < size; ++q) {
        if (all[static_cast<std::size_t>(q)] == all[static_cast<std::size_t>(r)]) {
          if (others.empty()) others.push_back(r);
          others.push_back(q);
        }
      }
    }
    if (shared.size() > 1) {
      throw DeviceError(prefix() + list_ranks(shared) + " would share one GPU (this rank's " +
                        Device::cuda(device_).str() + ", PCI " + bus +
                        "): NCCL needs one GPU per rank. Give each rank of a node its own device "
                        "(e.g. cuda:<local rank>, from OMPI_COMM_WORLD_LOCAL_RANK), or start no "
                        "more ranks per node than it has GPUs");
    }
    if (!others.empty()) {
      throw DeviceError(prefix() + list_ranks(others) +
                        " would share one GPU: NCCL needs one GPU per rank; no NCCL communicator "
                        "was made");
    }
  }

  // Rank 0 makes NCCL's unique id and sends it, with whether that worked, to every rank.
  ncclUniqueId broadcast_id() {
    struct {
      ncclUniqueId id;
      std::int32_t ok;
    } boot{};
    std::string error;
    if (rank == 0) {
      const ncclResult_t rc = ncclGetUniqueId(&boot.id);
      boot.ok = rc == ncclSuccess ? 1 : 0;
      if (rc != ncclSuccess) error = prefix() + "ncclGetUniqueId failed: " + nccl_error(rc);
    }
    mpi_->broadcast(&boot, sizeof boot, 0);
    if (!error.empty()) throw DeviceError(error);
    if (boot.ok == 0) {
      throw DeviceError(prefix() +
                        "rank 0 could not make NCCL's unique id (see its message); "
                        "no NCCL communicator was made");
    }
    return boot.id;
  }

  // Non-blocking init, polled: a rank that never joins (it crashed, or got another id) ends in
  // a message naming this rank after init_timeout_seconds instead of a hang. Then every rank
  // learns whether all came up, so that none is left with a communicator the others lack.
  void init(const ncclUniqueId& id) {
    std::string error;
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t rc = ncclCommInitRankConfig(&comm_, size, id, rank, &config);
    if (rc == ncclInProgress || (rc == ncclSuccess && comm_ != nullptr)) {
      rc = wait_while_in_progress(deadline_after(options.init_timeout_seconds));
    }
    if (rc == ncclInProgress) {
      error = prefix() + "the NCCL communicator did not come up within " +
              std::to_string(options.init_timeout_seconds) +
              " s (CommOptions::init_timeout_seconds): did every rank make its communicator, "
              "each on a GPU of its own, and can the nodes reach each other?";
    } else if (rc != ncclSuccess) {
      error = prefix() + "ncclCommInitRankConfig on " + Device::cuda(device_).str() +
              " failed: " + nccl_error(rc);
    }
    if (!error.empty() && comm_ != nullptr) {
      ncclCommAbort(comm_);
      comm_ = nullptr;
    }
    std::vector<std::uint64_t> ok(static_cast<std::size_t>(size));
    mpi_->all_gather_u64(error.empty() ? 1 : 0, ok.data());
    if (!error.empty()) throw DeviceError(error);
    std::vector<int> failed;
    for (int r = 0; r < size; ++r) {
      if (ok[static_cast<std::size_t>(r)] == 0) failed.push_back(r);
    }
    if (!failed.empty()) {
      throw DeviceError(prefix() + "the NCCL communicator did not come up on " +
                        list_ranks(failed) + " (see " + (failed.size() > 1 ? "their" : "its") +
                        " message)");
    }
  }

  // Never throws. Finalize flushes the queued sums and waits for the peers to be done with this
  // rank; a communicator in error, or one whose peers do not finish within the timeout, is
  // aborted instead.
  void release() noexcept {
    backend_.clear_error(ctx_);  // makes the device current
    if (comm_ != nullptr) {
      ncclResult_t state = ncclSuccess;
      bool clean =
          !broken_ && ncclCommGetAsyncError(comm_, &state) == ncclSuccess && state == ncclSuccess;
      if (clean) {
        ncclResult_t rc = ncclCommFinalize(comm_);
        if (rc == ncclInProgress) {
          rc = wait_while_in_progress(deadline_after(options.init_timeout_seconds));
        }
        clean = rc == ncclSuccess;
      }
      if (clean) {
        ncclCommDestroy(comm_);
      } else {
        ncclCommAbort(comm_);
      }
      comm_ = nullptr;
    }
    side_.reset();  // clears the errors it meets, which must not surface in a later check
    backend_.clear_error(ctx_);
  }

  std::shared_ptr<Communicator::Impl> mpi_;  // the bootstrap and the host collectives
  Context ctx_;                              // the context it was made from (its device)
  const detail::Backend& backend_;           // ctx's backend (CUDA)
  int device_ = 0;                           // ctx's CUDA device index
  detail::SideStreamPtr side_;               // the communication stream: every sum runs here
  ncclComm_t comm_ = nullptr;
  std::string aborted_ = "the communicator was aborted";  // why, once fail() ran
  bool started_ = false;  // a sum started since the last finish_sums
  bool broken_ = false;   // an NCCL call failed: the destructor aborts
};

}  // namespace

std::shared_ptr<Communicator::Impl> make_nccl_communicator(std::shared_ptr<Communicator::Impl> mpi,
                                                           const Context& ctx,
                                                           const CommOptions& options) {
  return std::make_shared<NcclCommunicator>(std::move(mpi), ctx, options);
}

}  // namespace descent
