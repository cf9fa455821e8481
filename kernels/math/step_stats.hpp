// Per-step bookkeeping of a Trainer, kept in device memory so a step never waits for the host;
// the same code runs on the host for the CPU backend and in a one-thread kernel on the GPU.
#pragma once

#include "descent/detail/host_device.hpp"

namespace descent::detail {

struct StepStats {
  double loss_sum;             // Σ rows · batch loss over the batches with a finite loss
  double samples;              // Σ rows over those batches
  long long batches;           // batches recorded since the last reset
  long long bad;               // batches whose loss was NaN or infinite
  long long first_bad;         // index (since the reset) of the first bad batch, -1 when none
  unsigned long long correct;  // evaluation: correctly classified rows (or outputs)
  float first_bad_loss;        // the value of that first bad loss
  int found_inf;               // 1 when the latest batch was bad: the SGD update skips it
};

DESCENT_HD inline void reset_stats(StepStats& s) {
  s.loss_sum = 0.0;
  s.samples = 0.0;
  s.batches = 0;
  s.bad = 0;
  s.first_bad = -1;
  s.correct = 0;
  s.first_bad_loss = 0.0f;
  s.found_inf = 0;
}

// True for a finite value (NaN - NaN and inf - inf are NaN); needs no math library.
DESCENT_HD inline bool is_finite(float v) { return v - v == 0.0f; }

// Adds one batch of `rows` rows whose mean loss is `loss`.
DESCENT_HD inline void record_batch(StepStats& s, float loss, double rows) {
  if (is_finite(loss)) {
    s.loss_sum += static_cast<double>(loss) * rows;
    s.samples += rows;
    s.found_inf = 0;
  } else {
    if (s.first_bad < 0) {
      s.first_bad = s.batches;
      s.first_bad_loss = loss;
    }
    ++s.bad;
    s.found_inf = 1;
  }
  ++s.batches;
}

}  // namespace descent::detail
