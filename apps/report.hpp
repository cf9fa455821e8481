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

// "epoch  3/12  train loss 0.3123  test loss 0.3456  test acc 87.65%  52345 samples/s  23.4 s"
std::string epoch_line(const EpochStats& s);

// The metrics CSV (one row per epoch, with a header).
std::string metrics_csv(const std::vector<EpochStats>& history);

// Loss (train and test) and test-accuracy curves against the epoch, as an SVG picture.
std::string curves_svg(const std::vector<EpochStats>& history, const std::string& title);

}  // namespace descent::app
