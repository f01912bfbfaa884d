// Private: loopback-friendly socket helpers (POSIX).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "harness/error.hpp"

namespace harness::detail::net {

// An IPv4/IPv6 socket address built from a literal host ("127.0.0.1", "::1", "0.0.0.0",
// "::") or "localhost" (127.0.0.1). No DNS: tests must not depend on resolvers.
struct address {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family() const { return storage.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};
result<address> parse_host(std::string_view host, std::uint16_t port);

// "127.0.0.1:8080" / "[::1]:8080".
std::string format_endpoint(std::string_view host, std::uint16_t port);

// Whether `port` can be handed to a server that binds `host` — or the wildcard of
// either family, as memcached, redis and nginx do by default: binds host:port,
// 0.0.0.0:port and [::]:port (IPv6 only), so a listener on any address of the port
// (127.0.0.2, ::1, ...) makes it unavailable. 0 when all binds succeed, otherwise the
// errno of the first that failed (EADDRINUSE; EACCES for a privileged port). A family
// the machine does not have is skipped.
int port_unavailable(const address& host_at);

// A listening TCP socket (CLOEXEC, SO_REUSEADDR) on `at`; port 0 picks one.
result<int> listen_on(const address& at, int backlog = 128);

// The local port of a bound socket.
result<std::uint16_t> local_port(int fd);

// Outcome of one TCP connect attempt.
enum class connect_result { connected, refused, timed_out, error };
// Tries one non-blocking connect to `at`, waiting at most `timeout`.
connect_result try_connect(const address& at, std::chrono::milliseconds timeout);

// Connects, sends `request`, and returns the first line of the answer (without its
// line end), all within `timeout`; nullopt with `why` ("connection refused", "no answer
// in time", ...) otherwise. For the redis and memcached probes.
std::optional<std::string> exchange_line(const address& at, std::string_view request, std::chrono::milliseconds timeout,
                                         std::string* why = nullptr);

}  // namespace harness::detail::net
