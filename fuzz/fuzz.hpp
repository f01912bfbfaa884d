// fuzz/fuzz.hpp — what the fuzz targets share.
//
// Each fuzz_<name>.cpp defines LLVMFuzzerTestOneInput: built with libFuzzer it is a
// fuzzer (scripts/fuzz), built with replay_main.cpp it replays its corpus and the
// crashes found so far as a CTest test. A target checks properties of what the parser
// returns, not only that it does not crash: FUZZ_CHECK aborts with the property's text,
// which both libFuzzer and CTest report as a failure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#define FUZZ_CHECK(cond) \
  ((cond) ? static_cast<void>(0) : ::harness_fuzz::violated(#cond, __FILE__, __LINE__))

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace harness_fuzz {

[[noreturn]] inline void violated(const char* what, const char* file, int line) {
  std::fprintf(stderr, "%s:%d: property violated: %s\n", file, line, what);
  std::abort();
}

// Takes structured values from the front of the input; once it runs out, the values
// are zero and the texts empty.
class reader {
 public:
  reader(const std::uint8_t* data, std::size_t size)
      : rest_(reinterpret_cast<const char*>(data), size) {}

  template <class T>
  T take() {
    T value{};
    const std::size_t n = rest_.size() < sizeof value ? rest_.size() : sizeof value;
    if (n > 0) std::memcpy(&value, rest_.data(), n);
    rest_.remove_prefix(n);
    return value;
  }

  // Up to the next `separator` (dropped), or everything that is left.
  std::string_view take_until(char separator) {
    const auto at = rest_.find(separator);
    const std::string_view out = rest_.substr(0, at);
    rest_.remove_prefix(at == std::string_view::npos ? rest_.size() : at + 1);
    return out;
  }

  [[nodiscard]] std::string_view rest() const { return rest_; }

 private:
  std::string_view rest_;
};

// Strict decimal of a text of digits only (no sign, no space; leading zeros allowed):
// false when it is not one or exceeds `max`. The reference the parsers are held to.
inline bool decimal(std::string_view text, unsigned long long max, unsigned long long& out) {
  if (text.empty()) return false;
  unsigned long long v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    const auto digit = static_cast<unsigned long long>(c - '0');
    if (v > (max - digit) / 10) return false;
    v = v * 10 + digit;
  }
  out = v;
  return true;
}

}  // namespace harness_fuzz
