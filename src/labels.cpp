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
  // Memory in the number of samples, never in the value of a label (a file may hold any).
  std::vector<std::int32_t> sorted(labels.begin(), labels.end());
  std::sort(sorted.begin(), sorted.end());
  if (!sorted.empty() && sorted.front() < 0) {
    throw DataError(where + ": label " + std::to_string(sorted.front()) +
                    " is negative, expected >= 0");
  }
  const std::int32_t max_label = sorted.empty() ? 0 : sorted.back();
  const std::int64_t classes = std::int64_t(max_label) + 1;
  const std::string give =
      "Give the class count (the classes option, --classes N in the command) to train with "
      "absent classes; labels at or above it are then refused";
  if (classes > kMaxInferredClasses) {
    throw DataError(where + ": the labels go up to " + std::to_string(max_label) +
                    ", more classes than descent infers from labels (" +
                    std::to_string(kMaxInferredClasses) + "): a stray label? " + give);
  }
  std::int64_t present = 0, first_missing = -1, rows_of_max = 0;
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    if (i > 0 && sorted[i] == sorted[i - 1]) continue;
    if (first_missing < 0 && sorted[i] != present) first_missing = present;
    ++present;
  }
  for (std::int32_t v : sorted) rows_of_max += v == max_label ? 1 : 0;
  const std::int64_t missing = classes - present;
  // Only where absence means something: most classes empty although there are enough samples
  // to fill them (a small or --limit'ed file may miss a few classes honestly).
  if (missing * 2 > classes && static_cast<std::int64_t>(labels.size()) >= classes) {
    throw DataError(where + ": the labels go up to " + std::to_string(max_label) + " (" +
                    std::to_string(rows_of_max) + " sample" + (rows_of_max == 1 ? "" : "s") +
                    "), but " + std::to_string(missing) + " of the " + std::to_string(classes) +
                    " classes below that have no sample (class " + std::to_string(first_missing) +
                    " first): a stray label? " + give);
  }
  return classes;
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
