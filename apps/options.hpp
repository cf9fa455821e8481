// Hand-written command-line parsing for the descent command: --name value, --name=value, flags.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace descent::app {

// A command-line mistake: reported with the usage hint and exit status 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct OptionSpec {
  std::string name;   // without the leading "--"
  std::string value;  // placeholder shown in --help ("" for a flag)
  std::string fallback;
  std::string help;
};

class Options {
 public:
  Options(std::string command, std::string summary, std::vector<OptionSpec> specs);
  // Parses argv[first..argc); throws UsageError. Returns false when --help was asked for.
  bool parse(int argc, char** argv, int first);
  std::string help() const;

  bool given(const std::string& name) const;
  bool flag(const std::string& name) const;
  std::string str(const std::string& name) const;
  std::int64_t integer(const std::string& name) const;
  double number(const std::string& name) const;
  std::vector<std::int64_t> integers(const std::string& name) const;

 private:
  const OptionSpec& spec(const std::string& name) const;
  std::string command_, summary_;
  std::vector<OptionSpec> specs_;
  std::map<std::string, std::string> values_;
};

}  // namespace descent::app
