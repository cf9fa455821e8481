// The descent command, run as a separate process on small generated IDX and CSV files: a train /
// resume / eval cycle with its outputs, and every bad-input case (clear message, non-zero exit,
// previous outputs untouched).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <sstream>
#include <thread>

#include "descent/descent.hpp"
#include "test_support.hpp"
#include "train_support.hpp"

namespace descent::test {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

class CliTest : public ::testing::Test {
 protected:
  TempDir dir;
  void SetUp() override {
    if (cli_path().empty()) GTEST_SKIP() << "the descent command is not built (build/apps/descent)";
    write_small_idx(dir, "train", small_images(400, 3, 1));
    write_small_idx(dir, "test", small_images(120, 3, 2));
  }
  // Data options for the small IDX set, plus a small model so runs take milliseconds.
  std::string data() const {
    return "--train-images " + dir / "train-images.gz" + " --train-labels " +
           dir / "train-labels.gz" + " --test-images " + dir / "test-images.gz" +
           " --test-labels " + dir / "test-labels.gz" +
           " --hidden 16 --batch 32 --threads 1 --device cpu --no-progress";
  }
  CliResult train(const std::string& extra) {
    return run_cli("train " + data() + " " + extra, dir);
  }
};

TEST_F(CliTest, VersionTellsHowItWasBuilt) {
  for (const char* how : {"--version", "version"}) {
    const CliResult r = run_cli(how, dir);
    EXPECT_EQ(r.status, 0) << how;
    EXPECT_EQ(r.out, build_info()) << how;
    EXPECT_THAT(r.out, AllOf(HasSubstr(std::string("descent ") + version() + "\n"),
                             HasSubstr("commit: "), HasSubstr("CPU GEMM: "), HasSubstr("CUDA: "),
                             HasSubstr("MPI: "), HasSubstr("NCCL: ")));
  }
}

TEST_F(CliTest, HelpListsTheOptions) {
  const CliResult r = run_cli("train --help", dir);
  EXPECT_EQ(r.status, 0);
  for (const char* option :
       {"--hidden", "--activation", "--loss", "--epochs", "--batch", "--lr", "--momentum",
        "--weight-decay", "--schedule", "--device", "--precision", "--seed", "--threads",
        "--checkpoint", "--resume", "--metrics", "--limit"}) {
    EXPECT_THAT(r.out, HasSubstr(option));
  }
  EXPECT_EQ(run_cli("", dir).status, 2);
  EXPECT_EQ(run_cli("frobnicate", dir).status, 2);
  const CliResult bad = train("--epochz 3");
  EXPECT_EQ(bad.status, 2);
  EXPECT_THAT(bad.out, HasSubstr("--epochz"));
}

TEST_F(CliTest, TrainResumeEvalWithMetricsAndCurves) {
  const std::string ckpt = dir / "m.ckpt", metrics = dir / "metrics.csv";
  CliResult r = train("--epochs 2 --checkpoint " + ckpt + " --metrics " + metrics + " --seed 3");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, AllOf(HasSubstr("epoch 1/2  train loss"), HasSubstr("test acc"),
                           HasSubstr("samples/s"), HasSubstr("epoch 2/2")));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("\r")));  // not a terminal: plain lines
  const std::string csv = read_bytes(metrics);
  EXPECT_THAT(csv, HasSubstr("epoch,steps,lr,train_loss,test_loss,test_accuracy"));
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 3);
  EXPECT_THAT(read_bytes(dir / "metrics.svg"),
              AllOf(HasSubstr("<svg"), HasSubstr("polyline"), HasSubstr("</svg>")));
  const Checkpoint c = read_checkpoint(ckpt);
  EXPECT_EQ(c.widths, (std::vector<std::int64_t>{64, 16, 3}));
  EXPECT_EQ(c.steps, 2 * 13);

  // A resumed run writes a new checkpoint: the one it resumes from is an input.
  const std::string ckpt3 = dir / "m3.ckpt";
  r = train("--epochs 3 --resume " + ckpt + " --checkpoint " + ckpt3 + " --seed 3");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, AllOf(HasSubstr("resumed at step 26"), HasSubstr("epoch 3/3")));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("epoch 1/3")));
  EXPECT_EQ(read_checkpoint(ckpt3).steps, 3 * 13);
  EXPECT_EQ(read_checkpoint(ckpt).steps, 2 * 13);
  // The last epoch's test accuracy, which eval must reproduce from the checkpoint alone (the
  // data normalisation travels in its metadata).
  const std::size_t at = r.out.rfind("test acc ");
  ASSERT_NE(at, std::string::npos);
  const std::string accuracy = r.out.substr(at + 9, r.out.find('%', at) - at - 9);

  r = run_cli("eval --model " + ckpt3 + " --test-images " + dir / "test-images.gz" +
                  " --test-labels " + dir / "test-labels.gz" + " --device cpu",
              dir);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, AllOf(HasSubstr("samples 120"), HasSubstr("accuracy " + accuracy + "%")));
}

// Adam and AdamW through the command: train, checkpoint, resume (the optimizer's moments and
// update count travel in the checkpoint), with clipping; resuming with another optimizer is
// refused, naming both.
TEST_F(CliTest, AdamWTrainsResumesAndRefusesAnotherOptimizer) {
  const std::string ckpt = dir / "a.ckpt", ckpt2 = dir / "a2.ckpt";
  // A constant rate: a cosine schedule spans --epochs, which differs between the runs compared.
  const std::string common = " --optimizer adamw --clip-grad-norm 1 --seed 5 --schedule constant";
  CliResult r = train("--epochs 2 --checkpoint " + ckpt + common);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, AllOf(HasSubstr("adamw lr 0.001 beta1 0.9 beta2 0.999"),
                           HasSubstr("weight_decay 0.01"), HasSubstr("clip grad norm 1 (2)"),
                           HasSubstr("schedule constant")));
  const Checkpoint c = read_checkpoint(ckpt);
  EXPECT_EQ(c.optimizer, OptimizerKind::adamw);
  EXPECT_EQ(c.option("weight_decay").number, 0.01f);
  ASSERT_EQ(c.state.size(), 3u);  // exp_avg, exp_avg_sq, step
  EXPECT_EQ(c.state[2].first, "step");
  EXPECT_EQ(c.state[2].second, std::vector<float>{26.0f});
  // Three epochs in one go equal two, saved, then one resumed: bit for bit.
  r = train("--epochs 3 --resume " + ckpt + " --checkpoint " + ckpt2 + common);
  ASSERT_EQ(r.status, 0) << r.out;
  const std::string ckpt3 = dir / "a3.ckpt";
  r = train("--epochs 3 --checkpoint " + ckpt3 + common);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(read_checkpoint(ckpt2).params, read_checkpoint(ckpt3).params);
  r = train("--epochs 3 --resume " + ckpt + " --optimizer sgd --seed 5");
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.out, AllOf(HasSubstr("adamw"), HasSubstr("sgd")));
}

