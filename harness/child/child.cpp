// harness/child/child.cpp — see child.hpp. Standard library and POSIX only.
//
// Nothing here throws or aborts: every failure is an error_code (system_category for
// system calls, generic_category std::errc values for bad input).
#include "harness/child/child.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string_view>

namespace harness::child {
namespace {

std::error_code last_error() noexcept { return {errno, std::system_category()}; }

// Strict decimal: digits only (no sign, no spaces), no overflow, within [lo, hi].
bool parse_decimal(const char* text, long long lo, long long hi, long long& out) noexcept {
  if (text == nullptr || *text == '\0') return false;
  const std::string_view s{text};
  long long value = 0;
  auto [end, err] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (err != std::errc{} || end != s.data() + s.size() || s.front() == '-') return false;
  if (value < lo || value > hi) return false;
  out = value;
  return true;
}

void close_keep_errno(int fd) noexcept {
  const int saved = errno;
  ::close(fd);
  errno = saved;
}

// sockaddr for an IPv4/IPv6 literal ("localhost" = 127.0.0.1; "[::1]" accepted).
struct socket_address {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = AF_UNSPEC;
};

template <class Sockaddr>
bool store(socket_address& out, const Sockaddr& sa, int family) {
  std::memcpy(&out.storage, &sa, sizeof sa);
  out.length = sizeof sa;
  out.family = family;
  return true;
}

bool resolve_literal(const std::string& host, std::uint16_t port, socket_address& out) {
  std::string text = host == "localhost" ? std::string("127.0.0.1") : host;
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  // inet_pton() stops at a NUL: "127.0.0.1\0junk" must not pass for 127.0.0.1.
  if (text.empty() || text.find('\0') != std::string::npos) return false;

  sockaddr_in v4{};
  if (::inet_pton(AF_INET, text.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    return store(out, v4, AF_INET);
  }
  sockaddr_in6 v6{};
  if (::inet_pton(AF_INET6, text.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    return store(out, v6, AF_INET6);
  }
  return false;
}

// One socket + bind + listen. Returns the fd, or -1 with errno set.
int bind_once(const socket_address& addr, const bind_policy& policy) noexcept {
  const int fd = ::socket(addr.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (policy.reuse_address) {
    const int one = 1;
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
      close_keep_errno(fd);
      return -1;
    }
  }
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr.storage), addr.length) != 0 ||
      ::listen(fd, policy.backlog) != 0) {
    // listen() can report EADDRINUSE too (two SO_REUSEADDR sockets bound, one listening).
    close_keep_errno(fd);
    return -1;
  }
  return fd;
}

void sleep_for(std::chrono::microseconds duration) noexcept {
  if (duration <= std::chrono::microseconds::zero()) return;
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(duration);
  timespec remaining{};
  remaining.tv_sec = static_cast<time_t>(secs.count());
  remaining.tv_nsec = static_cast<long>((duration - secs).count() * 1000);
  while (::nanosleep(&remaining, &remaining) != 0 && errno == EINTR) {
  }
}

// Seeded per thread from the clock, the pid and the thread: a server started many
// times in parallel must not retry in lockstep. (std::random_device may throw.)
std::uint64_t jitter_draw(std::uint64_t upper_inclusive) noexcept {
  thread_local std::mt19937_64 engine = [] {
    int local = 0;
    const auto now = static_cast<std::uint64_t>(
        std::chrono::steady_clock::now().time_since_epoch().count());
    std::seed_seq seed{static_cast<std::uint32_t>(now), static_cast<std::uint32_t>(now >> 32),
                       static_cast<std::uint32_t>(::getpid()),
                       static_cast<std::uint32_t>(reinterpret_cast<std::uintptr_t>(&local))};
    return std::mt19937_64(seed);
  }();
  return std::uniform_int_distribution<std::uint64_t>(0, upper_inclusive)(engine);
}

// Writes all of `data` to `fd`; a closed reader yields EPIPE instead of killing us
// with SIGPIPE (the signal is blocked for this thread and a pending one discarded).
std::error_code write_all(int fd, std::string_view data) noexcept {
  sigset_t pipe_set;
  sigset_t old_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  sigset_t pending;
  sigemptyset(&pending);
  const bool was_pending = ::sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
  const bool masked = ::pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set) == 0;

  std::error_code result;
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      result = last_error();
      break;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }

  if (masked) {
    if (result == std::errc::broken_pipe && !was_pending) {
      const timespec zero{};
      while (::sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    ::pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
  }
  return result;
}

// getenv, with an empty value counting as unset (`env X= server` switches X off).
const char* env_value(const char* name) noexcept {
  const char* value = std::getenv(name);
  return (value != nullptr && *value != '\0') ? value : nullptr;
}

}  // namespace

