// libFuzzer target for read_safetensors and load_safetensors.
//
// Input: one mode byte, then the file. Mode bit 0 makes the harness write the 8-byte header
// length so that the header ends at the file's last '}' before the data, so that mutations
// reach the JSON parser and the tensor checks instead of stopping at the length; without it the
// length itself is fuzzed. Mode bit 1 passes tanh as the hidden activation (a file without
// "descent.activations").
#include <cstdint>
#include <cstring>
#include <string>

#include "descent/context.hpp"
#include "descent/error.hpp"
#include "descent/safetensors.hpp"
#include "scratch_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static descent::fuzz::ScratchFile file("safetensors");
  static const descent::Context ctx;
  if (size < 1) return 0;
  std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  if ((data[0] & 1) != 0 && bytes.size() >= 8) {
    const std::size_t brace = bytes.find_last_of('}');
    if (brace != std::string::npos && brace >= 8) {
      const std::uint64_t n = brace + 1 - 8;
      std::memcpy(bytes.data(), &n, sizeof n);  // little-endian, as the format and x86 are
    }
  }
  const std::string& path = file.write(bytes);
  try {
    const descent::SafetensorsModel m = (data[0] & 2) != 0
                                            ? descent::read_safetensors(path, descent::Activation::tanh)
                                            : descent::read_safetensors(path);
    descent::Mlp model = descent::load_safetensors(ctx, path, {}, m.activations);
    descent::load_safetensors_into(model, path);
  } catch (const descent::Error&) {
    // The expected answer to a malformed file; anything else escapes and libFuzzer reports it.
  }
  return 0;
}
