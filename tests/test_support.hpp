// Shared test machinery: backend parameterisation, seeded inputs, device upload/poison/download
// and norm-wise error checks against the float64 oracle.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "descent/bf16.hpp"
#include "descent/buffer.hpp"
#include "descent/context.hpp"
#include "descent/error.hpp"
#include "descent/ops.hpp"
#include "oracle/oracle.hpp"

namespace descent {
// So that gtest prints a backend parameter as "cpu" / "cuda:0" instead of raw bytes.
inline void PrintTo(const Device& d, std::ostream* os) {
  *os << (d.is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(d.index));
}
inline void PrintTo(const Activation& a, std::ostream* os) { *os << to_string(a); }
}  // namespace descent

namespace descent::test {

// Norm-wise relative tolerances against the float64 oracle.
inline constexpr double kTolFp32 = 1e-5;
inline constexpr double kTolTf32 = 5e-3;
inline constexpr double kTolBf16 = 3e-2;

inline constexpr Activation kAllActivations[] = {Activation::identity, Activation::relu,
                                                 Activation::sigmoid, Activation::tanh,
                                                 Activation::gelu};

// ---------------------------------------------------------------- seeds

// FNV-1a: stable across compilers and runs, unlike std::hash.
inline std::uint64_t stable_hash(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

// A seed derived from the running test's full name, so each test draws its own inputs and a run
// is reproducible; DESCENT_TEST_SEED=<n> mixes in n to explore other inputs.
inline std::uint64_t seed_for_current_test() {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "none";
  std::uint64_t seed = stable_hash(name);
  if (const char* env = std::getenv("DESCENT_TEST_SEED")) {
    seed ^= std::strtoull(env, nullptr, 0) * 0x9e3779b97f4a7c15ull;
  }
  return seed;
}

// Holds the test's generator and keeps its seed in every failure message.
class Seeded {
 protected:
  void seed_rng() {
    seed_ = seed_for_current_test();
    rng_.seed(seed_);
    std::ostringstream os;
    os << "random seed " << seed_ << " (derived from the test name; DESCENT_TEST_SEED varies it)";
    trace_.emplace(__FILE__, __LINE__, os.str());
  }
  void drop_trace() { trace_.reset(); }

  std::uint64_t seed_ = 0;
  std::mt19937_64 rng_;

 private:
  std::optional<::testing::ScopedTrace> trace_;
};

// A seeded test that needs no backend.
class SeededTest : public ::testing::Test, protected Seeded {
 protected:
  void SetUp() override { seed_rng(); }
  void TearDown() override { drop_trace(); }
};

// Concatenates anything streamable (GCC 12 warns falsely on some "lit" + std::string chains).
template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

// ---------------------------------------------------------------- backends

inline bool require_gpu() {
  const char* env = std::getenv("DESCENT_REQUIRE_GPU");
  return env != nullptr && std::string(env) == "1";
}

// Why CUDA tests cannot run here, or empty when they can.
inline std::string cuda_unavailable_reason() {
  if (!built_with_cuda()) return "descent was built without its CUDA backend (DESCENT_CUDA=OFF)";
  if (cuda_device_count() == 0) return "no usable CUDA device (cuda_device_count() == 0)";
  return {};
}

inline bool cuda_available() { return cuda_unavailable_reason().empty(); }

// Skips (or, with DESCENT_REQUIRE_GPU=1, fails) the current test when CUDA is unavailable.
// Must be used directly in SetUp or a test body (GTEST_SKIP/FAIL return from the caller).
#define DESCENT_REQUIRE_CUDA_OR_SKIP()                                              \
  do {                                                                              \
    const std::string descent_reason_ = ::descent::test::cuda_unavailable_reason(); \
    if (!descent_reason_.empty()) {                                                 \
      if (::descent::test::require_gpu())                                           \
        FAIL() << "DESCENT_REQUIRE_GPU=1 but " << descent_reason_;                  \
      GTEST_SKIP() << "CUDA test skipped: " << descent_reason_                      \
                   << " (set DESCENT_REQUIRE_GPU=1 to make this a failure)";        \
    }                                                                               \
  } while (0)

// Every op test derives from this and is instantiated with DESCENT_INSTANTIATE_BACKENDS on the
// backends of its executable; ctx() is a Context on the backend under test.
class BackendTest : public ::testing::TestWithParam<Device>, protected Seeded {
 protected:
  void SetUp() override {
    if (GetParam().is_cuda()) DESCENT_REQUIRE_CUDA_OR_SKIP();
    seed_rng();
    ctx_.emplace(GetParam());
  }
  void TearDown() override {
    ctx_.reset();
    drop_trace();
  }
  Context& ctx() { return *ctx_; }
  bool on_gpu() const { return GetParam().is_cuda(); }

 private:
  std::optional<Context> ctx_;
};

inline std::string backend_name(const ::testing::TestParamInfo<Device>& info) {
  return info.param.is_cpu() ? "cpu" : "cuda" + std::to_string(info.param.index);
}

// The backends the parameterised cases of this executable run on: {cpu} in the CPU test
// executables, {cuda:0} in the GPU ones (tests/backends/cpu.cpp, tests/backends/cuda.cpp; see
// tests/CMakeLists.txt). A file of such cases lives in tests/backends/ and is linked into both.
std::vector<Device> backends_under_test();

#define DESCENT_INSTANTIATE_BACKENDS(Fixture)                                           \
  INSTANTIATE_TEST_SUITE_P(Backends, Fixture,                                           \
                           ::testing::ValuesIn(::descent::test::backends_under_test()), \
                           ::descent::test::backend_name)

// ---------------------------------------------------------------- inputs

// Uniform in [lo, hi) and never exactly zero, so that a missed term cannot hide behind a zero.
inline std::vector<float> random_floats(std::mt19937_64& rng, std::int64_t n, float lo = -1.0f,
                                        float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) {
    do x = dist(rng);
    while (x == 0.0f);
  }
  return v;
}

inline std::vector<std::int32_t> random_labels(std::mt19937_64& rng, std::int64_t n,
                                               std::int64_t classes) {
  std::uniform_int_distribution<std::int32_t> dist(0, std::int32_t(classes - 1));
  std::vector<std::int32_t> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = dist(rng);
  return v;
}

inline float nan_f() { return std::numeric_limits<float>::quiet_NaN(); }

template <class T>
T poison_value() {
  if constexpr (std::is_same_v<T, bf16>) {
    return bf16{0x7fc1};
  } else if constexpr (std::is_same_v<T, float>) {
    // A quiet NaN with a payload, so "left untouched" can be checked bit for bit.
    const std::uint32_t bits = 0x7fc0dead;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  } else {
    return T(-12345);
  }
}

template <class T>
bool same_bits(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}
// Vectors element by element (the overload above would compare their pointers).
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), sizeof(T) * a.size()) == 0);
}

