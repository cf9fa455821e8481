// The frame of descent's binary files (framed_file.hpp): its CRC-32 and the checks a read makes
// before any of the payload is trusted.
#include "framed_file.hpp"

#include <zlib.h>

#include <algorithm>
#include <new>

#include "input_file.hpp"

namespace descent::detail {

std::uint32_t crc_of(const char* data, std::size_t n) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (n > 0) {
    const auto chunk = static_cast<uInt>(std::min<std::size_t>(n, 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(data), chunk);
    data += chunk;
    n -= chunk;
  }
  return static_cast<std::uint32_t>(crc);
}

Frame read_frame(const std::string& path, const char (&magic)[8], std::uint32_t newest,
                 std::uint64_t max_bytes, const std::string& kind, const std::string& noun,
                 const char* limit, const char* op) {
  // The file's size bounds everything read from it: a regular file only, read whole.
  InputFile file(path, op);
  Frame f;
  std::string& bytes = f.bytes;
  try {
    bytes = file.read_all(max_bytes, limit);
  } catch (const std::bad_alloc&) {
    throw OutOfMemory(std::string(op) + ": cannot hold the " + std::to_string(file.size()) +
                      " bytes of " + noun + " '" + path + "' in host memory");
  }
  const std::string where = noun + " '" + path + "'";
  if (bytes.size() < sizeof magic || std::memcmp(bytes.data(), magic, sizeof magic) != 0) {
    throw DataError(where + ": not a " + kind + " (the file does not start with \"" +
                    std::string(magic, sizeof magic) + "\")");
  }
  if (bytes.size() < kFrameHeaderBytes + kFrameCrcBytes) {
    throw DataError(where + ": truncated: " + std::to_string(bytes.size()) +
                    " bytes is shorter than the header and checksum");
  }
  std::uint32_t stored_crc = 0;
  std::uint64_t payload = 0;
  std::memcpy(&f.version, bytes.data() + 8, 4);
  std::memcpy(&payload, bytes.data() + 12, 8);
  std::memcpy(&stored_crc, bytes.data() + bytes.size() - kFrameCrcBytes, 4);
  const std::uint32_t crc = crc_of(bytes.data(), bytes.size() - kFrameCrcBytes);
  if (f.version > newest || f.version == 0) {
    throw DataError(where + ": format version " + std::to_string(f.version) + " is " +
                    (f.version == 0 ? "invalid" : "newer than the versions this descent reads") +
                    " (1 .. " + std::to_string(newest) + ")" +
                    (crc == stored_crc
                         ? "; update descent to read it"
                         : ", and the checksum does not match: the file may be corrupt"));
  }
  if (crc != stored_crc) {
    throw DataError(where + ": checksum mismatch: the file is corrupt (CRC-32 stored " +
                    std::to_string(stored_crc) + ", computed " + std::to_string(crc) + ")");
  }
  if (payload != bytes.size() - kFrameHeaderBytes - kFrameCrcBytes) {
    throw DataError(where + ": the header gives a payload of " + std::to_string(payload) +
                    " bytes but the file holds " +
                    std::to_string(bytes.size() - kFrameHeaderBytes - kFrameCrcBytes));
  }
  f.begin = kFrameHeaderBytes;
  f.end = bytes.size() - kFrameCrcBytes;
  return f;
}

}  // namespace descent::detail
