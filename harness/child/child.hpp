// harness/child/child.hpp — helpers for C++ servers that cooperate with serve-harness.
//
// Standard library and POSIX only (link harness::child; no Boost, no gtest), so a
// server under test can use it without pulling in the test harness.
//
//   #include <harness/child/child.hpp>
//   namespace hc = harness::child;
//
//   std::error_code ec;
//   int fd;
//   if (auto inherited = hc::listen_fds(); !inherited.empty()) {
//     fd = inherited.front();                             // inherit mode: socket on fd 3
//   } else {
//     fd = hc::bind_with_retry({"127.0.0.1", 0}, {}, ec); // bind port 0, retry EADDRINUSE
//     if (ec) { std::fprintf(stderr, "bind: %s\n", ec.message().c_str()); return 1; }
//   }
//   hc::announce_ready(hc::local_port(fd, ec));          // tell the harness the port
//
// The announce protocols (the harness reads them in announce and inherit modes):
//   * HARNESS_READY_FD=<n>: the child writes the line "PORT=<port>\n" (decimal,
//     1-65535) to fd n, or "READY=1\n" when the port is already known (inherit mode),
//     and closes the fd.
//   * NOTIFY_SOCKET=<path>: the sd_notify protocol; one datagram "READY=1\nPORT=<port>\n"
//     (PORT is our field; systemd ignores it). A path starting with '@' is abstract.
// announce_ready() uses HARNESS_READY_FD when set, else NOTIFY_SOCKET, else does nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <system_error>
#include <vector>

namespace harness::child {

// The listening sockets passed by socket activation (LISTEN_FDS / LISTEN_PID, first fd
// 3), or empty when none were passed to *this* process. The fds get FD_CLOEXEC. With
// `unset_environment`, LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES are removed so that
// our own children do not adopt them by mistake.
std::vector<int> listen_fds(bool unset_environment = true);

struct endpoint {
  std::string host = "127.0.0.1";  // an IPv4 or IPv6 literal ("::1"), or "localhost"
  std::uint16_t port = 0;          // 0: let the kernel choose
};

struct bind_policy {
  int attempts = 5;                                    // binds tried in all (>= 1)
  std::chrono::milliseconds initial_delay{50};         // first backoff
  std::chrono::milliseconds max_delay{1000};           // backoff cap
  bool jitter = true;                                  // full jitter: sleep U(0, delay)
  int backlog = 128;
  bool reuse_address = true;                           // SO_REUSEADDR (TIME_WAIT only)
};

// Creates a TCP socket, binds it to `at` and listens. On EADDRINUSE it waits
// (exponential backoff, full jitter) and tries again up to policy.attempts times.
// Returns the listening fd (CLOEXEC), or -1 with `ec` set: the last bind error
// (std::errc::address_in_use after the last attempt), or another error at once.
// Never throws, never aborts.
int bind_with_retry(const endpoint& at, const bind_policy& policy, std::error_code& ec);

// The port a bound socket listens on; 0 with `ec` set on failure.
std::uint16_t local_port(int fd, std::error_code& ec);

// Reports readiness (and the port, when nonzero) over HARNESS_READY_FD or
// NOTIFY_SOCKET, whichever is set (see above). Returns {} when neither is set.
std::error_code announce_ready(std::uint16_t port = 0);

// The individual protocols, for servers that want to choose.
std::error_code announce_on_fd(int fd, std::uint16_t port);
std::error_code notify(const std::string& socket_path, const std::string& message);

}  // namespace harness::child