inline float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Passes when the two have the same size and the same bits everywhere; else names the first
// element that differs.
inline ::testing::AssertionResult bit_identical(const std::vector<float>& a,
                                                const std::vector<float>& b) {
  if (a.size() != b.size())
    return ::testing::AssertionFailure() << "sizes " << a.size() << " != " << b.size();
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!same_bits(a[i], b[i])) {
      return ::testing::AssertionFailure() << "element " << i << ": " << a[i] << " != " << b[i];
    }
  }
  return ::testing::AssertionSuccess();
}

// How many elements of a and b (the same size) differ in their bits.
inline std::int64_t count_bit_differences(const std::vector<float>& a,
                                          const std::vector<float>& b) {
  std::int64_t n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) n += !same_bits(a[i], b[i]);
  return n;
}

inline std::vector<bf16> to_bf16_vec(const std::vector<float>& v) {
  std::vector<bf16> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = descent::to_bf16(v[i]);
  return out;
}
inline std::vector<float> to_float_vec(const std::vector<bf16>& v) {
  std::vector<float> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = descent::to_float(v[i]);
  return out;
}
// The values a bf16 op actually sees.
inline std::vector<float> round_to_bf16(const std::vector<float>& v) {
  return to_float_vec(to_bf16_vec(v));
}

