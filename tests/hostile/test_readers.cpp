// Readers on hostile input: paths that are not regular files, declared sizes that overflow or
// exceed the file, gzip headers that lie, truncated and trailing data, CSV quirks and lying
// checkpoints (a gzip bomb, slow: tests/slow/test_gzip_bomb.cpp).
// Every hazard is made in a temporary folder; every failure must be a descent error naming the
// file, never std::bad_alloc, a hang or an internal exception's text.
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <limits>

#include "descent/descent.hpp"
#include "gzip_idx.hpp"
#include "test_support.hpp"
#include "train_support.hpp"

namespace descent::test {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// Messages must read as descent's own, not as a leaked standard-library exception.
const auto NoInternalText = AllOf(Not(HasSubstr("stof")), Not(HasSubstr("basic_")),
                                  Not(HasSubstr("bad_alloc")), Not(HasSubstr("vector")));

std::string be_header(std::uint32_t magic, std::initializer_list<std::uint32_t> dims) {
  std::string s;
  put_be32(s, magic);
  for (std::uint32_t d : dims) put_be32(s, d);
  return s;
}

// Checks that `load` refuses the path without blocking: run in a child process that an alarm
// kills if the reader waits on the FIFO.
#define EXPECT_REFUSED_WITHOUT_BLOCKING(statement, needle)                                         \
  EXPECT_EXIT(                                                                                     \
      {                                                                                            \
        ::alarm(10);                                                                               \
        try {                                                                                      \
          statement;                                                                               \
        } catch (const IoError& e) {                                                               \
          const std::string m = e.what();                                                          \
          ::_exit(m.find(needle) != std::string::npos && m.find("FIFO") != std::string::npos ? 0   \
                                                                                             : 2); \
        } catch (...) {                                                                            \
          ::_exit(3);                                                                              \
        }                                                                                          \
        ::_exit(4);                                                                                \
      },                                                                                           \
      ::testing::ExitedWithCode(0), "")

class NonRegularPaths : public ::testing::Test {
 protected:
  TempDir dir;
  std::string folder = dir / "a-folder";
  std::string fifo = dir / "a-fifo";
  std::string labels = dir / "labels";
  void SetUp() override {
    ASSERT_EQ(::mkdir(folder.c_str(), 0755), 0);
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
    write_bytes(labels, idx_labels({0, 1}));
  }
};

TEST_F(NonRegularPaths, IdxRefusesAFolderNamingIt) {
  EXPECT_THROW_THAT(
      load_idx(folder, labels), IoError,
      AllOf(HasSubstr("'" + folder + "'"), HasSubstr("folder"), HasSubstr("regular file")));
  write_bytes(dir / "images", idx_images({1, 2, 3, 4, 5, 6, 7, 8}, 2, 2, 2));
  EXPECT_THROW_THAT(load_idx(dir / "images", folder), IoError,
                    AllOf(HasSubstr("'" + folder + "'"), HasSubstr("folder")));
}

TEST_F(NonRegularPaths, CsvRefusesAFolderNamingIt) {
  EXPECT_THROW_THAT(load_csv(folder), IoError,
                    AllOf(HasSubstr("'" + folder + "'"), HasSubstr("folder"), NoInternalText));
}

TEST_F(NonRegularPaths, CheckpointRefusesAFolderNamingIt) {
  EXPECT_THROW_THAT(read_checkpoint(folder), IoError,
                    AllOf(HasSubstr("'" + folder + "'"), HasSubstr("folder"), NoInternalText));
  Context ctx;
  Mlp model(ctx, {2, 1});
  EXPECT_THROW_THAT(load_checkpoint(folder, model), IoError, HasSubstr("folder"));
}

TEST_F(NonRegularPaths, FifoIsRefusedWithoutBlocking) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_REFUSED_WITHOUT_BLOCKING(load_idx(fifo, labels), fifo);
  EXPECT_REFUSED_WITHOUT_BLOCKING(load_csv(fifo), fifo);
  EXPECT_REFUSED_WITHOUT_BLOCKING(read_checkpoint(fifo), fifo);
}

