// Private: a compiled pattern for matching output lines.
//
// Boost.Regex is used instead of std::regex: its matcher is non-recursive (no stack
// overflow on long lines) and it gives up with an error on pathological backtracking
// instead of running for hours. Lines are additionally bounded by the callers
// (output_options::max_line).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "harness/error.hpp"

namespace harness::detail {

class regex {
 public:
  // errc::bad_pattern (with the engine's message) when `pattern` does not compile.
  static result<regex> compile(std::string_view pattern, bool icase = false);

  // Searches `text`; on a match returns group 0 and every capture group.
  // A pattern too complex for this input counts as no match.
  [[nodiscard]] std::optional<std::vector<std::string>> search(std::string_view text) const;
  [[nodiscard]] bool matches(std::string_view text) const { return search(text).has_value(); }
  [[nodiscard]] const std::string& pattern() const;
  [[nodiscard]] unsigned groups() const;

 private:
  struct impl;
  explicit regex(std::shared_ptr<const impl> p) : impl_(std::move(p)) {}
  std::shared_ptr<const impl> impl_;
};

}  // namespace harness::detail
