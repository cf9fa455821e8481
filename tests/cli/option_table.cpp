// Generated hostile-input tests over the descent command's option tables: every option a command
// declares (apps/options.hpp, OptionSpec) is tried with every hostile value of its kind, so a new
// option gets this coverage by being declared, not by someone remembering.
//  - numbers: NaN, +-inf, empty, out of a double's range, overflow and underflow as a float,
//    values that round onto an open bound as a float, values just outside the range;
//  - integers: empty, NaN, fractions, overflow, just outside the range;
//  - choices: empty, an unknown word;
//  - outputs: a folder, a read-only place, a FIFO (written through, left a FIFO), another output
//    of the same command, every input;
//  - inputs: a folder, a missing file.
// Each refused value must end the command with status 2 (a usage mistake) or 1 (a file that
// cannot be used), never a crash or a hang, with a message naming the option, and leave every
// file it was pointed at as it was.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "commands.hpp"
#include "descent/descent.hpp"
#include "descent/output.hpp"

namespace descent::app {
namespace {

namespace fs = std::filesystem;

struct Result {
  int status = -1;  // exit status; -1 when ended by a signal (a crash) or the timeout
  std::string out;  // stdout and stderr together
};

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

class OptionTable : public ::testing::Test {
 protected:
  fs::path dir;
  std::string cli = std::getenv("DESCENT_CLI") ? std::getenv("DESCENT_CLI") : "";

  void SetUp() override {
    if (cli.empty()) GTEST_SKIP() << "DESCENT_CLI (the descent command) is not set";
    char tmpl[] = "/tmp/descent-options.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
    make_data();
  }
  void TearDown() override {
    if (!dir.empty()) fs::remove_all(dir);
  }

  std::string at(const std::string& name) const { return (dir / name).string(); }

  // A small IDX set (3 classes of 4x4 images), a checkpoint to evaluate and resume from.
  void make_data() {
    const auto be32 = [](std::string& s, std::uint32_t v) {
      for (int shift = 24; shift >= 0; shift -= 8) s += static_cast<char>((v >> shift) & 0xff);
    };
    for (const char* set : {"train", "test"}) {
      const std::uint32_t n = 60;
      std::string images, labels;
      be32(images, 0x803);
      be32(images, n);
      be32(images, 4);
      be32(images, 4);
      be32(labels, 0x801);
      be32(labels, n);
      for (std::uint32_t i = 0; i < n; ++i) {
        labels += static_cast<char>(i % 3);
        for (int p = 0; p < 16; ++p) images += static_cast<char>((i % 3) * 80 + p * 3 + i % 7);
      }
      write_file(at(std::string(set) + "-images"), images);
      write_file(at(std::string(set) + "-labels"), labels);
    }
    const Result r = run("train " + base() + " --epochs 1 --checkpoint " + quote(at("model.ckpt")));
    ASSERT_EQ(r.status, 0) << r.out;
    const Result e = run("export --model " + quote(at("model.ckpt")) + " --safetensors " +
                         quote(at("model.safetensors")));
    ASSERT_EQ(e.status, 0) << e.out;
  }

  bool without_data_ = false;  // base() without the data paths (trying --data)

  // Valid options for a run of milliseconds, for the command under test.
  std::string base(const std::string& command = "train") const {
    // export and import run on the cpu alone: a model in, files out.
    if (command == "export") {
      return " --model " + quote(at("model.ckpt")) + " --safetensors " +
             quote(at("exported.safetensors"));
    }
    if (command == "import") {
      return " --safetensors " + quote(at("model.safetensors")) + " --checkpoint " +
             quote(at("imported.ckpt"));
    }
    std::string s = " --device cpu --threads 1";
    if (command == "predict") {
      return s + " --model " + quote(at("model.ckpt")) + " --images " + quote(at("test-images")) +
             " --output " + quote(at("predicted.csv"));
    }
    if (!without_data_) {
      s += " --test-images " + quote(at("test-images")) + " --test-labels " +
           quote(at("test-labels"));
    }
    if (command == "train") {
      if (!without_data_) {
        s += " --train-images " + quote(at("train-images")) + " --train-labels " +
             quote(at("train-labels"));
      }
      s += " --hidden 8 --batch 20 --epochs 1 --no-progress";
    } else {
      s += " --model " + quote(at("model.ckpt"));
    }
    return s;
  }