// A checkpoint written by other code may hold anything in its metadata: eval says which entry is
// wrong (a DataError naming the file), never "unexpected error: stof".
TEST_F(CliTest, EvalOfBadMetadataNamesTheEntry) {
  Context ctx;
  Mlp model(ctx, {64, 16, 3}, Activation::relu);
  const std::string data =
      " --test-images " + dir / "test-images.gz" + " --test-labels " + dir / "test-labels.gz";
  const std::vector<std::pair<CheckpointMetadata, std::string>> cases = {
      {{{"scale", "abc"}}, "metadata 'scale' is 'abc'"},
      {{{"shift", "nan"}}, "metadata 'shift' is 'nan'"},
      {{{"classes", "1e99"}}, "metadata 'classes' is '1e99'"},
      {{{"classes", "-3"}}, "metadata 'classes' is -3"},
      {{{"loss", "hinge"}}, "metadata loss: expected"},
  };
  for (const auto& [meta, want] : cases) {
    save_checkpoint(dir / "odd.ckpt", model, nullptr, meta);
    const CliResult r = run_cli("eval --model " + dir / "odd.ckpt" + data + " --device cpu", dir);
    EXPECT_EQ(r.status, 1) << want;
    EXPECT_THAT(r.out, AllOf(HasSubstr("odd.ckpt"), HasSubstr(want)));
    EXPECT_THAT(r.out, ::testing::Not(HasSubstr("unexpected")));
  }
}

TEST_F(CliTest, CsvTrainingWithLabelColumnAndRegression) {
  std::string csv = "f1,f2,cls\n";
  for (int i = 0; i < 60; ++i) {
    csv += std::to_string(i % 7) + "," + std::to_string(i % 5) + "," + std::to_string(i % 2) + "\n";
  }
  write_bytes(dir / "d.csv", csv);
  CliResult r = run_cli("train --train-csv " + dir / "d.csv" +
                            " --label-column cls --epochs 1 --hidden 4 --device cpu",
                        dir);
  EXPECT_EQ(r.status, 0) << r.out;
  r = run_cli("train --train-csv " + dir / "d.csv" +
                  " --label-column 0 --regression --loss mse --epochs 2 --hidden 4 --device cpu",
              dir);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, AllOf(HasSubstr("2 features, 1 target\n"), HasSubstr("loss mse")));
}

void expect_usage_error(const CliResult& r, const std::vector<std::string>& parts);

// A regression CSV whose features and target run to hundreds: with --normalize standard (the
// default) each column and the target are standardised, the model keeps that scaling, eval
// reports the error in the target's units too, and predict answers in them; --normalize none
// diverges with the default SGD and its message says to scale the inputs; unit is for bytes.
TEST_F(CliTest, FloatCsvIsStandardisedAndTheModelKeepsTheScaling) {
  std::string csv = "a,b,c,y\n", test = csv;
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(-100.0, 100.0);
  std::vector<double> test_y;
  for (int i = 0; i < 600; ++i) {
    const double a = u(rng), b = u(rng), c = u(rng), y = 3 * a - 2 * b + 0.5 * c + 40;
    (i < 500 ? csv : test) += cat(a, ",", b, ",", c, ",", y, "\n");
    if (i >= 500) test_y.push_back(y);
  }
  write_bytes(dir / "r.csv", csv);
  write_bytes(dir / "t.csv", test);
  const std::string model = dir / "r.ckpt", common = " --device cpu --threads 1 --no-progress";
  const std::string run = "train --train-csv " + dir / "r.csv" + " --test-csv " + dir / "t.csv" +
                          " --regression --loss mse --hidden 16 --epochs 20" + common;
  CliResult r = run_cli(run + " --checkpoint " + model, dir);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("\n  scaling 3 features standardised, the target standardised "
                               "(mean "));
  EXPECT_THAT(r.out, HasSubstr("(the loss is on the standardised targets)"));

  // eval: the loss on the standardised target, and the root mean square error in its units.
  r = run_cli("eval --model " + model + " --test-csv " + dir / "t.csv" + " --device cpu", dir);
  ASSERT_EQ(r.status, 0) << r.out;
  const std::size_t at = r.out.find("rmse ");
  ASSERT_NE(at, std::string::npos) << r.out;
  const double eval_rmse = std::stod(r.out.substr(at + 5));

  // predict: the test set's rows in the target's units; their error is eval's.
  const std::string out = dir / "pred.csv";
  r = run_cli("predict --model " + model + " --input-csv " + dir / "t.csv" +
                  " --drop-column y --output " + out + " --device cpu",
              dir);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("100 predictions written to " + out));
  std::istringstream lines(read_bytes(out));
  std::string line;
  ASSERT_TRUE(std::getline(lines, line));
  EXPECT_EQ(line, "y");
  double sq = 0, var = 0, mean = 0;
  for (const double y : test_y) mean += y / static_cast<double>(test_y.size());
  std::size_t n = 0;
  while (std::getline(lines, line)) {
    ASSERT_LT(n, test_y.size());
    const double d = std::stod(line) - test_y[n];
    sq += d * d;
    var += (test_y[n] - mean) * (test_y[n] - mean);
    ++n;
  }
  ASSERT_EQ(n, test_y.size());
  const double rmse = std::sqrt(sq / static_cast<double>(n));
  EXPECT_NEAR(rmse, eval_rmse, 2e-3 * eval_rmse + 1e-6);
  EXPECT_LT(rmse, 0.1 * std::sqrt(var / static_cast<double>(n))) << "the model did not learn";

  // Resuming with another scaling is refused: the model was trained on other numbers.
  r = run_cli(run + " --epochs 21 --normalize none --resume " + model, dir);
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_THAT(r.out, AllOf(HasSubstr("--resume"), HasSubstr("scaled otherwise"),
                           HasSubstr("--normalize none")));
  // A model trained on the values as they are, resumed with the default: the message names the
  // option that fits it.
  const std::string raw = dir / "raw.ckpt";
  r = run_cli(run + " --normalize none --lr 1e-7 --epochs 1 --checkpoint " + raw, dir);
  ASSERT_EQ(r.status, 0) << r.out;
  r = run_cli(run + " --epochs 2 --resume " + raw, dir);
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_THAT(r.out, AllOf(HasSubstr("scaled otherwise (none)"),
                           HasSubstr("--normalize none: the values as they are")));
  // As they are, the values make the default SGD diverge, and the message says what helps.
  r = run_cli(run + " --normalize none", dir);
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_THAT(r.out, AllOf(HasSubstr("--on-nan skip"), HasSubstr("--normalize standard")));
  // unit maps bytes to [0,1]: for float features it is refused, saying so.
  expect_usage_error(run_cli(run + " --normalize unit", dir),
                     {"--normalize unit", "IDX byte features", "--train-csv"});
  // IDX data takes all three.
  for (const char* how : {"unit", "standard", "none"}) {
    EXPECT_EQ(train(std::string("--epochs 1 --limit 64 --normalize ") + how).status, 0) << how;
  }
}

