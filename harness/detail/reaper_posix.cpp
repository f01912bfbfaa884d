#include "harness/detail/reaper_posix.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
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

// The process groups the runner told us about ("+<pgid> <start time>" when a server
// starts, "-<pgid>" when it has been stopped).
struct group {
  pid_t pgid;
  unsigned long long start_time;  // of its leader, clock ticks since boot
};
constexpr int max_groups = 8192;
group groups[max_groups];
int group_count = 0;
char message_buf[4096];
std::size_t message_len = 0;

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

unsigned long long parse_ull(const char*& p) {
  unsigned long long v = 0;
  while (*p >= '0' && *p <= '9') v = v * 10 + static_cast<unsigned long long>(*p++ - '0');
  return v;
}

void take_message(const char* line) {
  const char op = *line++;
  const auto pgid = static_cast<pid_t>(parse_ull(line));
  if (pgid <= 0) return;
  if (op == '+') {
    if (*line == ' ') ++line;
    const unsigned long long start = parse_ull(line);
    if (group_count < max_groups) groups[group_count++] = {pgid, start};
  } else if (op == '-') {
    for (int i = 0; i < group_count; ++i) {
      if (groups[i].pgid == pgid) {
        groups[i] = groups[--group_count];
        break;
      }
    }
  }
}

// Reads the runner's messages; false once the runner is gone.
bool read_messages(int lifeline) {
  ssize_t r;
  do {
    r = ::read(lifeline, message_buf + message_len, sizeof message_buf - 1 - message_len);
  } while (r < 0 && errno == EINTR);
  if (r <= 0) return false;
  message_len += static_cast<std::size_t>(r);
  std::size_t start = 0;
  for (std::size_t i = 0; i < message_len; ++i) {
    if (message_buf[i] != '\n') continue;
    message_buf[i] = '\0';
    take_message(message_buf + start);
    start = i + 1;
  }
  std::memmove(message_buf, message_buf + start, message_len - start);
  message_len -= start;
  if (message_len == sizeof message_buf - 1) message_len = 0;  // garbage: drop it
  return true;
}

// The start time of /proc/<pid>, or 0 when the process is gone.
unsigned long long start_time_of(pid_t pid) {
  char path[64] = "/proc/";
  char digits[16];
  int n = 0;
  for (auto v = static_cast<unsigned long>(pid); v != 0 && n < 15; v /= 10) {
    digits[n++] = static_cast<char>('0' + v % 10);
  }
  std::size_t len = 6;
  while (n > 0) path[len++] = digits[--n];
  std::memcpy(path + len, "/stat", 6);
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[1024];
  const ssize_t r = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (r <= 0) return 0;
  buf[r] = '\0';
  // Field 22 (start time) counting from the last ')' (the name may hold anything).
  const char* p = nullptr;
  for (ssize_t i = r - 1; i >= 0; --i) {
    if (buf[i] == ')') {
      p = buf + i + 1;
      break;
    }
  }
  if (p == nullptr) return 0;
  for (int field = 2; field < 22 && *p != '\0'; ++p) {
    if (*p == ' ') ++field;
  }
  return parse_ull(p);
}

// SIGKILL to every recorded group. A group whose leader's pid now names a process
// that started at another time has been recycled: skipped. When the leader is gone,
// its pid cannot have been handed out again while the group still has members, so
// killing the group reaches only them (or nobody).
void kill_groups() {
  for (int i = 0; i < group_count; ++i) {
    const unsigned long long now = start_time_of(groups[i].pgid);
    if (now != 0 && now != groups[i].start_time) continue;
    ::kill(-groups[i].pgid, SIGKILL);
  }
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

  while (read_messages(lifeline)) {
  }

  // The runner is gone. Its servers' process groups first (members that dropped the
  // marker), then everything carrying one of its markers, rescanning until a pass
  // finds nothing (a dying tree may still fork); between passes, back off briefly so
  // killed processes can leave /proc.
  kill_groups();
  const uid_t uid = ::getuid();
  const pid_t self = ::getpid();
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

  // The lifeline: a socket pair rather than a pipe, so that the runner can send
  // with MSG_NOSIGNAL (no SIGPIPE in a test program if the reaper is gone).
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return 0;
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

namespace {
void send_line(const char* text, std::size_t len) {
  if (lifeline_write < 0 || attempted_by != ::getpid()) return;
  // Never blocks and never raises SIGPIPE; if the reaper fell behind by a whole
  // socket buffer the record is lost (PDEATHSIG and the markers still apply).
  ssize_t ignored = ::send(lifeline_write, text, len, MSG_NOSIGNAL | MSG_DONTWAIT);
  (void)ignored;
}
}  // namespace

void reaper_note_group(pid_t pgid, std::uint64_t leader_start_time) {
  char line[64];
  const int n = std::snprintf(line, sizeof line, "+%d %llu\n", static_cast<int>(pgid),
                              static_cast<unsigned long long>(leader_start_time));
  if (n > 0) send_line(line, static_cast<std::size_t>(n));
}

void reaper_forget_group(pid_t pgid) {
  char line[32];
  const int n = std::snprintf(line, sizeof line, "-%d\n", static_cast<int>(pgid));
  if (n > 0) send_line(line, static_cast<std::size_t>(n));
}

}  // namespace harness::detail
