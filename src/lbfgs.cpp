// LBfgs: torch.optim.LBFGS's algorithm (two-loop recursion, strong-Wolfe line search with cubic
// interpolation, the same stopping rules) on an Mlp's flat parameters. The direction arithmetic
// runs on the host over float vectors, each dot product summed in double in index order, so a
// step gives the same bits for any thread count and on every rank of a data-parallel run. The
// scalars kept between steps (t, H_diag, ρ, the loss) are floats, as torch keeps them, so that a
// checkpoint holds them exactly and a resumed run continues to the same bits.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "descent/error.hpp"
#include "descent/model.hpp"
#include "descent/optimizer.hpp"
#include "descent/output.hpp"
#include "framed_file.hpp"
#include "input_file.hpp"

namespace descent {

namespace {

constexpr std::int32_t kMaxWhole = 1 << 24;  // whole-number options stay exact as floats
constexpr int kScalars = 6;  // iterations, evaluations, t, H_diag, previous loss, has direction

// The vector arithmetic, for T = float (LBfgs, on an Mlp) and double (LBfgsF64): dot products
// summed in double in index order, updates in T as torch's add_(x, alpha=...).
template <class T>
double dot(std::span<const T> a, std::span<const T> b) {
  double sum = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) sum += static_cast<double>(a[i]) * b[i];
  return sum;
}
template <class T>
double dot(const std::vector<T>& a, const std::vector<T>& b) {
  return dot<T>(std::span<const T>(a), std::span<const T>(b));
}

template <class T>
double abs_max(std::span<const T> v) {
  T m = T(0);
  for (T x : v) m = std::max(m, std::fabs(x));
  return m;
}

template <class T>
double abs_sum(std::span<const T> v) {
  double s = 0.0;
  for (T x : v) s += std::fabs(x);
  return s;
}

// y += alpha · x.
template <class T>
void add_scaled(std::span<T> y, double alpha, std::span<const T> x) {
  const auto a = static_cast<T>(alpha);
  for (std::size_t i = 0; i < y.size(); ++i) y[i] += a * x[i];
}

// The minimiser of the cubic through (x1, f1, g1) and (x2, f2, g2), clamped to [lo, hi]; the
// middle of the bounds when the cubic has no minimum (torch's _cubic_interpolate).
double cubic_interpolate(double x1, double f1, double g1, double x2, double f2, double g2,
                         double lo, double hi) {
  const double d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2);
  const double d2_square = d1 * d1 - g1 * g2;
  if (!(d2_square >= 0.0)) return (lo + hi) / 2.0;
  const double d2 = std::sqrt(d2_square);
  const double min_pos = x1 <= x2 ? x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2))
                                  : x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2));
  return std::min(std::max(min_pos, lo), hi);
}

double cubic_interpolate(double x1, double f1, double g1, double x2, double f2, double g2) {
  return cubic_interpolate(x1, f1, g1, x2, f2, g2, std::min(x1, x2), std::max(x1, x2));
}

// One point of a line search: the step, the loss and gradient there, the slope along d.
template <class T>
struct LinePoint {
  double t = 0.0, f = 0.0, gtd = 0.0;
  std::vector<T> g;
};

[[noreturn]] void evaluation_failed(const char* where, int count, const std::string& what) {
  throw NumericError(std::string(where) + ": evaluation " + std::to_string(count) +
                     " of this step gave a non-finite " + what +
                     "; the parameters and the optimizer's state are left as before the step "
                     "(a smaller lr, or strong_wolfe, keeps the trial points nearer)");
}

// The loss and gradient checked: finite, or evaluation_failed.
template <class T>
void check_finite(const char* where, int count, double loss, const std::vector<T>& g) {
  if (!std::isfinite(loss)) evaluation_failed(where, count, "loss " + std::to_string(loss));
  for (std::size_t i = 0; i < g.size(); ++i) {
    if (!std::isfinite(g[i])) {
      evaluation_failed(where, count,
                        "gradient " + std::to_string(g[i]) + " at parameter " + std::to_string(i));
    }
  }
}

// Evaluations of an Mlp's closure at chosen parameters, with the values checked.
class Evaluator {
 public:
  using Scalar = float;
  Evaluator(Mlp& model, const LBfgs::Closure& closure) : model_(model), closure_(closure) {}

  // The loss and gradient at the model's current parameters.
  double at_current(std::vector<float>& g) {
    const float loss = closure_();
    ++count_;
    const Context& ctx = model_.context();
    const VectorView<const float> grads = model_.grads();
    g.resize(static_cast<std::size_t>(grads.size));
    detail::copy_bytes(ctx, g.data(), Device::cpu(), grads.data, grads.device,
                       sizeof(float) * g.size());
    check_finite("LBfgs::step", count_, loss, g);
    return loss;
  }