// predict on IDX images: a class and each class's probability per row, the classes those of
// eval's accuracy; its inputs checked before any work.
TEST_F(CliTest, PredictWritesClassesAndProbabilities) {
  const std::string model = dir / "c.ckpt", out = dir / "p.csv";
  CliResult r = train("--epochs 2 --checkpoint " + model);
  ASSERT_EQ(r.status, 0) << r.out;
  const std::string images = " --images " + dir / "test-images.gz";
  r = run_cli("predict --model " + model + images + " --output " + out + " --device cpu", dir);
  ASSERT_EQ(r.status, 0) << r.out;
  std::istringstream lines(read_bytes(out));
  std::string line;
  ASSERT_TRUE(std::getline(lines, line));
  EXPECT_EQ(line, "class,p0,p1,p2");
  const std::vector<std::uint8_t> labels = small_images(120, 3, 2).labels;
  std::size_t n = 0, right = 0;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string f;
    std::getline(fields, f, ',');
    const int cls = std::stoi(f);
    double sum = 0, top = -1;
    int argmax = -1;
    for (int k = 0; std::getline(fields, f, ','); ++k) {
      const double p = std::stod(f);
      EXPECT_TRUE(p >= 0 && p <= 1) << line;
      if (p > top) top = p, argmax = k;
      sum += p;
    }
    EXPECT_EQ(cls, argmax) << line;
    EXPECT_NEAR(sum, 1.0, 1e-6) << line;
    ASSERT_LT(n, labels.size());
    right += cls == labels[n++] ? 1 : 0;
  }
  EXPECT_EQ(n, 120u);
  r = run_cli("eval --model " + model + " --test-images " + dir / "test-images.gz" +
                  " --test-labels " + dir / "test-labels.gz" + " --device cpu",
              dir);
  ASSERT_EQ(r.status, 0) << r.out;
  char accuracy[32];
  std::snprintf(accuracy, sizeof accuracy, "accuracy %.2f%%", 100.0 * right / 120.0);
  EXPECT_THAT(r.out, HasSubstr(accuracy));

  // Bad inputs: a message naming the problem, and no output written.
  const std::string base = "predict --model " + model + " --device cpu";
  const std::string fresh = " --output " + dir / "fresh.csv";
  write_bytes(dir / "f.csv", "a,b\n1,2\n3,4\n");
  const struct {
    std::string args;
    std::vector<std::string> message;
  } cases[] = {
      {base + fresh, {"--input-csv PATH or --images PATH"}},
      {base + images + " --input-csv " + dir / "f.csv" + fresh, {"one of them"}},
      {base + images + " --drop-column 0" + fresh, {"--drop-column", "not to IDX"}},
      {base + images, {"--output PATH is required"}},
      {base + images + " --output " + dir / "test-images.gz", {"--output", "the input --images"}},
      {base + " --input-csv " + dir / "f.csv" + " --drop-column z" + fresh,
       {"--drop-column z", "no column named 'z'"}},
      {base + " --input-csv " + dir / "f.csv" + " --drop-column 2" + fresh,
       {"--drop-column 2", "2 columns"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.args);
    expect_usage_error(run_cli(c.args, dir), c.message);
  }
  r = run_cli(base + " --input-csv " + dir / "f.csv" + fresh, dir);
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.out, AllOf(HasSubstr("takes 64 features"), HasSubstr("gives 2")));
  // Inputs that overflow the network: refused, naming the sample, rather than "nan" written.
  std::string huge;
  for (int row = 0; row < 3; ++row) {
    for (int c = 0; c < 64; ++c) {
      if (c > 0) huge += ',';
      huge += row == 2 ? "3e38" : "1";
    }
    huge += '\n';
  }
  write_bytes(dir / "huge.csv", huge);
  r = run_cli(base + " --input-csv " + dir / "huge.csv" + fresh, dir);
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_THAT(r.out, AllOf(HasSubstr("sample 2"), HasSubstr("not finite"),
                           HasSubstr("nothing was written")));
  EXPECT_FALSE(std::filesystem::exists(dir / "fresh.csv"));
}

// The output in plain words, every count with the right number ("1 epoch", "1 thread"), and the
// throughput saying what it measures.
TEST_F(CliTest, OutputIsPlainWordsWithPluralsThatAgree) {
  const std::string metrics = dir / "m.csv";
  CliResult r = train("--epochs 1 --limit 64 --metrics " + metrics);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, AllOf(HasSubstr("64 training / 120 test samples, 64 features, 3 classes"),
                           HasSubstr(", batch 32, 1 epoch\n"), HasSubstr(", 1 thread)"),
                           HasSubstr("training data read in host memory"),
                           HasSubstr("samples/s: training samples per second of each epoch "
                                     "after its first 2 steps (warm-up)"),
                           HasSubstr("\ndone: 1 epoch in ")));
  for (const char* wrong : {"1 epochs", "1 threads", "batches cpu", "epoches", ", cpu\n"}) {
    EXPECT_THAT(r.out, ::testing::Not(HasSubstr(wrong)));
  }
  EXPECT_THAT(read_bytes(metrics), HasSubstr(",samples_per_second_after_warmup,"));
  r = train("--epochs 2 --limit 64 --threads 2");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, AllOf(HasSubstr(", 2 epochs\n"), HasSubstr(", 2 threads)"),
                           HasSubstr("\ndone: 2 epochs in ")));
}