  // The inputs a command reads with base(), as (option, path).
  std::vector<std::pair<std::string, std::string>> inputs(const std::string& command) const {
    if (command == "export") return {{"model", at("model.ckpt")}};
    if (command == "import") return {{"safetensors", at("model.safetensors")}};
    if (command == "predict") return {{"model", at("model.ckpt")}, {"images", at("test-images")}};
    std::vector<std::pair<std::string, std::string>> v = {{"test-images", at("test-images")},
                                                          {"test-labels", at("test-labels")}};
    if (command == "train") {
      v.emplace_back("train-images", at("train-images"));
      v.emplace_back("train-labels", at("train-labels"));
    } else {
      v.emplace_back("model", at("model.ckpt"));
    }
    return v;
  }

  // Runs `descent <args>` with a time limit: a hang is a failure too.
  Result run(const std::string& args) const {
    const std::string log = at("output.txt");
    const std::string cmd = "cd " + quote(dir.string()) + " && timeout -s KILL 60 " + quote(cli) +
                            " " + args + " > " + quote(log) + " 2>&1";
    const int raw = std::system(cmd.c_str());
    Result r;
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    if (r.status == 137 || r.status > 128) r.status = -1;  // killed: the timeout or a crash
    r.out = read_file(log);
    return r;
  }

  // `descent <command> <base> --<option> <value>` must be refused naming the option, and leave
  // the files of base() as they were.
  void expect_refused(const std::string& command, const OptionSpec& o, const std::string& value,
                      const std::string& why) {
    std::vector<std::string> before;
    for (const auto& [name, path] : inputs(command)) before.push_back(read_file(path));
    const Result r = run(command + base(command) + " --" + o.name + " " + quote(value));
    EXPECT_TRUE(r.status == 2 || r.status == 1) << command << " --" << o.name << " " << quote(value)
                                                << " (" << why << "): status " << r.status << "\n"
                                                << r.out;
    EXPECT_NE(r.out.find("--" + o.name), std::string::npos)
        << command << " --" << o.name << " " << quote(value) << " (" << why
        << "): the message does not name the option:\n"
        << r.out;
    std::size_t i = 0;
    for (const auto& [name, path] : inputs(command)) {
      EXPECT_EQ(read_file(path), before[i++])
          << command << " --" << o.name << " " << quote(value) << " changed the input --" << name;
    }
  }

  void numbers(const std::string& command, const OptionSpec& o) {
    const NumberRange& r = o.range;
    std::vector<std::pair<std::string, std::string>> values = {{"nan", "NaN"},
                                                               {"NaN", "NaN"},
                                                               {"inf", "infinity"},
                                                               {"-inf", "-infinity"},
                                                               {"", "empty"},
                                                               {"1e999", "beyond a double"},
                                                               {"-1e999", "beyond a double"},
                                                               {"1e-999", "below a double"},
                                                               {"3.5e38", "a float overflows"},
                                                               {"1e-50", "a float underflows to 0"},
                                                               {"1e-40", "a subnormal float"},
                                                               {"0x1p3", "hex"},
                                                               {"1,5", "a comma"},
                                                               {"abc", "a word"}};
    char text[64];
    if (std::isfinite(r.hi)) {
      std::snprintf(text, sizeof text, "%.17g", r.hi + std::max(std::fabs(r.hi), 1.0) * 1e-3);
      values.emplace_back(text, "above the range");
      if (r.hi_open) {
        std::snprintf(text, sizeof text, "%.12g", r.hi - std::max(std::fabs(r.hi), 1.0) * 1e-10);
        values.emplace_back(text, "rounds onto the open upper bound as a float");
      }
    }
    if (std::isfinite(r.lo)) {
      std::snprintf(text, sizeof text, "%.17g", r.lo - std::max(std::fabs(r.lo), 1.0) * 1e-3);
      values.emplace_back(text, "below the range");
      if (r.lo_open && r.lo != 0) {
        std::snprintf(text, sizeof text, "%.12g", r.lo + std::max(std::fabs(r.lo), 1.0) * 1e-10);
        values.emplace_back(text, "rounds onto the open lower bound as a float");
      }
    }
    for (const auto& [value, why] : values) expect_refused(command, o, value, why);
  }

