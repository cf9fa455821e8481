// The checks of class labels shared by the Dataset and the IDX and CSV loaders (src/labels.cpp).
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace descent::detail {

// The class count when the caller gave none: the largest label + 1, unless most classes below it
// have no sample although the samples could fill them (a stray label): then a DataError saying
// so, naming `where`.
// Above kMaxInferredClasses (the command's largest --classes) the count is refused as well: a
// label that large is far more likely a stray value than a class.
constexpr std::int64_t kMaxInferredClasses = std::int64_t(1) << 24;
std::int64_t inferred_classes(std::span<const std::int32_t> labels, const std::string& where);
// ArgumentError for classes < 1; DataError naming `where` for a label outside [0, classes).
void check_labels(std::span<const std::int32_t> labels, std::int64_t classes,
                  const std::string& where);

}  // namespace descent::detail
