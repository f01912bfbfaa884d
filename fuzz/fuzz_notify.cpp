// A NOTIFY_SOCKET datagram from the server's tree (sd_notify: "READY=1\nPORT=<n>\n"
// among other fields such as STATUS=...), as take_notify_datagram() reads it.
//
// Properties, against a plain reading of the protocol: READY=1 on a line of its own
// is the ready signal; the port is that of the last valid PORT= line; a PORT= line
// with anything but 1..65535 is errc::port_out_of_range; every other field is ignored,
// never an error; a datagram is never taken for a ready-fd announcement.
#include <optional>
#include <string>

#include "fuzz.hpp"
#include "harness/detail/session/start_events.hpp"

namespace hd = harness::detail;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  hd::start_events ev;
  hd::take_notify_datagram(ev, text);

  bool ready = false;
  bool bad = false;
  std::optional<unsigned long long> port;
  std::string_view rest = text;
  while (!rest.empty()) {
    const auto eol = rest.find('\n');
    auto line = rest.substr(0, eol);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    unsigned long long value = 0;
    if (line == "READY=1") ready = true;
    if (line.substr(0, 5) == "PORT=") {
      if (harness_fuzz::decimal(line.substr(5), 65535, value) && value >= 1) {
        port = value;
      } else {
        bad = true;
      }
    }
    if (eol == std::string_view::npos) break;
    rest.remove_prefix(eol + 1);
  }

  FUZZ_CHECK(ev.notify_signal == ready);
  FUZZ_CHECK(ev.ready_signal == ready);
  FUZZ_CHECK(!ev.ready_fd_signal);
  FUZZ_CHECK(ev.announced.has_value() == port.has_value());
  if (port) FUZZ_CHECK(*ev.announced == *port);
  FUZZ_CHECK(ev.bad.has_value() == bad);
  if (ev.bad) FUZZ_CHECK(ev.bad->code == harness::errc::port_out_of_range);
  FUZZ_CHECK(ev.ready_fd_buffer.empty());
  return 0;
}
