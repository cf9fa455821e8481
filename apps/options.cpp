// Command-line parsing of the descent command: CLI11 options with typed values, ranges and
// messages that name the option, the value found and the value expected.
#include "options.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>

namespace descent::app {

namespace {

constexpr std::int64_t kMaxInt = std::numeric_limits<std::int64_t>::max();

std::string num_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string number_range_text(const NumberRange& r) {
  const bool has_lo = std::isfinite(r.lo), has_hi = std::isfinite(r.hi);
  std::string s;
  if (has_lo && has_hi) {
    s = num_text(r.lo) + (r.lo_open ? " < " : " <= ") + "X" + (r.hi_open ? " < " : " <= ") +
        num_text(r.hi);
  } else if (has_lo) {
    s = std::string("X") + (r.lo_open ? " > " : " >= ") + num_text(r.lo);
  } else if (has_hi) {
    s = std::string("X") + (r.hi_open ? " < " : " <= ") + num_text(r.hi);
  } else {
    s = "any X";
  }
  return s;
}

std::string join(const std::vector<std::string>& v, const char* last) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i > 0) s += i + 1 == v.size() ? last : ", ";
    s += v[i];
  }
  return s;
}

// A value starting with "--" (or "-h") right after an option that needs one is the next option,
// not a value: CLI11 2.1 would take it as the value.
bool looks_like_option(const std::string& arg) {
  return (arg.size() > 2 && arg.compare(0, 2, "--") == 0) || arg == "--" || arg == "-h";
}

OptionSpec spec_of(const std::string& name, OptionSpec::Kind kind, const std::string& group) {
  OptionSpec s;
  s.name = name;
  s.group = group;
  s.kind = kind;
  return s;
}

}  // namespace

std::string range_text(std::int64_t lo, std::int64_t hi, const std::string& placeholder) {
  if (hi == kMaxInt) return placeholder + " >= " + std::to_string(lo);
  return std::to_string(lo) + " <= " + placeholder + " <= " + std::to_string(hi);
}