inline oracle::Mat to_mat(const std::vector<float>& v, std::int64_t rows, std::int64_t cols) {
  oracle::Mat m(rows, cols);
  for (std::size_t i = 0; i < v.size(); ++i) m.v[i] = v[i];
  return m;
}
inline oracle::Vec to_vec(const std::vector<float>& v) { return oracle::Vec(v.begin(), v.end()); }
inline std::vector<float> to_floats(const oracle::Vec& v) {
  return std::vector<float>(v.begin(), v.end());
}

// ---------------------------------------------------------------- device data

template <class T>
Buffer<T> upload(const Context& ctx, const std::vector<T>& host) {
  return Buffer<T>(ctx, std::span<const T>(host.data(), host.size()));
}

// A buffer of n elements, all poisoned with NaN so that an element the op fails to write fails.
template <class T>
Buffer<T> poisoned(const Context& ctx, std::int64_t n) {
  return upload(ctx, std::vector<T>(static_cast<std::size_t>(n), poison_value<T>()));
}

// A rows x cols matrix inside a buffer with leading dimension ld >= cols. The padding columns
// hold the poison value, so the test can check that the op left them alone.
template <class T>
struct DeviceMatrix {
  Buffer<T> buf;
  std::int64_t rows = 0, cols = 0, ld = 0;

  MatrixView<T> view() { return MatrixView<T>(buf.data(), rows, cols, buf.device(), ld); }
  MatrixView<const T> cview() const {
    return MatrixView<const T>(buf.data(), rows, cols, buf.device(), ld);
  }
};

// Uploads a dense rows x cols host matrix into a matrix with leading dimension ld (-1: cols).
template <class T>
DeviceMatrix<T> upload_matrix(const Context& ctx, const std::vector<T>& dense, std::int64_t rows,
                              std::int64_t cols, std::int64_t ld = -1) {
  if (ld < 0) ld = cols;
  std::vector<T> host(static_cast<std::size_t>(std::max<std::int64_t>(rows * ld, 1)),
                      poison_value<T>());
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) {
      host[static_cast<std::size_t>(r * ld + c)] = dense[static_cast<std::size_t>(r * cols + c)];
    }
  }
  return DeviceMatrix<T>{upload(ctx, host), rows, cols, ld};
}

// An output matrix: every element, padding included, is poisoned.
template <class T>
DeviceMatrix<T> poisoned_matrix(const Context& ctx, std::int64_t rows, std::int64_t cols,
                                std::int64_t ld = -1) {
  if (ld < 0) ld = cols;
  return DeviceMatrix<T>{poisoned<T>(ctx, std::max<std::int64_t>(rows * ld, 1)), rows, cols, ld};
}

// The dense rows x cols contents of a device matrix; records a failure if any padding element
// was written.
template <class T>
std::vector<T> download_matrix(const Context& ctx, const DeviceMatrix<T>& m,
                               const char* what = "matrix") {
  const std::vector<T> host = m.buf.to_host(ctx);
  std::vector<T> dense(static_cast<std::size_t>(m.rows * m.cols));
  std::int64_t touched = 0;
  for (std::int64_t r = 0; r < m.rows; ++r) {
    for (std::int64_t c = 0; c < m.ld; ++c) {
      const T v = host[static_cast<std::size_t>(r * m.ld + c)];
      if (c < m.cols) {
        dense[static_cast<std::size_t>(r * m.cols + c)] = v;
      } else if (!same_bits(v, poison_value<T>())) {
        ++touched;
      }
    }
  }
  EXPECT_EQ(touched, 0) << what << ": the op wrote " << touched
                        << " element(s) outside the view (columns >= cols with ld " << m.ld << ")";
  return dense;
}

