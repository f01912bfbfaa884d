// Private: how a start attempt ends — one pure function over what was observed.
//
// The session's wait loop gathers an observation (did the server exit, with what
// status, what did it leave running, who listens on the port, was an "address already
// in use" line seen, did the probes pass, is the deadline over) and asks judge() what
// it means: keep waiting, ready, a port collision (lease mode: respawn on a fresh
// port), or a failure with its reason. Nothing here reads /proc or the clock, so every
// row of the decision is a unit test (tests/judge_test.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "harness/exit_status.hpp"

namespace harness::detail::start_judge {

// Who listens on the port, on any of its addresses and in both families: nobody, only
// the server's tree, only others, or both (`shared`: the server bound some of its
// addresses and a stranger holds another, as when memcached's 0.0.0.0 bind fails
// quietly next to a listener on 127.0.0.2 while its [::] bind succeeds).
enum class listener { nobody, ours, foreign, shared };

struct observation {
  bool lease = true;             // lease mode (the port is ours to check)
  bool announce = false;         // announce mode (the port is the server's own)
  std::uint16_t port = 0;        // the leased port, or in announce mode the announced one
  bool allow_daemon = true;      // server_spec::allow_daemon
  // Set once the server exited before it was ready.
  std::optional<exit_status> exited{};
  std::vector<int> left{};       // processes of its tree still running after that exit
  // Lease mode: the leased port. Announce mode: the announced port, once announced
  // (nobody until then).
  listener on_port = listener::nobody;
  std::string holders{};         // who holds the port, for messages
  // "ecosystem: line" of an "address already in use" line about this port.
  std::optional<std::string> in_use_line{};
  bool probes_passed = false;    // every probe and announcement passed
  bool deadline_passed = false;
  std::string waiting_for{};     // what is still missing, for the timeout message
  long long timeout_ms = 0;      // the (scaled) readiness timeout, for the message
};

enum class outcome { wait, ready, collision, failed };

struct verdict {
  outcome what = outcome::wait;
  std::error_code code{};        // failed: the errc
  std::string reason{};
  bool show_holder = false;      // failed: the report should say who holds the port
};

verdict judge(const observation& o);

// Whether a port-in-use line is about `port`: false when it names ports ("port 11211",
// "127.0.0.1:8080", "[::]:8080") and none of them is `port` (memcached's UDP `-U`
// port, say); true when it names `port` or no port at all.
bool names_port(std::string_view line, std::uint16_t port);

}  // namespace harness::detail::start_judge
