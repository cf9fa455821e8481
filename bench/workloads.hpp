// bench/workloads.json, read with nlohmann::json (Debian's nlohmann-json3-dev, MIT): the
// benchmarks' workloads, shared with the PyTorch peer (bench/peers/torch_peer.py).
#pragma once

#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace descent::bench {

// The parsed file; std::runtime_error naming the file when it cannot be read or parsed.
inline nlohmann::json read_workloads(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("workloads: cannot open " + path);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("workloads: " + path + ": " + e.what());
  }
}

}  // namespace descent::bench
