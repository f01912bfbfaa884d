// What the runner reads from harness-supervisor: "S <pid> <start>", "E <errno>
// <step>", "F <pid> <start>", "X <how> <value> <left>", "Z <left>" (one packet each,
// NUL-terminated by the runner after recv()), as supervisor_protocol::parse_message()
// reads them for spawn_posix.cpp and process.cpp.
//
// Properties: a message is one of those kinds or none; a pid (S, F) is a pid the
// runner can hold (1..INT_MAX: it becomes a pid_t, and a negative one would name a
// process group); X says how in e/k/c with an exit code 0..255 or a signal 1..NSIG-1,
// and the status it makes prints itself; counts of processes left are >= 0.
#include <signal.h>

#include <climits>
#include <cstring>
#include <memory>

#include "fuzz.hpp"
#include "harness/detail/proc/supervisor_protocol.hpp"
#include "harness/exit_status.hpp"

namespace protocol = harness::detail::supervisor_protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::unique_ptr<char[]> text(new char[size + 1]);
  if (size > 0) std::memcpy(text.get(), data, size);
  text[size] = '\0';
  const auto m = protocol::parse_message(text.get());
  switch (m.kind) {
    case 0: break;
    case 'S':
    case 'F':
      FUZZ_CHECK(m.a >= 1 && m.a <= INT_MAX);
      break;
    case 'E':
      FUZZ_CHECK(!m.step.empty() && m.step.size() <= 31);
      break;
    case 'X': {
      FUZZ_CHECK(m.how == 'e' || m.how == 'k' || m.how == 'c');
      FUZZ_CHECK(m.how == 'e' ? m.a >= 0 && m.a <= 255 : m.a >= 1 && m.a < NSIG);
      FUZZ_CHECK(m.b >= 0 && m.b <= INT_MAX);
      const auto status = m.how == 'e' ? harness::exit_status::exited_with(static_cast<int>(m.a))
                                       : harness::exit_status::killed_by(static_cast<int>(m.a), m.how == 'c');
      FUZZ_CHECK(!status.str().empty());
      FUZZ_CHECK(status.shell_code() >= 0 && status.shell_code() <= 255);
      break;
    }
    case 'Z':
      FUZZ_CHECK(m.a >= 0);
      break;
    default:
      harness_fuzz::violated("a kind of message the protocol does not have", __FILE__, __LINE__);
  }
  FUZZ_CHECK(m.kind == 0 || m.kind == text[0]);
  return 0;
}
