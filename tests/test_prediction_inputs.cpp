// The readers of inputs without labels, for predicting: load_csv_table (every column of a CSV)
// and load_idx_images (an IDX image file alone), each checked against the labelled reader it
// shares its parsing with, and refusing what that reader refuses.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "descent/descent.hpp"
#include "test_support.hpp"
#include "train_support.hpp"

namespace descent::test {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// CsvOptions with one field changed (designated initialisers would warn of the others).
template <class Set>
CsvOptions csv_options(Set set) {
  CsvOptions o;
  set(o);
  return o;
}

TEST(CsvTable, KeepsEveryColumnAndTheHeader) {
  TempDir dir;
  write_bytes(dir / "h.csv",
              "\xEF\xBB\xBF"
              "a, b ,y\n1,2.5,0\n\n-3,4e2,1\r\n7,8,2\n");
  const CsvTable t = load_csv_table(dir / "h.csv");
  EXPECT_EQ(t.rows, 3);
  EXPECT_EQ(t.columns, 3);
  EXPECT_THAT(t.names, ElementsAre("a", "b", "y"));
  EXPECT_THAT(t.values, ElementsAre(1.0f, 2.5f, 0.0f, -3.0f, 400.0f, 1.0f, 7.0f, 8.0f, 2.0f));
  // The same file through load_csv: its features are the table's other columns, row for row.
  const Dataset d = load_csv(dir / "h.csv", csv_options([](CsvOptions& o) { o.label_name = "y"; }));
  ASSERT_EQ(d.size(), t.rows);
  for (std::int64_t r = 0; r < t.rows; ++r) {
    for (std::int64_t c = 0; c < 2; ++c) {
      EXPECT_EQ(d.float_features()[static_cast<std::size_t>(r * 2 + c)],
                t.values[static_cast<std::size_t>(r * 3 + c)]);
    }
    EXPECT_EQ(d.labels()[static_cast<std::size_t>(r)],
              t.values[static_cast<std::size_t>(r * 3 + 2)]);
  }
  // No header, a single column, a limit, another delimiter.
  write_bytes(dir / "one.csv", "5\n6\n7\n");
  const CsvTable one =
      load_csv_table(dir / "one.csv", csv_options([](CsvOptions& o) { o.limit = 2; }));
  EXPECT_EQ(one.rows, 2);
  EXPECT_EQ(one.columns, 1);
  EXPECT_TRUE(one.names.empty());
  EXPECT_THAT(one.values, ElementsAre(5.0f, 6.0f));
  write_bytes(dir / "semi.csv", "1;2\n3;4\n");
  EXPECT_THAT(
      load_csv_table(dir / "semi.csv", csv_options([](CsvOptions& o) { o.delimiter = ';'; }))
          .values,
      ElementsAre(1.0f, 2.0f, 3.0f, 4.0f));
  // A header declared: the first row is names even when they are numbers.
  const CsvTable declared = load_csv_table(dir / "semi.csv", csv_options([](CsvOptions& o) {
                                             o.header = CsvOptions::Header::yes, o.delimiter = ';';
                                           }));
  EXPECT_THAT(declared.names, ElementsAre("1", "2"));
  EXPECT_EQ(declared.rows, 1);
}

TEST(CsvTable, RefusesWhatLoadCsvRefuses) {
  TempDir dir;
  const struct {
    const char* name;
    std::string bytes;
    std::vector<std::string> message;
  } cases[] = {
      {"ragged.csv", "1,2\n3\n", {"line 2", "expected 2 fields, got 1"}},
      {"nan.csv", "1,2\n3,nan\n", {"line 2, column 2", "not a finite float"}},
      {"big.csv", "1,2\n3,1e39\n", {"line 2, column 2", "not a finite float"}},
      {"word.csv", "a,b\n1,x\n", {"line 2, column 2 ('b')", "'x' is not a number"}},
      {"empty.csv", "", {"holds no samples"}},
      {"header-only.csv", "a,b\n", {"holds no samples"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    write_bytes(dir / c.name, c.bytes);
    EXPECT_THROW_THAT(
        load_csv_table(dir / c.name), DataError,
        AllOf(HasSubstr(c.name), HasSubstr(c.message.front()), HasSubstr(c.message.back())));
  }
  EXPECT_THROW_THAT(load_csv_table(dir / "missing.csv"), IoError, HasSubstr("missing.csv"));
  EXPECT_THROW_THAT(
      load_csv_table(dir / "missing.csv", csv_options([](CsvOptions& o) { o.limit = -1; })),
      ArgumentError, HasSubstr("limit"));
  EXPECT_THROW_THAT(
      load_csv_table(dir / "ragged.csv", csv_options([](CsvOptions& o) { o.delimiter = '\n'; })),
      ArgumentError, HasSubstr("delimiter"));
}

TEST(IdxImages, AreLoadIdxsFeaturesWithoutLabels) {
  TempDir dir;
  const SmallImages s = small_images(50, 3, 11);
  write_small_idx(dir, "set", s);
  const IdxImages all = load_idx_images(dir / "set-images.gz");
  EXPECT_EQ(all.count, 50);
  EXPECT_EQ(all.features, 64);
  EXPECT_EQ(all.pixels, s.pixels);
  const Dataset d = load_idx(dir / "set-images.gz", dir / "set-labels.gz");
  EXPECT_TRUE(std::equal(all.pixels.begin(), all.pixels.end(), d.uint8_features().begin(),
                         d.uint8_features().end()));
  const IdxImages head = load_idx_images(dir / "set-images.gz", 7);
  EXPECT_EQ(head.count, 7);
  EXPECT_EQ(head.pixels, std::vector<std::uint8_t>(s.pixels.begin(), s.pixels.begin() + 7 * 64));
  EXPECT_EQ(load_idx_images(dir / "set-images.gz", 500).count, 50);
  // A label file is not an image file; a truncated one is refused; so is a negative limit.
  EXPECT_THROW_THAT(load_idx_images(dir / "set-labels.gz"), DataError,
                    AllOf(HasSubstr("set-labels.gz"), HasSubstr("wrong IDX magic number")));
  const std::string images = idx_images(s.pixels, s.count, 8, 8);
  write_bytes(dir / "cut", images.substr(0, images.size() - 1));
  EXPECT_THROW_THAT(load_idx_images(dir / "cut"), DataError, HasSubstr("the IDX header says"));
  EXPECT_THROW_THAT(load_idx_images(dir / "cut", -1), ArgumentError, HasSubstr("limit"));
}

}  // namespace
}  // namespace descent::test