  // Sets the parameters to x and evaluates there.
  double at(std::span<const float> x, std::vector<float>& g) {
    model_.params_from_host(x);
    return at_current(g);
  }

  // Where the accepted point's parameters go (the model).
  void set(std::span<const float> x) { model_.params_from_host(x); }

 private:
  Mlp& model_;
  const LBfgs::Closure& closure_;
  int count_ = 0;
};

// x_init + t · d into x.
template <class T>
void step_along(std::span<const T> x_init, double t, std::span<const T> d, std::vector<T>& x) {
  x.assign(x_init.begin(), x_init.end());
  add_scaled<T>(x, t, d);
}

// torch's _strong_wolfe (c1 1e-4, c2 0.9, at most 25 evaluations): returns the accepted point
// and the evaluations it took.
template <class Eval>
std::pair<LinePoint<typename Eval::Scalar>, int> strong_wolfe(
    Eval& eval, std::span<const typename Eval::Scalar> x_init, double t,
    std::span<const typename Eval::Scalar> d, double f, std::span<const typename Eval::Scalar> g,
    double gtd, double tolerance_change) {
  using T = typename Eval::Scalar;
  using Point = LinePoint<T>;
  constexpr double c1 = 1e-4, c2 = 0.9;
  constexpr int max_ls = 25;
  const double d_norm = abs_max<T>(d);
  std::vector<T> x;
  const auto evaluate = [&](double step) {
    Point p;
    p.t = step;
    step_along<T>(x_init, step, d, x);
    p.f = eval.at(x, p.g);
    p.gtd = dot<T>(p.g, d);
    return p;
  };

  Point prev;
  prev.t = 0.0;
  prev.f = f;
  prev.g.assign(g.begin(), g.end());
  prev.gtd = gtd;
  Point next = evaluate(t);
  int evals = 1;
  int ls_iter = 0;
  bool done = false;
  std::vector<Point> bracket;  // one point when done, else two
  while (ls_iter < max_ls) {
    if (next.f > f + c1 * next.t * gtd || (ls_iter > 1 && next.f >= prev.f)) {
      bracket = {prev, next};
      break;
    }
    if (std::fabs(next.gtd) <= -c2 * gtd) {
      bracket = {next};
      done = true;
      break;
    }
    if (next.gtd >= 0.0) {
      bracket = {prev, next};
      break;
    }
    const double min_step = next.t + 0.01 * (next.t - prev.t);
    const double max_step = next.t * 10.0;
    const double trial =
        cubic_interpolate(prev.t, prev.f, prev.gtd, next.t, next.f, next.gtd, min_step, max_step);
    prev = std::move(next);
    next = evaluate(trial);
    ++evals;
    ++ls_iter;
  }
  if (ls_iter == max_ls) {
    Point start;
    start.t = 0.0;
    start.f = f;
    start.g.assign(g.begin(), g.end());
    start.gtd = gtd;
    bracket = {std::move(start), next};
  }

  // Zoom: shrink the bracket until a point meets the strong Wolfe conditions.
  bool insufficient_progress = false;
  std::size_t low = 0, high = 1;
  if (bracket.size() == 2 && bracket[0].f > bracket[1].f) std::swap(low, high);
  while (!done && ls_iter < max_ls) {
    if (std::fabs(bracket[1].t - bracket[0].t) * d_norm < tolerance_change) break;
    double trial = cubic_interpolate(bracket[0].t, bracket[0].f, bracket[0].gtd, bracket[1].t,
                                     bracket[1].f, bracket[1].gtd);
    const double hi = std::max(bracket[0].t, bracket[1].t);
    const double lo = std::min(bracket[0].t, bracket[1].t);
    const double eps = 0.1 * (hi - lo);
    if (std::min(hi - trial, trial - lo) < eps) {
      // Too near an end: move away from it unless progress was already insufficient last time.
      if (insufficient_progress || trial >= hi || trial <= lo) {
        trial = std::fabs(trial - hi) < std::fabs(trial - lo) ? hi - eps : lo + eps;
        insufficient_progress = false;
      } else {
        insufficient_progress = true;
      }
    } else {
      insufficient_progress = false;
    }
    Point p = evaluate(trial);
    ++evals;
    ++ls_iter;
    if (p.f > f + c1 * p.t * gtd || p.f >= bracket[low].f) {
      bracket[high] = std::move(p);
      low = bracket[0].f <= bracket[1].f ? 0 : 1;
      high = 1 - low;
    } else {
      if (std::fabs(p.gtd) <= -c2 * gtd) {
        done = true;
      } else if (p.gtd * (bracket[high].t - bracket[low].t) >= 0.0) {
        bracket[high] = bracket[low];
      }
      bracket[low] = std::move(p);
    }
  }
  return {std::move(bracket[bracket.size() == 1 ? 0 : low]), evals};
}