TEST_F(NonRegularPaths, UnopenablePathsAreIoErrorsNamingThem) {
  // A path through a regular file, as if it were a folder: fails for every user.
  const std::string through = labels + "/x";
  EXPECT_THROW_THAT(load_csv(through), IoError,
                    AllOf(HasSubstr("'" + through + "'"), HasSubstr("Not a directory")));
  EXPECT_THROW_THAT(read_checkpoint(through), IoError, HasSubstr("'" + through + "'"));
  EXPECT_THROW_THAT(load_idx(through, labels), IoError, HasSubstr("'" + through + "'"));
  if (::geteuid() == 0) GTEST_SKIP() << "root reads files whatever their permissions";
  const std::string p = dir / "secret.csv";
  write_bytes(p, "1,2,0\n");
  ASSERT_EQ(::chmod(p.c_str(), 0), 0);
  EXPECT_THROW_THAT(load_csv(p), IoError, AllOf(HasSubstr("secret.csv"), HasSubstr("denied")));
  EXPECT_THROW_THAT(read_checkpoint(p), IoError, HasSubstr("secret.csv"));
  EXPECT_THROW_THAT(load_idx(p, labels), IoError, HasSubstr("secret.csv"));
}

// ---------------------------------------------------------------- declared sizes

class IdxSizes : public ::testing::Test {
 protected:
  TempDir dir;
  std::string img = dir / "img";
  std::string lab = dir / "lab";
  void SetUp() override { write_bytes(lab, idx_labels({0, 1})); }
};

TEST_F(IdxSizes, DimensionsWhoseProductOverflowsAreADataError) {
  write_bytes(img, be_header(0x803, {0xffffffffu, 0xffffffffu, 0xffffffffu}) + "abc");
  EXPECT_THROW_THAT(
      load_idx(img, lab), DataError,
      AllOf(HasSubstr("'" + img + "'"), HasSubstr("4294967295 x 4294967295"), HasSubstr("limit")));
  // 2^22 x 2^21 x 2^21 = 2^64, which wraps to 0 in 64 bits.
  write_bytes(img, be_header(0x803, {1u << 22, 1u << 21, 1u << 21}));
  EXPECT_THROW_THAT(load_idx(img, lab), DataError, HasSubstr("limit"));
}

TEST_F(IdxSizes, DimensionsAboveTheLimitAreADataError) {
  // 2^32 bytes of pixels plus the header: just over the 4 GiB an IDX file may hold.
  write_bytes(img, be_header(0x803, {65536u, 256u, 256u}));
  EXPECT_THROW_THAT(load_idx(img, lab), DataError, HasSubstr("limit"));
}

TEST_F(IdxSizes, DimensionsLargerThanTheFileAreRefusedBeforeAllocating) {
  write_bytes(img, be_header(0x803, {60000u, 28u, 28u}) + std::string(100, 'x'));
  EXPECT_THROW_THAT(load_idx(img, lab), DataError,
                    AllOf(HasSubstr("60000 x 28 x 28"), HasSubstr("holds 116 bytes")));
  write_bytes(lab, be_header(0x801, {4000000000u}));
  write_bytes(img, idx_images({1, 2, 3, 4, 5, 6, 7, 8}, 2, 2, 2));
  EXPECT_THROW_THAT(load_idx(img, lab), DataError,
                    AllOf(HasSubstr("'" + lab + "'"), HasSubstr("4000000000")));
}

TEST_F(IdxSizes, ExtraBytesInARawFileAreADataError) {
  write_bytes(img, idx_images({1, 2, 3, 4, 5, 6, 7, 8}, 2, 2, 2) + "trailing");
  EXPECT_THROW_THAT(load_idx(img, lab), DataError, AllOf(HasSubstr("2 x 2 x 2"), HasSubstr("32")));
}

TEST(BufferSizes, AByteCountThatOverflowsIsAnArgumentError) {
  Context ctx;
  const std::int64_t huge = std::numeric_limits<std::int64_t>::max();
  EXPECT_THROW_THAT(Buffer<float>(ctx, huge), ArgumentError,
                    AllOf(HasSubstr(std::to_string(huge)), HasSubstr("does not fit")));
  // 2^61 doubles are 2^64 bytes: wraps to 0 without the check.
  EXPECT_THROW(Buffer<double>(ctx, std::int64_t(1) << 61), ArgumentError);
  EXPECT_THROW(Buffer<float>(ctx, (std::int64_t(1) << 62) + 1), ArgumentError);
  EXPECT_THROW(detail::checked_bytes(std::int64_t(1) << 62, 4), ArgumentError);
  EXPECT_EQ(detail::checked_bytes(std::int64_t(1) << 40, 4), std::size_t(1) << 42);
  EXPECT_THROW_THAT(Buffer<float>(ctx, -1), ArgumentError, HasSubstr(">= 0"));
  EXPECT_NO_THROW(Buffer<float>(ctx, 0));
}

