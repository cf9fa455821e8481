// What descent train reports, tested on the functions that make it (apps/report.hpp): the
// throughput that leaves out the warm-up steps, the epoch line and the metrics CSV.
#include "report.hpp"

#include <gtest/gtest.h>

#include "common.hpp"

namespace descent::app {
namespace {

// An epoch as Trainer::fit reports it: training began `begin` s after fit and took `train` s for
// `samples` samples; evaluation took `eval` s more.
EpochStats epoch(double begin, double train, double eval, std::int64_t samples) {
  EpochStats s;
  s.epoch = 1;
  s.epochs = 1;
  s.samples_per_second = static_cast<double>(samples) / train;
  s.epoch_seconds = train + eval;
  s.elapsed_seconds = begin + train + eval;
  return s;
}

TEST(Throughput, LeavesOutTheWarmUpSteps) {
  // 1000 samples in batches of 100: the first 2 steps (200 samples) took 0.9 s of the epoch's
  // 1 s, the other 800 samples 0.1 s: 8000 samples/s, not the whole epoch's 1000.
  const EpochStats s = epoch(0.5, 1.0, 2.0, 1000);
  EXPECT_DOUBLE_EQ(s.samples_per_second, 1000.0);
  EXPECT_NEAR(Throughput::steady_rate(s, 0.5 + 0.9, 1000, 200), 8000.0, 1e-6);
  // The evaluation's time is not counted either way.
  EXPECT_NEAR(Throughput::steady_rate(epoch(3.0, 1.0, 50.0, 1000), 3.9, 1000, 200), 8000.0, 1e-6);
}

TEST(Throughput, WholeEpochWhenNothingFollowsTheWarmUp) {
  const EpochStats s = epoch(0.0, 2.0, 0.0, 100);
  EXPECT_DOUBLE_EQ(Throughput::steady_rate(s, 1.0, 100, 100), 50.0);  // all warm-up
  EXPECT_DOUBLE_EQ(Throughput::steady_rate(s, 2.5, 100, 20), 50.0);   // no time left: clock skew
  EpochStats none = s;
  none.samples_per_second = 0;
  EXPECT_DOUBLE_EQ(Throughput::steady_rate(none, 1.0, 100, 20), 0.0);
  // An epoch of no more batches than the warm-up reports the library's rate.
  Throughput t(100, 50, Throughput::kWarmupSteps);
  t.fit_begins();
  t.step_done(Throughput::kWarmupSteps);
  EXPECT_DOUBLE_EQ(t.samples_per_second(s), 50.0);
}

TEST(Report, EpochLineAndMetricsSayWhatTheyMeasure) {
  EpochStats s = epoch(0.0, 1.0, 0.0, 1000);
  s.skipped_steps = 1;
  const std::string line = epoch_line(s);
  EXPECT_NE(line.find("1000 samples/s"), std::string::npos) << line;
  EXPECT_NE(line.find("(1 step skipped: non-finite loss)"), std::string::npos) << line;
  s.skipped_steps = 3;
  EXPECT_NE(epoch_line(s).find("(3 steps skipped"), std::string::npos);
  EXPECT_NE(throughput_note().find("after its first 2 steps (warm-up)"), std::string::npos);
  const std::string csv = metrics_csv({s});
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "epoch,steps,lr,train_loss,test_loss,test_accuracy,samples_per_second_after_warmup,"
            "epoch_seconds,elapsed_seconds,skipped_steps");
}

TEST(Report, CountsAgreeWithTheirNouns) {
  EXPECT_EQ(counted(1, "epoch"), "1 epoch");
  EXPECT_EQ(counted(0, "epoch"), "0 epochs");
  EXPECT_EQ(counted(2, "epoch"), "2 epochs");
  EXPECT_EQ(counted(1, "class", "classes"), "1 class");
  EXPECT_EQ(counted(10, "class", "classes"), "10 classes");
}

}  // namespace
}  // namespace descent::app