// The iterations of one step (torch's LBFGS.step) from x (updated in place), with the history
// s (LBfgs::History's members, in T) and the counters; returns the loss of the first evaluation.
template <class Eval, class H>
double iterate(Eval& eval, H& s, std::vector<typename Eval::Scalar>& x, const LbfgsOptions& options,
               double lr, std::int64_t& total_iters, std::int64_t& total_evals,
               std::string& stop_reason) {
  using T = typename Eval::Scalar;
  const int max_iter = options.max_iter;
  const int max_eval = options.max_eval > 0 ? options.max_eval : max_iter * 5 / 4;
  const double tolerance_grad = options.tolerance_grad;
  const double tolerance_change = options.tolerance_change;

  std::vector<T> g;
  double loss = eval.at_current(g);
  const double orig_loss = loss;
  int current_evals = 1;
  ++total_evals;
  if (abs_max<T>(g) <= tolerance_grad) {
    stop_reason = "tolerance_grad";
    return orig_loss;
  }

  std::vector<T> y, step_vec, q;
  std::vector<double> al;
  bool opt_cond = false;
  int n_iter = 0;
  while (n_iter < max_iter) {
    ++n_iter;
    ++total_iters;
    if (!s.has_direction) {
      s.d.resize(g.size());
      for (std::size_t i = 0; i < g.size(); ++i) s.d[i] = -g[i];
      s.old_dirs.clear();
      s.old_stps.clear();
      s.ro.clear();
      s.h_diag = 1.0;
      s.has_direction = true;
    } else {
      // The newest pair: y = g - g_prev, s = t · d (kept when the curvature ys is positive).
      y.resize(g.size());
      step_vec.resize(g.size());
      const auto t = static_cast<T>(s.t);
      for (std::size_t i = 0; i < g.size(); ++i) {
        y[i] = g[i] - s.prev_flat_grad[i];
        step_vec[i] = s.d[i] * t;
      }
      const double ys = dot(y, step_vec);
      if (ys > 1e-10) {
        if (static_cast<std::int64_t>(s.old_dirs.size()) == options.history_size) {
          s.old_dirs.pop_front();
          s.old_stps.pop_front();
          s.ro.pop_front();
        }
        s.h_diag = static_cast<T>(ys / dot(y, y));
        s.old_dirs.push_back(y);
        s.old_stps.push_back(step_vec);
        s.ro.push_back(static_cast<T>(1.0 / ys));
      }
      // Two-loop recursion: d = -H g with H the inverse-Hessian approximation.
      const std::size_t num_old = s.old_dirs.size();
      al.assign(num_old, 0.0);
      q.resize(g.size());
      for (std::size_t i = 0; i < g.size(); ++i) q[i] = -g[i];
      for (std::size_t i = num_old; i-- > 0;) {
        al[i] = dot(s.old_stps[i], q) * s.ro[i];
        add_scaled<T>(q, -al[i], s.old_dirs[i]);
      }
      const auto h_diag = static_cast<T>(s.h_diag);
      for (std::size_t i = 0; i < g.size(); ++i) s.d[i] = q[i] * h_diag;
      for (std::size_t i = 0; i < num_old; ++i) {
        const double be_i = dot(s.old_dirs[i], s.d) * s.ro[i];
        add_scaled<T>(s.d, al[i] - be_i, s.old_stps[i]);
      }
    }
    s.prev_flat_grad = g;
    s.prev_loss = loss;
    // The first iteration ever is scaled by 1 / |g|₁ (no curvature known yet).
    s.t = static_cast<T>(total_iters == 1 ? std::min(1.0, 1.0 / abs_sum<T>(g)) * lr : lr);
    const double gtd = dot(g, s.d);
    if (gtd > -tolerance_change) {
      stop_reason = "not a descent direction";
      break;
    }

    int ls_evals = 0;
    if (options.strong_wolfe) {
      const std::vector<T> x_init = x;
      auto [point, evals] =
          strong_wolfe<Eval>(eval, x_init, s.t, s.d, loss, g, gtd, tolerance_change);
      s.t = static_cast<T>(point.t);
      loss = point.f;
      g = std::move(point.g);
      ls_evals = evals;
      step_along<T>(x_init, s.t, s.d, x);
      eval.set(x);
      opt_cond = abs_max<T>(g) <= tolerance_grad;
    } else {
      add_scaled<T>(x, s.t, s.d);
      eval.set(x);
      if (n_iter != max_iter) {
        loss = eval.at_current(g);
        opt_cond = abs_max<T>(g) <= tolerance_grad;
        ls_evals = 1;
      }
    }
    current_evals += ls_evals;
    total_evals += ls_evals;

    const char* stop = nullptr;
    if (n_iter == max_iter) {
      stop = "max_iter";
    } else if (current_evals >= max_eval) {
      stop = "max_eval";
    } else if (opt_cond) {
      stop = "tolerance_grad";
    } else if (abs_max<T>(s.d) * std::fabs(s.t) <= tolerance_change) {
      stop = "tolerance_change (step)";
    } else if (std::fabs(loss - s.prev_loss) < tolerance_change) {
      stop = "tolerance_change (loss)";
    }
    if (stop != nullptr) {
      stop_reason = stop;
      break;
    }
  }
  return orig_loss;
}