// ---------------------------------------------------------------- gzip

TEST_F(GzipIdx, AHeaderDeclaringMoreThanTheFileCanInflateToIsRefused) {
  // 2 GiB declared in a file of a few dozen bytes: refused before allocating.
  write_bytes(img, gzip_of(be_header(0x803, {32768u, 256u, 256u}) + "abc"));
  EXPECT_THROW_THAT(load_idx(img, lab), DataError,
                    AllOf(HasSubstr("32768 x 256 x 256"), HasSubstr("inflates to at most")));
}

TEST_F(GzipIdx, TruncatedStreamIsADataError) {
  const std::string gz = gzip_of(pixels);
  for (std::size_t cut : {gz.size() - 1, gz.size() - 8, std::size_t(12)}) {
    SCOPED_TRACE("cut at " + std::to_string(cut) + " of " + std::to_string(gz.size()));
    write_bytes(img, gz.substr(0, cut));
    EXPECT_THROW_THAT(load_idx(img, lab), DataError,
                      AllOf(HasSubstr("'" + img + "'"), HasSubstr("truncated")));
  }
}

TEST_F(GzipIdx, TrailingGarbageIsADataError) {
  write_bytes(img, gzip_of(pixels) + "garbage");
  EXPECT_THROW_THAT(load_idx(img, lab), DataError,
                    AllOf(HasSubstr("'" + img + "'"), HasSubstr("trailing data")));
}

TEST_F(GzipIdx, InflatedDataLongerOrShorterThanDeclaredIsADataError) {
  write_bytes(img, gzip_of(pixels + "x"));
  EXPECT_THROW_THAT(load_idx(img, lab), DataError, HasSubstr("holds more"));
  write_bytes(img, gzip_of(pixels.substr(0, pixels.size() - 1)));
  EXPECT_THROW_THAT(load_idx(img, lab), DataError, HasSubstr("holds 23 bytes"));
}

TEST_F(GzipIdx, ConcatenatedMembersAreOneStream) {
  write_bytes(img, gzip_of(pixels.substr(0, 10)) + gzip_of(pixels.substr(10)));
  const Dataset d = load_idx(img, lab);
  EXPECT_EQ(d.size(), 2);
  EXPECT_EQ(d.uint8_features()[7], 8);
}

// ---------------------------------------------------------------- CSV

class CsvReader : public ::testing::Test {
 protected:
  TempDir dir;
  std::string write(const std::string& text) {
    write_bytes(dir / "data.csv", text);
    return dir / "data.csv";
  }
};

TEST_F(CsvReader, AByteOrderMarkIsIgnored) {
  CsvOptions by_name;
  by_name.label_name = "label";
  const Dataset d = load_csv(write("\xEF\xBB\xBFlabel,x\n1,2.5\n0,3\n"), by_name);
  EXPECT_EQ(d.size(), 2);
  EXPECT_EQ(d.labels()[0], 1);
  EXPECT_EQ(d.float_features()[1], 3.0f);
  // No header: the first number is read, not taken for a header's name.
  const Dataset n =
      load_csv(write("\xEF\xBB\xBF"
                     "4,1\n5,0\n"));
  EXPECT_EQ(n.size(), 2);
  EXPECT_EQ(n.float_features()[0], 4.0f);
}

TEST_F(CsvReader, BadNumbersNameFileLineAndColumn) {
  for (const char* bad : {"2x", "0x10", "1e", "--1", "1.2.3", "", " "}) {
    SCOPED_TRACE(std::string("field '") + bad + "'");
    const std::string p = write(std::string("1,2,0\n3,") + bad + ",1\n");
    EXPECT_THROW_THAT(load_csv(p), DataError,
                      AllOf(HasSubstr("'" + p + "'"), HasSubstr("line 2"), HasSubstr("column 2"),
                            HasSubstr("not a number"), NoInternalText));
  }
}

