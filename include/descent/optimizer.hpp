// Optimizers over an Mlp's flat parameter buffer, with a learning-rate schedule: Sgd
// (torch.optim.SGD), Adam and AdamW (torch.optim.Adam / AdamW) and LBfgs (torch.optim.LBFGS),
// behind one Optimizer interface.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "descent/buffer.hpp"
#include "descent/export.h"
#include "descent/ops.hpp"

DESCENT_API_BEGIN

namespace descent {

class Mlp;
class Trainer;

// What a training step hands to its optimizer's update on the device, besides the gradients: one
// object, filled by the Trainer (an optimizer's own step() passes none of them).
struct UpdateInputs {
  // A device int: when non-zero (a non-finite loss on this step) the update is skipped.
  const std::int32_t* found_inf = nullptr;
  // A device float multiplying every gradient first (gradient clipping's coefficient).
  const float* grad_scale = nullptr;
};

// The learning rate as a function of the step index k = 0, 1, 2, ... (updates done before it):
//   constant:              lr
//   step(every, gamma):    lr · gamma^floor(k / every)            (torch StepLR, counted in steps)
//   cosine(total, min_lr): min_lr + (lr - min_lr) · (1 + cos(π · min(k, total) / total)) / 2
//                          (torch CosineAnnealingLR with T_max = total, eta_min = min_lr)
struct LrSchedule {
  enum class Kind { constant, step, cosine };
  Kind kind = Kind::constant;
  std::int64_t every = 1;  // step: steps between decays
  float gamma = 1.0f;      // step: decay factor
  std::int64_t total = 1;  // cosine: steps of the half period
  float min_lr = 0.0f;     // cosine: the floor

  static LrSchedule constant() { return {}; }
  static LrSchedule step(std::int64_t every, float gamma);
  static LrSchedule cosine(std::int64_t total, float min_lr = 0.0f);

  // The learning rate of step k given the base rate.
  float at(float base_lr, std::int64_t k) const;
  // "constant", "step(every=..., gamma=...)", "cosine(total=..., min_lr=...)".
  std::string describe() const;
};
// "constant", "step", "cosine".
const char* to_string(LrSchedule::Kind kind);

// Throws ArgumentError naming the field when a schedule is unusable (every or total < 1, gamma
// or min_lr negative or not finite).
void validate(const LrSchedule& schedule);

enum class OptimizerKind { sgd, adam, adamw, lbfgs };
// "sgd", "adam", "adamw", "lbfgs".
const char* to_string(OptimizerKind kind);
// Parses "sgd", "adam", "adamw", "lbfgs"; throws ArgumentError naming the text otherwise.
OptimizerKind parse_optimizer(const char* text);

// One option of an optimizer, by name: a number (float) or a flag. Each optimizer lists its
// options once, in the order its checkpoints store them (the numbers, then the flags); the
// trainer's cross-rank check, checkpoints, the C API and the command all go through that list,
// so an optimizer's options are written down in one place.
struct OptimizerOption {
  enum class Type { number, flag };
  const char* name = "";
  Type type = Type::number;
  float number = 0.0f;  // Type::number
  bool flag = false;    // Type::flag
};

// The options of `kind` with their defaults (torch.optim's: SGD lr 0.01, momentum 0, dampening 0,
// weight_decay 0, nesterov, maximize; Adam lr 1e-3, beta1 0.9, beta2 0.999, eps 1e-8,
// weight_decay 0 (AdamW 0.01), amsgrad, maximize; L-BFGS lr 1, max_iter 20, max_eval 0 (meaning
// max_iter · 5 / 4), tolerance_grad 1e-7, tolerance_change 1e-9, history_size 100, strong_wolfe).
// Whole-number options (L-BFGS's max_iter, max_eval, history_size) are numbers that must be whole.
std::vector<OptimizerOption> default_options(OptimizerKind kind);
// The defaults of `kind` with `changes` applied by name. ArgumentError for a name `kind` does not
// have (listing the ones it has), a flag given as a number or the other way round, or options
// that validate() refuses.
std::vector<OptimizerOption> with_options(OptimizerKind kind,
                                          std::span<const OptimizerOption> changes);
// "lr=0.01, momentum=0.9, nesterov=1" (or true/false for flags; spaces allowed; empty: the
// defaults) as with_options' changes for `kind`. Each number is checked as the float it becomes:
// NaN, infinities, values that overflow a float or underflow to 0 are ArgumentErrors naming the
// option.
std::vector<OptimizerOption> parse_optimizer_options(OptimizerKind kind, const std::string& text);
// "lr 0.01 momentum 0.9 nesterov": the options as the command's summary prints them.
std::string describe_options(std::span<const OptimizerOption> options);

class Optimizer;
// The optimizer of `kind` with these options (as with_options returns them) on `model`.
std::unique_ptr<Optimizer> make_optimizer(Mlp& model, OptimizerKind kind,
                                          std::span<const OptimizerOption> options,
                                          LrSchedule schedule = LrSchedule::constant());

// What every optimizer shares: the model, the step count, the learning rate and its schedule
// (written to a one-float device buffer before each step, so a captured CUDA graph follows the
// schedule), and its state for checkpoints. step() queues one update from the model's
// gradients; it allocates nothing and does not wait for the device.
class Optimizer {
 public:
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;
  virtual ~Optimizer();

