// What a server writes to HARNESS_READY_FD ("PORT=<n>\n" or "READY=1\n"), as the
// harness reads it: take_ready_fd_bytes() over whatever pieces read() returned.
//
// Input: one byte choosing how the rest is cut into reads, then the bytes.
// Properties: parse_port() accepts exactly the decimal ports 1..65535; an announced
// port is one of those; the outcome (port, signals, error) does not depend on how the
// bytes were cut into reads; an error is errc::bad_announcement or
// errc::port_out_of_range.
#include <optional>
#include <string>

#include "fuzz.hpp"
#include "harness/detail/session/start_events.hpp"

namespace hd = harness::detail;

namespace {

struct outcome {
  std::optional<std::uint16_t> announced;
  bool ready_signal = false;
  bool ready_fd_signal = false;
  bool notify_signal = false;
  std::optional<harness::failure> bad;
};

outcome feed(std::string_view bytes, std::size_t piece) {
  hd::start_events ev;
  while (!bytes.empty()) {
    const auto n = piece < bytes.size() ? piece : bytes.size();
    hd::take_ready_fd_bytes(ev, bytes.substr(0, n));
    bytes.remove_prefix(n);
  }
  return {ev.announced, ev.ready_signal, ev.ready_fd_signal, ev.notify_signal, ev.bad};
}

void check_parse_port(std::string_view text) {
  const auto port = hd::parse_port(text);
  unsigned long long value = 0;
  const bool valid = harness_fuzz::decimal(text, 65535, value) && value >= 1;
  FUZZ_CHECK(port.has_value() == valid);
  if (port) FUZZ_CHECK(*port == value);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  harness_fuzz::reader in(data, size);
  const std::size_t piece = 1 + in.take<std::uint8_t>() % 64;
  const std::string_view bytes = in.rest();

  check_parse_port(bytes);
  std::string_view lines = bytes;
  while (!lines.empty()) {
    const auto eol = lines.find('\n');
    const auto line = lines.substr(0, eol);
    if (line.substr(0, 5) == "PORT=") check_parse_port(line.substr(5));
    if (eol == std::string_view::npos) break;
    lines.remove_prefix(eol + 1);
  }

  const outcome whole = feed(bytes, bytes.size() + 1);
  const outcome cut = feed(bytes, piece);
  FUZZ_CHECK(!whole.announced || *whole.announced >= 1);
  FUZZ_CHECK(!whole.notify_signal);
  FUZZ_CHECK(whole.ready_signal == whole.ready_fd_signal);
  if (whole.bad) {
    FUZZ_CHECK(whole.bad->code == harness::errc::bad_announcement ||
               whole.bad->code == harness::errc::port_out_of_range);
  }
  FUZZ_CHECK(whole.announced == cut.announced);
  FUZZ_CHECK(whole.ready_signal == cut.ready_signal);
  FUZZ_CHECK(whole.ready_fd_signal == cut.ready_fd_signal);
  FUZZ_CHECK(whole.bad.has_value() == cut.bad.has_value());
  if (whole.bad) {
    FUZZ_CHECK(whole.bad->code == cut.bad->code);
    FUZZ_CHECK(whole.bad->detail == cut.bad->detail);
  }
  return 0;
}
