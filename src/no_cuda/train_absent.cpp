// The GPU pieces of training when descent is built without CUDA: each one throws DeviceError
// (a cpu Context never reaches them).
#include <string>

#include "cuda_train.hpp"
#include "descent/error.hpp"

namespace descent::cuda_train {

namespace {
[[noreturn]] void absent(const char* what) {
  throw DeviceError(
      std::string(what) +
      ": descent was built without its CUDA backend (configure with -DDESCENT_CUDA=ON "
      "on a machine with the CUDA toolkit)");
}
}  // namespace

struct Graph {};
struct Stager {};

void destroy_graph(Graph* graph) noexcept { delete graph; }
void begin_capture(const Context&) { absent("CUDA graph capture"); }
GraphPtr end_capture(const Context&) { absent("CUDA graph capture"); }
void abort_capture(const Context&) noexcept {}
void launch(const Context&, Graph&) { absent("CUDA graph launch"); }
void store_float(const Context&, float*, float) { absent("store_float"); }
void reset_stats(const Context&, detail::StepStats*) { absent("reset_stats"); }
void record_batch(const Context&, detail::StepStats*, const float*, double) {
  absent("record_batch");
}
void gather_rows(const Context&, const std::uint8_t*, std::int64_t, const std::int32_t*,
                 std::int64_t, float, float, float*) {
  absent("gather_rows");
}
void gather_rows(const Context&, const float*, std::int64_t, const std::int32_t*, std::int64_t,
                 float*) {
  absent("gather_rows");
}
void gather_labels(const Context&, const std::int32_t*, const std::int32_t*, std::int64_t,
                   std::int32_t*) {
  absent("gather_labels");
}
void count_correct(const Context&, MatrixView<const float>, VectorView<const std::int32_t>,
                   detail::StepStats*) {
  absent("count_correct");
}
void count_correct_binary(const Context&, MatrixView<const float>, MatrixView<const float>,
                          detail::StepStats*) {
  absent("count_correct_binary");
}
std::size_t free_memory(const Context&) { absent("free_memory"); }
void destroy_stager(Stager* stager) noexcept { delete stager; }
StagerPtr create_stager(const Context&, std::size_t) { absent("create_stager"); }
void* stager_acquire(Stager&) { absent("stager_acquire"); }
const void* stager_submit(Stager&, const Context&, std::size_t) { absent("stager_submit"); }
void stager_release(Stager&, const Context&) { absent("stager_release"); }

}  // namespace descent::cuda_train
