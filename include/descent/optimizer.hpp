// Sgd: torch.optim.SGD over an Mlp's flat parameter buffer, with a learning-rate schedule.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "descent/buffer.hpp"
#include "descent/export.h"
#include "descent/ops.hpp"

DESCENT_API_BEGIN

namespace descent {

class Mlp;

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

// SGD on one Mlp: owns the momentum buffer (same layout as the parameters, zero at start) and
// the step count. step() queues one update from the model's gradients; it allocates nothing and
// does not wait for the device. The learning rate of each step is written to a one-float device
// buffer first, so a captured CUDA graph follows the schedule.
class Sgd {
 public:
  // Throws ArgumentError (via validate) for invalid options or schedule.
  Sgd(Mlp& model, SgdOptions options, LrSchedule schedule = LrSchedule::constant());
  Sgd(Sgd&&) noexcept;
  Sgd& operator=(Sgd&&) noexcept;
  Sgd(const Sgd&) = delete;
  Sgd& operator=(const Sgd&) = delete;
  ~Sgd();

  const SgdOptions& options() const { return options_; }
  const LrSchedule& schedule() const { return schedule_; }
  Mlp& model() const { return *model_; }
  // Updates taken so far (the index of the next one).
  std::int64_t steps() const { return steps_; }
  // The learning rate the next step uses.
  float lr() const { return schedule_.at(options_.lr, steps_); }

  // Writes the next step's learning rate to the device (queued).
  void prepare();
  // The update itself, reading the learning rate written by prepare(). found_inf (a device int,
  // optional) skips the update when non-zero. Does not count the step.
  void update(const std::int32_t* found_inf = nullptr);
  // Marks one step as taken.
  void advance() { ++steps_; }
  // prepare() + update() + advance().
  void step();

  VectorView<float> momentum() { return momentum_.view(); }
  VectorView<const float> momentum() const { return momentum_.view(); }
  // Restores the state a checkpoint holds.
  void set_steps(std::int64_t steps);
  void momentum_from_host(std::span<const float> host);
  std::vector<float> momentum_to_host() const;
  bool has_momentum() const { return options_.momentum != 0.0f; }

 private:
  Mlp* model_ = nullptr;
  SgdOptions options_;
  LrSchedule schedule_;
  std::int64_t steps_ = 0;
  Buffer<float> momentum_;
  Buffer<float> lr_;                                            // one float on the model's device
  float lr_written_ = std::numeric_limits<float>::quiet_NaN();  // what lr_ holds
};

}  // namespace descent

DESCENT_API_END
