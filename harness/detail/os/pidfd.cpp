#include "harness/detail/os/pidfd.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>

namespace harness::detail::pidfd {
namespace {
std::atomic<bool> disabled{false};
std::atomic<int> kernel_support{-1};  // -1 unknown, 0 no, 1 yes
}  // namespace

int open(pid_t pid) {
  if (disabled.load() || kernel_support.load() == 0) {
    errno = ENOSYS;
    return -1;
  }
#ifdef SYS_pidfd_open
  // PIDFD_NONBLOCK is not needed: we only poll() it. pidfds are always CLOEXEC.
  const long fd = ::syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) {
    if (errno == ENOSYS) kernel_support = 0;
    return -1;
  }
  kernel_support = 1;
  return static_cast<int>(fd);
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}

bool available() {
  if (disabled.load()) return false;
  if (kernel_support.load() < 0) {
    const int fd = open(::getpid());
    if (fd >= 0) ::close(fd);
  }
  return kernel_support.load() == 1;
}

int send_signal(int fd, pid_t pid, int sig) {
#ifdef SYS_pidfd_send_signal
  if (fd >= 0) {
    if (::syscall(SYS_pidfd_send_signal, fd, sig, nullptr, 0) == 0) return 0;
    if (errno != ENOSYS) return -1;
  }
#else
  (void)fd;
#endif
  return ::kill(pid, sig);
}

void disable_for_testing(bool d) { disabled = d; }

}  // namespace harness::detail::pidfd