// eval takes the task from the checkpoint: a regression model evaluates on a CSV's float targets
// without --regression; a --regression that contradicts a classification model, or IDX labels
// for a regression model, is refused naming both sides.
TEST_F(CliTest, EvalReadsTheTaskFromTheCheckpoint) {
  std::string csv = "x1,x2,y\n";
  for (int i = 0; i < 60; ++i) {
    csv += std::to_string(i % 7) + "," + std::to_string(i % 5) + "," +
           std::to_string(0.5 * (i % 7) - 0.25 * (i % 5)) + "\n";
  }
  write_bytes(dir / "r.csv", csv);
  const std::string model = dir / "r.ckpt", common = " --device cpu --threads 1";
  CliResult r = run_cli("train --train-csv " + dir / "r.csv" +
                            " --regression --loss mse --epochs 2 --hidden 4 --no-progress"
                            " --checkpoint " +
                            model + common,
                        dir);
  ASSERT_EQ(r.status, 0) << r.out;
  r = run_cli("eval --model " + model + " --test-csv " + dir / "r.csv" + common, dir);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, AllOf(HasSubstr("samples 60"), HasSubstr("  loss ")));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("accuracy")));
  const CliResult same =
      run_cli("eval --regression --model " + model + " --test-csv " + dir / "r.csv" + common, dir);
  ASSERT_EQ(same.status, 0) << same.out;
  EXPECT_EQ(same.out, r.out);
  // A regression model on IDX class labels.
  r = run_cli("eval --model " + model + " --test-images " + dir / "test-images.gz" +
                  " --test-labels " + dir / "test-labels.gz" + common,
              dir);
  expect_usage_error(r, {model, "regression", "loss mse", "--test-csv"});
  // A classification model with --regression.
  const std::string classes = dir / "c.ckpt";
  r = train("--epochs 1 --limit 64 --checkpoint " + classes);
  ASSERT_EQ(r.status, 0) << r.out;
  std::string labelled = "x1,x2,label\n";
  for (int i = 0; i < 30; ++i) labelled += "1,2," + std::to_string(i % 3) + "\n";
  write_bytes(dir / "c.csv", labelled);
  r = run_cli("eval --regression --model " + classes + " --test-csv " + dir / "c.csv" + common,
              dir);
  expect_usage_error(
      r, {"--regression", classes, "classification", "loss softmax_cross_entropy", "3 classes"});
}

// Each bad input: exit status non-zero, a message naming the problem, and the checkpoint and
// metrics written by an earlier good run left byte for byte as they were.
TEST_F(CliTest, BadInputsFailClearlyAndOverwriteNothing) {
  const std::string ckpt = dir / "keep.ckpt", metrics = dir / "keep.csv";
  ASSERT_EQ(train("--epochs 1 --checkpoint " + ckpt + " --metrics " + metrics).status, 0);
  const std::string ckpt_bytes = read_bytes(ckpt), metrics_bytes = read_bytes(metrics);
  const std::string outputs = " --epochs 1 --checkpoint " + ckpt + " --metrics " + metrics;

  // Bad data files.
  const SmallImages s = small_images(40, 3, 5);
  write_bytes(dir / "trunc.gz", read_bytes(dir / "train-images.gz").substr(0, 300));
  write_gzip(dir / "magic.gz", idx_images(s.pixels, 40, 8, 8, 0x00000804u));
  write_gzip(dir / "dims.gz", idx_images(s.pixels, 41, 8, 8));
  write_gzip(dir / "img40.gz", idx_images(s.pixels, 40, 8, 8));
  std::vector<std::uint8_t> big_label = s.labels;
  big_label[3] = 7;
  write_gzip(dir / "lab-big.gz", idx_labels(big_label));
  write_gzip(dir / "lab39.gz",
             idx_labels(std::vector<std::uint8_t>(s.labels.begin(), s.labels.begin() + 39)));
  write_gzip(dir / "empty-img.gz", idx_images({}, 0, 8, 8));
  write_gzip(dir / "empty-lab.gz", idx_labels({}));
  write_bytes(dir / "nan.csv", "a,b,label\n1,2,0\n3,NaN,1\n");
  write_bytes(dir / "inf.csv", "a,b,label\n1,inf,0\n");
  write_bytes(dir / "empty.csv", "a,b,label\n");
  // Bad checkpoints to resume from.
  std::string flipped = ckpt_bytes;
  flipped[flipped.size() / 2] = static_cast<char>(flipped[flipped.size() / 2] ^ 4);
  write_bytes(dir / "flipped.ckpt", flipped);
  std::string newer = ckpt_bytes;
  newer[8] = static_cast<char>(kCheckpointVersion + 1);
  write_bytes(dir / "newer.ckpt", newer);
  write_bytes(dir / "copy.ckpt", ckpt_bytes);  // to resume from: --checkpoint is an output

  const std::string idx = " --test-images " + dir / "test-images.gz" + " --test-labels " +
                          dir / "test-labels.gz" + " --hidden 16 --device cpu --no-progress";
  const auto with_train = [&](const std::string& images, const std::string& labels) {
    return "train --train-images " + dir / images + " --train-labels " + dir / labels + idx;
  };
  struct Case {
    const char* what;
    std::string args;
    std::vector<std::string> message;
  };
  const std::vector<Case> cases = {
      {"missing file", with_train("nope.gz", "train-labels.gz"), {"nope.gz", "No such file"}},
      {"missing data folder", "train --data " + dir / "nowhere --device cpu", {"nowhere"}},
      {"truncated gzip",
       with_train("trunc.gz", "train-labels.gz"),
       {"trunc.gz", "truncated or corrupt"}},
      {"wrong IDX magic", with_train("magic.gz", "train-labels.gz"), {"magic.gz", "magic number"}},
      {"wrong IDX dimensions", with_train("dims.gz", "train-labels.gz"), {"dims.gz", "41 x 8 x 8"}},
      {"count mismatch", with_train("img40.gz", "lab39.gz"), {"40 images", "39 labels"}},
      {"label >= classes",
       with_train("img40.gz", "lab-big.gz") + " --classes 3",
       {"label 3 is 7", "[0, 3)"}},
      {"NaN in CSV", "train --train-csv " + dir / "nan.csv", {"line 3", "NaN"}},
      {"Inf in CSV", "train --train-csv " + dir / "inf.csv", {"line 2", "finite"}},
      {"empty CSV", "train --train-csv " + dir / "empty.csv", {"empty"}},
      {"empty IDX", with_train("empty-img.gz", "empty-lab.gz"), {"empty"}},
      {"batch 0", "train " + data() + " --batch 0", {"--batch", "got 0"}},
      {"hidden width 0", "train " + data() + " --hidden 16,0", {"--hidden", "got 0"}},
      {"negative lr", "train " + data() + " --lr -0.5", {"lr", "-0.5"}},
      {"NaN lr", "train " + data() + " --lr nan", {"lr", "nan"}},
      {"other architecture",
       "train " + data() + " --hidden 8 --resume " + dir / "copy.ckpt",
       {"64-16-3", "64-8-3"}},
      {"flipped checkpoint byte",
       "train " + data() + " --resume " + dir / "flipped.ckpt",
       {"checksum mismatch"}},
      {"newer checkpoint version",
       "train " + data() + " --resume " + dir / "newer.ckpt",
       {"version " + std::to_string(kCheckpointVersion + 1), "newer"}},
      {"model too large",
       "train " + data() + " --hidden 4000000000000",
       {"Mlp 64-4000000000000-3", "bytes of memory"}},
      {"eval of a corrupt checkpoint",
       "eval --model " + dir / "flipped.ckpt",
       {"checksum mismatch"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    std::string args = c.args;
    if (args.rfind("eval", 0) != 0) args += outputs;
    const CliResult r = run_cli(args, dir);
    EXPECT_NE(r.status, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr("descent "));
    for (const std::string& m : c.message) {
      EXPECT_THAT(r.out, HasSubstr(m));
    }
    EXPECT_EQ(read_bytes(ckpt), ckpt_bytes) << "the checkpoint was overwritten";
    EXPECT_EQ(read_bytes(metrics), metrics_bytes) << "the metrics file was overwritten";
  }
}

TEST_F(CliTest, CudaDeviceWithoutAGpuIsAClearError) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is present";
  const CliResult r = run_cli("train " + data() + " --device cuda", dir);
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_THAT(r.out, AllOf(HasSubstr("cuda"), HasSubstr("--device cpu")));
}

TEST_F(CliTest, LimitUsesTheFirstSamples) {
  const CliResult r = train("--epochs 1 --limit 50 --test-limit 20");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("50 training / 20 test samples"));
}