std::vector<int> listen_fds(bool unset_environment) {
  std::vector<int> fds;
  long long pid = 0;
  long long count = 0;
  // As sd_listen_fds(): anything malformed, or meant for another process, means "none".
  if (parse_decimal(std::getenv("LISTEN_PID"), 1, LLONG_MAX, pid) &&
      pid == static_cast<long long>(::getpid()) &&
      parse_decimal(std::getenv("LISTEN_FDS"), 1, INT_MAX - 3, count)) {
    constexpr int first = 3;  // SD_LISTEN_FDS_START
    const int last = first + static_cast<int>(count) - 1;
    // A claim of an fd we do not have means the variables are not ours: trust none of
    // it, and touch no fd before knowing that.
    bool all_open = true;
    for (int fd = first; fd <= last && all_open; ++fd) all_open = ::fcntl(fd, F_GETFD) >= 0;
    for (int fd = first; all_open && fd <= last; ++fd) {
      const int flags = ::fcntl(fd, F_GETFD);
      if (flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
      fds.push_back(fd);
    }
  }
  if (unset_environment) {
    ::unsetenv("LISTEN_PID");
    ::unsetenv("LISTEN_FDS");
    ::unsetenv("LISTEN_FDNAMES");
  }
  return fds;
}

int bind_with_retry(const endpoint& at, const bind_policy& policy, std::error_code& ec) {
  ec.clear();
  socket_address addr;
  if (policy.attempts < 1 || policy.initial_delay.count() < 0 ||
      policy.max_delay.count() < 0) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return -1;
  }
  try {
    if (!resolve_literal(at.host, at.port, addr)) {
      ec = std::make_error_code(std::errc::invalid_argument);
      return -1;
    }
  } catch (...) {  // std::bad_alloc copying the host: report, never throw
    ec = std::make_error_code(std::errc::not_enough_memory);
    return -1;
  }

  using std::chrono::microseconds;
  // Clamped to a day so that the conversion to microseconds cannot overflow.
  const auto clamp = [](std::chrono::milliseconds d) -> microseconds {
    return std::min<std::chrono::milliseconds>(d, std::chrono::hours(24));
  };
  microseconds delay = clamp(policy.initial_delay);
  const microseconds cap = clamp(policy.max_delay);
  for (int attempt = 1;; ++attempt) {
    const int fd = bind_once(addr, policy);
    if (fd >= 0) {
      ec.clear();  // an earlier attempt's EADDRINUSE is no failure of the call
      return fd;
    }
    ec = last_error();
    if (ec != std::errc::address_in_use || attempt >= policy.attempts) return -1;

    const microseconds step = delay < cap ? delay : cap;
    sleep_for(policy.jitter
                  ? microseconds(static_cast<microseconds::rep>(
                        jitter_draw(static_cast<std::uint64_t>(step.count()))))
                  : step);
    delay = step < cap / 2 ? step * 2 : cap;  // doubling, without overflow
  }
}

std::uint16_t local_port(int fd, std::error_code& ec) {
  ec.clear();
  sockaddr_storage storage{};
  socklen_t length = sizeof storage;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) {
    ec = last_error();
    return 0;
  }
  std::uint16_t port = 0;
  if (storage.ss_family == AF_INET) {
    sockaddr_in v4{};
    std::memcpy(&v4, &storage, sizeof v4);
    port = ntohs(v4.sin_port);
  } else if (storage.ss_family == AF_INET6) {
    sockaddr_in6 v6{};
    std::memcpy(&v6, &storage, sizeof v6);
    port = ntohs(v6.sin6_port);
  } else {
    ec = std::make_error_code(std::errc::address_family_not_supported);
    return 0;
  }
  if (port == 0) ec = std::make_error_code(std::errc::invalid_argument);  // not bound
  return port;
}

std::error_code announce_on_fd(int fd, std::uint16_t port) {
  if (fd < 0) return std::make_error_code(std::errc::bad_file_descriptor);
  char line[32];
  int length = port == 0 ? std::snprintf(line, sizeof line, "READY=1\n")
                         : std::snprintf(line, sizeof line, "PORT=%u\n", unsigned{port});
  std::error_code ec = write_all(fd, std::string_view(line, static_cast<std::size_t>(length)));
  // Linux always releases the fd, even when close() reports EINTR: never retry.
  if (::close(fd) != 0 && !ec && errno != EINTR) ec = last_error();
  return ec;
}

std::error_code notify(const std::string& socket_path, const std::string& message) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty()) return std::make_error_code(std::errc::invalid_argument);
  const bool abstract = socket_path.front() == '@';
  // A filesystem path needs room for its terminating NUL; an abstract name does not.
  if (socket_path.size() > sizeof addr.sun_path - (abstract ? 0 : 1)) {
    return std::make_error_code(std::errc::filename_too_long);
  }
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  if (abstract) addr.sun_path[0] = '\0';
  const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) +
                                             socket_path.size() + (abstract ? 0 : 1));

  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return last_error();
  std::error_code ec;
  for (;;) {
    const ssize_t n = ::sendto(fd, message.data(), message.size(), MSG_NOSIGNAL,
                               reinterpret_cast<const sockaddr*>(&addr), length);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ec = last_error();
    } else if (static_cast<std::size_t>(n) != message.size()) {
      ec = std::make_error_code(std::errc::message_size);  // datagrams are all or nothing
    }
    break;
  }
  ::close(fd);
  return ec;
}

std::error_code announce_ready(std::uint16_t port) {
  if (const char* ready_fd = env_value("HARNESS_READY_FD")) {
    long long fd = -1;
    const bool valid = parse_decimal(ready_fd, 0, INT_MAX, fd);
    // Unset first: the fd is consumed (or bogus) either way, and children of ours must
    // not write to it.
    ::unsetenv("HARNESS_READY_FD");
    if (!valid) return std::make_error_code(std::errc::invalid_argument);
    return announce_on_fd(static_cast<int>(fd), port);
  }
  if (const char* socket_path = env_value("NOTIFY_SOCKET")) {
    char message[48];
    const int length =
        port == 0 ? std::snprintf(message, sizeof message, "READY=1\n")
                  : std::snprintf(message, sizeof message, "READY=1\nPORT=%u\n", unsigned{port});
    try {
      return notify(socket_path, std::string(message, static_cast<std::size_t>(length)));
    } catch (...) {
      return std::make_error_code(std::errc::not_enough_memory);
    }
  }
  return {};
}

}  // namespace harness::child
