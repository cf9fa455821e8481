// Data: the IDX loader (gzip and raw) and every malformed-file case, the CSV loader, datasets
// from user memory, and BatchLoader's refusals (its batches on every backend:
// tests/backends/test_loader.cpp).
#include <algorithm>
#include <cmath>
#include <set>

#include "descent/data.hpp"
#include "test_support.hpp"
#include "train_support.hpp"

namespace descent::test {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

class IdxTest : public ::testing::Test {
 protected:
  TempDir dir;
  SmallImages images = small_images(30, 3, 11);
  void write_pair(const std::string& image_bytes, const std::string& label_bytes, bool gz = true) {
    if (gz) {
      write_gzip(dir / "img", image_bytes);
      write_gzip(dir / "lab", label_bytes);
    } else {
      write_bytes(dir / "img", image_bytes);
      write_bytes(dir / "lab", label_bytes);
    }
  }
  std::string good_images() const { return idx_images(images.pixels, 30, 8, 8); }
  std::string good_labels() const { return idx_labels(images.labels); }
  Dataset load(IdxOptions o = {}) { return load_idx(dir / "img", dir / "lab", o); }
};

TEST_F(IdxTest, ReadsGzipAndRawAlike) {
  for (bool gz : {true, false}) {
    write_pair(good_images(), good_labels(), gz);
    const Dataset d = load();
    EXPECT_EQ(d.size(), 30);
    EXPECT_EQ(d.features(), 64);
    EXPECT_EQ(d.classes(), 3);
    EXPECT_TRUE(d.is_uint8());
    EXPECT_TRUE(std::equal(images.pixels.begin(), images.pixels.end(), d.uint8_features().begin()));
    for (std::size_t i = 0; i < 30; ++i) EXPECT_EQ(d.labels()[i], images.labels[i]);
    std::vector<float> row(64);
    d.copy_features(2, row.data());
    EXPECT_FLOAT_EQ(row[5], images.pixels[2 * 64 + 5] / 255.0f);
  }
}

TEST_F(IdxTest, LimitAndClasses) {
  write_pair(good_images(), good_labels());
  const Dataset d = load({10, 7});
  EXPECT_EQ(d.size(), 7);
  EXPECT_EQ(d.classes(), 10);
}

TEST_F(IdxTest, MissingFileIsAnIoErrorNamingIt) {
  EXPECT_THROW_THAT(load_idx(dir / "nope-images.gz", dir / "nope-labels.gz"), IoError,
                    AllOf(HasSubstr("nope-images.gz"), HasSubstr("No such file")));
}

TEST_F(IdxTest, TruncatedGzipIsADataError) {
  write_pair(good_images(), good_labels());
  const std::string gz = read_bytes(dir / "img");
  write_bytes(dir / "img", gz.substr(0, gz.size() / 2));
  EXPECT_THROW_THAT(load(), DataError, AllOf(HasSubstr("img"), HasSubstr("truncated or corrupt")));
}

TEST_F(IdxTest, CorruptGzipIsADataError) {
  write_pair(good_images(), good_labels());
  std::string gz = read_bytes(dir / "img");
  for (std::size_t i = 20; i < gz.size() - 10; i += 7) gz[i] = static_cast<char>(gz[i] ^ 0x5a);
  write_bytes(dir / "img", gz);
  EXPECT_THROW_THAT(load(), DataError, HasSubstr("truncated or corrupt"));
}

TEST_F(IdxTest, WrongMagicIsADataError) {
  write_pair(idx_images(images.pixels, 30, 8, 8, 0x00000801u), good_labels());
  EXPECT_THROW_THAT(load(), DataError,
                    AllOf(HasSubstr("magic"), HasSubstr("0x00000801"), HasSubstr("0x00000803")));
  write_pair(good_images(), idx_labels(images.labels, 0x00000803u));
  EXPECT_THROW_THAT(load(), DataError, AllOf(HasSubstr("lab"), HasSubstr("magic")));
}

TEST_F(IdxTest, WrongDimensionsAreADataError) {
  // The header claims 31 images but holds 30.
  write_pair(idx_images(images.pixels, 31, 8, 8), good_labels());
  EXPECT_THROW_THAT(load(), DataError, AllOf(HasSubstr("31 x 8 x 8"), HasSubstr("bytes")));
  // 8 x 9 images: the byte count disagrees.
  write_pair(idx_images(images.pixels, 30, 8, 9), good_labels());
  EXPECT_THROW(load(), DataError);
  // A header shorter than its dimensions.
  write_pair(good_images().substr(0, 10), good_labels());
  EXPECT_THROW_THAT(load(), DataError, HasSubstr("header"));
}

TEST_F(IdxTest, ImageAndLabelCountsMustAgree) {
  std::vector<std::uint8_t> fewer(images.labels.begin(), images.labels.begin() + 29);
  write_pair(good_images(), idx_labels(fewer));
  EXPECT_THROW_THAT(load(), DataError, AllOf(HasSubstr("30 images"), HasSubstr("29 labels")));
}

TEST_F(IdxTest, LabelAtOrAboveClassesIsADataError) {
  std::vector<std::uint8_t> labels = images.labels;
  labels[17] = 3;
  write_pair(good_images(), idx_labels(labels));
  EXPECT_THROW_THAT(load({3, 0}), DataError,
                    AllOf(HasSubstr("label 17"), HasSubstr("is 3"), HasSubstr("[0, 3)")));
}

TEST_F(IdxTest, EmptyDatasetIsADataError) {
  write_pair(idx_images({}, 0, 8, 8), idx_labels({}));
  EXPECT_THROW_THAT(load(), DataError, HasSubstr("empty"));
}

TEST(FashionMnist, LoadsTheInstalledDataset) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::exists(dir + "/t10k-images-idx3-ubyte.gz")) {
    GTEST_SKIP() << "Fashion-MNIST is not installed in " << dir;
  }
  const Dataset d =
      load_idx(dir + "/t10k-images-idx3-ubyte.gz", dir + "/t10k-labels-idx1-ubyte.gz");
  EXPECT_EQ(d.size(), 10000);
  EXPECT_EQ(d.features(), 784);
  EXPECT_EQ(d.classes(), 10);
  const auto [mean, sd] = d.feature_stats();
  EXPECT_NEAR(mean, 0.286, 0.01);  // Fashion-MNIST's well-known pixel mean and deviation
  EXPECT_NEAR(sd, 0.353, 0.01);
}

