// harness/respawn.hpp — how a lease-mode session recovers from losing its port.
//
// When a server started on a leased port finds the port taken (it exits with
// "address already in use", or somebody else's listener answers on it), the session
// releases the lease, leases a fresh port and starts the server again, up to
// respawn_policy::attempts starts in all. Between starts it waits a random time in
// [0, min(backoff_cap, backoff_base * 2^(n-1))] ("full jitter"), so that runners
// that collided do not collide again in lockstep. Every start is recorded:
//
//   for (const harness::attempt& a : session.attempts())
//     std::cout << a << "\n";     // "port 20417: collision (python: [Errno 98] ...) after 38 ms"
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

namespace harness {

struct respawn_policy {
  int attempts = 5;                                   // starts in all (>= 1)
  std::chrono::milliseconds backoff_base{10};
  std::chrono::milliseconds backoff_cap{500};
};

// One start of a server.
struct attempt {
  enum class result { ready, collision, failed };
  std::uint16_t port = 0;
  result outcome = result::failed;
  std::string reason{};                    // why it was not ready ("" when ready)
  std::chrono::milliseconds duration{0}; // spawn to ready/failure
};

// "ready", "collision", "failed".
const char* to_string(attempt::result r);
// "port 20417: ready after 12 ms", "port 20418: collision (...) after 3 ms".
std::string to_string(const attempt& a);
std::ostream& operator<<(std::ostream& os, const attempt& a);
// One attempt per line, numbered and indented ("  1. port ...").
std::string format_attempts(const std::vector<attempt>& attempts, std::string_view indent = "  ");

}  // namespace harness