// Evaluations of an LBfgsF64 closure at chosen parameters, with the values checked.
class EvaluatorF64 {
 public:
  using Scalar = double;
  EvaluatorF64(std::span<const double> x, const LBfgsF64::Closure& closure)
      : x_(x.begin(), x.end()), closure_(closure) {}

  double at_current(std::vector<double>& g) {
    g.assign(x_.size(), 0.0);
    const double loss = closure_(x_, g);
    ++count_;
    check_finite("LBfgsF64::step", count_, loss, g);
    return loss;
  }
  double at(std::span<const double> x, std::vector<double>& g) {
    set(x);
    return at_current(g);
  }
  void set(std::span<const double> x) { x_.assign(x.begin(), x.end()); }

 private:
  std::vector<double> x_;
  const LBfgsF64::Closure& closure_;
  int count_ = 0;
};

// body()'s result; when it throws, the history, the counters and the stop reason are put back as
// they were and undo() runs before the exception goes on.
template <class H, class Body, class Undo>
auto or_restore(H& history, std::int64_t& evals, std::int64_t& iters, std::string& reason,
                Body&& body, Undo&& undo) {
  const H saved = history;
  const std::int64_t saved_evals = evals, saved_iters = iters;
  const std::string saved_reason = reason;
  try {
    return body();
  } catch (...) {
    history = saved;
    evals = saved_evals;
    iters = saved_iters;
    reason = saved_reason;
    undo();
    throw;
  }
}

[[noreturn]] void bad_state(const std::string& what) {
  throw ShapeError("LBfgs::state_from_host: " + what);
}

}  // namespace

void validate(const LbfgsOptions& o) {
  const auto bad = [](const char* option, const std::string& what) {
    throw ArgumentError(std::string("lbfgs: option ") + option + ": " + what);
  };
  if (!(o.lr > 0.0f) || !std::isfinite(o.lr)) {
    bad("lr", "must be a finite number > 0, got " + std::to_string(o.lr));
  }
  if (o.max_iter < 1 || o.max_iter > kMaxWhole) {
    bad("max_iter", "must be in [1, 2^24], got " + std::to_string(o.max_iter));
  }
  if (o.max_eval < 0 || o.max_eval > kMaxWhole) {
    bad("max_eval",
        "must be in [0, 2^24] (0: max_iter * 5 / 4), got " + std::to_string(o.max_eval));
  }
  if (o.history_size < 1 || o.history_size > kMaxWhole) {
    bad("history_size", "must be in [1, 2^24], got " + std::to_string(o.history_size));
  }
  if (!(o.tolerance_grad >= 0.0f) || !std::isfinite(o.tolerance_grad)) {
    bad("tolerance_grad", "must be a finite number >= 0, got " + std::to_string(o.tolerance_grad));
  }
  if (!(o.tolerance_change >= 0.0f) || !std::isfinite(o.tolerance_change)) {
    bad("tolerance_change",
        "must be a finite number >= 0, got " + std::to_string(o.tolerance_change));
  }
}

LBfgs::LBfgs(Mlp& model, LbfgsOptions options, LrSchedule schedule)
    : Optimizer(model, (validate(options), options.lr), schedule), options_(options) {}

LBfgs::LBfgs(LBfgs&&) noexcept = default;
LBfgs& LBfgs::operator=(LBfgs&&) noexcept = default;
LBfgs::~LBfgs() = default;

