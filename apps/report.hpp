// What the train command shows and writes: a progress bar, epoch lines, metrics CSV, SVG curves.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "descent/trainer.hpp"

namespace descent::app {

// A one-line progress bar on a terminal (stderr), redrawn at most ~10 times a second; silent
// when stderr is not a terminal.
class ProgressBar {
 public:
  explicit ProgressBar(bool enabled);
  void update(std::int64_t epoch, std::int64_t epochs, std::int64_t batch, std::int64_t batches);
  void clear();

 private:
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

// Training samples per second of each epoch, leaving out its first kWarmupSteps steps: the first
// steps of a run allocate, choose GEMM plans and, on a GPU, capture a graph, and an epoch's
// first steps wait for its shuffle, so their time says nothing of the steady rate. The epoch's
// evaluation is not counted either.
class Throughput {
 public:
  static constexpr std::int64_t kWarmupSteps = 2;
  // `samples`: the training samples of one epoch (all ranks), `batch`: the global batch.
  Throughput(std::int64_t samples, std::int64_t batch, std::int64_t batches);
  // Just before Trainer::fit.
  void fit_begins();
  // From FitOptions::on_batch: step `batch` (1-based) of the epoch is done.
  void step_done(std::int64_t batch);
  // The rate of the epoch `s` reports (from FitOptions::on_epoch): its samples after the
  // warm-up over the time from the end of the warm-up to the end of its training (which `s`
  // gives: fit's start plus elapsed_seconds - epoch_seconds + samples / samples_per_second).
  // s.samples_per_second itself when the epoch has no step after the warm-up.
  double samples_per_second(const EpochStats& s) const;
  // The same from times in seconds since fit began: `warm_end`, when the warm-up ended.
  static double steady_rate(const EpochStats& s, double warm_end, std::int64_t samples,
                            std::int64_t warm_samples);

 private:
  std::int64_t samples_, warm_samples_, batches_;
  std::chrono::steady_clock::time_point fit_begin_{}, warm_end_{};
};

// What the samples/s of the epoch lines measure, for the start-up summary.
std::string throughput_note();

// "epoch  3/12  train loss 0.3123  test loss 0.3456  test acc 87.65%  52345 samples/s  23.4 s"
// (samples/s: s.samples_per_second).
std::string epoch_line(const EpochStats& s);

// The metrics CSV (one row per epoch, with a header).
std::string metrics_csv(const std::vector<EpochStats>& history);

// Loss (train and test) and test-accuracy curves against the epoch, as an SVG picture.
std::string curves_svg(const std::vector<EpochStats>& history, const std::string& title);

}  // namespace descent::app
