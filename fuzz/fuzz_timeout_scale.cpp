// HARNESS_TIMEOUT_SCALE, as timeouts::parse_scale() reads it (a NUL-terminated
// environment value).
//
// Properties: an accepted scale is a finite number in (0, 1e6] made of the whole text;
// printed exactly and read again it is the same number.
#include <cmath>
#include <string>

#include "fuzz.hpp"
#include "harness/timeouts.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto scale = harness::timeouts::parse_scale(text.c_str());
  if (!scale) return 0;
  FUZZ_CHECK(std::isfinite(*scale) && *scale > 0.0 && *scale <= 1e6);
  char printed[64];
  std::snprintf(printed, sizeof printed, "%.17g", *scale);
  const auto again = harness::timeouts::parse_scale(printed);
  FUZZ_CHECK(again && *again == *scale);
  return 0;
}