  virtual OptimizerKind kind() const = 0;
  // Every option of this optimizer, as default_options(kind()) lists them, with its values.
  virtual std::vector<OptimizerOption> options_list() const = 0;
  const LrSchedule& schedule() const { return schedule_; }
  Mlp& model() const { return *model_; }
  // Updates taken so far (the index of the next one); a step skipped for a non-finite loss
  // counts as taken.
  std::int64_t steps() const { return steps_; }
  // The base learning rate and the one the next step uses.
  float base_lr() const { return base_lr_; }
  float lr() const { return schedule_.at(base_lr_, steps_); }

  // One update from the model's gradients (queued): the learning rate of the schedule written
  // to the device, the update, the step counted.
  void step();
  void set_steps(std::int64_t steps);

  // The state a checkpoint holds besides the step count: named buffers of parameter_count()
  // floats (Sgd: "momentum" when momentum != 0; Adam: "exp_avg", "exp_avg_sq", and
  // "max_exp_avg_sq" with amsgrad) and named scalars (Adam: "step", the updates applied).
  virtual std::vector<std::string> state_names() const = 0;
  virtual std::vector<float> state_to_host(const std::string& name) const = 0;
  // Throws ShapeError when the count is not the state's, ArgumentError for an unknown name.
  virtual void state_from_host(const std::string& name, std::span<const float> values) = 0;

  // Why this optimizer's own options can make a parameter non-finite from finite gradients
  // (Adam with eps 0), for the message of a diverged run; empty when nothing of the kind.
  virtual std::string non_finite_cause() const { return {}; }

 protected:
  friend class Trainer;  // a step: prepare(), update(inputs) (queued or captured), advance()
  // Writes the next step's learning rate to the device (queued).
  void prepare();
  // The update itself, reading the learning rate written by prepare(). Does not count the step.
  virtual void update(const UpdateInputs& inputs) = 0;
  // Marks one step as taken.
  void advance() { ++steps_; }

  Optimizer(Mlp& model, float base_lr, LrSchedule schedule);
  Optimizer(Optimizer&&) noexcept;
  Optimizer& operator=(Optimizer&&) noexcept;
  const float* lr_device() const { return lr_.data(); }
  // The name of this optimizer in messages ("Sgd", "Adam", "AdamW").
  const char* name() const;

  Mlp* model_ = nullptr;
  float base_lr_ = 0.0f;

 private:
  LrSchedule schedule_;
  std::int64_t steps_ = 0;
  Buffer<float> lr_;                                            // one float on the model's device
  float lr_written_ = std::numeric_limits<float>::quiet_NaN();  // what lr_ holds
};

// SGD on one Mlp: owns the momentum buffer (same layout as the parameters, zero at start).
class Sgd : public Optimizer {
 public:
  // Throws ArgumentError (via validate) for invalid options or schedule.
  Sgd(Mlp& model, SgdOptions options, LrSchedule schedule = LrSchedule::constant());
  Sgd(Sgd&&) noexcept;
  Sgd& operator=(Sgd&&) noexcept;
  ~Sgd() override;

