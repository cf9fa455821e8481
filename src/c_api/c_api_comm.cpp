// The C API (include/descent/descent.h), part 3: communicators for data-parallel training.
// The trainers made with them are in c_api_train.cpp.
#include "c_api/c_api.hpp"

using namespace descent;
using namespace descent::c_api;

extern "C" {

int descent_built_with_mpi(void) { return built_with_mpi() ? 1 : 0; }

descent_status descent_communicator_create_mpi(descent_context* ctx, int fortran_comm,
                                               descent_communicator** out) {
  if (out != nullptr) *out = nullptr;
  return guarded("descent_communicator_create_mpi", [&] {
    const Context& c = need(ctx, "ctx").ctx;
    need_ptr(out, "out");
    *out = new descent_communicator{Communicator::from_mpi_fortran(fortran_comm, c)};
  });
}

descent_status descent_context_create_for_rank(int fortran_comm, const char* kind, int* local_rank,
                                               descent_context** out) {
  if (out != nullptr) *out = nullptr;
  return guarded("descent_context_create_for_rank", [&] {
    need_ptr(out, "out");
    const RankPlacement p = place_rank(fortran_comm, kind != nullptr ? kind : "auto");
    ContextOptions options;
    options.threads = p.threads;
    auto made = std::make_unique<descent_context>(
        descent_context{Context(p.device, options), p.device.str()});
    if (local_rank != nullptr) *local_rank = p.local_rank;
    *out = made.release();
  });
}

descent_status descent_communicator_create_single(descent_communicator** out) {
  if (out != nullptr) *out = nullptr;
  return guarded("descent_communicator_create_single", [&] {
    need_ptr(out, "out");
    *out = new descent_communicator{Communicator()};
  });
}

void descent_communicator_destroy(descent_communicator* comm) { delete comm; }

descent_status descent_communicator_rank(const descent_communicator* comm, int* rank) {
  return guarded("descent_communicator_rank", [&] {
    const Communicator& c = need(comm, "comm").comm;
    need_ptr(rank, "rank");
    *rank = c.rank();
  });
}

descent_status descent_communicator_size(const descent_communicator* comm, int* size) {
  return guarded("descent_communicator_size", [&] {
    const Communicator& c = need(comm, "comm").comm;
    need_ptr(size, "size");
    *size = c.size();
  });
}

descent_status descent_communicator_sum_gradients(const descent_communicator* comm,
                                                  descent_model* model) {
  return guarded("descent_communicator_sum_gradients", [&] {
    const Communicator& c = need(comm, "comm").comm;
    c.sum_gradients(need(model, "model").mlp);
  });
}

descent_status descent_communicator_abort(const descent_communicator* comm, const char* message,
                                          int code) {
  return guarded("descent_communicator_abort", [&] {
    const Communicator& c = need(comm, "comm").comm;
    c.abort(message != nullptr ? message : "", code);
  });
}

}  // extern "C"