void LBfgs::update(const UpdateInputs&) {
  throw ArgumentError(
      "LBfgs: an L-BFGS step evaluates the loss several times (its line search and iterations); "
      "call LBfgs::step(closure) with a closure that computes the loss and the gradient (a "
      "Trainer, which evaluates once per step, cannot drive it)");
}

float LBfgs::step(const Closure& closure) {
  if (!closure) throw ArgumentError("LBfgs::step: closure: empty");
  const std::int64_t p = model_->parameter_count();
  const std::size_t m = h_.ro.size();
  if (h_.old_dirs.size() != m || h_.old_stps.size() != m ||
      (h_.has_direction && (static_cast<std::int64_t>(h_.d.size()) != p ||
                            static_cast<std::int64_t>(h_.prev_flat_grad.size()) != p))) {
    throw DataError(
        "LBfgs::step: the restored state is inconsistent (old_dirs, old_stps and ro must hold "
        "the same number of pairs, d and prev_flat_grad one value per parameter)");
  }
  // A failed step changes nothing: the state and the parameters are put back.
  const std::vector<float> saved_params = model_->params_to_host();
  return or_restore(
      h_, func_evals_, n_iter_, stop_reason_,
      [&] {
        const float loss = run(closure, saved_params);
        advance();
        return loss;
      },
      [&] { model_->params_from_host(saved_params); });
}

float LBfgs::run(const Closure& closure, std::vector<float> x) {
  Evaluator eval(*model_, closure);
  return static_cast<float>(
      iterate(eval, h_, x, options_, this->lr(), n_iter_, func_evals_, stop_reason_));
}

LBfgsF64::LBfgsF64(LbfgsOptions options) : options_((validate(options), options)) {}

double LBfgsF64::step(std::span<double> x, const Closure& closure) {
  if (!closure) throw ArgumentError("LBfgsF64::step: closure: empty");
  if (h_.has_direction && h_.d.size() != x.size()) {
    throw ArgumentError("LBfgsF64::step: x holds " + std::to_string(x.size()) +
                        " values, the history " + std::to_string(h_.d.size()) +
                        " (another problem needs an LBfgsF64 of its own)");
  }
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) {
      throw ArgumentError("LBfgsF64::step: x[" + std::to_string(i) + "] is not finite");
    }
  }
  // A failed step changes nothing: the state is put back and x is written only at the end.
  return or_restore(
      h_, func_evals_, n_iter_, stop_reason_,
      [&] {
        EvaluatorF64 eval(x, closure);
        std::vector<double> current(x.begin(), x.end());
        const double loss =
            iterate(eval, h_, current, options_, options_.lr, n_iter_, func_evals_, stop_reason_);
        std::copy(current.begin(), current.end(), x.begin());
        return loss;
      },
      [] {});
}

namespace {

constexpr char kF64StateMagic[8] = {'D', 'S', 'C', 'N', 'T', 'L', 'B', 'D'};
constexpr std::uint32_t kF64StateVersion = 2;  // 2: the problem after the rest

// The first value of v that is not finite, as "<what>[i]"; empty when all are.
std::string first_not_finite(const std::vector<double>& v, const std::string& what) {
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) return what + "[" + std::to_string(i) + "]";
  }
  return {};
}

// What is wrong with an L-BFGS history for n parameters and at most `history` pairs, as a
// phrase; empty when nothing is. A history that passes continues an L-BFGS run: sizes that fit
// x, pairs only once there is a direction, every value finite.
std::string history_problem(const detail::LbfgsHistory<double>& h, std::size_t n,
                            std::int64_t history) {
  const std::size_t pairs = h.ro.size();
  for (const auto& [v, what] :
       {std::pair{&h.d, "d"}, std::pair{&h.prev_flat_grad, "prev_flat_grad"}}) {
    if (!v->empty() && v->size() != n) {
      return std::string(what) + " holds " + std::to_string(v->size()) + " values, x " +
             std::to_string(n);
    }
  }
  if (h.has_direction && (h.d.size() != n || h.prev_flat_grad.size() != n)) {
    return "a direction without d and prev_flat_grad";
  }
  if (pairs > static_cast<std::size_t>(history)) {
    return std::to_string(pairs) + " stored pairs, more than this optimizer's history_size (" +
           std::to_string(history) + ")";
  }
  if (pairs > 0 && !h.has_direction) return "stored pairs without a direction";
  if (h.old_dirs.size() != pairs || h.old_stps.size() != pairs) {
    return "old_dirs, old_stps and ro of different lengths";
  }
  for (std::size_t k = 0; k < pairs; ++k) {
    if (h.old_dirs[k].size() != n || h.old_stps[k].size() != n) {
      return "stored pair " + std::to_string(k) + " is not of " + std::to_string(n) + " values";
    }
  }
  for (const auto& [v, what] : {std::pair{h.t, "t"}, std::pair{h.h_diag, "H_diag"},
                                std::pair{h.prev_loss, "the previous loss"}}) {
    if (!std::isfinite(v)) return std::string(what) + " is not finite";
  }
  std::string bad = first_not_finite(h.d, "d");
  if (bad.empty()) bad = first_not_finite(h.prev_flat_grad, "prev_flat_grad");
  if (bad.empty()) bad = first_not_finite(std::vector<double>(h.ro.begin(), h.ro.end()), "ro");
  for (std::size_t k = 0; k < pairs && bad.empty(); ++k) {
    bad = first_not_finite(h.old_dirs[k], "old_dirs " + std::to_string(k));
    if (bad.empty()) bad = first_not_finite(h.old_stps[k], "old_stps " + std::to_string(k));
  }
  return bad.empty() ? bad : bad + " is not finite";
}