  OptimizerKind kind() const override { return OptimizerKind::sgd; }
  const SgdOptions& options() const { return options_; }
  std::vector<OptimizerOption> options_list() const override;
  void update(const UpdateInputs& inputs) override;

  VectorView<float> momentum() { return momentum_.view(); }
  VectorView<const float> momentum() const { return momentum_.view(); }
  // Restores the state a checkpoint holds. The buffer counts as initialised (the next update
  // is not torch's first) when any value is nonzero: a checkpoint stores no flag, and a buffer
  // no update was applied to is all zeros (a first update with an all-zero gradient is the one
  // case read as not applied).
  void momentum_from_host(std::span<const float> host);
  std::vector<float> momentum_to_host() const;
  bool has_momentum() const { return options_.momentum != 0.0f; }

  std::vector<std::string> state_names() const override;
  std::vector<float> state_to_host(const std::string& name) const override;
  void state_from_host(const std::string& name, std::span<const float> values) override;

 private:
  SgdOptions options_;
  Buffer<float> momentum_;
  // With momentum, on the device: [0] whether an update was applied to momentum_ yet (torch
  // initialises the buffer to the gradient on the first update that happens, so a step skipped
  // for a non-finite loss does not count), [1] the flag the running update reads (SgdStep).
  Buffer<std::int32_t> started_;
};

// Adam (coupled L2 weight decay, as torch.optim.Adam) or AdamW (decoupled weight decay, as
// torch.optim.AdamW) on one Mlp: owns exp_avg, exp_avg_sq (and max_exp_avg_sq with amsgrad),
// zero at start, and the count of updates applied (which sets the bias correction; a skipped
// step does not advance it, as in PyTorch's fused implementation). One fused pass per step.
class Adam : public Optimizer {
 public:
  // Throws ArgumentError (via validate) for invalid options or schedule.
  Adam(Mlp& model, AdamOptions options = {}, LrSchedule schedule = LrSchedule::constant());
  Adam(Adam&&) noexcept;
  Adam& operator=(Adam&&) noexcept;
  ~Adam() override;

  OptimizerKind kind() const override {
    return options_.decoupled_weight_decay ? OptimizerKind::adamw : OptimizerKind::adam;
  }
  const AdamOptions& options() const { return options_; }
  std::vector<OptimizerOption> options_list() const override;
  void update(const UpdateInputs& inputs) override;

  std::vector<std::string> state_names() const override;
  std::vector<float> state_to_host(const std::string& name) const override;
  void state_from_host(const std::string& name, std::span<const float> values) override;
  std::string non_finite_cause() const override;

