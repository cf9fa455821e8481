// Progress bar, epoch lines, metrics CSV and SVG curves of the train command.
#include "report.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace descent::app {

ProgressBar::ProgressBar(bool enabled) : enabled_(enabled && ::isatty(STDERR_FILENO) != 0) {}

void ProgressBar::update(std::int64_t epoch, std::int64_t epochs, std::int64_t batch,
                         std::int64_t batches) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (batch < batches && drawn_ && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  drawn_ = true;
  constexpr int kWidth = 40;
  const int filled = static_cast<int>(kWidth * batch / std::max<std::int64_t>(batches, 1));
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.resize(kWidth, '.');
  std::fprintf(stderr, "\r  epoch %lld/%lld [%s] %lld/%lld batches", static_cast<long long>(epoch),
               static_cast<long long>(epochs), bar.c_str(), static_cast<long long>(batch),
               static_cast<long long>(batches));
  std::fflush(stderr);
}

void ProgressBar::clear() {
  if (!enabled_ || !drawn_) return;
  std::fprintf(stderr, "\r%80s\r", "");
  std::fflush(stderr);
  drawn_ = false;
}

Throughput::Throughput(std::int64_t samples, std::int64_t batch, std::int64_t batches)
    : samples_(samples),
      warm_samples_(std::min(samples, kWarmupSteps * batch)),
      batches_(batches) {}

void Throughput::fit_begins() { fit_begin_ = warm_end_ = std::chrono::steady_clock::now(); }

void Throughput::step_done(std::int64_t batch) {
  if (batch == kWarmupSteps) warm_end_ = std::chrono::steady_clock::now();
}

double Throughput::samples_per_second(const EpochStats& s) const {
  if (batches_ <= kWarmupSteps) return s.samples_per_second;
  return steady_rate(s, std::chrono::duration<double>(warm_end_ - fit_begin_).count(), samples_,
                     warm_samples_);
}

double Throughput::steady_rate(const EpochStats& s, double warm_end, std::int64_t samples,
                               std::int64_t warm_samples) {
  if (!(s.samples_per_second > 0) || samples <= warm_samples) return s.samples_per_second;
  const double train_end =
      s.elapsed_seconds - s.epoch_seconds + static_cast<double>(samples) / s.samples_per_second;
  const double seconds = train_end - warm_end;
  if (!(seconds > 0)) return s.samples_per_second;
  return static_cast<double>(samples - warm_samples) / seconds;
}

std::string throughput_note() {
  return "samples/s: training samples per second of each epoch after its first " +
         std::to_string(Throughput::kWarmupSteps) + " steps (warm-up), evaluation not counted";
}

namespace {

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string maybe(const char* format, double v, const char* missing = "-") {
  return std::isfinite(v) ? fmt(format, v) : std::string(missing);
}

}  // namespace

std::string epoch_line(const EpochStats& s) {
  std::ostringstream os;
  const int digits = static_cast<int>(std::to_string(s.epochs).size());
  char head[64];
  std::snprintf(head, sizeof head, "epoch %*lld/%lld", digits, static_cast<long long>(s.epoch),
                static_cast<long long>(s.epochs));
  os << head << "  train loss " << maybe("%.4f", s.train_loss);
  if (s.has_test) {
    os << "  test loss " << maybe("%.4f", s.test.loss);
    if (std::isfinite(s.test.accuracy))
      os << "  test acc " << fmt("%.2f%%", 100.0 * s.test.accuracy);
  }
  os << "  " << fmt("%.0f", s.samples_per_second) << " samples/s  "
     << fmt("%.1f s", s.elapsed_seconds);
  if (s.skipped_steps > 0) {
    os << "  (" << s.skipped_steps << (s.skipped_steps == 1 ? " step" : " steps")
       << " skipped: non-finite loss)";
  }
  return os.str();
}

std::string metrics_csv(const std::vector<EpochStats>& history) {
  std::ostringstream os;
  os << "epoch,steps,lr,train_loss,test_loss,test_accuracy,samples_per_second_after_warmup,"
        "epoch_seconds,elapsed_seconds,skipped_steps\n";
  for (const EpochStats& s : history) {
    os << s.epoch << ',' << s.steps << ',' << fmt("%.6g", s.lr) << ','
       << maybe("%.6f", s.train_loss, "") << ','
       << (s.has_test ? maybe("%.6f", s.test.loss, "") : "") << ','
       << (s.has_test ? maybe("%.6f", s.test.accuracy, "") : "") << ','
       << fmt("%.1f", s.samples_per_second) << ',' << fmt("%.3f", s.epoch_seconds) << ','
       << fmt("%.3f", s.elapsed_seconds) << ',' << s.skipped_steps << '\n';
  }
  return os.str();
}

namespace {

// One chart panel: x = epoch, a set of named series; the y range covers every finite value.
struct Series {
  std::string name, color;
  std::vector<double> y;
};

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else
      out += c;
  }
  return out;
}