// A problem's text in a message: quoted, its first 160 bytes, or "none" when it is empty.
std::string quoted_start(const std::string& problem) {
  if (problem.empty()) return "none";
  constexpr std::size_t kShown = 160;
  return "\"" + problem.substr(0, kShown) + (problem.size() > kShown ? "...\"" : "\"");
}

// The most bytes a state of n parameters and at most `history` pairs takes (fixed fields, x, d
// and prev_flat_grad, the pairs, ro), or UINT64_MAX when that overflows.
std::uint64_t most_state_bytes(std::uint64_t n, std::uint64_t history) {
  std::uint64_t vectors = 0, doubles = 0, bytes = 0;
  if (!detail::checked_mul(2, history, vectors) || !detail::checked_mul(n, vectors + 3, doubles) ||
      __builtin_add_overflow(doubles, history, &doubles) ||
      !detail::checked_mul(doubles, sizeof(double), bytes) ||
      __builtin_add_overflow(bytes, std::uint64_t(1024), &bytes)) {
    return UINT64_MAX;
  }
  return bytes;
}

}  // namespace

void LBfgsF64::set_problem(std::string problem) {
  if (problem.size() > kMaxProblemBytes) {
    throw ArgumentError("LBfgsF64::set_problem: " + std::to_string(problem.size()) +
                        " bytes, at most " + std::to_string(kMaxProblemBytes));
  }
  problem_ = std::move(problem);
}

void LBfgsF64::save(const std::string& path, std::span<const double> x) const {
  if (x.empty()) throw ArgumentError("LBfgsF64::save: x: empty");
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) {
      throw ArgumentError("LBfgsF64::save: x[" + std::to_string(i) + "] is not finite");
    }
  }
  if (h_.has_direction && h_.d.size() != x.size()) {
    throw ArgumentError("LBfgsF64::save: x holds " + std::to_string(x.size()) +
                        " values, the history " + std::to_string(h_.d.size()));
  }
  // What load would refuse is not written.
  if (const std::string bad = history_problem(h_, x.size(), options_.history_size); !bad.empty()) {
    throw NumericError("LBfgsF64::save: the optimizer's state cannot be saved: " + bad);
  }
  detail::Writer w(kF64StateMagic, kF64StateVersion);
  w.put<std::uint64_t>(x.size());
  w.put<std::int64_t>(n_iter_);
  w.put<std::int64_t>(func_evals_);
  w.put<double>(h_.t);
  w.put<double>(h_.h_diag);
  w.put<double>(h_.prev_loss);
  w.put<std::uint8_t>(h_.has_direction ? 1 : 0);
  w.put_values(std::vector<double>(x.begin(), x.end()));
  w.put_values(h_.d);
  w.put_values(h_.prev_flat_grad);
  w.put<std::uint64_t>(h_.ro.size());
  for (std::size_t k = 0; k < h_.ro.size(); ++k) {
    w.put_values(h_.old_dirs[k]);
    w.put_values(h_.old_stps[k]);
  }
  w.put_values(std::vector<double>(h_.ro.begin(), h_.ro.end()));
  w.put_string(problem_);
  write_file_atomic(path, w.finish(), "LBfgsF64::save");
}

