// The MPI communicator: host collectives, and gradient sums as non-blocking in-place
// MPI_Iallreduce on host memory (the CPU backend, whose queued work is already done when a call
// returns).
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <string>
#include <vector>

#include "comm/comm_impl.hpp"
#include "descent/error.hpp"

namespace descent {

namespace {

// The largest count one MPI call takes (an int), kept a multiple of 64 elements.
constexpr std::size_t kMaxCount = std::size_t{1} << 30;

[[noreturn]] void fail(const char* what, int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(rc, text, &length) != MPI_SUCCESS) length = 0;
  throw DeviceError(std::string("Communicator: ") + what + " failed: " +
                    std::string(text, static_cast<std::size_t>(length)));
}

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) fail(what, rc);
}

class MpiCommunicator final : public Communicator::Impl {
 public:
  MpiCommunicator(int fortran_comm, const CommOptions& o) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (!initialized || finalized) {
      throw DeviceError(
          "Communicator: MPI is not initialised (call MPI_Init first, and MPI_Finalize only "
          "after descent's objects are gone)");
    }
    MPI_Comm user = MPI_Comm_f2c(static_cast<MPI_Fint>(fortran_comm));
    if (user == MPI_COMM_NULL) {
      throw ArgumentError("Communicator: the MPI communicator (Fortran handle " +
                          std::to_string(fortran_comm) + ") is MPI_COMM_NULL");
    }
    // A private duplicate, whose errors come back as codes (and become exceptions here) instead
    // of ending the job behind the caller's back.
    check(MPI_Comm_dup(user, &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    check(MPI_Comm_rank(comm_, &rank), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size), "MPI_Comm_size");
    backend = CommBackend::mpi;
    options = o;
  }

  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;  // too late to free anything; MPI has released it
    if (!pending_.empty()) {
      MPI_Waitall(static_cast<int>(pending_.size()), pending_.data(), MPI_STATUSES_IGNORE);
    }
    MPI_Comm_free(&comm_);
  }

  void barrier() override { check(MPI_Barrier(comm_), "MPI_Barrier"); }

  void sum_f64(double* values, std::size_t n) override {
    if (n > 0) {
      check(MPI_Allreduce(MPI_IN_PLACE, values, count(n), MPI_DOUBLE, MPI_SUM, comm_),
            "MPI_Allreduce");
    }
  }
  void sum_i64(std::int64_t* values, std::size_t n) override {
    if (n > 0) {
      check(MPI_Allreduce(MPI_IN_PLACE, values, count(n), MPI_INT64_T, MPI_SUM, comm_),
            "MPI_Allreduce");
    }
  }
  void all_gather_u64(std::uint64_t value, std::uint64_t* out) override {
    check(MPI_Allgather(&value, 1, MPI_UINT64_T, out, 1, MPI_UINT64_T, comm_), "MPI_Allgather");
  }
  void broadcast(void* bytes, std::size_t n, int root) override {
    auto* p = static_cast<char*>(bytes);
    for (std::size_t done = 0; done < n; done += kMaxCount) {
      const std::size_t part = std::min(kMaxCount, n - done);
      check(MPI_Bcast(p + done, static_cast<int>(part), MPI_BYTE, root, comm_), "MPI_Bcast");
    }
  }

  [[noreturn]] void abort(const std::string& message, int code) override {
    std::fprintf(stderr, "descent: rank %d of %d: %s\n", rank, size, message.c_str());
    std::fflush(stderr);
    MPI_Abort(comm_, code);
    std::_Exit(code);  // MPI_Abort does not return; should it, end this rank anyway
  }

  void check_context(const Context& ctx, const char* op) const override {
    if (!ctx.device().is_cpu()) {
      throw DeviceError(std::string(op) + ": an MPI communicator sums host memory (the cpu " +
                        "device); " + ctx.device().str() + " needs an NCCL communicator");
    }
  }

  // Splits at kMaxCount elements: MPI counts are ints.
  void start_sum(const Context& /*ctx*/, float* data, std::size_t n) override {
    for (std::size_t done = 0; done < n; done += kMaxCount) {
      const std::size_t part = std::min(kMaxCount, n - done);
      MPI_Request r = MPI_REQUEST_NULL;
      check(MPI_Iallreduce(MPI_IN_PLACE, data + done, static_cast<int>(part), MPI_FLOAT, MPI_SUM,
                           comm_, &r),
            "MPI_Iallreduce");
      pending_.push_back(r);
    }
  }

  void poll() override {
    if (pending_.empty()) return;
    int done = 0;
    check(MPI_Testall(static_cast<int>(pending_.size()), pending_.data(), &done,
                      MPI_STATUSES_IGNORE),
          "MPI_Testall");
  }

  void finish_sums(const Context& /*ctx*/) override {
    if (pending_.empty()) return;
    const int rc = MPI_Waitall(static_cast<int>(pending_.size()), pending_.data(),
                               MPI_STATUSES_IGNORE);
    pending_.clear();
    check(rc, "MPI_Waitall");
  }

  // Host-side waits cannot be recorded in a CUDA graph (nor is there one on the CPU).
  bool capturable() const override { return false; }

  MPI_Comm comm() const { return comm_; }

 private:
  static int count(std::size_t n) {
    if (n > static_cast<std::size_t>(INT_MAX)) {
      throw ArgumentError("Communicator: " + std::to_string(n) + " values in one sum: at most " +
                          std::to_string(INT_MAX));
    }
    return static_cast<int>(n);
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  std::vector<MPI_Request> pending_;
};

}  // namespace

std::shared_ptr<Communicator::Impl> make_mpi_communicator(int fortran_comm,
                                                          const CommOptions& options) {
  return std::make_shared<MpiCommunicator>(fortran_comm, options);
}

}  // namespace descent