TEST_F(CsvReader, OverlongFieldsAreReportedShort) {
  const std::string digits(100000, '7');
  try {
    load_csv(write("1,2,0\n3," + digits + "x,1\n"));
    ADD_FAILURE() << "an overlong bad field was accepted";
  } catch (const DataError& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("line 2"), HasSubstr("column 2")));
    EXPECT_LT(std::strlen(e.what()), 400u) << "the message repeats the whole field";
  }
  // A number too large for a float, spelt with 100000 digits.
  EXPECT_THROW_THAT(load_csv(write("1,2,0\n3," + digits + ",1\n")), DataError,
                    AllOf(HasSubstr("line 2"), Not(HasSubstr(digits))));
}

TEST_F(CsvReader, AnOverlongLineIsADataError) {
  // 17 MiB without a line break: more than the 16 MiB a line may hold.
  const std::string p = write("1,2,0\n" + std::string(std::size_t(17) << 20, '1'));
  EXPECT_THROW_THAT(load_csv(p), DataError,
                    AllOf(HasSubstr("'" + p + "'"), HasSubstr("line 2"), HasSubstr("longer than")));
}

TEST_F(CsvReader, LinesAcrossReadChunksAreWhole) {
  // Rows straddle the reader's 1 MiB chunks.
  std::string text;
  std::int64_t rows = 0;
  while (text.size() < (std::size_t(5) << 19)) {
    text += std::to_string(rows) + ".25," + std::to_string(rows % 3) + "\n";
    ++rows;
  }
  const Dataset d = load_csv(write(text));
  ASSERT_EQ(d.size(), rows);
  for (std::int64_t i = 0; i < rows; i += 997) {
    EXPECT_EQ(d.float_features()[static_cast<std::size_t>(i)], static_cast<float>(i) + 0.25f);
    EXPECT_EQ(d.labels()[static_cast<std::size_t>(i)], i % 3);
  }
}

TEST_F(CsvReader, ALineBreakDelimiterIsAnArgumentError) {
  CsvOptions o;
  o.delimiter = '\n';
  EXPECT_THROW(load_csv(write("1,2\n"), o), ArgumentError);
}

// ---------------------------------------------------------------- checkpoint

template <class T>
void put_le(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof v);
}

// A whole checkpoint file around `payload`, with a correct CRC; `declared` overrides the
// payload size in the header.
std::string checkpoint_file(const std::string& payload,
                            std::uint64_t declared = std::numeric_limits<std::uint64_t>::max()) {
  std::string s("DSCNTCKP", 8);
  put_le<std::uint32_t>(s, 1);
  put_le<std::uint64_t>(
      s, declared == std::numeric_limits<std::uint64_t>::max() ? payload.size() : declared);
  s += payload;
  const auto crc = static_cast<std::uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(s.data()), static_cast<uInt>(s.size())));
  put_le<std::uint32_t>(s, crc);
  return s;
}

// A 2-1 identity model: layers, widths, activation, then `count` declared parameters.
std::string model_payload(std::int64_t in, std::int64_t out, std::uint64_t count,
                          std::size_t floats) {
  std::string p;
  put_le<std::uint32_t>(p, 1);
  put_le<std::int64_t>(p, in);
  put_le<std::int64_t>(p, out);
  put_le<std::uint32_t>(p, 0);
  put_le<std::uint64_t>(p, count);
  for (std::size_t i = 0; i < floats; ++i) put_le<float>(p, 0.5f);
  return p;
}

class CheckpointSizes : public ::testing::Test {
 protected:
  TempDir dir;
  std::string path = dir / "c.ckpt";
  Checkpoint read(const std::string& bytes) {
    write_bytes(path, bytes);
    return read_checkpoint(path);
  }
};

TEST_F(CheckpointSizes, TheHandMadeFormatIsRight) {
  std::string p = model_payload(2, 1, 3, 3);
  put_le<std::uint8_t>(p, 0);
  put_le<std::uint32_t>(p, 0);
  const Checkpoint c = read(checkpoint_file(p));
  EXPECT_EQ(c.widths, (std::vector<std::int64_t>{2, 1}));
  EXPECT_EQ(c.params.size(), 3u);
}

TEST_F(CheckpointSizes, AHugeDeclaredPayloadIsADataError) {
  std::string p = model_payload(2, 1, 3, 3);
  put_le<std::uint8_t>(p, 0);
  put_le<std::uint32_t>(p, 0);
  for (std::uint64_t declared :
       {std::uint64_t(1) << 63, std::uint64_t(0xfffffffffffffffe), p.size() + 1}) {
    EXPECT_THROW_THAT(
        read(checkpoint_file(p, declared)), DataError,
        AllOf(HasSubstr("'" + path + "'"), HasSubstr("payload of " + std::to_string(declared))));
  }
}

