// One way to name enum values and parse the names back, for every public enum: a table of
// {value, name} pairs (a value's first entry is its name; later entries are accepted aliases).
#pragma once

#include <cstddef>
#include <cstring>
#include <string>

#include "descent/error.hpp"

namespace descent::detail {

template <class E>
struct EnumName {
  E value;
  const char* name;
};

// The name of v (its first entry), or "unknown" for a value outside the table.
template <class E, std::size_t N>
const char* name_of(const EnumName<E> (&table)[N], E v) {
  for (const EnumName<E>& e : table) {
    if (e.value == v) return e.name;
  }
  return "unknown";
}

// The value named `text`; otherwise ArgumentError "what: expected a, b (alias) or c, got 'x'".
template <class E, std::size_t N>
E parse_enum(const EnumName<E> (&table)[N], const char* text, const char* what) {
  for (const EnumName<E>& e : table) {
    if (text != nullptr && std::strcmp(text, e.name) == 0) return e.value;
  }
  std::string expected;
  std::size_t names = 0;
  for (std::size_t i = 0; i < N; ++i) {
    if (i > 0 && table[i].value == table[i - 1].value) continue;  // aliases follow their name
    ++names;
  }
  std::size_t seen = 0;
  for (std::size_t i = 0; i < N; ++i) {
    if (i > 0 && table[i].value == table[i - 1].value) continue;
    ++seen;
    if (seen > 1) expected += seen == names ? " or " : ", ";
    expected += table[i].name;
    std::string aliases;
    for (std::size_t j = i + 1; j < N && table[j].value == table[i].value; ++j) {
      aliases += (aliases.empty() ? "" : ", ") + std::string(table[j].name);
    }
    if (!aliases.empty()) expected += " (" + aliases + ")";
  }
  throw ArgumentError(std::string(what) + ": expected " + expected + ", got '" +
                      (text != nullptr ? text : "(null)") + "'");
}

}  // namespace descent::detail
