#include "harness/detail/reaper_posix.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace harness::detail {
namespace {

// Static storage: the reaper must not allocate (it is a forked copy of a
// multi-threaded process, where malloc's locks may be held by threads that are gone).
char marker_prefix[256];
std::size_t marker_prefix_len = 0;
char environ_buf[1 << 20];
alignas(8) char dirent_buf[64 * 1024];

struct linux_dirent64 {
  unsigned long long d_ino;
  long long d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[1];
};

bool parse_pid(const char* s, pid_t& out) {
  if (*s == '\0') return false;
  long v = 0;
  for (; *s != '\0'; ++s) {
    if (*s < '0' || *s > '9') return false;
    v = v * 10 + (*s - '0');
    if (v > 0x3fffffff) return false;
  }
  out = static_cast<pid_t>(v);
  return v > 0;
}

// True when one NUL-separated entry of buf[0, n) starts with the marker prefix.
bool has_marker(const char* buf, std::size_t n) {
  std::size_t i = 0;
  while (i < n) {
    if (n - i >= marker_prefix_len && std::memcmp(buf + i, marker_prefix, marker_prefix_len) == 0) {
      return true;
    }
    while (i < n && buf[i] != '\0') ++i;
    ++i;
  }
  return false;
}

// One pass over /proc: SIGKILL every marked process of our uid. Returns how many.
int kill_marked(uid_t uid, pid_t self) {
  int proc = ::open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (proc < 0) return 0;
  int killed = 0;
  for (;;) {
    long n = ::syscall(SYS_getdents64, proc, dirent_buf, sizeof dirent_buf);
    if (n <= 0) break;
    for (long off = 0; off < n;) {
      auto* d = reinterpret_cast<linux_dirent64*>(dirent_buf + off);
      off += d->d_reclen;
      pid_t pid = 0;
      if (!parse_pid(d->d_name, pid) || pid == self) continue;
      struct stat st {};
      if (::fstatat(proc, d->d_name, &st, 0) != 0 || st.st_uid != uid) continue;
      char path[64];
      std::size_t len = std::strlen(d->d_name);
      std::memcpy(path, d->d_name, len);
      std::memcpy(path + len, "/environ", 9);
      int fd = ::openat(proc, path, O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      std::size_t total = 0;
      for (;;) {
        ssize_t r = ::read(fd, environ_buf + total, sizeof environ_buf - total);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        total += static_cast<std::size_t>(r);
        if (total == sizeof environ_buf) break;
      }
      ::close(fd);
      if (has_marker(environ_buf, total) && ::kill(pid, SIGKILL) == 0) ++killed;
    }
  }
  ::close(proc);
  return killed;
}

[[noreturn]] void reaper_main(int lifeline) {
  // Keep only the lifeline; stdio points at /dev/null.
#ifdef SYS_close_range
  if (lifeline > 0) ::syscall(SYS_close_range, 0U, static_cast<unsigned>(lifeline - 1), 0U);
  ::syscall(SYS_close_range, static_cast<unsigned>(lifeline + 1), ~0U, 0U);
#endif
  int null = ::open("/dev/null", O_RDWR);
  if (null >= 0) {
    for (int fd = 0; fd < 3; ++fd) {
      if (fd != lifeline && fd != null) ::dup2(null, fd);
    }
  }
  if (::chdir("/") != 0) {
    // Nothing to do about it; the reaper only needs /proc.
  }
  ::prctl(PR_SET_NAME, "harness-reaper", 0, 0, 0);
  // Signals stay blocked (inherited from the harness thread): only SIGKILL stops us.

  char byte;
  for (;;) {
    ssize_t r = ::read(lifeline, &byte, 1);
    if (r == 0) break;                       // the runner is gone
    if (r < 0 && errno != EINTR) break;
  }

  const uid_t uid = ::getuid();
  const pid_t self = ::getpid();
  // Rescan until a pass finds nothing (a dying tree may still fork). Between passes,
  // back off briefly so killed processes can leave /proc.
  for (int pass = 0, quiet = 0; pass < 2000 && quiet < 2; ++pass) {
    if (kill_marked(uid, self) == 0) {
      ++quiet;
    } else {
      quiet = 0;
    }
    struct timespec ts {0, 2'000'000};
    ::nanosleep(&ts, nullptr);
  }
  ::_exit(0);
}

pid_t reaper_pid = 0;
int lifeline_write = -1;
pid_t attempted_by = 0;  // the runner pid that started (or tried to start) a reaper

}  // namespace

pid_t ensure_reaper(const std::string& runner_token) {
  // A fork()ed copy of the runner (e.g. a gtest death test) has a runner token of
  // its own and needs a reaper of its own.
  if (attempted_by == ::getpid()) return reaper_pid;
  attempted_by = ::getpid();
  reaper_pid = 0;

  const std::string prefix = "HARNESS_SESSION=" + runner_token + "-";
  if (prefix.size() >= sizeof marker_prefix) return 0;
  std::memcpy(marker_prefix, prefix.data(), prefix.size());
  marker_prefix_len = prefix.size();

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return 0;
  int report[2];  // the grandchild's pid travels back through this pipe
  if (::pipe2(report, O_CLOEXEC) != 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return 0;
  }

  const pid_t first = ::fork();
  if (first < 0) {
    for (int fd : {fds[0], fds[1], report[0], report[1]}) ::close(fd);
    return 0;
  }
  if (first == 0) {
    ::setsid();
    const pid_t second = ::fork();
    if (second != 0) {
      // Intermediate: tell the runner who the reaper is, then leave so the reaper is
      // re-parented away from the runner.
      ssize_t ignored = ::write(report[1], &second, sizeof second);
      (void)ignored;
      ::_exit(second > 0 ? 0 : 1);
    }
    ::close(fds[1]);
    reaper_main(fds[0]);
  }
  ::close(fds[0]);
  ::close(report[1]);
  pid_t reaper = 0;
  ssize_t got;
  do {
    got = ::read(report[0], &reaper, sizeof reaper);
  } while (got < 0 && errno == EINTR);
  ::close(report[0]);
  int status = 0;
  while (::waitpid(first, &status, 0) < 0 && errno == EINTR) {
  }
  if (got != static_cast<ssize_t>(sizeof reaper) || reaper <= 0) {
    ::close(fds[1]);
    return 0;
  }
  lifeline_write = fds[1];  // kept open (CLOEXEC) for the life of the runner
  reaper_pid = reaper;
  return reaper_pid;
}

}  // namespace harness::detail
