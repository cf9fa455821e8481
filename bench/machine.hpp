// What machine a benchmark ran on, for its report.
#pragma once

#include <fstream>
#include <string>

namespace descent::bench {

// The CPU's model name from /proc/cpuinfo ("unknown CPU" elsewhere).
inline std::string cpu_model_name() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      std::string name = line.substr(line.find(':') + 1);
      name.erase(0, name.find_first_not_of(" \t"));
      return name;
    }
  }
  return "unknown CPU";
}

}  // namespace descent::bench