TEST_F(CheckpointSizes, AHugeParameterCountIsADataError) {
  for (std::uint64_t count : {std::uint64_t(1) << 62, std::uint64_t(1) << 61, std::uint64_t(6)}) {
    SCOPED_TRACE("declared count " + std::to_string(count));
    std::string p = model_payload(2, 1, count, 3);
    put_le<std::uint8_t>(p, 0);
    put_le<std::uint32_t>(p, 0);
    EXPECT_THROW_THAT(read(checkpoint_file(p)), DataError,
                      AllOf(HasSubstr("parameters"), HasSubstr("runs past the end")));
  }
}

TEST_F(CheckpointSizes, WidthsWhoseParameterCountOverflowsAreADataError) {
  // 2^40 x 2^40 weights: 2^80, which wraps in 64 bits (and is undefined in int64_t).
  const std::int64_t w = std::int64_t(1) << 40;
  std::string p = model_payload(w, w, 0, 0);
  put_le<std::uint8_t>(p, 0);
  put_le<std::uint32_t>(p, 0);
  EXPECT_THROW_THAT(read(checkpoint_file(p)), DataError, HasSubstr("more than 2^64"));
  // The largest widths a file can state.
  const std::int64_t big = std::numeric_limits<std::int64_t>::max();
  p = model_payload(big, big, 0, 0);
  put_le<std::uint8_t>(p, 0);
  put_le<std::uint32_t>(p, 0);
  EXPECT_THROW_THAT(read(checkpoint_file(p)), DataError, HasSubstr("more than 2^64"));
}

TEST_F(CheckpointSizes, HugeLayerAndMetadataCountsAreADataError) {
  std::string p;
  put_le<std::uint32_t>(p, 999999);
  put_le<std::int64_t>(p, 2);
  EXPECT_THROW_THAT(read(checkpoint_file(p)), DataError, HasSubstr("layer count 999999"));
  p = model_payload(2, 1, 3, 3);
  put_le<std::uint8_t>(p, 0);
  put_le<std::uint32_t>(p, 0xffffffffu);
  EXPECT_THROW_THAT(read(checkpoint_file(p)), DataError, HasSubstr("metadata count 4294967295"));
  p = model_payload(2, 1, 3, 3);
  put_le<std::uint8_t>(p, 0);
  put_le<std::uint32_t>(p, 1);
  put_le<std::uint32_t>(p, 0xfffffff0u);  // a key length far past the end
  put_le<std::uint32_t>(p, 0);
  EXPECT_THROW_THAT(read(checkpoint_file(p)), DataError, HasSubstr("metadata key"));
}

// ---------------------------------------------------------------- found by the fuzz targets
// (tools/fuzz.sh). Each input is the one the fuzzer found, less its harness mode byte. Memory
// errors and undefined behaviour among them fail here only in a DESCENT_SANITIZE=ON build.

// fuzz_checkpoint: an optimizer without momentum stores an empty float array, which was copied
// with memcpy from a null pointer (undefined even for 0 bytes).
TEST_F(CheckpointSizes, FuzzEmptyMomentumArrayIsRead) {
  std::string p = model_payload(2, 1, 3, 3);
  put_le<std::uint8_t>(p, 1);
  for (float v : {0.1f, 0.0f, 0.0f, 0.0f}) put_le<float>(p, v);  // lr, momentum, ...
  put_le<std::uint8_t>(p, 0);
  put_le<std::uint8_t>(p, 0);
  put_le<std::uint32_t>(p, 0);  // constant schedule
  put_le<std::int64_t>(p, 1);
  put_le<float>(p, 1.0f);
  put_le<std::int64_t>(p, 1);
  put_le<float>(p, 0.0f);
  put_le<std::int64_t>(p, 7);   // steps
  put_le<std::uint64_t>(p, 0);  // an empty momentum array
  put_le<std::uint32_t>(p, 0);
  const Checkpoint c = read(checkpoint_file(p));
  EXPECT_TRUE(c.has_optimizer);
  EXPECT_TRUE(c.momentum.empty());
  EXPECT_EQ(c.steps, 7);
}

}  // namespace
}  // namespace descent::test