// ---------------------------------------------------------------- option parsing

// A usage mistake: exit status 2, a message naming `parts`, and no training started.
void expect_usage_error(const CliResult& r, const std::vector<std::string>& parts) {
  EXPECT_EQ(r.status, 2) << r.out;
  for (const std::string& part : parts) EXPECT_THAT(r.out, HasSubstr(part));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("epoch 1/")));
}

TEST_F(CliTest, MissingValueIsNeverTakenFromTheNextOption) {
  CliResult r = train("--checkpoint --epochs 3");
  expect_usage_error(r, {"--checkpoint", "value is missing", "--epochs"});
  EXPECT_FALSE(std::filesystem::exists(dir / "--epochs"));
  r = train("--epochs 1 --metrics");
  expect_usage_error(r, {"--metrics", "value is missing"});
  r = run_cli("eval --model --device cpu", dir);
  expect_usage_error(r, {"--model", "value is missing", "--device"});
  // A value that begins with '-' is still possible with '='.
  r = train("--epochs 1 --label-column=-x");
  expect_usage_error(r, {"--label-column", "CSV"});
}

TEST_F(CliTest, EmptyValuesAreRefused) {
  expect_usage_error(train("--epochs 1 --checkpoint ''"), {"--checkpoint", "empty"});
  expect_usage_error(train("--epochs 1 --metrics="), {"--metrics", "empty"});
  expect_usage_error(train("--epochs 1 --hidden ''"), {"--hidden", "empty"});
}

