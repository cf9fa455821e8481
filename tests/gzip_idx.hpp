// Gzip streams made in pieces, and the GzipIdx fixture (an IDX pair whose images are written by
// each test): the hostile gzip inputs of tests/hostile/test_readers.cpp and the bomb of
// tests/slow/test_gzip_bomb.cpp.
#pragma once

#include <zlib.h>

#include <algorithm>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "train_support.hpp"

namespace descent::test {

// A gzip stream of `bytes` followed by `zeros` zero bytes, compressed in pieces so that a large
// bomb never has to exist uncompressed.
inline std::string gzip_of(const std::string& bytes, std::size_t zeros = 0) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out;
  std::vector<unsigned char> buf(1 << 16);
  const auto pump = [&](const char* data, std::size_t n, int flush) {
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data));
    z.avail_in = static_cast<uInt>(n);
    do {
      z.next_out = buf.data();
      z.avail_out = static_cast<uInt>(buf.size());
      deflate(&z, flush);
      out.append(reinterpret_cast<const char*>(buf.data()), buf.size() - z.avail_out);
    } while (z.avail_out == 0);
  };
  pump(bytes.data(), bytes.size(), Z_NO_FLUSH);
  const std::string chunk(1 << 20, '\0');
  for (std::size_t left = zeros; left > 0;) {
    const std::size_t n = std::min(left, chunk.size());
    pump(chunk.data(), n, Z_NO_FLUSH);
    left -= n;
  }
  pump(nullptr, 0, Z_FINISH);
  deflateEnd(&z);
  return out;
}

class GzipIdx : public ::testing::Test {
 protected:
  TempDir dir;
  std::string img = dir / "img.gz";
  std::string lab = dir / "lab.gz";
  std::string pixels = idx_images({1, 2, 3, 4, 5, 6, 7, 8}, 2, 2, 2);
  void SetUp() override { write_bytes(lab, gzip_of(idx_labels({0, 1}))); }
};

}  // namespace descent::test