 private:
  AdamOptions options_;
  Buffer<float> exp_avg_, exp_avg_sq_, max_exp_avg_sq_;
  Buffer<float> scalars_;  // detail::AdamScalars on the model's device
};

// AdamW: Adam with decoupled weight decay (PyTorch's default weight_decay 0.01).
class AdamW : public Adam {
 public:
  explicit AdamW(Mlp& model, AdamOptions options = adamw_defaults(),
                 LrSchedule schedule = LrSchedule::constant());
  static AdamOptions adamw_defaults() {
    AdamOptions o;
    o.weight_decay = 0.01f;
    return o;
  }
};

// torch.optim.LBFGS's options. max_iter: iterations per step(); max_eval: loss evaluations per
// step() (0: max_iter · 5 / 4, torch's default); a step() stops early when the largest gradient
// component is <= tolerance_grad, or the step or the change of the loss is below
// tolerance_change. strong_wolfe: a line search for the strong Wolfe conditions (torch's
// line_search_fn="strong_wolfe": c1 1e-4, c2 0.9, at most 25 evaluations); otherwise each
// iteration moves by lr along the L-BFGS direction.
struct LbfgsOptions {
  float lr = 1.0f;
  std::int32_t max_iter = 20;
  std::int32_t max_eval = 0;
  float tolerance_grad = 1e-7f;
  float tolerance_change = 1e-9f;
  std::int32_t history_size = 100;
  bool strong_wolfe = false;
};
// Throws ArgumentError naming the option: lr finite and > 0, max_iter and history_size in
// [1, 2^24], max_eval in [0, 2^24], tolerances finite and >= 0.
void validate(const LbfgsOptions& options);
// LbfgsOptions from a list of options (e.g. parse_optimizer_options(OptimizerKind::lbfgs,
// "history_size=50, strong_wolfe=1")), the others at their defaults, validated.
LbfgsOptions lbfgs_options(std::span<const OptimizerOption> options);

namespace detail {
// What L-BFGS keeps between steps (LBfgs: T = float, LBfgsF64: double): the direction, the last
// gradient, the stored pairs and their ρ, the step t, H_diag, the previous loss.
template <class T>
struct LbfgsHistory {
  std::vector<T> d, prev_flat_grad;
  std::deque<std::vector<T>> old_dirs, old_stps;
  std::deque<double> ro;
  double t = 0, h_diag = 1, prev_loss = 0;
  bool has_direction = false;
};
}  // namespace detail

// L-BFGS with torch.optim.LBFGS's algorithm (the two-loop recursion over the last history_size
// pairs, the first step scaled by 1 / |g|₁, the same stopping rules and strong-Wolfe line search
// with cubic interpolation), full batch: step(closure) evaluates the loss several times. The
// closure computes the loss at the model's current parameters and leaves its gradient in
// model.grads() (zeroed or overwritten by the closure, as a backward pass does); it returns the
// loss. Data parallel: the closure sums the gradients over the ranks (Communicator::
// sum_gradients) and returns the loss over all of them, so every rank takes the same decisions
// and the replicas stay equal.
//
// The direction arithmetic runs on the host (float vectors, dot products summed in double, the
// same bits for any thread count); parameters and gradients cross once per evaluation, which on
// the GPU costs one transfer of the parameter count each way. The Trainer cannot drive it (one
// evaluation per step): a Trainer given an LBfgs throws ArgumentError.
class LBfgs : public Optimizer {
 public:
  using Closure = std::function<float()>;

  // Throws ArgumentError (via validate) for invalid options or schedule.
  LBfgs(Mlp& model, LbfgsOptions options = {}, LrSchedule schedule = LrSchedule::constant());
  LBfgs(LBfgs&&) noexcept;
  LBfgs& operator=(LBfgs&&) noexcept;
  ~LBfgs() override;

  OptimizerKind kind() const override { return OptimizerKind::lbfgs; }
  const LbfgsOptions& options() const { return options_; }
  std::vector<OptimizerOption> options_list() const override;

  // Up to max_iter iterations; returns the loss of the first evaluation (as torch). A closure
  // that throws, or a loss or gradient that is not finite, leaves the parameters and this
  // optimizer's state as they were before the call (NumericError for the non-finite values).
  float step(const Closure& closure);
  // Loss evaluations and iterations over all steps so far.
  std::int64_t evaluations() const { return func_evals_; }
  std::int64_t iterations() const { return n_iter_; }
  // Why the last step() stopped: "max_iter", "max_eval", "tolerance_grad" (the largest gradient
  // component), "tolerance_change (step)", "tolerance_change (loss)", "not a descent direction"
  // (the direction's slope above -tolerance_change); empty before the first step.
  const std::string& stop_reason() const { return stop_reason_; }

  // "d", "prev_flat_grad" (one float per parameter), "old_dirs", "old_stps" (the stored pairs,
  // m · parameters floats, m <= history_size), "ro" (m floats), "scalars" (iterations,
  // evaluations, t, H_diag, the previous loss, whether a direction exists).
  std::vector<std::string> state_names() const override;
  std::vector<float> state_to_host(const std::string& name) const override;
  void state_from_host(const std::string& name, std::span<const float> values) override;

 protected:
  // A single-gradient update is not L-BFGS: throws ArgumentError pointing to step(closure).
  void update(const UpdateInputs& inputs) override;

 private:
  using History = detail::LbfgsHistory<float>;
  // x: the parameters on the host (step() has read them for its snapshot already).
  float run(const Closure& closure, std::vector<float> x);