void LBfgsF64::load(const std::string& path, std::span<double> x) {
  if (x.empty()) throw ArgumentError("LBfgsF64::load: x: empty");
  // A state for x and this history_size has a known largest size: a larger file (another
  // file given by mistake, a checkpoint say) is refused before it is read.
  const std::uint64_t most =
      std::min(most_state_bytes(x.size(), std::uint64_t(options_.history_size)),
               (std::uint64_t(1) << 37) - kMaxProblemBytes) +
      kMaxProblemBytes;
  const detail::Frame frame = detail::read_frame(
      path, kF64StateMagic, kF64StateVersion, most, "descent L-BFGS float64 state", "L-BFGS state",
      "an L-BFGS state for this x and history_size", "LBfgsF64::load");
  const std::string where = "L-BFGS state '" + path + "'";
  detail::Reader r(frame.bytes, frame.begin, frame.end, where);
  const auto n = r.get<std::uint64_t>("parameter count");
  if (n != x.size()) {
    throw DataError(where + ": it holds " + std::to_string(n) + " parameters, x " +
                    std::to_string(x.size()) + " (a state belongs to the problem that saved it)");
  }
  History h;
  const auto iterations = r.get<std::int64_t>("iteration count");
  const auto evaluations = r.get<std::int64_t>("evaluation count");
  if (iterations < 0 || evaluations < 0) {
    r.fail("iteration and evaluation counts " + std::to_string(iterations) + " and " +
           std::to_string(evaluations) + ", expected >= 0");
  }
  h.t = r.get<double>("t");
  h.h_diag = r.get<double>("H_diag");
  h.prev_loss = r.get<double>("the previous loss");
  const auto has_direction = r.get<std::uint8_t>("has_direction");
  if (has_direction > 1) r.fail("has_direction " + std::to_string(has_direction));
  h.has_direction = has_direction == 1;
  const std::vector<double> point = r.get_values<double>("x");
  if (point.size() != n) r.fail("x: " + std::to_string(point.size()) + " values");
  if (const std::string bad = first_not_finite(point, "x"); !bad.empty()) {
    throw DataError(where + ": " + bad + " is not finite");
  }
  h.d = r.get_values<double>("d");
  h.prev_flat_grad = r.get_values<double>("prev_flat_grad");
  // The count is checked against history_size with the rest below; the reads are bounded by
  // the file, whose size is bounded by the largest state for this history_size.
  const auto pairs = r.get<std::uint64_t>("stored pairs");
  for (std::uint64_t k = 0; k < pairs; ++k) {
    h.old_dirs.push_back(r.get_values<double>("old_dirs"));
    h.old_stps.push_back(r.get_values<double>("old_stps"));
  }
  const std::vector<double> ro = r.get_values<double>("ro");
  h.ro.assign(ro.begin(), ro.end());
  const std::string problem = frame.version >= 2 ? r.get_string("problem") : std::string();
  if (!r.done()) r.fail("bytes left over after the last field");
  if (problem != problem_) {
    throw DataError(
        where + ": saved for the problem " + quoted_start(problem) + ", this optimizer's is " +
        quoted_start(problem_) +
        " (LBfgsF64::set_problem): a state goes on only with the problem that saved it");
  }
  if (const std::string bad = history_problem(h, n, options_.history_size); !bad.empty()) {
    throw DataError(where + ": " + bad);
  }
  // Everything checked: now it changes.
  h_ = std::move(h);
  n_iter_ = iterations;
  func_evals_ = evaluations;
  stop_reason_.clear();
  std::copy(point.begin(), point.end(), x.begin());
}

std::vector<std::string> LBfgs::state_names() const {
  return {"d", "prev_flat_grad", "old_dirs", "old_stps", "ro", "scalars"};
}

std::vector<float> LBfgs::state_to_host(const std::string& name) const {
  const auto p = static_cast<std::size_t>(model_->parameter_count());
  const auto flat = [&](const std::deque<std::vector<float>>& pairs) {
    std::vector<float> out;
    out.reserve(pairs.size() * p);
    for (const std::vector<float>& v : pairs) out.insert(out.end(), v.begin(), v.end());
    return out;
  };
  if (name == "d" || name == "prev_flat_grad") {
    const std::vector<float>& v = name == "d" ? h_.d : h_.prev_flat_grad;
    return v.empty() ? std::vector<float>(p, 0.0f) : v;
  }
  if (name == "old_dirs") return flat(h_.old_dirs);
  if (name == "old_stps") return flat(h_.old_stps);
  if (name == "ro") return {h_.ro.begin(), h_.ro.end()};
  if (name == "scalars") {
    return {static_cast<float>(n_iter_),      static_cast<float>(func_evals_),
            static_cast<float>(h_.t),         static_cast<float>(h_.h_diag),
            static_cast<float>(h_.prev_loss), h_.has_direction ? 1.0f : 0.0f};
  }
  throw ArgumentError("LBfgs: state '" + name +
                      "': expected one of d, prev_flat_grad, old_dirs, old_stps, ro, scalars");
}

