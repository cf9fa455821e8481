// Optimizers over an Mlp's flat parameter buffer, with a learning-rate schedule: Sgd
// (torch.optim.SGD), Adam and AdamW (torch.optim.Adam / AdamW), behind one Optimizer interface.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string>
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

enum class OptimizerKind { sgd, adam, adamw };
// "sgd", "adam", "adamw".
const char* to_string(OptimizerKind kind);
// Parses "sgd", "adam", "adamw"; throws ArgumentError naming the text otherwise.
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
// weight_decay 0 (AdamW 0.01), amsgrad, maximize).
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

}  // namespace descent

DESCENT_API_END