  LbfgsOptions options_;
  History h_;
  std::int64_t func_evals_ = 0, n_iter_ = 0;
  std::string stop_reason_;
};

// L-BFGS over float64 parameters the caller holds (JetF64's, descent/jet.hpp): LBfgs's algorithm
// and options in float64 throughout (the directions, the history and the line search), for
// losses evaluated in float64, where a float32 run stalls at the rounding of its loss. The
// closure gets the point x and writes the gradient there into g (zeroed before each call); it
// returns the loss. Data parallel: each rank's closure weights its terms by its share of the
// global batch and sums g and the loss over the ranks (Communicator::sum on doubles), so every
// rank takes the same decisions. save and load keep x and the whole state in float64 in a file
// of their own (a checkpoint's floats would round them), so that a long run can stop and go on
// bit for bit.
class LBfgsF64 {
 public:
  using Closure = std::function<double(std::span<const double> x, std::span<double> g)>;

  // Throws ArgumentError (via validate) for invalid options.
  explicit LBfgsF64(LbfgsOptions options = {});

  const LbfgsOptions& options() const { return options_; }
  // Up to max_iter iterations from x, which ends at the last accepted point; returns the loss of
  // the first evaluation. A closure that throws, or a loss or gradient that is not finite, leaves
  // x and this optimizer's state as they were (NumericError for the non-finite values).
  double step(std::span<double> x, const Closure& closure);
  std::int64_t evaluations() const { return func_evals_; }
  std::int64_t iterations() const { return n_iter_; }
  // As LBfgs::stop_reason.
  const std::string& stop_reason() const { return stop_reason_; }

  // What this optimizer minimises, as text of the caller's (the loss, its points, the network's
  // widths, a seed; empty by default, at most kMaxProblemBytes): save stores it, and load refuses
  // a state saved with another, since a state continued on another problem would go on from the
  // wrong point and history without a word. ArgumentError for a longer text.
  static constexpr std::size_t kMaxProblemBytes = 65536;
  void set_problem(std::string problem);
  const std::string& problem() const { return problem_; }

  // Writes x (the point this optimizer steps) and its state — the direction, the last gradient,
  // the stored pairs and their ρ, the step, H_diag, the previous loss, the iteration and
  // evaluation counts, all as they are — and the problem (set_problem) to `path` through
  // write_file_atomic (descent/output.hpp: a failure, a full disk say, throws IoError and leaves
  // a previous file at `path` intact). The options are not stored: they are the loading
  // optimizer's. Format (little-endian): "DSCNTLBD", u32 version 2, u64 payload size, payload
  // (version 1's, then the problem as u32 length and bytes), u32 CRC-32 (zlib) of everything
  // before it. ArgumentError for an empty or non-finite x, or one of another size
  // than the history's.
  void save(const std::string& path, std::span<const double> x) const;
  // Reads a file save wrote into x and this optimizer, which then continues as the one that
  // saved would have, bit for bit (given the same options). IoError for a missing, unreadable
  // or special file; DataError for another kind of file, a corrupt one, another parameter count
  // than x's, more stored pairs than this optimizer's history_size, a value that is not finite,
  // another problem than this optimizer's (a version 1 file, written before problems were
  // stored, holds the empty one).
  // Nothing changes when it throws. Data parallel: one rank saves (the replicas are equal),
  // every rank loads.
  void load(const std::string& path, std::span<double> x);

 private:
  using History = detail::LbfgsHistory<double>;
  LbfgsOptions options_;
  History h_;
  std::int64_t func_evals_ = 0, n_iter_ = 0;
  std::string stop_reason_;
  std::string problem_;
};

namespace detail {
// Empty when `state` (a checkpoint's) has the sizes an LBfgs with these options keeps on a model
// of `parameters` floats (its history pairs consistent); otherwise what is wrong.
std::string check_lbfgs_state(std::span<const OptimizerOption> options,
                              const std::vector<std::pair<std::string, std::vector<float>>>& state,
                              std::int64_t parameters);
}  // namespace detail

}  // namespace descent

DESCENT_API_END