std::vector<std::int64_t> parse_integer_list(const std::string& option, const std::string& text,
                                             std::int64_t lo, std::int64_t hi,
                                             const std::string& item) {
  std::vector<std::int64_t> out;
  if (text == "none") return out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = text.find(',', start);
    const std::string part =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    std::int64_t v = 0;
    const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    const std::string which = "entry " + std::to_string(out.size() + 1) + " of '" + text + "'";
    if (ec == std::errc::result_out_of_range) {
      throw UsageError("--" + option + ": " + which + " is out of range, expected " +
                       range_text(lo, hi, "W"));
    }
    if (part.empty() || ec != std::errc() || end != part.data() + part.size()) {
      throw UsageError("--" + option + ": " + which + " is '" + part +
                       "', expected comma-separated integers (or none)");
    }
    if (v < lo || v > hi) {
      throw UsageError("--" + option + ": " + item + " " + std::to_string(out.size() + 1) +
                       " must be " + range_text(lo, hi, "W").substr(2) + ", got " +
                       std::to_string(v));
    }
    out.push_back(v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::string wrap_text(const std::string& text, std::size_t indent, std::size_t width,
                      bool first_indent) {
  // The words, with a comparison kept on one line with what it compares ("N >= 0").
  std::vector<std::string> words;
  bool glue = false;
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t space = std::min(text.find(' ', start), text.size());
    const std::string word = text.substr(start, space - start);
    start = space + 1;
    if (word.empty()) continue;
    const bool comparison = word == "<" || word == "<=" || word == ">" || word == ">=";
    if ((glue || comparison) && !words.empty()) {
      words.back() += " " + word;
    } else {
      words.push_back(word);
    }
    glue = comparison;
  }
  std::string out, line;
  const std::string pad(indent, ' ');
  const std::size_t room = width > indent ? width - indent : 1;
  bool first = true;
  const auto flush = [&] {
    if (!first || first_indent) out += pad;
    out += line;
    out += '\n';
    line.clear();
    first = false;
  };
  for (const std::string& word : words) {
    if (!line.empty() && line.size() + 1 + word.size() > room) flush();
    if (!line.empty()) line += ' ';
    line += word;
  }
  if (!line.empty() || first) flush();
  return out;
}

Parser::Parser(std::string command, std::string summary)
    : command_(std::move(command)),
      summary_(summary),
      app_(std::move(summary), "descent " + command_) {
  app_.set_help_flag("-h,--help", "print this help and exit");
}

void Parser::group(const std::string& heading) { group_ = heading; }

CLI::Option* Parser::add(const std::string& name, const std::string& placeholder,
                         const std::string& help, std::function<void(const std::string&)> store) {
  const std::string option = "--" + name;
  with_value_.insert(option);
  CLI::Option* o = app_.add_option_function<std::string>(
      option,
      [option, placeholder, store](const std::string& value) {
        if (value.empty()) {
          throw CLI::ValidationError(option, "the value is empty, expected " + placeholder);
        }
        store(value);
      },
      help);
  o->type_name(placeholder)->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  help_.push_back({group_, option + " " + placeholder, help});
  return o;
}

void Parser::text(const std::string& name, std::string& out, const std::string& placeholder,
                  const std::string& help) {
  const std::string shown = out.empty() ? help : help + " (default: " + out + ")";
  add(name, placeholder, shown, [&out](const std::string& v) { out = v; });
  table_.push_back(spec_of(name, OptionSpec::Kind::text, group_));
}

void Parser::input(const std::string& name, std::string& out, const std::string& placeholder,
                   const std::string& help) {
  text(name, out, placeholder, help);
  table_.back().kind = OptionSpec::Kind::input;
}

void Parser::output(const std::string& name, std::string& out, const std::string& help) {
  text(name, out, "PATH", help);
  table_.back().kind = OptionSpec::Kind::output;
}

void Parser::choice(const std::string& name, std::string& out,
                    const std::vector<std::string>& choices, const std::string& help) {
  std::string placeholder;
  for (const std::string& c : choices) placeholder += (placeholder.empty() ? "" : "|") + c;
  const std::string option = "--" + name;
  add(name, placeholder, help + " (default: " + out + ")",
      [&out, choices, option](const std::string& v) {
        for (const std::string& c : choices) {
          if (v == c) {
            out = v;
            return;
          }
        }
        throw CLI::ValidationError(option, "got '" + v + "', expected " + join(choices, " or "));
      });
  table_.push_back(spec_of(name, OptionSpec::Kind::choice, group_));
  table_.back().choices = choices;
}

void Parser::integer(const std::string& name, std::int64_t& out, std::int64_t lo, std::int64_t hi,
                     const std::string& help) {
  const std::string option = "--" + name, range = range_text(lo, hi);
  add(name, "N", help + "; " + range + " (default: " + std::to_string(out) + ")",
      [&out, option, range, lo, hi](const std::string& v) {
        std::int64_t n = 0;
        const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (ec == std::errc::result_out_of_range) {
          throw CLI::ValidationError(option, v + " is out of range, expected an integer " + range);
        }
        if (ec != std::errc() || end != v.data() + v.size()) {
          throw CLI::ValidationError(option, "got '" + v + "', expected an integer " + range);
        }
        if (n < lo || n > hi) {
          throw CLI::ValidationError(option, "got " + v + ", expected an integer " + range);
        }
        out = n;
      });
  table_.push_back(spec_of(name, OptionSpec::Kind::integer, group_));
  table_.back().lo = lo;
  table_.back().hi = hi;
}

void Parser::number(const std::string& name, double& out, NumberRange r, const std::string& help,
                    const std::string& shown_default) {
  const std::string option = "--" + name, range = number_range_text(r);
  add(name, "X",
      help + "; " + range +
          " (default: " + (shown_default.empty() ? num_text(out) : shown_default) + ")",
      [&out, option, range, r](const std::string& v) {
        double x = 0;
        const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
        if (ec == std::errc::result_out_of_range) {  // x is left unchanged (0) then
          throw CLI::ValidationError(option, v +
                                                 " is out of the range of a number (overflow "
                                                 "or underflow), expected a finite number " +
                                                 range);
        }
        if (ec != std::errc() || end != v.data() + v.size()) {
          throw CLI::ValidationError(option, "got '" + v + "', expected a number " + range);
        }
        if (!std::isfinite(x)) {
          throw CLI::ValidationError(option, "got " + v + ", expected a finite number " + range);
        }
        out = checked_float(option, v, x, r);
      });
  table_.push_back(spec_of(name, OptionSpec::Kind::number, group_));
  table_.back().range = r;
}

double checked_float(const std::string& option, const std::string& text, double x,
                     const NumberRange& r) {
  const std::string range = number_range_text(r);
  const auto inside = [&r](double y) {
    return std::isfinite(y) && (r.lo_open ? y > r.lo : y >= r.lo) &&
           (r.hi_open ? y < r.hi : y <= r.hi);
  };
  if (!inside(x)) throw UsageError(option + ": got " + text + ", expected a number " + range);
  // descent computes in single precision: the value that will be used is the float, and that
  // is the one that must lie in the range and keep its meaning.
  const float f = static_cast<float>(x);
  const std::string as_float = "; descent computes in single precision (float)";
  if (!std::isfinite(f)) {
    throw UsageError(option + ": got " + text +
                     ", which overflows to infinity as a float (largest " +
                     num_text(std::numeric_limits<float>::max()) + ")" + as_float);
  }
  if (x != 0 && std::fabs(f) < std::numeric_limits<float>::min()) {
    throw UsageError(
        option + ": got " + text + ", which " +
        (f == 0 ? "underflows to 0" : "is below the normal range") +
        " as a float (smallest normal " + num_text(std::numeric_limits<float>::min()) + ")" +
        as_float +
        (inside(0.0) ? "; give 0 if 0 is meant, or a larger value" : "; give a larger value"));
  }
  if (!inside(f)) {
    char shown[32];
    std::snprintf(shown, sizeof shown, "%.9g", static_cast<double>(f));
    throw UsageError(option + ": got " + text + ", which is " + shown + " as a float, outside " +
                     range + as_float);
  }
  return f;
}

void Parser::flag(const std::string& name, bool& out, const std::string& help) {
  app_.add_flag("--" + name, out, help);
  help_.push_back({group_, "--" + name, help});
  table_.push_back(spec_of(name, OptionSpec::Kind::flag, group_));
}

bool Parser::parse(int argc, char** argv) {
  // --help anywhere wins over every mistake in the other options.
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "-h") == 0 || std::strcmp(argv[i], "--help") == 0) {
      std::cout << help();
      return false;
    }
  }
  // CLI11 2.1 fills a missing value from the next argument even when that is an option
  // ("--checkpoint --epochs 3" would save to "--epochs"); catch that first.
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (const std::size_t eq = arg.find('='); eq != std::string::npos && eq + 1 == arg.size() &&
                                              with_value_.count(arg.substr(0, eq)) > 0) {
      const std::string name = arg.substr(0, eq);
      throw UsageError(name + ": the value is empty, expected " +
                       app_.get_option(name)->get_type_name());
    }
    if (with_value_.count(arg) == 0) continue;
    const std::string placeholder = app_.get_option(arg)->get_type_name();
    if (i + 1 >= argc) {
      throw UsageError(arg + ": the value is missing, expected " + placeholder);
    }
    const std::string next = argv[i + 1];
    if (looks_like_option(next)) {
      throw UsageError(arg + ": the value is missing (found the option '" + next +
                       "' instead), expected " + placeholder +
                       "; a value that begins with '-' "
                       "is written " +
                       arg + "=VALUE");
    }
    ++i;
  }
  try {
    app_.parse(argc - 1, argv + 1);
  } catch (const CLI::CallForHelp&) {
    std::cout << help();
    return false;
  } catch (const CLI::ParseError& e) {
    throw UsageError(e.what());
  }
  return true;
}

