// A line client for the fixture server's protocol, for the tests and their helper
// programs (no GoogleTest here: the helpers do not link it).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

namespace harness_test {

// Milliseconds from now until `deadline`, at least 0 (a poll() timeout).
inline int millis_left(std::chrono::steady_clock::time_point deadline) {
  const auto left =
      std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

// Sends `line` + "\n" to 127.0.0.1:port and returns the first reply line (without
// "\n"), or nullopt with `why` set. Bounded by `timeout` in all.
inline std::optional<std::string> tcp_request(std::uint16_t port, const std::string& line,
                                              std::chrono::milliseconds timeout, std::string& why) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    why = std::string("socket: ") + std::strerror(errno);
    return std::nullopt;
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::optional<std::string> reply;
  auto wait = [&](short events) {
    pollfd p{fd, events, 0};
    int n;
    do {
      n = ::poll(&p, 1, millis_left(deadline));
    } while (n < 0 && errno == EINTR);
    return n == 1;
  };
  do {
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      if (errno != EINPROGRESS) {
        why = std::string("connect: ") + std::strerror(errno);
        break;
      }
      int err = 0;
      socklen_t len = sizeof err;
      if (!wait(POLLOUT)) {
        why = "connect: timed out";
        break;
      }
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        why = std::string("connect: ") + std::strerror(err);
        break;
      }
    }
    const std::string msg = line + "\n";
    if (::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(msg.size())) {
      why = std::string("send: ") + std::strerror(errno);
      break;
    }
    std::string got;
    for (;;) {
      if (!wait(POLLIN)) {
        why = "no answer in time (got \"" + got + "\")";
        break;
      }
      char buf[256];
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) {
        why = "connection closed (got \"" + got + "\")";
        break;
      }
      got.append(buf, static_cast<std::size_t>(n));
      if (const auto eol = got.find('\n'); eol != std::string::npos) {
        reply = got.substr(0, eol);
        break;
      }
    }
  } while (false);
  ::close(fd);
  return reply;
}


// The same without the reason, bounded by 10 s.
inline std::optional<std::string> tcp_request(std::uint16_t port, const std::string& line) {
  std::string ignored;
  return tcp_request(port, line, std::chrono::seconds(10), ignored);
}

}  // namespace harness_test