TEST_F(CliTest, NumbersOutOfRangeSaySo) {
  struct Case {
    std::string args;
    std::vector<std::string> message;
  };
  const std::vector<Case> cases = {
      {"--epochs 0", {"--epochs", "got 0", "1 <= N"}},
      {"--epochs 99999999999999999999", {"--epochs", "out of range"}},
      {"--epochs three", {"--epochs", "'three'", "integer"}},
      {"--batch -3", {"--batch", "got -3", "1 <= N"}},
      {"--lr 0", {"--lr", "got 0", "X > 0"}},
      {"--lr inf", {"--lr", "inf", "finite"}},
      {"--lr 1e999", {"--lr", "finite"}},
      {"--momentum 1", {"--momentum", "got 1", "0 <= X < 1"}},
      {"--momentum -0.1", {"--momentum", "-0.1"}},
      {"--weight-decay -1", {"--weight-decay", "X >= 0"}},
      {"--schedule step --gamma 0", {"--gamma", "0 < X <= 1"}},
      {"--seed -1", {"--seed", "N >= 0"}},
      {"--threads 1000000", {"--threads", "got 1000000", "0 <= N <= 65536"}},
      {"--threads -1", {"--threads", "0 <= N"}},
      {"--limit -5", {"--limit", "N >= 0"}},
      {"--hidden 16,x", {"--hidden", "'x'"}},
      {"--hidden 99999999999999999999", {"--hidden", "out of range"}},
      {"--activation relux", {"--activation", "relux", "relu, gelu"}},
      {"--on-nan ignore", {"--on-nan", "error or skip"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    expect_usage_error(train(c.args), c.message);
  }
}

TEST_F(CliTest, ThreadsAboveFourTimesTheCoresNeedForceThreads) {
  const long cores = ::sysconf(_SC_NPROCESSORS_ONLN);
  const std::string many = std::to_string(4 * cores + 1);
  // data() sets --threads 1; the last --threads wins.
  expect_usage_error(train("--epochs 1 --threads " + many),
                     {"--threads", "got " + many, "--force-threads"});
  const CliResult r = train("--epochs 1 --limit 64 --threads " + many + " --force-threads");
  EXPECT_EQ(r.status, 0) << r.out;
}

// --help as one line per option: the continuation lines of a wrapped description (indented to
// its column) joined to the line before.
std::string unwrapped(const std::string& help) {
  const std::string continuation = "\n" + std::string(28, ' ');
  std::string s;
  std::size_t from = 0;
  for (std::size_t at = help.find(continuation); at != std::string::npos;
       at = help.find(continuation, from)) {
    s.append(help, from, at - from);
    s.push_back(' ');
    from = at + continuation.size();
  }
  s.append(help, from, std::string::npos);
  return s;
}

TEST_F(CliTest, HelpShowsEveryRangeAndDefault) {
  const CliResult r = run_cli("train --help", dir);
  ASSERT_EQ(r.status, 0);
  const std::string help = unwrapped(r.out);
  for (const char* text :
       {"the global batch, split across the ranks); 1 <= N", "1 <= N <= 1000000 (default: 25)",
        "X > 0 (default: 0.05 for sgd, 0.001 for adam and adamw)", "0 <= X < 1 (default: 0.9)",
        "--force-threads", "4 x cores", "0 < X <= 1 (default: 0.1)"}) {
    EXPECT_THAT(help, HasSubstr(text));
  }
  // --help wins over mistakes elsewhere on the line.
  EXPECT_EQ(run_cli("train --epochs 0 --checkpoint --help", dir).status, 0);
  const CliResult e = run_cli("eval --help", dir);
  EXPECT_EQ(e.status, 0);
  EXPECT_THAT(unwrapped(e.out),
              AllOf(HasSubstr("--model"), HasSubstr("evaluation batch size; 1 <= N")));
}

// --help lists the options under headings, in lines of at most 80 columns, and never breaks a
// range ("N >= 0") over two lines.
TEST_F(CliTest, HelpIsGroupedAndWrappedToEightyColumns) {
  for (const char* command : {"train", "eval", "export", "import"}) {
    SCOPED_TRACE(command);
    const CliResult r = run_cli(std::string(command) + " --help", dir);
    ASSERT_EQ(r.status, 0) << r.out;
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);) {
      EXPECT_LE(line.size(), 80u) << line;
      EXPECT_FALSE(line.size() >= 2 && (line.compare(line.size() - 2, 2, " N") == 0 ||
                                        line.compare(line.size() - 2, 2, " X") == 0))
          << "a range broken after its placeholder: " << line;
    }
    EXPECT_THAT(r.out, HasSubstr("usage: descent " + std::string(command) + " [options]"));
  }
  const CliResult r = run_cli("train --help", dir);
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("with SGD")));
  std::size_t previous = 0;
  for (const char* heading : {"\ndata:\n", "\nmodel:\n", "\ntraining:\n", "\noptimizer:\n",
                              "\nschedule:\n", "\noutput:\n", "\ndevice:\n"}) {
    const std::size_t at = r.out.find(heading);
    ASSERT_NE(at, std::string::npos) << heading;
    EXPECT_GT(at, previous) << heading << " out of order";
    previous = at;
  }
  // Each option under its heading: --lr with the optimizer, --normalize with the data.
  const auto section = [&](const std::string& heading) {
    const std::size_t at = r.out.find("\n" + heading + ":\n");
    return r.out.substr(at, r.out.find("\n\n", at + 1) - at);
  };
  EXPECT_THAT(section("optimizer"), AllOf(HasSubstr("--lr X"), HasSubstr("--betas")));
  EXPECT_THAT(section("data"), AllOf(HasSubstr("--normalize"), HasSubstr("--train-csv")));
  EXPECT_THAT(section("output"), AllOf(HasSubstr("--checkpoint"), HasSubstr("--metrics")));
}

// The defaults --help shows for --lr and --weight-decay follow the optimizer: every optimizer's
// without --optimizer, the chosen one's with it (before or after --help, the last one given),
// and they are the values a run without --lr / --weight-decay then uses.
TEST_F(CliTest, HelpShowsTheDefaultsOfTheChosenOptimizer) {
  std::string help = unwrapped(run_cli("train --help", dir).out);
  EXPECT_THAT(help, AllOf(HasSubstr("(default: 0.05 for sgd, 0.001 for adam and adamw)"),
                          HasSubstr("(default: 0.0005 for sgd, 0 for adam, 0.01 for adamw)")));
  help = unwrapped(run_cli("train --optimizer adam --help", dir).out);
  EXPECT_THAT(help, AllOf(HasSubstr("X > 0 (default: 0.001 with --optimizer adam)"),
                          HasSubstr("X >= 0 (default: 0 with --optimizer adam)")));
  EXPECT_THAT(help, ::testing::Not(HasSubstr("0.05")));
  help = unwrapped(run_cli("train --optimizer sgd --help --optimizer=adamw", dir).out);
  EXPECT_THAT(help, AllOf(HasSubstr("(default: 0.001 with --optimizer adamw)"),
                          HasSubstr("(default: 0.01 with --optimizer adamw)")));
  help = unwrapped(run_cli("train --help --optimizer sgd", dir).out);
  EXPECT_THAT(help, AllOf(HasSubstr("(default: 0.05 with --optimizer sgd)"),
                          HasSubstr("(default: 0.0005 with --optimizer sgd)")));
  // An unknown optimizer is refused when parsed; --help shows every optimizer's defaults.
  help = unwrapped(run_cli("train --optimizer lion --help", dir).out);
  EXPECT_THAT(help, HasSubstr("(default: 0.05 for sgd, 0.001 for adam and adamw)"));
  const CliResult r = train("--epochs 1 --limit 64 --optimizer adam");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, AllOf(HasSubstr("adam lr 0.001"), HasSubstr("weight_decay 0,")));
}

// ---------------------------------------------------------------- conflicting options

