#include "harness/timeouts.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace harness::timeouts {
namespace {

double read_scale() {
  const char* text = std::getenv("HARNESS_TIMEOUT_SCALE");
  if (text == nullptr || *text == '\0') return 1.0;
  auto value = parse_scale(text);
  if (!value) {
    std::fprintf(stderr,
                 "serve-harness: ignoring HARNESS_TIMEOUT_SCALE=\"%s\" (want a positive "
                 "number such as 2 or 0.5); using 1\n",
                 text);
    return 1.0;
  }
  return *value;
}

}  // namespace

std::optional<double> parse_scale(const char* text) {
  if (text == nullptr || *text == '\0') return std::nullopt;
  char* end = nullptr;
  const double value = std::strtod(text, &end);
  if (end == text || *end != '\0' || !std::isfinite(value) || value <= 0.0 || value > 1e6) {
    return std::nullopt;
  }
  return value;
}

double scale() {
  static const double value = read_scale();
  return value;
}

milliseconds scaled(milliseconds d) {
  // Saturate at ten years: callers add the result to steady_clock::now() (nanoseconds
  // in 64 bits), which a "forever" such as milliseconds::max() would overflow.
  constexpr double max = static_cast<double>(
      std::chrono::duration_cast<milliseconds>(std::chrono::hours(24 * 365 * 10)).count());
  const double ms = std::ceil(static_cast<double>(d.count()) * scale());
  if (!(ms < max)) return milliseconds(static_cast<milliseconds::rep>(max));
  return milliseconds(static_cast<milliseconds::rep>(std::max(ms, 0.0)));
}

}  // namespace harness::timeouts