void LBfgs::state_from_host(const std::string& name, std::span<const float> values) {
  const std::int64_t p = model_->parameter_count();
  const auto n = static_cast<std::int64_t>(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      bad_state(name + ": value " + std::to_string(i) + " is not finite");
    }
  }
  const std::int64_t max_pairs = options_.history_size;
  if (name == "d" || name == "prev_flat_grad") {
    if (n != p) {
      bad_state(name + ": expected " + std::to_string(p) + " values, got " + std::to_string(n));
    }
    (name == "d" ? h_.d : h_.prev_flat_grad).assign(values.begin(), values.end());
    return;
  }
  if (name == "old_dirs" || name == "old_stps") {
    if (p == 0 || n % p != 0 || n / p > max_pairs) {
      bad_state(name + ": expected a multiple of " + std::to_string(p) + " values, at most " +
                std::to_string(max_pairs) + " of them (history_size), got " + std::to_string(n));
    }
    std::deque<std::vector<float>>& pairs = name == "old_dirs" ? h_.old_dirs : h_.old_stps;
    pairs.clear();
    for (std::int64_t k = 0; k < n / p; ++k) {
      pairs.emplace_back(values.begin() + k * p, values.begin() + (k + 1) * p);
    }
    return;
  }
  if (name == "ro") {
    if (n > max_pairs) {
      bad_state("ro: at most " + std::to_string(max_pairs) + " values (history_size), got " +
                std::to_string(n));
    }
    h_.ro.assign(values.begin(), values.end());
    return;
  }
  if (name == "scalars") {
    if (n != kScalars) {
      bad_state("scalars: expected " + std::to_string(kScalars) + " values, got " +
                std::to_string(n));
    }
    for (int i : {0, 1}) {
      if (values[i] < 0.0f || values[i] != std::floor(values[i])) {
        bad_state("scalars: the " + std::string(i == 0 ? "iteration" : "evaluation") +
                  " count is " + std::to_string(values[i]) + ", expected a whole number >= 0");
      }
    }
    n_iter_ = static_cast<std::int64_t>(values[0]);
    func_evals_ = static_cast<std::int64_t>(values[1]);
    h_.t = values[2];
    h_.h_diag = values[3];
    h_.prev_loss = values[4];
    h_.has_direction = values[5] != 0.0f;
    return;
  }
  state_to_host(name);  // throws the unknown-name error
}

namespace detail {

std::string check_lbfgs_state(std::span<const OptimizerOption> options,
                              const std::vector<std::pair<std::string, std::vector<float>>>& state,
                              std::int64_t parameters) {
  std::int64_t history = 0;
  for (const OptimizerOption& o : options) {
    if (std::strcmp(o.name, "history_size") == 0 && o.number >= 1.0f && o.number <= kMaxWhole) {
      history = static_cast<std::int64_t>(o.number);
    }
  }
  std::int64_t pairs[3] = {-1, -1, -1};  // old_dirs, old_stps, ro
  for (const auto& [name, values] : state) {
    const auto n = static_cast<std::int64_t>(values.size());
    std::string expected;
    if (name == "d" || name == "prev_flat_grad") {
      if (n != parameters) expected = "one per parameter (" + std::to_string(parameters) + ")";
    } else if (name == "old_dirs" || name == "old_stps") {
      if (parameters == 0 || n % parameters != 0 || n / parameters > history) {
        expected = "a multiple of " + std::to_string(parameters) + ", at most " +
                   std::to_string(history) + " of them";
      } else {
        pairs[name == "old_dirs" ? 0 : 1] = n / parameters;
      }
    } else if (name == "ro") {
      if (n > history) expected = "at most " + std::to_string(history);
      pairs[2] = n;
    } else if (name == "scalars") {
      if (n != kScalars) expected = std::to_string(kScalars);
    }
    if (!expected.empty()) {
      return std::to_string(n) + " values of optimizer state '" + name + "', expected " + expected;
    }
  }
  if (pairs[0] != pairs[1] || pairs[0] != pairs[2]) {
    return "the L-BFGS history is inconsistent: " + std::to_string(pairs[0]) + " old_dirs, " +
           std::to_string(pairs[1]) + " old_stps, " + std::to_string(pairs[2]) +
           " ro (one of each per stored pair)";
  }
  return {};
}

}  // namespace detail

}  // namespace descent
