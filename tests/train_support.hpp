// Test helpers of the training API tests: a scratch folder, IDX/gzip/CSV writers, synthetic
// datasets and a runner for the descent command.
#pragma once

#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "descent/descent.hpp"
#include "test_support.hpp"

namespace descent::test {

// A fresh folder under the system temp folder, removed with everything in it at the end.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "descent-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all, ec);
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline void write_gzip(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
}

inline void put_be32(std::string& s, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>((v >> shift) & 0xff));
}

// IDX bytes: a magic number, big-endian dimensions, then the data.
inline std::string idx_images(const std::vector<std::uint8_t>& pixels, std::uint32_t count,
                              std::uint32_t rows, std::uint32_t cols,
                              std::uint32_t magic = 0x00000803u) {
  std::string s;
  put_be32(s, magic);
  put_be32(s, count);
  put_be32(s, rows);
  put_be32(s, cols);
  s.append(pixels.begin(), pixels.end());
  return s;
}

inline std::string idx_labels(const std::vector<std::uint8_t>& labels,
                              std::uint32_t magic = 0x00000801u) {
  std::string s;
  put_be32(s, magic);
  put_be32(s, static_cast<std::uint32_t>(labels.size()));
  s.append(labels.begin(), labels.end());
  return s;
}

// A learnable image set: class c brightens band c of an 8x8 image, plus noise.
struct SmallImages {
  std::vector<std::uint8_t> pixels, labels;
  std::uint32_t count = 0;
};

inline SmallImages small_images(std::uint32_t count, std::uint32_t classes, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  SmallImages s;
  s.count = count;
  for (std::uint32_t i = 0; i < count; ++i) {
    const auto c = static_cast<std::uint8_t>(rng() % classes);
    s.labels.push_back(c);
    for (std::uint32_t p = 0; p < 64; ++p) {
      const bool lit = (p / 8) % classes == c;
      s.pixels.push_back(static_cast<std::uint8_t>((lit ? 150 : 20) + rng() % 80));
    }
  }
  return s;
}

// Writes SmallImages as a gzip IDX pair named <prefix>-images.gz and <prefix>-labels.gz.
inline void write_small_idx(const TempDir& dir, const std::string& prefix, const SmallImages& s) {
  write_gzip(dir / (prefix + "-images.gz"), idx_images(s.pixels, s.count, 8, 8));
  write_gzip(dir / (prefix + "-labels.gz"), idx_labels(s.labels));
}

// Gaussian blobs: `classes` clusters in `features` dimensions, well separated.
// The centres depend on `seed` only; sample_seed draws other samples around the same centres.
inline Dataset blobs(std::int64_t samples, std::int64_t features, std::int64_t classes,
                     std::uint64_t seed, std::uint64_t sample_seed = 0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.5f);
  std::vector<float> centres(static_cast<std::size_t>(classes * features));
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  for (float& c : centres) c = u(rng);
  if (sample_seed != 0) rng.seed(sample_seed);
  std::vector<float> x;
  std::vector<std::int32_t> y;
  for (std::int64_t i = 0; i < samples; ++i) {
    const auto c = static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(classes));
    y.push_back(c);
    for (std::int64_t j = 0; j < features; ++j) {
      x.push_back(centres[static_cast<std::size_t>(c * features + j)] + noise(rng));
    }
  }
  return Dataset::from_floats(x, features, y, classes);
}

// Trains `model` with `sgd` for `steps` steps of a fixed blobs dataset, continuing the optimizer's
// step count (so it can resume mid-epoch).
inline void train_steps(Trainer& t, BatchLoader& loader, std::int64_t steps) {
  for (std::int64_t i = 0; i < steps; ++i) {
    const std::int64_t k = t.optimizer().steps();
    if (i == 0 || k % loader.batches() == 0)
      loader.start_epoch(k / loader.batches(), k % loader.batches());
    Batch b;
    ASSERT_TRUE(loader.next(b));
    t.step(b);
  }
}

// Adam options with the given learning rate, weight decay, amsgrad and decoupled (AdamW) weight
// decay, the rest at their defaults.
inline AdamOptions adam_options(float lr, float weight_decay, bool amsgrad, bool decoupled) {
  AdamOptions o;
  o.lr = lr;
  o.weight_decay = weight_decay;
  o.amsgrad = amsgrad;
  o.decoupled_weight_decay = decoupled;
  return o;
}

// A Scaling of 2 inputs and 1 output, none of it the identity.
inline Scaling example_scaling() {
  Scaling s;
  s.input_mean = {100.0f, -3.0f};
  s.input_scale = {20.0f, 0.5f};
  s.output_mean = {50.0f};
  s.output_scale = {4.0f};
  return s;
}

// The descent command next to this test binary (build/apps/descent), or "" when not built.
inline std::string cli_path() {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  const std::filesystem::path cli = self.parent_path().parent_path() / "apps" / "descent";
  return std::filesystem::exists(cli) ? cli.string() : "";
}

struct CliResult {
  int status = -1;
  std::string out;  // stdout and stderr together
};

// Runs `descent <args>` through the shell, capturing its output.
inline CliResult run_cli(const std::string& args, const TempDir& dir) {
  const std::string log = dir / "cli-output.txt";
  const std::string cmd = cli_path() + " " + args + " > '" + log + "' 2>&1";
  const int raw = std::system(cmd.c_str());
  CliResult r;
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  r.out = read_bytes(log);
  return r;
}

}  // namespace descent::test