// Runs check_finite over x with the flag set to flag0 beforehand; returns the flag after.
inline std::int32_t run_check_finite(Context& ctx, const std::vector<float>& x,
                                     std::int32_t flag0) {
  Buffer<float> xb = upload(ctx, x);
  Buffer<std::int32_t> flag = upload(ctx, std::vector<std::int32_t>{flag0});
  check_finite(ctx, std::as_const(xb).view(), flag.data());
  return flag.to_host(ctx)[0];
}

// ---------------------------------------------------------------- comparisons

inline double as_double(float v) { return v; }
inline double as_double(bf16 v) { return descent::to_float(v); }
inline double as_double(double v) { return v; }

// ‖out − ref‖₂ / ‖ref‖₂ in double (absolute norm when ref is zero); NaN if any out is not finite.
template <class T, class R>
double rel_error(const std::vector<T>& out, const std::vector<R>& ref) {
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const double o = as_double(out[i]), r = as_double(ref[i]);
    if (!std::isfinite(o)) return std::numeric_limits<double>::quiet_NaN();
    num += (o - r) * (o - r);
    den += r * r;
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Passes when the norm-wise relative error is within tol; otherwise reports it with the worst
// element.
template <class T, class R>
::testing::AssertionResult close_to(const std::vector<T>& out, const std::vector<R>& ref,
                                    double tol) {
  if (out.size() != ref.size()) {
    return ::testing::AssertionFailure()
           << "size " << out.size() << " != reference size " << ref.size();
  }
  const double err = rel_error(out, ref);
  if (err <= tol) return ::testing::AssertionSuccess();
  std::size_t worst = 0, non_finite = 0;
  double worst_diff = -1.0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const double o = as_double(out[i]), r = as_double(ref[i]);
    if (!std::isfinite(o)) {
      if (non_finite++ == 0) worst = i;
      worst_diff = std::numeric_limits<double>::infinity();
    } else if (std::abs(o - r) > worst_diff) {
      worst_diff = std::abs(o - r);
      worst = i;
    }
  }
  return ::testing::AssertionFailure()
         << "relative error " << err << " > tolerance " << tol << " over " << out.size()
         << " elements; " << non_finite << " non-finite; worst at [" << worst << "]: got "
         << as_double(out[worst]) << ", expected " << as_double(ref[worst]);
}

inline ::testing::AssertionResult close_to(double out, double ref, double tol) {
  const double err = std::abs(out - ref) / std::max(std::abs(ref), 1e-30);
  if (std::isfinite(out) && err <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "got " << out << ", expected " << ref << " (relative error " << err << ", tolerance "
         << tol << ")";
}

// ---------------------------------------------------------------- error messages

// True when `name` occurs in the message as a whole identifier (not inside a longer word).
inline bool names_identifier(const std::string& msg, const std::string& name) {
  auto is_ident = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  for (std::size_t pos = msg.find(name); pos != std::string::npos; pos = msg.find(name, pos + 1)) {
    const bool left_ok = pos == 0 || !is_ident(msg[pos - 1]);
    const std::size_t end = pos + name.size();
    const bool right_ok = end >= msg.size() || !is_ident(msg[end]);
    if (left_ok && right_ok) return true;
  }
  return false;
}

MATCHER_P(NamesArgument, name, "names the argument '" + std::string(name) + "'") {
  return names_identifier(arg, name);
}

// Runs `statement`, expects it to throw `Type` (or a subclass) whose message matches `matcher`.
#define EXPECT_THROW_THAT(statement, Type, matcher)                                       \
  do {                                                                                    \
    try {                                                                                 \
      statement;                                                                          \
      ADD_FAILURE() << "expected " #Type " from: " #statement ", nothing was thrown";     \
    } catch (const Type& e_) {                                                            \
      EXPECT_THAT(std::string(e_.what()), matcher) << "from: " #statement;                \
    } catch (const std::exception& e_) {                                                  \
      ADD_FAILURE() << "expected " #Type " from: " #statement ", got another exception: " \
                    << e_.what();                                                         \
    }                                                                                     \
  } while (0)

}  // namespace descent::test
