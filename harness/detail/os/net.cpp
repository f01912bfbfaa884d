#include "harness/detail/os/net.hpp"

#include <optional>

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <initializer_list>

#include "harness/detail/os/unique_fd.hpp"

namespace harness::detail::net {

result<address> parse_host(std::string_view host, std::uint16_t port) {
  address a;
  std::string h(host);
  if (h.empty()) {
    return make_failure(errc::invalid_argument, "the host is empty: give an IP address literal (e.g. 127.0.0.1 or ::1)");
  }
  if (h == "localhost") h = "127.0.0.1";
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
  // inet_pton() stops at a NUL: "127.0.0.1\0junk" must not pass for 127.0.0.1.
  if (h.find('\0') != std::string::npos) h.clear();
  if (::inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    a.length = sizeof(sockaddr_in);
    return a;
  }
  if (::inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    a.length = sizeof(sockaddr_in6);
    return a;
  }
  return make_failure(errc::invalid_argument,
                      "host \"" + std::string(host) +
                          "\" is not an IP address literal (use e.g. 127.0.0.1 or ::1)");
}

std::string format_endpoint(std::string_view host, std::uint16_t port) {
  std::string h(host);
  if (h.find(':') != std::string::npos && h.front() != '[') h = "[" + h + "]";
  return h + ":" + std::to_string(port);
}

namespace {
int tcp_socket(int family) {
  return ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
}
void reuse(int fd) {
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
}
}  // namespace

int port_unavailable(const address& host_at) {
  const std::uint16_t port = ntohs(host_at.family() == AF_INET
                                       ? reinterpret_cast<const sockaddr_in*>(host_at.get())->sin_port
                                       : reinterpret_cast<const sockaddr_in6*>(host_at.get())->sin6_port);
  address any4, any6;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&any4.storage);
  v4->sin_family = AF_INET;
  v4->sin_addr.s_addr = htonl(INADDR_ANY);
  v4->sin_port = htons(port);
  any4.length = sizeof(sockaddr_in);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&any6.storage);
  v6->sin6_family = AF_INET6;
  v6->sin6_addr = in6addr_any;
  v6->sin6_port = htons(port);
  any6.length = sizeof(sockaddr_in6);
  for (const address* at : std::initializer_list<const address*>{&host_at, &any4, &any6}) {
    const unique_fd fd(tcp_socket(at->family()));
    if (!fd) {
      if (errno == EAFNOSUPPORT && at != &host_at) continue;  // no IPv6 (or IPv4) here
      return errno;
    }
    reuse(fd.get());
    if (at->family() == AF_INET6) {
      int one = 1;  // only the IPv6 addresses: 0.0.0.0 has its own bind
      ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    if (::bind(fd.get(), at->get(), at->length) != 0) {
      if (errno == EADDRNOTAVAIL && at != &host_at) continue;  // IPv6 disabled
      return errno;
    }
  }
  return 0;
}

result<int> listen_on(const address& at, int backlog) {
  unique_fd fd(tcp_socket(at.family()));
  if (!fd) return make_system_failure(errno, "socket");
  reuse(fd.get());
  if (::bind(fd.get(), at.get(), at.length) != 0 || ::listen(fd.get(), backlog) != 0) {
    return make_system_failure(errno, "bind/listen");
  }
  return fd.release();
}

result<std::uint16_t> local_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return make_system_failure(errno, "getsockname");
  }
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return make_failure(errc::invalid_argument, "not an IP socket");
}

namespace {

// Connects a non-blocking socket within `timeout`.
connect_result connect_within(int fd, const address& at, std::chrono::milliseconds timeout) {
  connect_result r = connect_result::error;
  if (::connect(fd, at.get(), at.length) == 0) {
    r = connect_result::connected;
  } else if (errno == ECONNREFUSED) {
    r = connect_result::refused;
  } else if (errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    const int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (n == 0) {
      r = connect_result::timed_out;
    } else if (n == 1) {
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      r = err == 0 ? connect_result::connected
                   : (err == ECONNREFUSED ? connect_result::refused : connect_result::error);
    }
  }
  return r;
}

}  // namespace

connect_result try_connect(const address& at, std::chrono::milliseconds timeout) {
  const unique_fd socket(::socket(at.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!socket) return connect_result::error;
  return connect_within(socket.get(), at, timeout);
}

std::optional<std::string> exchange_line(const address& at, std::string_view request, std::chrono::milliseconds timeout,
                                         std::string* why) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const auto say = [&](std::string text) -> std::optional<std::string> {
    if (why != nullptr) *why = std::move(text);
    return std::nullopt;
  };
  const unique_fd socket(::socket(at.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!socket) return say(std::string("socket: ") + std::strerror(errno));
  const int fd = socket.get();
  switch (connect_within(fd, at, timeout)) {
    case connect_result::connected: break;
    case connect_result::refused: return say("connection refused");
    case connect_result::timed_out: return say("no connection");
    case connect_result::error: return say("connection failed");
  }
  const auto left = [&] {
    return static_cast<int>(std::max<long long>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count()));
  };
  std::size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, left()) <= 0) return say("no answer in time");
      continue;
    }
    return say("the connection closed");
  }
  std::string line;
  for (;;) {
    if (const auto nl = line.find('\n'); nl != std::string::npos) {
      line.resize(nl);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return line;
    }
    if (line.size() > 4096) return line;
    pollfd p{fd, POLLIN, 0};
    const int rc = ::poll(&p, 1, left());
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) return say(line.empty() ? "no answer in time" : "an answer without a line end");
    char buf[512];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return say(line.empty() ? "the connection closed without an answer" : "the answer was cut short");
    line.append(buf, static_cast<std::size_t>(n));
  }
}

}  // namespace harness::detail::net
