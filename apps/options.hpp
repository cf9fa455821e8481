// Command-line parsing of the descent command on CLI11: every option has a type, a documented
// range shown in --help and a message for each mistake; a value is never taken from the next
// option, and an empty value is refused.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace descent::app {

// A command-line mistake: reported with the usage hint and exit status 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The interval a real-valued option must lie in; always finite.
struct NumberRange {
  double lo = -std::numeric_limits<double>::infinity();
  bool lo_open = false;
  double hi = std::numeric_limits<double>::infinity();
  bool hi_open = false;
};

// What the command declares about one option: enough for a test to try every hostile value of
// its kind (tests/cli/option_table.cpp), so a new option gets that coverage by being declared.
struct OptionSpec {
  enum class Kind { text, input, output, choice, integer, number, flag };
  std::string name;   // without "--"
  std::string group;  // the heading --help lists it under
  Kind kind = Kind::text;
  NumberRange range;                 // number
  std::int64_t lo = 0, hi = 0;       // integer
  std::vector<std::string> choices;  // choice
};

// The options of one command. Each adder binds a variable whose value at that time is the default
// shown in --help; parse() overwrites it when the option is given (the last one wins when an
// option is given twice). --help lists the options under the headings given by group(), in the
// order declared, wrapped to 80 columns.
class Parser {
 public:
  Parser(std::string command, std::string summary);

  // The options declared from now on are listed under `heading` ("data", "optimizer").
  void group(const std::string& heading);

  // Free text (never empty).
  void text(const std::string& name, std::string& out, const std::string& placeholder,
            const std::string& help);
  // A path the command reads, or one it writes (never empty).
  void input(const std::string& name, std::string& out, const std::string& placeholder,
             const std::string& help);
  void output(const std::string& name, std::string& out, const std::string& help);
  // One of `choices`.
  void choice(const std::string& name, std::string& out, const std::vector<std::string>& choices,
              const std::string& help);
  // An integer in [lo, hi].
  void integer(const std::string& name, std::int64_t& out, std::int64_t lo, std::int64_t hi,
               const std::string& help);
  // A finite number in `range`. `shown_default` replaces the default --help shows (out's value)
  // when the default depends on another option ("0.05 for sgd, 0.001 for adam and adamw").
  void number(const std::string& name, double& out, NumberRange range, const std::string& help,
              const std::string& shown_default = "");
  void flag(const std::string& name, bool& out, const std::string& help);

  // Parses argv[2..argc) (argv[1] is the command); throws UsageError. Returns false when --help
  // was asked for (the help text is then printed to stdout).
  bool parse(int argc, char** argv);
  // Whether the option (without "--") was given on the command line.
  bool given(const std::string& name) const;
  std::string help() const;
  // The value of the last --name VALUE (or --name=VALUE) in argv[2..argc), "" when there is none:
  // for what --help shows before the options are parsed.
  static std::string peek(int argc, char** argv, const std::string& name);
  // Every option declared, in the order declared.
  const std::vector<OptionSpec>& table() const { return table_; }

 private:
  CLI::Option* add(const std::string& name, const std::string& placeholder, const std::string& help,
                   std::function<void(const std::string&)> store);
  // One line of --help: "--name PLACEHOLDER" and what it does, under a heading.
  struct HelpEntry {
    std::string group, usage, text;
  };
  std::string command_, summary_, group_ = "options";
  std::vector<HelpEntry> help_;
  CLI::App app_;
  std::set<std::string> with_value_;  // "--name" of every option that takes a value
  std::vector<OptionSpec> table_;
};

// The value `text` (parsed as x) of `option` as the float descent will compute with: a
// UsageError naming the option when x is outside r, or its float overflows, underflows to 0 (or
// below the normal range) or rounds onto an open bound of r (0.99999999 -> 1 for a momentum).
double checked_float(const std::string& option, const std::string& text, double x,
                     const NumberRange& r);

// "N >= 1", "0 <= N <= 8": how --help and the messages state an integer range.
std::string range_text(std::int64_t lo, std::int64_t hi, const std::string& placeholder = "N");

// `text` in lines of at most `width` columns, each but the first after `indent` spaces (the
// first starts at column `indent` too when `first_indent`); words longer than a line are kept
// whole. Every line ends with a newline.
std::string wrap_text(const std::string& text, std::size_t indent, std::size_t width = 80,
                      bool first_indent = true);

// Parses "W1,W2,..." (or "none": an empty list) for `option`; each must lie in [lo, hi].
// `item` names one entry in messages ("width").
std::vector<std::int64_t> parse_integer_list(const std::string& option, const std::string& text,
                                             std::int64_t lo, std::int64_t hi,
                                             const std::string& item = "value");

}  // namespace descent::app
