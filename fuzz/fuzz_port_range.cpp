// HARNESS_PORT_RANGE and port.range text: parse_port_range("lo-hi").
//
// Properties: it accepts exactly "LOW-HIGH" with decimal ports (spaces around each
// allowed) and 1 <= LOW <= HIGH <= 65535, with those values; anything else is
// errc::bad_port_range; an accepted range prints and parses back to itself.
#include <string>

#include "fuzz.hpp"
#include "harness/lease.hpp"

namespace {

std::string_view trim_spaces(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto range = harness::parse_port_range(text);

  const auto dash = text.find('-');
  unsigned long long lo = 0, hi = 0;
  const bool valid = dash != std::string_view::npos &&
                     harness_fuzz::decimal(trim_spaces(text.substr(0, dash)), 65535, lo) &&
                     harness_fuzz::decimal(trim_spaces(text.substr(dash + 1)), 65535, hi) &&
                     lo >= 1 && lo <= hi;
  FUZZ_CHECK(range.has_value() == valid);
  if (!range) {
    FUZZ_CHECK(range.error().code == harness::errc::bad_port_range);
    FUZZ_CHECK(!range.error().message().empty());
    return 0;
  }
  FUZZ_CHECK(range->first == lo && range->last == hi);
  FUZZ_CHECK(range->size() == hi - lo + 1);
  const auto again = harness::parse_port_range(std::to_string(range->first) + "-" +
                                               std::to_string(range->last));
  FUZZ_CHECK(again && *again == *range);
  return 0;
}
