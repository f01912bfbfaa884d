#include "events_posix.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <limits>
#include <system_error>
#include <vector>

namespace harness_cli {
namespace {

[[noreturn]] void fail(const char* what) {
  throw std::system_error(errno, std::system_category(), what);
}

sigset_t termination_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}

}  // namespace

signal_watch signal_watch::install() {
  std::signal(SIGPIPE, SIG_IGN);
  const sigset_t set = termination_signals();
  if (const int err = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); err != 0) {
    errno = err;
    fail("pthread_sigmask");
  }
  const int fd = ::signalfd(-1, &set, SFD_CLOEXEC);
  if (fd < 0) fail("signalfd");
  return signal_watch(fd);
}

void signal_watch::release() {
  const sigset_t set = termination_signals();
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

signal_watch::signal_watch(signal_watch&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }

signal_watch::~signal_watch() {
  if (fd_ >= 0) ::close(fd_);
}

int signal_watch::take() {
  signalfd_siginfo info{};
  for (;;) {
    const ssize_t n = ::read(fd_, &info, sizeof info);
    if (n == static_cast<ssize_t>(sizeof info)) return static_cast<int>(info.ssi_signo);
    if (n < 0 && errno != EINTR) fail("read(signalfd)");
  }
}

exit_watch::exit_watch(const harness::process& p) {
  fd_ = static_cast<int>(::syscall(SYS_pidfd_open, p.pid(), 0));
  if (fd_ >= 0) return;
  if (errno != ENOSYS) fail("pidfd_open");
  // No pidfds: a thread waits (blocking, no polling) and raises an eventfd.
  fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (fd_ < 0) fail("eventfd");
  waiter_ = std::thread([&p, fd = fd_] {
    while (!p.wait_for(std::chrono::hours(24))) {
    }
    const std::uint64_t one = 1;
    (void)!::write(fd, &one, sizeof one);
  });
}

exit_watch::~exit_watch() {
  if (waiter_.joinable()) waiter_.join();
  if (fd_ >= 0) ::close(fd_);
}

event::event() : fd_(::eventfd(0, EFD_CLOEXEC)) {
  if (fd_ < 0) fail("eventfd");
}

event::~event() { ::close(fd_); }

void event::raise() {
  const std::uint64_t one = 1;
  (void)!::write(fd_, &one, sizeof one);
}

namespace {

// poll(2) on `fds` until one is readable or `deadline` (none: no limit).
std::optional<std::size_t> poll_any(std::span<const int> fds,
                                    std::optional<std::chrono::steady_clock::time_point> deadline) {
  std::vector<pollfd> polls;
  for (int fd : fds) polls.push_back({fd, POLLIN, 0});
  for (;;) {
    int timeout = -1;
    if (deadline) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(
          *deadline - std::chrono::steady_clock::now());
      timeout = static_cast<int>(
          std::clamp<std::chrono::milliseconds::rep>(left.count(), 0, std::numeric_limits<int>::max()));
    }
    const int n = ::poll(polls.data(), polls.size(), timeout);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("poll");
    if (n == 0) return std::nullopt;
    for (std::size_t i = 0; i < polls.size(); ++i) {
      if (polls[i].revents != 0) return i;
    }
  }
}

}  // namespace

std::size_t wait_any(std::initializer_list<int> fds) { return *poll_any(std::span(fds.begin(), fds.size()), std::nullopt); }

std::size_t wait_any(std::span<const int> fds) { return *poll_any(fds, std::nullopt); }

std::optional<std::size_t> wait_any_for(std::initializer_list<int> fds,
                                        std::chrono::milliseconds timeout) {
  return poll_any(std::span(fds.begin(), fds.size()), std::chrono::steady_clock::now() + timeout);
}

}  // namespace harness_cli
