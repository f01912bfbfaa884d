#include "harness/timeouts.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
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
  const double ms = std::ceil(static_cast<double>(d.count()) * scale());
  constexpr auto max = static_cast<double>(std::numeric_limits<milliseconds::rep>::max() / 2);
  if (ms >= max) return milliseconds(static_cast<milliseconds::rep>(max));
  return milliseconds(static_cast<milliseconds::rep>(ms));
}

}  // namespace harness::timeouts
