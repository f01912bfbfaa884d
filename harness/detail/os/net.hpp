// Private: loopback-friendly socket helpers (POSIX).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
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

// Whether a TCP socket could bind host:port right now (SO_REUSEADDR, so sockets in
// TIME_WAIT do not count as taken). Any error other than EADDRINUSE/EACCES counts as
// free=false with the reason in `why`.
bool tcp_port_free(const address& at, std::string* why = nullptr);

// A listening TCP socket (CLOEXEC, SO_REUSEADDR) on `at`; port 0 picks one.
result<int> listen_on(const address& at, int backlog = 128);

// The local port of a bound socket.
result<std::uint16_t> local_port(int fd);

// Outcome of one TCP connect attempt.
enum class connect_result { connected, refused, timed_out, error };
// Tries one non-blocking connect to `at`, waiting at most `timeout`.
connect_result try_connect(const address& at, std::chrono::milliseconds timeout);

}  // namespace harness::detail::net
