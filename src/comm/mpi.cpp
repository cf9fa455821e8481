// The MPI communicator: host collectives, and gradient sums as non-blocking in-place
// MPI_Iallreduce on host memory (the CPU backend, whose queued work is already done when a call
// returns).
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <string>
#include <type_traits>
#include <vector>

#include "comm/comm_impl.hpp"
#include "descent/error.hpp"

namespace descent {

namespace {

// The largest count one MPI call takes (an int), kept a multiple of 64 elements.
constexpr std::size_t kMaxCount = std::size_t{1} << 30;

// MPI's text for an error code (the code itself when MPI has none).
std::string error_text(int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(rc, text, &length) != MPI_SUCCESS || length <= 0) {
    return "MPI error " + std::to_string(rc);
  }
  return std::string(text, static_cast<std::size_t>(length));
}

[[noreturn]] void fail(const char* what, int rc) {
  throw DeviceError(std::string("Communicator: ") + what + " failed: " + error_text(rc));
}

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) fail(what, rc);
}

// While alive, MPI errors on `comm` come back as codes; then the handler it had is back. Errors
// about an invalid communicator handle are reported on MPI_COMM_WORLD (OpenMPI, MPICH), so a
// handle is tested under ErrorsReturn(MPI_COMM_WORLD). MPI offers no other way to ask whether a
// handle is valid; this briefly changes the handler the caller set, which is why descent makes
// communicators only in its collective set-up calls.
class ErrorsReturn {
 public:
  explicit ErrorsReturn(MPI_Comm comm) : comm_(comm) {
    if (MPI_Comm_get_errhandler(comm_, &previous_) != MPI_SUCCESS) return;
    set_ = MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN) == MPI_SUCCESS;
  }
  ~ErrorsReturn() {
    if (set_) MPI_Comm_set_errhandler(comm_, previous_);
    if (previous_ != MPI_ERRHANDLER_NULL) MPI_Errhandler_free(&previous_);
  }
  ErrorsReturn(const ErrorsReturn&) = delete;
  ErrorsReturn& operator=(const ErrorsReturn&) = delete;

 private:
  MPI_Comm comm_;
  MPI_Errhandler previous_ = MPI_ERRHANDLER_NULL;
  bool set_ = false;
};

// The communicator behind a Fortran handle, refused (ArgumentError naming the handle) when it is
// MPI_COMM_NULL, not a communicator, or an intercommunicator (whose collectives combine the two
// groups instead of summing over all ranks).
//  - OpenMPI's MPI_Comm_f2c gives a null pointer for a handle outside its table or of a freed
//    communicator (never an invalid non-null one), so that case is caught before any MPI call.
//  - Elsewhere (MPICH: the handle is the communicator) a harmless call on it, with errors
//    returned on MPI_COMM_WORLD, tells an invalid one. An implementation that aborts on an
//    invalid handle whatever the error handler says cannot be guarded against.
MPI_Comm user_communicator(int fortran_comm) {
  const std::string handle =
      "the MPI communicator (Fortran handle " + std::to_string(fortran_comm) + ")";
  const MPI_Comm user = MPI_Comm_f2c(static_cast<MPI_Fint>(fortran_comm));
  if (user == MPI_COMM_NULL) throw ArgumentError("Communicator: " + handle + " is MPI_COMM_NULL");
  if constexpr (std::is_pointer_v<MPI_Comm>) {
    if (user == nullptr) {
      throw ArgumentError("Communicator: " + handle +
                          " is not a communicator (MPI_Comm_f2c does not know it; freed?)");
    }
  }
  int inter = 0;
  int rc = MPI_SUCCESS;
  {
    const ErrorsReturn returning(MPI_COMM_WORLD);
    rc = MPI_Comm_test_inter(user, &inter);
  }
  if (rc != MPI_SUCCESS) {
    throw ArgumentError("Communicator: " + handle + " is not a communicator: " + error_text(rc));
  }
  if (inter) {
    throw ArgumentError(
        "Communicator: " + handle +
        " is an intercommunicator; pass an intracommunicator (MPI_Intercomm_merge)");
  }
  return user;
}

class MpiCommunicator final : public Communicator::Impl {
 public:
  MpiCommunicator(int fortran_comm, const CommOptions& o) {
    int initialized = 0, finalized = 0;
    check(MPI_Initialized(&initialized), "MPI_Initialized");
    check(MPI_Finalized(&finalized), "MPI_Finalized");
    if (!initialized || finalized) {
      throw DeviceError(
          "Communicator: MPI is not initialised (call MPI_Init first, and MPI_Finalize only "
          "after descent's objects are gone)");
    }
    const MPI_Comm user = user_communicator(fortran_comm);
    // A private duplicate, whose errors come back as codes (and become exceptions here) instead
    // of ending the job behind the caller's back. The caller's communicator may still have
    // MPI_ERRORS_ARE_FATAL: it returns codes for the duplication too, then gets its own back.
    {
      const ErrorsReturn returning(user);
      check(MPI_Comm_dup(user, &comm_), "MPI_Comm_dup");
    }
    try {
      check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
      check(MPI_Comm_rank(comm_, &rank), "MPI_Comm_rank");
      check(MPI_Comm_size(comm_, &size), "MPI_Comm_size");
    } catch (...) {
      MPI_Comm_free(&comm_);
      throw;
    }
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
    check(
        MPI_Testall(static_cast<int>(pending_.size()), pending_.data(), &done, MPI_STATUSES_IGNORE),
        "MPI_Testall");
  }

  void finish_sums(const Context& /*ctx*/) override {
    if (pending_.empty()) return;
    const int rc =
        MPI_Waitall(static_cast<int>(pending_.size()), pending_.data(), MPI_STATUSES_IGNORE);
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

void local_rank_and_size(int fortran_comm, int* local_rank, int* local_size) {
  int initialized = 0, finalized = 0;
  check(MPI_Initialized(&initialized), "MPI_Initialized");
  check(MPI_Finalized(&finalized), "MPI_Finalized");
  if (!initialized || finalized) {
    throw DeviceError("place_rank: MPI is not initialised (call MPI_Init first)");
  }
  const MPI_Comm user = user_communicator(fortran_comm);
  MPI_Comm node = MPI_COMM_NULL;
  {
    const ErrorsReturn returning(user);
    check(MPI_Comm_split_type(user, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node),
          "MPI_Comm_split_type");
  }
  const int rank_rc = MPI_Comm_rank(node, local_rank);
  const int size_rc = MPI_Comm_size(node, local_size);
  MPI_Comm_free(&node);
  check(rank_rc, "MPI_Comm_rank");
  check(size_rc, "MPI_Comm_size");
}

std::shared_ptr<Communicator::Impl> make_mpi_communicator(int fortran_comm,
                                                          const CommOptions& options) {
  return std::make_shared<MpiCommunicator>(fortran_comm, options);
}

}  // namespace descent
