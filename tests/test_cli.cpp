// The descent command, run as a separate process on small generated IDX and CSV files: a train /
// resume / eval cycle with its outputs, and every bad-input case (clear message, non-zero exit,
// previous outputs untouched).
#include <unistd.h>

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

  r = train("--epochs 3 --resume " + ckpt + " --checkpoint " + ckpt + " --seed 3");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, AllOf(HasSubstr("resumed at step 26"), HasSubstr("epoch 3/3")));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("epoch 1/3")));
  EXPECT_EQ(read_checkpoint(ckpt).steps, 3 * 13);
  // The last epoch's test accuracy, which eval must reproduce from the checkpoint alone (the
  // data normalisation travels in its metadata).
  const std::size_t at = r.out.rfind("test acc ");
  ASSERT_NE(at, std::string::npos);
  const std::string accuracy = r.out.substr(at + 9, r.out.find('%', at) - at - 9);

  r = run_cli("eval --model " + ckpt + " --test-images " + dir / "test-images.gz" +
                  " --test-labels " + dir / "test-labels.gz" + " --device cpu",
              dir);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, AllOf(HasSubstr("samples 120"), HasSubstr("accuracy " + accuracy + "%")));
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
  EXPECT_THAT(r.out, HasSubstr("1 targets"));
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
       "train " + data() + " --hidden 8 --resume " + ckpt,
       {"64-16-3", "64-8-3"}},
      {"flipped checkpoint byte",
       "train " + data() + " --resume " + dir / "flipped.ckpt",
       {"checksum mismatch"}},
      {"newer checkpoint version",
       "train " + data() + " --resume " + dir / "newer.ckpt",
       {"version 2", "newer"}},
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

}  // namespace
}  // namespace descent::test