TEST_F(CliTest, ConflictingOptionsAreRefused) {
  write_bytes(dir / "d.csv", "a,b,label\n1,2,0\n3,4,1\n");
  const std::string csv = dir / "d.csv", images = dir / "train-images.gz",
                    labels = dir / "train-labels.gz";
  struct Case {
    std::string args;
    std::vector<std::string> message;
  };
  const std::vector<Case> cases = {
      {"train --train-csv " + csv + " --train-images " + images + " --train-labels " + labels,
       {"--train-csv", "--train-images", "cannot be mixed"}},
      {"train --train-csv " + csv + " --data " + dir.path().string(),
       {"--train-csv", "--data", "cannot be mixed"}},
      {"train --train-images " + images, {"--train-images", "without --train-labels", "pairs"}},
      {"train --train-labels " + labels, {"--train-labels", "without --train-images"}},
      {"train --train-images " + images + " --train-labels " + labels + " --test-labels " + labels,
       {"--test-labels", "without --test-images"}},
      {"train --train-images " + images + " --train-labels " + labels + " --regression",
       {"--regression", "CSV data only", "IDX"}},
      {"train --train-images " + images + " --train-labels " + labels + " --label-column 2",
       {"--label-column", "CSV data only"}},
      {"train --train-images " + images + " --train-labels " + labels + " --test-csv " + csv,
       {"--test-csv", "--train-images", "cannot be mixed"}},
      {"train --test-csv " + csv, {"--test-csv", "IDX training data"}},
      {"train --train-csv " + csv + " --gamma 0.5", {"--gamma", "--schedule step"}},
      {"train --train-csv " + csv + " --schedule step --min-lr 0.01",
       {"--min-lr", "--schedule cosine"}},
      {"train --train-csv " + csv + " --momentum 0 --nesterov", {"--nesterov", "--momentum"}},
      {"train --train-csv " + csv + " --betas 0.9,0.99", {"--betas", "--optimizer adam"}},
      {"train --train-csv " + csv + " --amsgrad", {"--amsgrad", "--optimizer adam"}},
      {"train --train-csv " + csv + " --optimizer adamw --momentum 0.5",
       {"--momentum", "--optimizer sgd", "adamw"}},
      {"train --train-csv " + csv + " --optimizer adam --betas 0.9,1", {"--betas", "0 <= X < 1"}},
      {"train --train-csv " + csv + " --optimizer adam --betas 0.9", {"--betas", "2 comma"}},
      {"train --train-csv " + csv + " --optimizer adam --betas 0.9,x", {"--betas", "0.9,x"}},
      {"train --train-csv " + csv + " --clip-norm-type inf",
       {"--clip-norm-type", "--clip-grad-norm"}},
      {"eval --model " + csv + " --regression", {"--regression", "CSV data only"}},
      {"eval --model " + csv + " --test-csv " + csv + " --test-images " + images,
       {"--test-csv", "--test-images"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    const bool is_train = c.args.rfind("train", 0) == 0;
    expect_usage_error(run_cli(c.args + " --device cpu" + (is_train ? " --epochs 1" : ""), dir),
                       c.message);
  }
}

// ---------------------------------------------------------------- outputs

// The names in the test folder that look like a left-behind temporary file.
std::vector<std::string> temp_files(const TempDir& dir) {
  std::vector<std::string> v;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    const std::string n = e.path().filename().string();
    if (n.find(".tmp") != std::string::npos) v.push_back(n);
  }
  return v;
}

TEST_F(CliTest, OutputThatIsAnInputOrAnotherOutputIsRefusedBeforeTraining) {
  const std::string ckpt = dir / "m.ckpt";
  ASSERT_EQ(train("--epochs 1 --checkpoint " + ckpt).status, 0);
  const std::string ckpt_bytes = read_bytes(ckpt);
  const std::string images_bytes = read_bytes(dir / "train-images.gz");
  std::filesystem::create_symlink(dir / "test-labels.gz", dir / "alias.gz");
  struct Case {
    std::string args;
    std::vector<std::string> message;
  };
  const std::vector<Case> cases = {
      {"--checkpoint " + dir / "train-images.gz", {"--checkpoint", "--train-images", "input"}},
      {"--metrics " + dir / "alias.gz", {"--metrics", "--test-labels", "input"}},
      {"--resume " + ckpt + " --checkpoint " + ckpt, {"--checkpoint", "--resume"}},
      {"--resume " + ckpt + " --metrics " + dir / "./m.ckpt", {"--metrics", "--resume"}},
      {"--checkpoint " + dir / "out" + " --metrics " + dir / "sub/../out",
       {"--metrics", "--checkpoint", "its own path"}},
      {"--checkpoint " + dir / "x.svg" + " --metrics " + dir / "x.csv",
       {"--metrics (its .svg curves)", "--checkpoint"}},
      {"--metrics " + dir / "p.csv" + " --plot " + dir / "p.csv", {"--plot", "--metrics"}},
  };
  std::filesystem::create_directory(dir.path() / "sub");
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    expect_usage_error(train("--epochs 2 " + c.args), c.message);
    EXPECT_EQ(read_bytes(ckpt), ckpt_bytes);
    EXPECT_EQ(read_bytes(dir / "train-images.gz"), images_bytes);
    EXPECT_TRUE(std::filesystem::is_symlink(dir / "alias.gz"));
    EXPECT_FALSE(std::filesystem::exists(dir / "out"));
    EXPECT_FALSE(std::filesystem::exists(dir / "x.svg"));
  }
}

TEST_F(CliTest, EveryOutputLocationIsCheckedBeforeTheFirstEpoch) {
  std::filesystem::create_directory(dir.path() / "folder");
  struct Case {
    std::string args;
    std::vector<std::string> message;
  };
  std::vector<Case> cases = {
      {"--checkpoint " + dir / "nowhere/m.ckpt", {"--checkpoint", "nowhere", "does not exist"}},
      {"--metrics " + dir / "folder", {"--metrics", "is a folder"}},
      {"--plot " + dir / "folder/", {"--plot", "ends with '/'"}},
  };
  if (std::filesystem::is_directory("/proc/self")) {
    // The folder passes access(W_OK) for root, yet no file can be created there.
    cases.push_back({"--checkpoint /proc/descent-test.ckpt", {"--checkpoint", "cannot create"}});
    cases.push_back(
        {"--metrics " + dir / "m.csv" + " --plot /proc/descent-test.svg", {"--plot", "/proc"}});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    const CliResult r = train("--epochs 1 " + c.args);
    EXPECT_EQ(r.status, 1) << r.out;
    for (const std::string& m : c.message) EXPECT_THAT(r.out, HasSubstr(m));
    EXPECT_THAT(r.out, ::testing::Not(HasSubstr("epoch 1/")));
    EXPECT_FALSE(std::filesystem::exists(dir / "m.csv"));
    EXPECT_TRUE(temp_files(dir).empty());
  }
}

TEST_F(CliTest, MetricsToAFifoAreWrittenThrough) {
  const std::string fifo = dir / "metrics.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::string received;
  std::thread reader([&] { received = read_bytes(fifo); });
  const CliResult r = train("--epochs 2 --metrics " + fifo);
  // When the command never opened the FIFO, open it once so that the reader ends.
  const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
  if (fd >= 0) ::close(fd);
  reader.join();
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(received, HasSubstr("epoch,steps,lr,train_loss"));
  EXPECT_EQ(std::count(received.begin(), received.end(), '\n'), 3) << received;
  struct stat st {};
  ASSERT_EQ(::lstat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode)) << "the FIFO was replaced by a file";
  EXPECT_FALSE(std::filesystem::exists(dir / "metrics.fifo.svg"));
  EXPECT_TRUE(temp_files(dir).empty());
}

