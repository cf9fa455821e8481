// libFuzzer target for read_checkpoint, and make_model on what it accepts.
//
// Input: one mode byte, then the file. Mode bit 0 makes the harness write the true payload size
// and CRC-32 into the file, so that mutations reach the field parser instead of stopping at the
// checksum; without it the header and checksum checks themselves are fuzzed.
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "descent/checkpoint.hpp"
#include "descent/context.hpp"
#include "descent/error.hpp"
#include "scratch_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static descent::fuzz::ScratchFile file("checkpoint");
  static const descent::Context ctx;
  if (size < 1) return 0;
  std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  constexpr std::size_t kHeader = 8 + 4 + 8, kCrc = 4;
  if ((data[0] & 1) != 0 && bytes.size() >= kHeader + kCrc) {
    const std::uint64_t payload = bytes.size() - kHeader - kCrc;
    std::memcpy(bytes.data() + 12, &payload, sizeof payload);
    const auto crc = static_cast<std::uint32_t>(crc32(
        0, reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(bytes.size() - kCrc)));
    std::memcpy(bytes.data() + bytes.size() - kCrc, &crc, sizeof crc);
  }
  const std::string& path = file.write(bytes);
  try {
    const descent::Checkpoint c = descent::read_checkpoint(path);
    descent::Mlp model = descent::make_model(ctx, c);
    descent::restore(c, model);
  } catch (const descent::Error&) {
    // The expected answer to a malformed file; anything else escapes and libFuzzer reports it.
  }
  return 0;
}
