// The CPU backend's training statistics: the loss bookkeeping of the steps and the evaluation
// counts, run at once (the host is the device), with the same shared code as the GPU's kernels.
#include "kernels/cpu/cpu.hpp"

namespace descent::cpu {

void reset_stats(const Context&, detail::StepStats* stats) { detail::reset_stats(*stats); }

void record_batch(const Context&, detail::StepStats* stats, const float* loss, double rows) {
  detail::record_batch(*stats, *loss, rows);
}

void count_correct(const Context&, MatrixView<const float> logits,
                   VectorView<const std::int32_t> labels, detail::StepStats* stats) {
  unsigned long long correct = 0;
  for (std::int64_t r = 0; r < logits.rows; ++r) {
    const float* z = logits.data + r * logits.ld;
    std::int64_t best = 0;
    for (std::int64_t j = 1; j < logits.cols; ++j) {
      if (z[j] > z[best]) best = j;  // the first maximum, as torch.argmax
    }
    correct += best == labels.data[r] ? 1u : 0u;
  }
  stats->correct += correct;
}

void count_correct_binary(const Context&, MatrixView<const float> logits,
                          MatrixView<const float> targets, detail::StepStats* stats) {
  unsigned long long correct = 0;
  for (std::int64_t r = 0; r < logits.rows; ++r) {
    const float* z = logits.data + r * logits.ld;
    const float* t = targets.data + r * targets.ld;
    for (std::int64_t j = 0; j < logits.cols; ++j)
      correct += (z[j] > 0.0f) == (t[j] > 0.5f) ? 1u : 0u;
  }
  stats->correct += correct;
}

}  // namespace descent::cpu
