// A server's output line, as the collision classifier and names_port() read it in
// lease mode: any bytes, of any length (the output layer caps lines, not this).
//
// Input: two bytes of port, then the line.
// Properties: the classifier answers nullopt or a built-in ecosystem; its answer does
// not depend on bytes outside the first and the last 4 KiB; a line without digits
// names no port; a line that says "port <our port>" is about our port.
#include <algorithm>
#include <string>

#include "fuzz.hpp"
#include "harness/collision.hpp"
#include "harness/detail/session/judge.hpp"

namespace {

const harness::collision_classifier& classifier() {
  static const harness::collision_classifier c = harness::collision_classifier::make().value();
  return c;
}

bool is_builtin(const std::string& ecosystem) {
  const auto& table = harness::collision_classifier::builtin();
  return std::any_of(table.begin(), table.end(),
                     [&](const harness::collision_pattern& p) { return p.ecosystem == ecosystem; });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  harness_fuzz::reader in(data, size);
  const auto port = in.take<std::uint16_t>();
  const std::string line(in.rest());

  const auto eco = classifier().classify(line);
  FUZZ_CHECK(!eco || is_builtin(*eco));

  // The line, 8 KiB of filler, the line again; and the same with the filler outside
  // the two windows replaced by a port-in-use message: the classifier looks only at
  // the windows.
  constexpr std::size_t window = 4096;
  const std::string plain = line + std::string(2 * window + 64, '.') + line;
  std::string loud = plain;
  const std::string message = " Address already in use [Errno 98] EADDRINUSE ";
  for (std::size_t i = window; i < loud.size() - window; ++i) {
    loud[i] = message[(i - window) % message.size()];
  }
  FUZZ_CHECK(classifier().classify(plain) == classifier().classify(loud));

  namespace judge = harness::detail::start_judge;
  std::string no_digits = line;
  std::erase_if(no_digits, [](char c) { return c >= '0' && c <= '9'; });
  FUZZ_CHECK(judge::names_port(no_digits, port));
  if (port != 0) {
    FUZZ_CHECK(judge::names_port(line + " port " + std::to_string(port), port));
    FUZZ_CHECK(judge::names_port("port " + std::to_string(port) + " " + line, port));
  }
  return 0;
}