void panel(std::ostringstream& os, double x0, double y0, double w, double h,
           const std::string& title, const std::vector<double>& epochs,
           const std::vector<Series>& series, bool percent) {
  double lo = INFINITY, hi = -INFINITY;
  for (const Series& s : series) {
    for (double v : s.y) {
      if (std::isfinite(v)) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
    }
  }
  if (!std::isfinite(lo)) {
    lo = 0;
    hi = 1;
  }
  if (hi - lo < 1e-9) {
    lo -= 0.5;
    hi += 0.5;
  }
  const double pad = (hi - lo) * 0.08;
  lo -= pad;
  hi += pad;
  const double emin = epochs.empty() ? 0 : epochs.front();
  const double emax = epochs.empty() ? 1 : std::max(epochs.back(), emin + 1);
  const double left = x0 + 60, right = x0 + w - 15, top = y0 + 30, bottom = y0 + h - 40;
  const auto px = [&](double e) { return left + (e - emin) / (emax - emin) * (right - left); };
  const auto py = [&](double v) { return bottom - (v - lo) / (hi - lo) * (bottom - top); };
  os << "<text x='" << (left + right) / 2 << "' y='" << y0 + 18
     << "' text-anchor='middle' font-size='14'>" << escape(title) << "</text>\n";
  os << "<rect x='" << left << "' y='" << top << "' width='" << right - left << "' height='"
     << bottom - top << "' fill='none' stroke='#444'/>\n";
  for (int i = 0; i <= 4; ++i) {
    const double v = lo + (hi - lo) * i / 4.0;
    os << "<line x1='" << left << "' x2='" << right << "' y1='" << py(v) << "' y2='" << py(v)
       << "' stroke='#ddd'/>\n";
    os << "<text x='" << left - 6 << "' y='" << py(v) + 4 << "' text-anchor='end' font-size='11'>"
       << (percent ? fmt("%.1f%%", 100 * v) : fmt("%.3f", v)) << "</text>\n";
  }
  const int ticks = static_cast<int>(std::min<double>(10, emax - emin));
  for (int i = 0; i <= ticks; ++i) {
    const double e = emin + (emax - emin) * i / std::max(ticks, 1);
    os << "<text x='" << px(e) << "' y='" << bottom + 16 << "' text-anchor='middle' font-size='11'>"
       << fmt("%.0f", e) << "</text>\n";
  }
  os << "<text x='" << (left + right) / 2 << "' y='" << bottom + 32
     << "' text-anchor='middle' font-size='12'>epoch</text>\n";
  double legend_y = top + 14;
  for (const Series& s : series) {
    std::string points;
    for (std::size_t i = 0; i < s.y.size() && i < epochs.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      points += fmt("%.1f", px(epochs[i])) + "," + fmt("%.1f", py(s.y[i])) + " ";
      os << "<circle cx='" << px(epochs[i]) << "' cy='" << py(s.y[i]) << "' r='2.5' fill='"
         << s.color << "'/>\n";
    }
    os << "<polyline fill='none' stroke='" << s.color << "' stroke-width='2' points='" << points
       << "'/>\n";
    os << "<line x1='" << right - 120 << "' x2='" << right - 100 << "' y1='" << legend_y - 4
       << "' y2='" << legend_y - 4 << "' stroke='" << s.color << "' stroke-width='2'/>\n";
    os << "<text x='" << right - 95 << "' y='" << legend_y << "' font-size='11'>" << escape(s.name)
       << "</text>\n";
    legend_y += 16;
  }
}

}  // namespace

std::string curves_svg(const std::vector<EpochStats>& history, const std::string& title) {
  std::vector<double> epochs;
  Series train{"train loss", "#1f77b4", {}}, test{"test loss", "#ff7f0e", {}},
      acc{"test accuracy", "#2ca02c", {}};
  bool any_acc = false, any_test = false;
  for (const EpochStats& s : history) {
    epochs.push_back(static_cast<double>(s.epoch));
    train.y.push_back(s.train_loss);
    test.y.push_back(s.has_test ? s.test.loss : NAN);
    acc.y.push_back(s.has_test ? s.test.accuracy : NAN);
    any_test = any_test || s.has_test;
    any_acc = any_acc || (s.has_test && std::isfinite(s.test.accuracy));
  }
  const double w = any_acc ? 900 : 460, h = 340;
  std::ostringstream os;
  os << "<svg xmlns='http://www.w3.org/2000/svg' width='" << w << "' height='" << h + 30
     << "' font-family='sans-serif'>\n<rect width='100%' height='100%' fill='white'/>\n";
  os << "<text x='" << w / 2 << "' y='20' text-anchor='middle' font-size='15'>" << escape(title)
     << "</text>\n";
  std::vector<Series> losses{train};
  if (any_test) losses.push_back(test);
  panel(os, 0, 30, 450, h, "loss", epochs, losses, false);
  if (any_acc) panel(os, 450, 30, 450, h, "test accuracy", epochs, {acc}, true);
  os << "</svg>\n";
  return os.str();
}

}  // namespace descent::app