TEST_F(CliTest, SymlinkedCheckpointStaysALink) {
  std::filesystem::create_directory(dir.path() / "store");
  std::filesystem::create_symlink("store/real.ckpt", dir / "latest.ckpt");
  const CliResult r = train("--epochs 1 --checkpoint " + dir / "latest.ckpt");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(std::filesystem::is_symlink(dir / "latest.ckpt"));
  EXPECT_EQ(read_checkpoint(dir / "store/real.ckpt").steps, 13);
}

TEST_F(CliTest, FailedWriteToStandardOutputIsAnError) {
  const std::string log = dir / "stderr.txt", ckpt = dir / "m.ckpt";
  const auto run_to_full = [&](const std::string& args) {
    const std::string cmd = cli_path() + " " + args + " > /dev/full 2> '" + log + "'";
    const int raw = std::system(cmd.c_str());
    return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  };
  EXPECT_EQ(run_to_full("train " + data() + " --epochs 3 --checkpoint " + ckpt), 1);
  EXPECT_THAT(read_bytes(log), AllOf(HasSubstr("writing to standard output failed"),
                                     HasSubstr("No space left on device")));
  EXPECT_FALSE(std::filesystem::exists(ckpt)) << "training went on with nobody seeing it";
  EXPECT_EQ(run_to_full("train --help"), 1);
  EXPECT_THAT(read_bytes(log), HasSubstr("descent: error: writing to standard output failed"));
  EXPECT_EQ(run_to_full("--help"), 1);
}

// ---------------------------------------------------------------- signals

// Starts the command with its output in `log`; SIGINT and SIGTERM at their defaults.
pid_t spawn_cli(const std::string& args, const std::string& log) {
  std::vector<std::string> words{cli_path()};
  std::istringstream in(args);
  for (std::string w; in >> w;) words.push_back(w);
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  if (posix_spawn(&pid, argv[0], &fa, &attr, argv.data(), ::environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  return pid;
}

// Waits up to a minute for the process; its wait status, or -1 (then it was killed).
int wait_for(pid_t pid) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1;
}

class CliSignalTest : public CliTest, public ::testing::WithParamInterface<int> {};

TEST_P(CliSignalTest, SignalStopsTrainingCleanly) {
  const int sig = GetParam();
  const char* name = sig == SIGINT ? "SIGINT" : "SIGTERM";
  const std::string ckpt = dir / "m.ckpt", metrics = dir / "m.csv", log = dir / "log.txt";
  const pid_t pid = spawn_cli(
      "train " + data() + " --epochs 1000000 --checkpoint " + ckpt + " --metrics " + metrics, log);
  ASSERT_GT(pid, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!std::filesystem::exists(ckpt) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a few epochs more
  ASSERT_EQ(::kill(pid, sig), 0);
  const int status = wait_for(pid);
  ASSERT_TRUE(WIFEXITED(status)) << "not a clean exit: status " << status << "\n"
                                 << read_bytes(log);
  EXPECT_EQ(WEXITSTATUS(status), 128 + sig);
  const std::string out = read_bytes(log);
  const std::string head = std::string("descent train: interrupted (") + name + ") ";
  const std::size_t at = out.find(head);
  ASSERT_NE(at, std::string::npos) << out;
  const std::string line = out.substr(at, out.find('\n', at) - at);
  EXPECT_THAT(line, AllOf(HasSubstr("in epoch "), HasSubstr("at batch "),
                          HasSubstr("the checkpoint '" + ckpt + "' holds epoch ")))
      << line;
  // The checkpoint holds exactly the epoch the message names, and the metrics agree.
  const std::int64_t held = std::stoll(line.substr(line.rfind(' ') + 1));
  ASSERT_GE(held, 1);
  EXPECT_EQ(read_checkpoint(ckpt).steps, held * 13);
  const std::string csv = read_bytes(metrics);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), held + 1);
  EXPECT_TRUE(temp_files(dir).empty());
  // The run goes on from there.
  const CliResult r = train("--epochs " + std::to_string(held + 1) + " --resume " + ckpt +
                            " --checkpoint " + dir / "next.ckpt");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("epoch " + std::to_string(held + 1) + "/"));
}

INSTANTIATE_TEST_SUITE_P(Signals, CliSignalTest, ::testing::Values(SIGINT, SIGTERM),
                         [](const ::testing::TestParamInfo<int>& i) {
                           return std::string(i.param == SIGINT ? "SIGINT" : "SIGTERM");
                         });

// ---------------------------------------------------------------- resume and numeric trouble

TEST_F(CliTest, ResumeWithAnotherEpochIsRefusedWithTheReason) {
  const std::string ckpt = dir / "m.ckpt", next = dir / "next.ckpt";
  ASSERT_EQ(train("--epochs 2 --checkpoint " + ckpt).status, 0);
  // Batch 64: 7 batches an epoch, so 26 steps would read as "3 epochs done".
  CliResult r = train("--epochs 3 --batch 64 --resume " + ckpt + " --checkpoint " + next);
  expect_usage_error(r, {"--resume", "13 batches of 32", "7 batches of 64", "--batch 32"});
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("nothing to do")));
  r = train("--epochs 3 --limit 200 --resume " + ckpt + " --checkpoint " + next);
  expect_usage_error(r, {"--resume", "from 400", "from 200", "no --limit"});
  EXPECT_FALSE(std::filesystem::exists(next));
  // Done is done, and says so truthfully.
  r = train("--epochs 2 --resume " + ckpt + " --checkpoint " + next);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, AllOf(HasSubstr("nothing to do"), HasSubstr("holds 2 epochs"),
                           HasSubstr("--epochs 3")));
  // A checkpoint without the epoch metadata (saved by the library): its step count must be a
  // whole number of this run's epochs.
  {
    Context ctx(Device::cpu());
    Mlp model(ctx, {64, 16, 3}, Activation::relu);
    Sgd sgd(model, SgdOptions{.lr = 0.05f, .momentum = 0.9f, .weight_decay = 0.0005f});
    sgd.set_steps(20);
    save_checkpoint(dir / "bare.ckpt", model, &sgd);
  }
  r = train("--epochs 3 --resume " + dir / "bare.ckpt" + " --checkpoint " + next);
  expect_usage_error(r, {"--resume", "20 steps", "13 batches of 32"});
}

TEST_F(CliTest, NonFiniteLossNamesTheOnNanOption) {
  const CliResult r = train("--epochs 2 --lr 1e30 --momentum 0 --schedule constant");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_THAT(r.out, AllOf(HasSubstr("--on-nan skip"), HasSubstr("--lr")));
}

}  // namespace
}  // namespace descent::test
