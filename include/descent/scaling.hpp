// Scaling of a model's inputs and outputs, kept with the model and in its checkpoints, so that a
// model trained on standardised data answers in the caller's own units.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "descent/export.h"

DESCENT_API_BEGIN

namespace descent {

class Dataset;

// The network sees x' = (x − input_mean) / input_scale and its output y' means
// y = y' · output_scale + output_mean. Each pair is empty (no scaling on that side) or holds one
// float per input (per output).
struct Scaling {
  std::vector<float> input_mean, input_scale;
  std::vector<float> output_mean, output_scale;

  bool empty() const { return input_mean.empty() && output_mean.empty(); }
  bool scales_inputs() const { return !input_mean.empty(); }
  bool scales_outputs() const { return !output_mean.empty(); }

  // x [rows, inputs] row-major (leading dimension ld) → the network's inputs, in place.
  void to_network_inputs(std::span<float> x, std::int64_t rows, std::int64_t ld) const;
  // targets [rows, outputs] (leading dimension ld) → what the network should output, in place.
  void to_network_outputs(std::span<float> y, std::int64_t rows, std::int64_t ld) const;
  // The network's outputs [rows, outputs] (leading dimension ld) → the caller's units, in place.
  void from_network_outputs(std::span<float> y, std::int64_t rows, std::int64_t ld) const;
};

// Throws ArgumentError naming the field when `s` does not fit a model of `inputs` inputs and
// `outputs` outputs: a pair with one side empty, a size that is not the model's, a value that is
// not finite, a scale that is not > 0 (or so small that 1 / scale overflows).
void validate(const Scaling& s, std::int64_t inputs, std::int64_t outputs);

// Standardisation from a dataset: every feature's mean and standard deviation (population; a
// constant feature gets scale 1), and for a regression dataset every target's. Byte (IDX)
// datasets are refused (ArgumentError: their map is Dataset::set_normalization's). Sums in double.
Scaling standardization(const Dataset& data);

}  // namespace descent

DESCENT_API_END
