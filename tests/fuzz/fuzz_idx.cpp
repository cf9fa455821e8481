// libFuzzer target for load_idx (IDX images + labels, raw or gzip).
//
// Input: one mode byte, the images file, then the labels file, which starts at the last
// occurrence of the label magic 00 00 08 01. Mode bit 0 (bit 1) gzips the images (labels) in the
// harness, so that valid gzip streams of mutated IDX data are explored as well as mutated gzip.
#include <zlib.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "descent/data.hpp"
#include "descent/error.hpp"
#include "scratch_file.hpp"

namespace {

std::string gzip(std::string_view raw) {
  std::string out;
  z_stream z{};
  if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return out;
  out.resize(deflateBound(&z, raw.size()) + 32);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(out.size() - z.avail_out);
  deflateEnd(&z);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static descent::fuzz::ScratchFile images("idx-images"), labels("idx-labels");
  if (size < 1) return 0;
  const std::uint8_t mode = data[0];
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::size_t split = rest.rfind(std::string_view("\0\0\x08\x01", 4));
  std::string_view image_bytes = rest, label_bytes;
  if (split != std::string_view::npos) {
    image_bytes = rest.substr(0, split);
    label_bytes = rest.substr(split);
  }
  const std::string& image_path =
      images.write((mode & 1) != 0 ? gzip(image_bytes) : std::string(image_bytes));
  const std::string& label_path =
      labels.write((mode & 2) != 0 ? gzip(label_bytes) : std::string(label_bytes));
  descent::IdxOptions options;
  options.limit = (mode & 4) != 0 ? 3 : 0;
  options.classes = (mode & 8) != 0 ? 10 : 0;
  try {
    const descent::Dataset d = descent::load_idx(image_path, label_path, options);
    (void)d.feature_stats();
  } catch (const descent::Error&) {
    // A descent error is the expected answer to a malformed file; anything else escapes and
    // libFuzzer reports it.
  }
  return 0;
}