  void integers(const std::string& command, const OptionSpec& o) {
    std::vector<std::pair<std::string, std::string>> values = {
        {"", "empty"},
        {"nan", "NaN"},
        {"1.5", "a fraction"},
        {"1e3", "an exponent"},
        {"99999999999999999999", "beyond 64 bits"},
        {"-99999999999999999999", "beyond 64 bits"},
        {"12abc", "trailing letters"}};
    if (o.lo > std::numeric_limits<std::int64_t>::min()) {
      values.emplace_back(std::to_string(o.lo - 1), "below the range");
    }
    if (o.hi < std::numeric_limits<std::int64_t>::max()) {
      values.emplace_back(std::to_string(o.hi + 1), "above the range");
    }
    for (const auto& [value, why] : values) expect_refused(command, o, value, why);
  }

  void outputs(const std::string& command, const OptionSpec& o,
               const std::vector<OptionSpec>& table) {
    fs::create_directories(dir / "a-folder");
    expect_refused(command, o, at("a-folder"), "a folder");
    EXPECT_TRUE(fs::is_directory(dir / "a-folder"));
    expect_refused(command, o, at("a-folder") + "/", "a trailing slash");
    expect_refused(command, o, "/proc/descent-no-such-place/out", "a read-only place");
    expect_refused(command, o, at("no/such/folder/out"), "a missing folder");
    for (const auto& [name, path] : inputs(command)) {
      expect_refused(command, o, path, "the input --" + name);
    }
    for (const OptionSpec& other : table) {
      if (other.kind != OptionSpec::Kind::output || other.name == o.name) continue;
      const std::string same = at("same-output");
      const Result r = run(command + base(command) + " --" + other.name + " " + quote(same) +
                           " --" + o.name + " " + quote(same));
      EXPECT_TRUE(r.status == 2 || r.status == 1)
          << "--" << o.name << " and --" << other.name << " one file: status " << r.status << "\n"
          << r.out;
      EXPECT_FALSE(fs::exists(same)) << "--" << o.name << " and --" << other.name << " one file";
    }
    // A FIFO is written through (read here while the command runs) and stays a FIFO.
    const std::string fifo = at("a-fifo");
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    std::atomic<bool> done{false};
    std::string got;
    std::thread reader([&] {
      const int fd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
      if (fd < 0) return;
      char buf[65536];
      for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n > 0) {
          got.append(buf, static_cast<std::size_t>(n));
        } else if (done) {
          break;
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
      }
      ::close(fd);
    });
    const Result r = run(command + base(command) + " --" + o.name + " " + quote(fifo));
    done = true;
    reader.join();
    EXPECT_EQ(r.status, 0) << "--" << o.name << " a FIFO:\n" << r.out;
    EXPECT_FALSE(got.empty()) << "--" << o.name << " a FIFO: nothing came through";
    struct stat st {};
    EXPECT_EQ(::lstat(fifo.c_str(), &st), 0);
    EXPECT_TRUE(S_ISFIFO(st.st_mode)) << "--" << o.name << " replaced the FIFO";
    fs::remove(fifo);
  }

