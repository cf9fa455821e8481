// Checkpoints: a model's architecture and parameters plus the optimizer's state in one file.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "descent/context.hpp"
#include "descent/export.h"
#include "descent/model.hpp"
#include "descent/optimizer.hpp"

DESCENT_API_BEGIN

namespace descent {

// Version of the checkpoint format this library writes; it reads this version and older ones.
// Version 2 stores any optimizer (its kind, options and named state); version 1 files (SGD
// only) still load.
inline constexpr std::uint32_t kCheckpointVersion = 2;

// An optimizer's named state, as Optimizer::state_names / state_to_host give it.
using OptimizerState = std::vector<std::pair<std::string, std::vector<float>>>;

// Free-form key/value text stored with a checkpoint (e.g. the loss and the data normalisation
// the descent command used).
using CheckpointMetadata = std::vector<std::pair<std::string, std::string>>;

// Everything a checkpoint holds, in host memory.
struct Checkpoint {
  std::uint32_t version = kCheckpointVersion;
  std::vector<std::int64_t> widths;
  std::vector<Activation> activations;
  std::vector<float> params;
  bool has_optimizer = false;
  OptimizerKind optimizer = OptimizerKind::sgd;
  // The optimizer's options, as default_options(optimizer) lists them (descent/optimizer.hpp).
  std::vector<OptimizerOption> options = default_options(OptimizerKind::sgd);
  LrSchedule schedule{};
  std::int64_t steps = 0;
  std::vector<float> momentum;  // SGD: empty when the optimizer has no momentum
  OptimizerState state;         // every optimizer: its named state (SGD: "momentum", if any)
  // The model's scaling (Mlp::scaling), stored as the metadata entries "scaling.input_mean",
  // "scaling.input_scale", "scaling.output_mean" and "scaling.output_scale" (floats as text,
  // exact); empty when the model had none.
  Scaling scaling;
  CheckpointMetadata metadata;

  // The metadata value of `key`, or `fallback`.
  std::string get(const std::string& key, const std::string& fallback = "") const;
  // The optimizer option `name` (ArgumentError when the optimizer has none of that name).
  const OptimizerOption& option(const std::string& name) const;
};

// Writes a checkpoint of the model (its scaling included; and of the optimizer, when given) with
// write_file_atomic (descent/output.hpp). Metadata keys starting with "scaling." are the
// library's own: ArgumentError. The file is written to a temporary file in the same folder, flushed
// to disk, then renamed over `path` (over a symbolic link's target, keeping the link): a failure at
// any point (a full disk, say) throws IoError and leaves a previous file at `path` intact. A FIFO
// or character device is written through; a folder, socket or other special file is refused.
//
// Format (little-endian): "DSCNTCKP", u32 version, u64 payload size, payload, u32 CRC-32 (zlib)
// of everything before it.
//
// Data parallel: the replicas are identical, so one rank writes (`if (comm.is_root())`) and
// every rank reads; a checkpoint does not depend on the number of ranks that wrote it.
void save_checkpoint(const std::string& path, const Mlp& model,
                     const Optimizer* optimizer = nullptr, const CheckpointMetadata& metadata = {});

// Reads and checks a whole checkpoint: IoError for a missing or unreadable file or a path that is
// not a regular file (a folder, a FIFO: refused without blocking), DataError for a wrong magic, a
// newer format version, a wrong size, a checksum mismatch or inconsistent contents (counts that
// run past the end of the file, an architecture whose parameter count overflows).
Checkpoint read_checkpoint(const std::string& path);

// Restores parameters (and, when given, the optimizer's state and step count) into objects
// built with the same architecture; DataError naming both architectures when they differ, when
// the checkpoint holds another kind of optimizer, or when its state does not match the
// optimizer's (momentum on one side only, amsgrad on one side only). Nothing is changed when it
// throws.
void load_checkpoint(const std::string& path, Mlp& model, Optimizer* optimizer = nullptr);
void restore(const Checkpoint& checkpoint, Mlp& model, Optimizer* optimizer = nullptr,
             const std::string& what = "checkpoint");

// A model with the checkpoint's architecture and parameters, on ctx.
Mlp make_model(const Context& ctx, const Checkpoint& checkpoint, MlpOptions options = {});

}  // namespace descent

DESCENT_API_END