// ---------------------------------------------------------------- CSV

class CsvTest : public ::testing::Test {
 protected:
  TempDir dir;
  std::string write(const std::string& text) {
    write_bytes(dir / "data.csv", text);
    return dir / "data.csv";
  }
};

TEST_F(CsvTest, HeaderDetectedLabelByNameOrIndex) {
  const std::string p = write("a,label,b\n1,0,2\n3,2,4.5\r\n\n-1e1,1,6\n");
  CsvOptions o;
  o.label_name = "label";
  const Dataset d = load_csv(p, o);
  EXPECT_EQ(d.size(), 3);
  EXPECT_EQ(d.features(), 2);
  EXPECT_EQ(d.classes(), 3);
  EXPECT_EQ(std::vector<float>(d.float_features().begin(), d.float_features().end()),
            (std::vector<float>{1, 2, 3, 4.5f, -10, 6}));
  EXPECT_EQ(d.labels()[1], 2);
  CsvOptions by_index;
  by_index.label_index = 1;
  EXPECT_EQ(load_csv(p, by_index).labels()[2], 1);
}

TEST_F(CsvTest, NoHeaderLastColumnDefaultAndRegression) {
  const std::string p = write("0.5,1.5,2\n1,2,3\n");
  CsvOptions no_header;
  no_header.header = CsvOptions::Header::no;
  const Dataset c = load_csv(p, no_header);
  EXPECT_EQ(c.size(), 2);
  EXPECT_EQ(c.labels()[0], 2);
  CsvOptions r;
  r.regression = true;
  const Dataset d = load_csv(p, r);
  EXPECT_FALSE(d.has_labels());
  EXPECT_EQ(d.target_count(), 1);
  EXPECT_EQ(d.targets()[1], 3.0f);
  CsvOptions limited;
  limited.limit = 1;
  EXPECT_EQ(load_csv(p, limited).size(), 1);
}

// A stray label (200 among labels 0..9) would make a 201-class model: refused when the class
// count is inferred, accepted when it is given (and then a label at or above it is refused).
TEST_F(CsvTest, StrayLabelIsRefusedWhenTheClassCountIsInferred) {
  std::string text;
  for (int i = 0; i < 300; ++i) text += std::to_string(i) + "," + std::to_string(i % 10) + "\n";
  text += "7,200\n";
  const std::string p = write(text);
  CsvOptions no_header;
  no_header.header = CsvOptions::Header::no;
  EXPECT_THROW_THAT(load_csv(p, no_header), DataError,
                    AllOf(HasSubstr("up to 200"), HasSubstr("class 10 first"),
                          HasSubstr("stray label"), HasSubstr("--classes")));
  no_header.classes = 201;
  EXPECT_EQ(load_csv(p, no_header).classes(), 201);
  no_header.classes = 10;
  EXPECT_THROW_THAT(load_csv(p, no_header), DataError, HasSubstr("200"));
}

