// The checks of class labels that the Dataset and the file loaders share: the range of every
// label, and the class count inferred from labels when none was given.
#include "labels.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "descent/error.hpp"

namespace descent::detail {

// The class count when the caller gave none: the largest label + 1, unless most classes below
// it have no sample although the samples could fill them. A stray label (200 among the labels
// of a 10-class file) would otherwise make a 201-class model without a word.
std::int64_t inferred_classes(std::span<const std::int32_t> labels, const std::string& where) {
  std::int32_t max_label = 0;
  for (std::int32_t v : labels) {
    if (v < 0) {
      throw DataError(where + ": label " + std::to_string(v) + " is negative, expected >= 0");
    }
    max_label = std::max(max_label, v);
  }
  std::vector<std::int64_t> count(static_cast<std::size_t>(max_label) + 1, 0);
  for (std::int32_t v : labels) ++count[static_cast<std::size_t>(v)];
  std::int64_t missing = 0, first_missing = -1;
  for (std::size_t c = 0; c < count.size(); ++c) {
    if (count[c] > 0) continue;
    if (missing++ == 0) first_missing = static_cast<std::int64_t>(c);
  }
  // Only where absence means something: most classes empty although there are enough samples
  // to fill them (a small or --limit'ed file may miss a few classes honestly).
  const auto classes = static_cast<std::int64_t>(count.size());
  if (missing * 2 > classes && static_cast<std::int64_t>(labels.size()) >= classes) {
    std::int64_t rows_of_max = count.back();
    throw DataError(where + ": the labels go up to " + std::to_string(max_label) + " (" +
                    std::to_string(rows_of_max) + " sample" + (rows_of_max == 1 ? "" : "s") +
                    "), but " + std::to_string(missing) + " of the " +
                    std::to_string(count.size()) + " classes below that have no sample (class " +
                    std::to_string(first_missing) +
                    " first): a stray label? Give the class count (the classes option, "
                    "--classes N in the command) to train with absent classes; labels at or "
                    "above it are then refused");
  }
  return max_label + std::int64_t(1);
}

void check_labels(std::span<const std::int32_t> labels, std::int64_t classes,
                  const std::string& where) {
  if (classes < 1) {
    throw ArgumentError(where + ": classes: must be >= 1, got " + std::to_string(classes));
  }
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= classes) {
      throw DataError(where + ": label " + std::to_string(i) + " is " + std::to_string(labels[i]) +
                      ", outside [0, " + std::to_string(classes) +
                      ") (classes = " + std::to_string(classes) + ")");
    }
  }
}

}  // namespace descent::detail
