// Shared helpers for the serve-harness tests (not part of the library).
#pragma once

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include "harness/lease.hpp"
#include "harness/process.hpp"
#include "harness/detail/os/pidfd.hpp"
#include "tcp_client.hpp"  // tcp_request

namespace harness_test {

// Paths of the test programs, from CMake ($<TARGET_FILE:...>).
inline const char* fixture_server() { return HARNESS_FIXTURE_SERVER; }

// A fresh directory under /tmp, removed with everything in it on destruction. A
// failed mkdtemp throws (GoogleTest reports it as a failure of the test).
class temp_dir {
 public:
  explicit temp_dir(const std::string& prefix) {
    std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      throw std::system_error(errno, std::generic_category(), "mkdtemp " + tmpl);
    }
    path_ = tmpl;
  }
  ~temp_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A pidfd for `pid`, to learn later whether *that* process has exited (the library's
// wrapper).
inline int open_pidfd(pid_t pid) { return harness::detail::pidfd::open(pid); }

// True when the process behind the pidfd has exited (within `wait`).
inline bool pidfd_exited(int fd, std::chrono::milliseconds wait = std::chrono::milliseconds(0)) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(wait.count())) == 1;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Children of this process that are zombies (exited but not reaped).
inline std::vector<pid_t> zombie_children() {
  std::vector<pid_t> out;
  const std::string me = std::to_string(::getpid());
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::string stat = read_text(std::string("/proc/") + e->d_name + "/stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    std::string state, ppid;
    rest >> state >> ppid;
    if (state == "Z" && ppid == me) out.push_back(std::stoi(e->d_name));
  }
  ::closedir(d);
  return out;
}

inline std::size_t open_fd_count() {
  std::size_t n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n - 1;
}

// Tests run in parallel with others that lease from the shared pool and listen on
// the ports they get. To use fixed, predictable ports without racing them, a test
// first leases a block of consecutive ports from the shared pool, then uses exactly
// that block (e.g. as a private pool in its own lock directory). The block is held in
// the default lock directory, which every other test uses, but not claimed
// network-wide, so that a runner started with its own HARNESS_STATE_DIR can lease it.
inline std::vector<harness::lease> reserve_block(int n) {
  auto pool = harness::default_port_range().value();
  for (int tries = 0; tries < 100; ++tries) {
    harness::lease first = harness::lease::acquire({.range = pool, .network_wide = false});
    if (first.port() + n - 1 > pool.last) continue;
    std::vector<harness::lease> block;
    block.push_back(std::move(first));
    for (int i = 1; i < n; ++i) {
      const auto p = static_cast<std::uint16_t>(block.front().port() + i);
      auto next = harness::lease::try_acquire({.range = harness::port_range{p, p}, .network_wide = false});
      if (!next) break;
      block.push_back(std::move(*next));
    }
    if (static_cast<int>(block.size()) == n) return block;
  }
  ADD_FAILURE() << "could not reserve " << n << " consecutive ports";
  return {};
}

// A listening socket on address:port (an IPv4 or IPv6 literal of `family`), as a
// program outside the pool would hold; -1 when it cannot be had.
inline int listen_on_address(int family, const char* address, std::uint16_t port) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    if (::inet_pton(AF_INET, address, &a->sin_addr) != 1) return -1;
    len = sizeof(sockaddr_in);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    if (::inet_pton(AF_INET6, address, &a->sin6_addr) != 1) return -1;
    len = sizeof(sockaddr_in6);
  }
  const int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd, 16) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A listening socket on 127.0.0.1:port, as a program outside the pool would hold.
inline int listen_on(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 16) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// The ports a server-runner reported ("PORT <i> <port> <pid>" lines), in that order.
inline std::vector<std::uint16_t> runner_ports(const harness::process& runner) {
  std::vector<std::uint16_t> ports;
  for (const auto& line : runner.output().tail_lines(harness::stream::out)) {
    if (line.rfind("PORT ", 0) != 0) continue;
    std::istringstream in(line.substr(5));
    int index = 0, port = 0;
    in >> index >> port;
    ports.push_back(static_cast<std::uint16_t>(port));
  }
  return ports;
}

}  // namespace harness_test