// Found by the CSV fuzzer: a label of 330333333 made the class inference allocate a count per
// class (2.6 GB). The inference's memory follows the samples, and a class count beyond what
// descent infers (2^24) is refused as a stray label.
TEST_F(CsvTest, HugeLabelIsRefusedWithoutAllocatingPerClass) {
  const std::string p = write("1,2,330333333\n3,4,0\n");
  CsvOptions no_header;
  no_header.header = CsvOptions::Header::no;
  EXPECT_THROW_THAT(
      load_csv(p, no_header), DataError,
      AllOf(HasSubstr("330333333"), HasSubstr("stray label"), HasSubstr("--classes")));
}

TEST_F(CsvTest, NanOrInfIsADataErrorNamingLineAndColumn) {
  EXPECT_THROW_THAT(
      load_csv(write("x,y,label\n1,2,0\n3,nan,1\n")), DataError,
      AllOf(HasSubstr("line 3"), HasSubstr("column 2"), HasSubstr("'y'"), HasSubstr("NaN")));
  EXPECT_THROW_THAT(load_csv(write("1,inf,0\n")), DataError, HasSubstr("line 1"));
  EXPECT_THROW_THAT(load_csv(write("1,-Infinity,0\n")), DataError, HasSubstr("finite"));
  EXPECT_THROW_THAT(load_csv(write("1,1e39,0\n")), DataError, HasSubstr("finite"));
}

TEST_F(CsvTest, MalformedFilesAreDataErrors) {
  EXPECT_THROW_THAT(load_csv(write("1,2,0\n1,2\n")), DataError,
                    AllOf(HasSubstr("line 2"), HasSubstr("expected 3 fields")));
  EXPECT_THROW_THAT(load_csv(write("1,2,0\n1,x,1\n")), DataError, HasSubstr("'x' is not a number"));
  EXPECT_THROW_THAT(load_csv(write("1,2,0.5\n")), DataError, HasSubstr("class index"));
  EXPECT_THROW_THAT(load_csv(write("a,b,label\n")), DataError, HasSubstr("empty"));
  EXPECT_THROW_THAT(load_csv(write("")), DataError, HasSubstr("empty"));
  CsvOptions o;
  o.classes = 2;
  EXPECT_THROW_THAT(load_csv(write("1,2,0\n1,2,2\n"), o), DataError,
                    AllOf(HasSubstr("line 2"), HasSubstr("[0, 2)")));
  o.classes = 0;
  o.label_name = "nope";
  EXPECT_THROW_THAT(load_csv(write("a,b\n1,0\n"), o), ArgumentError, HasSubstr("nope"));
  EXPECT_THROW_THAT(load_csv(dir / "missing.csv"), IoError, HasSubstr("missing.csv"));
}

// ---------------------------------------------------------------- Dataset from memory

TEST(DatasetTest, FromUserMemoryCopiesAndChecks) {
  std::vector<float> x{1, 2, 3, 4, 5, 6};
  std::vector<std::int32_t> y{0, 1, 1};
  const Dataset d = Dataset::from_floats(x, 2, y, 2);
  x[0] = 100;  // the dataset holds its own copy
  EXPECT_EQ(d.float_features()[0], 1.0f);
  EXPECT_THROW_THAT(Dataset::from_floats(x, 2, std::vector<std::int32_t>{0, 1}, 2), DataError,
                    HasSubstr("expected 3 values"));
  EXPECT_THROW_THAT(Dataset::from_floats(x, 2, std::vector<std::int32_t>{0, 1, 2}, 2), DataError,
                    HasSubstr("label 2 is 2"));
  EXPECT_THROW_THAT(Dataset::from_floats(std::vector<float>{}, 2, std::vector<std::int32_t>{}, 2),
                    DataError, HasSubstr("empty"));
  x[3] = std::numeric_limits<float>::infinity();
  EXPECT_THROW_THAT(Dataset::from_floats(x, 2, y, 2), DataError, HasSubstr("finite"));
  const std::vector<std::uint8_t> bytes{0, 255, 10, 20};
  Dataset u = Dataset::from_uint8(bytes, 2, std::vector<std::int32_t>{0, 1}, 2);
  u.set_normalization(2.0f, -1.0f);
  float row[2];
  u.copy_features(0, row);
  EXPECT_EQ(row[1], 509.0f);
  EXPECT_EQ(u.head(1).size(), 1);
}

TEST(LoaderErrors, BatchSizeZeroAndEmptyDataset) {
  Context ctx;
  const Dataset d =
      Dataset::from_floats(std::vector<float>{1, 2}, 1, std::vector<std::int32_t>{0, 1}, 2);
  EXPECT_THROW_THAT(BatchLoader(ctx, d, {0}), ArgumentError,
                    AllOf(NamesArgument("batch_size"), HasSubstr("got 0")));
  const Dataset empty;
  EXPECT_THROW_THAT(BatchLoader(ctx, empty, {8}), DataError, HasSubstr("empty"));
}

}  // namespace
}  // namespace descent::test
