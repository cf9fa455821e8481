// Command-line parsing for the descent command.
#include "options.hpp"

#include <charconv>
#include <cmath>
#include <sstream>

namespace descent::app {

Options::Options(std::string command, std::string summary, std::vector<OptionSpec> specs)
    : command_(std::move(command)), summary_(std::move(summary)), specs_(std::move(specs)) {}

const OptionSpec& Options::spec(const std::string& name) const {
  for (const OptionSpec& s : specs_) {
    if (s.name == name) return s;
  }
  throw UsageError("unknown option --" + name + " for 'descent " + command_ + "'");
}

bool Options::parse(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") return false;
    if (arg.rfind("--", 0) != 0) {
      throw UsageError("unexpected argument '" + arg + "' (options start with --)");
    }
    std::string name = arg.substr(2), value;
    bool has_value = false;
    if (const std::size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      has_value = true;
    }
    const OptionSpec& s = spec(name);
    if (s.value.empty()) {
      if (has_value) throw UsageError("option --" + name + " takes no value");
      value.assign(1, '1');
    } else if (!has_value) {
      if (i + 1 >= argc) throw UsageError("option --" + name + " needs a value (" + s.value + ")");
      value.assign(argv[++i]);
    }
    values_[name] = value;
  }
  return true;
}

std::string Options::help() const {
  std::ostringstream os;
  os << "usage: descent " << command_ << " [options]\n\n" << summary_ << "\n\noptions:\n";
  for (const OptionSpec& s : specs_) {
    std::string left("  --");
    left.append(s.name);
    if (!s.value.empty()) {
      left.push_back(' ');
      left.append(s.value);
    }
    if (left.size() < 30) {
      left.resize(30, ' ');
    } else {
      left.push_back('\n');
      left.append(30, ' ');
    }
    os << left << s.help;
    if (!s.fallback.empty()) os << " (default: " << s.fallback << ")";
    os << "\n";
  }
  os << "  --help                      this text\n";
  return os.str();
}

bool Options::given(const std::string& name) const {
  spec(name);
  return values_.count(name) > 0;
}

bool Options::flag(const std::string& name) const { return given(name); }

std::string Options::str(const std::string& name) const {
  const OptionSpec& s = spec(name);
  const auto it = values_.find(name);
  return it != values_.end() ? it->second : s.fallback;
}

std::int64_t Options::integer(const std::string& name) const {
  const std::string text = str(name);
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) {
    throw UsageError("--" + name + ": expected an integer, got '" + text + "'");
  }
  return v;
}

double Options::number(const std::string& name) const {
  const std::string text = str(name);
  double v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) {
    throw UsageError("--" + name + ": expected a number, got '" + text + "'");
  }
  return v;
}

std::vector<std::int64_t> Options::integers(const std::string& name) const {
  const std::string text = str(name);
  std::vector<std::int64_t> out;
  if (text.empty() || text == "none") return out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = text.find(',', start);
    const std::string part =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    std::int64_t v = 0;
    const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    if (part.empty() || ec != std::errc() || end != part.data() + part.size()) {
      throw UsageError("--" + name + ": expected comma-separated integers, got '" + text + "'");
    }
    out.push_back(v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace descent::app