  // `least`: the options the command has at least (a table that shrinks is a mistake).
  void check_command(const std::string& command, const std::vector<OptionSpec>& table,
                     int least = 11) {
    ASSERT_FALSE(table.empty());
    int tried = 0;
    for (const OptionSpec& o : table) {
      SCOPED_TRACE(command + " --" + o.name);
      switch (o.kind) {
        case OptionSpec::Kind::number:
          numbers(command, o);
          break;
        case OptionSpec::Kind::integer:
          integers(command, o);
          break;
        case OptionSpec::Kind::choice:
          expect_refused(command, o, "", "empty");
          expect_refused(command, o, "no-such-choice", "an unknown word");
          break;
        case OptionSpec::Kind::output:
          outputs(command, o, table);
          break;
        case OptionSpec::Kind::input:
          fs::create_directories(dir / "a-folder");
          // --data is a folder, and the explicit paths of base() override it: tried alone.
          without_data_ = o.name == "data";
          expect_refused(command, o, at(o.name == "data" ? "train-images" : "a-folder"),
                         o.name == "data" ? "a file, not a folder" : "a folder");
          expect_refused(command, o, at("missing-file"), "a missing file");
          expect_refused(command, o, "", "empty");
          without_data_ = false;
          break;
        case OptionSpec::Kind::text:
          expect_refused(command, o, "", "empty");
          break;
        case OptionSpec::Kind::flag:
          continue;
      }
      ++tried;
    }
    EXPECT_GE(tried, least) << command << ": too few options in the table";
  }
};

// --help is made from the same table: every option declared is listed once, under the heading
// of its group, and nothing is listed that the table lacks.
TEST_F(OptionTable, HelpListsEveryOptionOnceUnderItsHeading) {
  const std::pair<const char*, std::vector<OptionSpec>> commands[] = {
      {"train", train_option_table()},
      {"eval", eval_option_table()},
      {"export", export_option_table()},
      {"import", import_option_table()},
      {"predict", predict_option_table()}};
  for (const auto& [command, table] : commands) {
    SCOPED_TRACE(command);
    const Result r = run(std::string(command) + " --help");
    ASSERT_EQ(r.status, 0) << r.out;
    const std::string& help = r.out;
    for (const OptionSpec& o : table) {
      SCOPED_TRACE("--" + o.name);
      ASSERT_FALSE(o.group.empty());
      const std::string line = "\n  --" + o.name;
      const std::size_t at = help.find(line + " ") != std::string::npos ? help.find(line + " ")
                                                                        : help.find(line + "\n");
      ASSERT_NE(at, std::string::npos) << help;
      EXPECT_EQ(help.find(line + " ", at + 1), std::string::npos) << "listed twice";
      // The nearest heading above it is its group's.
      const std::size_t heading = help.rfind("\n\n", at);
      ASSERT_NE(heading, std::string::npos);
      EXPECT_EQ(help.substr(heading + 2, o.group.size() + 2), o.group + ":\n");
    }
    std::size_t listed = 0;
    for (std::size_t at = help.find("\n  --"); at != std::string::npos;
         at = help.find("\n  --", at + 1)) {
      ++listed;
    }
    EXPECT_EQ(listed, table.size()) << help;
  }
}

TEST_F(OptionTable, EveryTrainOptionRefusesHostileValues) {
  check_command("train", train_option_table());
}

TEST_F(OptionTable, EveryEvalOptionRefusesHostileValues) {
  check_command("eval", eval_option_table());
}

TEST_F(OptionTable, EveryExportOptionRefusesHostileValues) {
  check_command("export", export_option_table(), 5);
}

TEST_F(OptionTable, EveryImportOptionRefusesHostileValues) {
  check_command("import", import_option_table(), 3);
}

TEST_F(OptionTable, EveryPredictOptionRefusesHostileValues) {
  check_command("predict", predict_option_table(), 9);
}

}  // namespace
}  // namespace descent::app
