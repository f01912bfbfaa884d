// A tiny blocking TCP client for the examples: send a line, read the reply line.
// (Use your own protocol's client in real tests.)
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace example {

// Connects to 127.0.0.1:port, sends `request`, returns what arrives up to the first
// '\n' (or until the peer closes). nullopt when the connection fails.
inline std::optional<std::string> ask(std::uint16_t port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::optional<std::string> reply;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
    std::string line;
    char c;
    pollfd p{fd, POLLIN, 0};
    while (::poll(&p, 1, 10'000) == 1 && ::read(fd, &c, 1) == 1 && c != '\n') line.push_back(c);
    reply = line;
  }
  ::close(fd);
  return reply;
}

// "pong: <text>" from the fixture server's line protocol.
inline std::optional<std::string> ping(std::uint16_t port, const std::string& text = "ping") {
  return ask(port, text + "\n");
}

// The first line of the reply to `request` without its "\r\n": for CRLF protocols
// like redis' RESP ("PING\r\n" -> "+PONG") and memcached's ("version\r\n" -> "VERSION 1.6.18").
inline std::optional<std::string> ask_line(std::uint16_t port, const std::string& request) {
  auto line = ask(port, request);
  if (line && !line->empty() && line->back() == '\r') line->pop_back();
  return line;
}

// The body of GET `path` (HTTP/1.0: the server closes the connection after it).
inline std::optional<std::string> http_get(std::uint16_t port, const std::string& path = "/") {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
    char buf[4096];
    pollfd p{fd, POLLIN, 0};
    ssize_t n = 0;
    while (::poll(&p, 1, 10'000) == 1 && (n = ::read(fd, buf, sizeof buf)) > 0) {
      response.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  const auto end_of_headers = response.find("\r\n\r\n");
  if (end_of_headers == std::string::npos) return std::nullopt;
  return response.substr(end_of_headers + 4);
}

// The status line of GET `path` ("HTTP/1.0 200 OK").
inline std::optional<std::string> http_status_line(std::uint16_t port, const std::string& path = "/") {
  auto line = ask(port, "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  if (line && !line->empty() && line->back() == '\r') line->pop_back();
  return line;
}

}  // namespace example