bool Parser::given(const std::string& name) const {
  const CLI::Option* o = app_.get_option_no_throw("--" + name);
  return o != nullptr && o->count() > 0;
}

std::string Parser::help() const {
  // Two columns: the option at column 2, what it does from column kText on (on a line of its
  // own when the option is too wide), wrapped to 80 columns.
  constexpr std::size_t kText = 28;
  std::string s = wrap_text(summary_, 0) + "\nusage: descent " + command_ + " [options]\n";
  std::vector<std::string> groups;
  for (const HelpEntry& e : help_) {
    if (std::find(groups.begin(), groups.end(), e.group) == groups.end()) {
      groups.push_back(e.group);
    }
  }
  const auto entry = [&](const std::string& usage, const std::string& text) {
    std::string head = "  " + usage;
    if (head.size() + 2 > kText) {
      s += head + "\n" + wrap_text(text, kText);
    } else {
      head.resize(kText, ' ');
      s += head + wrap_text(text, kText, 80, false);
    }
  };
  for (const std::string& g : groups) {
    s += "\n" + g + ":\n";
    for (const HelpEntry& e : help_) {
      if (e.group == g) entry(e.usage, e.text);
    }
  }
  s += "\n";
  entry("-h, --help", "print this help and exit");
  return s;
}

std::string Parser::peek(int argc, char** argv, const std::string& name) {
  const std::string option = "--" + name, with_equals = option + "=";
  std::string value;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == option && i + 1 < argc) {
      value = argv[++i];
    } else if (arg.compare(0, with_equals.size(), with_equals) == 0) {
      value = arg.substr(with_equals.size());
    }
  }
  return value;
}

}  // namespace descent::app
