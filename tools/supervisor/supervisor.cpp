// harness-supervisor — owns the whole process tree of one server (Linux).
//
// The runner starts one per server (never by hand; the protocol and the command line
// are in harness/detail/proc/supervisor_protocol.hpp). It
//   * becomes a child subreaper (PR_SET_CHILD_SUBREAPER), so every descendant of the
//     server stays below it whatever it does: setsid, a double fork, a fresh
//     environment, setproctitle, a uid change;
//   * starts the server and relays its exit status exactly (it is the parent);
//   * follows a daemonizing server: when the server exits with status 0 and leaves
//     processes behind, the oldest of them is the server from then on;
//   * on a stop request and on SIGTERM/SIGINT/SIGHUP/SIGQUIT, sweeps the tree with stop
//     steps: each signals every process below it, then waits until none is left or the
//     step's time is up; SIGKILL at the end; reaping until empty. Then it exits;
//   * when the runner dies (a pidfd on the runner, so that a fork()ed copy of the runner
//     holding the socket does not keep it waiting) or its control socket closes, it
//     SIGKILLs the whole tree at once: the runner is gone, nothing waits for a grace.
//
// One thread, one poll loop over a signalfd, the control socket and the runner's pidfd.
// No Boost. The server's main process stays a zombie (reserved pid and process group)
// until the stop, so that nothing the runner signals by it can have been recycled.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "harness/detail/os/proc_tree.hpp"
#include "harness/detail/proc/supervisor_protocol.hpp"

extern char** environ;

namespace {

namespace proctree = harness::detail::proctree;
namespace protocol = harness::detail::supervisor_protocol;
using protocol::parse_long;
using step = protocol::stop_step;

struct config {
  int control = -1;
  pid_t runner = 0;
  bool listen_pid = false;
  bool follow = false;
  bool own_group = false;
  std::vector<int> keep_fds;
  std::vector<step> default_stop{{SIGTERM, 3000}, {SIGKILL, 5000}};
  std::string cwd;
  std::string program;
  std::vector<std::string> args;  // argv, then the environment (after `argc` of them)
  std::size_t argc = 0;
  std::vector<char*> argv;        // pointers into args, each list NULL-terminated
  std::vector<char*> envp;
};

config cfg;
int sigfd = -1;
int runner_fd = -1;       // pidfd of the runner; -1: watch getppid() instead
pid_t main_pid = 0;       // the process we exec'ed; a zombie until the stop
bool main_exited = false;
pid_t server = 0;         // the process reported as the server (main, or a daemon)
bool server_exited = false;
bool stopping = false;    // no daemon is followed once a stop has begun
std::vector<pid_t> scratch;

long now_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1'000'000;
}

void send_message(const char* fmt, long a = 0, long b = 0, long c = 0) {
  char buf[harness::detail::supervisor_protocol::max_message];
  const int n = std::snprintf(buf, sizeof buf, fmt, a, b, c);
  if (n <= 0 || cfg.control < 0) return;
  // MSG_NOSIGNAL: the runner may be gone; nothing to do about it then.
  while (::send(cfg.control, buf, static_cast<std::size_t>(n), MSG_NOSIGNAL) < 0 && errno == EINTR) {
  }
}

[[noreturn]] void usage() {
  std::fputs("harness-supervisor: started by the serve-harness library, not by hand\n", stderr);
  std::exit(64);
}

void parse_args(int argc, char** argv) {
  if (argc != 3) usage();
  long v = 0;
  if (!parse_long(argv[1], v) || v < 3) usage();
  cfg.control = static_cast<int>(v);
  if (!parse_long(argv[2], v) || v <= 0) usage();
  cfg.runner = static_cast<pid_t>(v);
}

bool kept(int fd) {
  if (fd <= 2 || fd == cfg.control) return true;
  for (int k : cfg.keep_fds) {
    if (k == fd) return true;
  }
  return false;
}

// Closes every fd the server must not inherit (the runner may have leaked some without
// CLOEXEC). close_range where the kernel allows it, else one by one from /proc/self/fd.
void close_other_fds() {
  int fd = 3;
  bool ranges_ok = true;
  while (ranges_ok) {
    int next = -1;  // the smallest kept fd >= fd
    for (int k : cfg.keep_fds) {
      if (k >= fd && (next < 0 || k < next)) next = k;
    }
    if (cfg.control >= fd && (next < 0 || cfg.control < next)) next = cfg.control;
    if (next != fd) {
      const unsigned last = next < 0 ? ~0U : static_cast<unsigned>(next - 1);
#ifdef SYS_close_range
      ranges_ok = ::syscall(SYS_close_range, static_cast<unsigned>(fd), last, 0U) == 0;
#else
      ranges_ok = false;
#endif
    }
    if (next < 0) break;
    fd = next + 1;
  }
  if (ranges_ok) return;
  std::vector<int> open_fds;
  if (int dirfd = ::open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC); dirfd >= 0) {
    char buf[4096];
    for (;;) {
      const long n = ::syscall(SYS_getdents64, dirfd, buf, sizeof buf);
      if (n <= 0) break;
      for (long off = 0; off < n;) {
        struct linux_dirent64 {
          unsigned long long d_ino;
          long long d_off;
          unsigned short d_reclen;
          unsigned char d_type;
          char d_name[1];
        };
        auto* d = reinterpret_cast<linux_dirent64*>(buf + off);
        off += d->d_reclen;
        long v = 0;
        if (parse_long(d->d_name, v) && v != dirfd) open_fds.push_back(static_cast<int>(v));
      }
    }
    ::close(dirfd);
  } else {
    long limit = ::sysconf(_SC_OPEN_MAX);
    if (limit < 0 || limit > 1 << 16) limit = 1 << 16;
    for (int i = 3; i < limit; ++i) open_fds.push_back(i);
  }
  for (int f : open_fds) {
    if (!kept(f)) ::close(f);
  }
}

// --- reaping ------------------------------------------------------------------------

void report_exit(const siginfo_t& si, bool is_main);

// Reaps every exited child except the main process, which is only observed (WNOWAIT)
// and stays a zombie until the stop. Reports the server's exit.
void reap() {
  std::vector<pid_t> kids;  // not `scratch`: report_exit() below reuses that
  proctree::children(::getpid(), kids);
  for (pid_t pid : kids) {
    siginfo_t si{};
    if (pid == main_pid) {
      if (main_exited) continue;
      if (::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid == 0) {
        continue;
      }
      main_exited = true;
      report_exit(si, true);
      continue;
    }
    if (::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WNOHANG) != 0 || si.si_pid == 0) continue;
    if (pid == server && !server_exited) report_exit(si, false);
  }
}

// The oldest live child of ours other than the main process: a daemon's copy.
//
// A child listed alive may exit before we look at it: a daemon's middle process does,
// right after its fork, and its own child (the daemon) becomes ours only then, after
// the list was read. So when a child is found dead that was not dead before, the list
// is read again; zombies stay dead, so this ends.
pid_t oldest_live_child() {
  std::vector<pid_t> kids;
  std::vector<pid_t> dead;
  for (;;) {
    kids.clear();
    proctree::children(::getpid(), kids);
    pid_t best = 0;
    unsigned long long best_start = ~0ULL;
    bool newly_dead = false;
    for (pid_t pid : kids) {
      if (pid == main_pid) continue;
      proctree::brief b;
      if (!proctree::read_brief(pid, b) || !b.alive()) {
        if (std::find(dead.begin(), dead.end(), pid) == dead.end()) {
          dead.push_back(pid);
          newly_dead = true;
        }
        continue;
      }
      if (b.start < best_start) {
        best = pid;
        best_start = b.start;
      }
    }
    if (best > 0 || !newly_dead) return best;
  }
}

void report_exit(const siginfo_t& si, bool is_main) {
  if (!is_main && server != si.si_pid) return;
  if (is_main && server != main_pid) return;  // already following a daemon
  proctree::descendants(::getpid(), scratch);
  // descendants() skips zombies: the process that just exited is not counted.
  const long left = static_cast<long>(scratch.size());
  if (cfg.follow && !stopping && si.si_code == CLD_EXITED && si.si_status == 0) {
    if (const pid_t next = oldest_live_child(); next > 0) {
      proctree::brief b;
      proctree::read_brief(next, b);
      server = next;
      send_message("F %ld %ld", next, static_cast<long>(b.start));
      return;
    }
  }
  server_exited = true;
  const char* how = si.si_code == CLD_EXITED ? "e" : si.si_code == CLD_DUMPED ? "c" : "k";
  char fmt[64];
  std::snprintf(fmt, sizeof fmt, "X %s %%ld %%ld", how);
  send_message(fmt, si.si_status, left);
}

// --- the sweep ------------------------------------------------------------------------

// Sends sig to every live process below us. Each is opened as a pidfd and checked to
// still be in the tree (its parent is us or one of the tree) before the signal, so a
// recycled pid is never signalled.
int signal_tree(int sig) {
  std::vector<pid_t> tree;
  proctree::descendants(::getpid(), tree);
  const pid_t self = ::getpid();
  int sent = 0;
  for (pid_t pid : tree) {
    const long fd = ::syscall(SYS_pidfd_open, pid, 0);
    proctree::brief b;
    bool member = proctree::read_brief(pid, b) && b.alive();
    if (member && b.ppid != self) {
      member = false;
      for (pid_t p : tree) member = member || p == b.ppid;
    }
    if (member) {
      if (fd >= 0) {
        if (::syscall(SYS_pidfd_send_signal, static_cast<int>(fd), sig, nullptr, 0U) == 0) ++sent;
      } else if (::kill(pid, sig) == 0) {
        ++sent;
      }
    }
    if (fd >= 0) ::close(static_cast<int>(fd));
  }
  return sent;
}

// Empty: nothing alive below us, the main process's exit seen, and every other child
// of ours reaped (its status taken); the main process is kept as a zombie on purpose.
// A multi-threaded child whose main thread has exited shows as a zombie while its other
// threads still run; it is not gone until waitid() reports it.
bool tree_empty() {
  // The main process too: its main thread shows as a zombie while other threads of it
  // still run, and only waitid() says when its exit is complete.
  if (main_pid > 0 && !main_exited) return false;
  proctree::descendants(::getpid(), scratch);
  if (!scratch.empty()) return false;
  scratch.clear();
  proctree::children(::getpid(), scratch);
  for (pid_t pid : scratch) {
    if (pid != main_pid) return false;
  }
  return true;
}

void drain_signalfd() {
  signalfd_siginfo info[8];
  while (::read(sigfd, info, sizeof info) > 0) {
  }
}

// Waits for SIGCHLD until the tree is empty or `deadline`; with `keep_killing`, sweeps
// SIGKILL again on each wake-up (a dying tree may still fork).
bool runner_gone();

bool wait_empty(long deadline, bool keep_killing) {
  for (;;) {
    reap();
    if (tree_empty()) return true;
    const long left = deadline - now_ms();
    if (left <= 0) return false;
    // The runner died during a graceful stop: nobody waits for the grace any more.
    if (!keep_killing && runner_gone()) {
      keep_killing = true;
      deadline = now_ms() + 1000;
    }
    if (keep_killing) signal_tree(SIGKILL);
    pollfd p{sigfd, POLLIN, 0};
    // SIGCHLD wakes us; the cap covers a grandchild that exits without a SIGCHLD to us.
    ::poll(&p, 1, static_cast<int>(left < 20 ? left : 20));
    drain_signalfd();
  }
}

[[noreturn]] void stop_and_exit(const std::vector<step>& steps) {
  stopping = true;
  bool empty = false;
  for (const step& s : steps) {
    reap();
    if (tree_empty()) {
      empty = true;
      break;
    }
    signal_tree(s.signal);
    empty = wait_empty(now_ms() + s.ms, s.signal == SIGKILL);
    if (empty) break;
  }
  if (!empty) {
    // Whatever the steps were, nothing of the tree outlives the stop.
    signal_tree(SIGKILL);
    empty = wait_empty(now_ms() + 2000, true);
  }
  reap();
  // The main process is reaped last: until now its pid and group stayed reserved.
  if (main_pid > 0) {
    siginfo_t si{};
    if (!main_exited && ::waitid(P_PID, static_cast<id_t>(main_pid), &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        si.si_pid != 0) {
      main_exited = true;
      report_exit(si, true);
    }
    int ws = 0;
    ::waitpid(main_pid, &ws, WNOHANG);
  }
  reap();  // anything that exited meanwhile, with the server's status if it is one
  proctree::descendants(::getpid(), scratch);
  send_message("Z %ld", static_cast<long>(scratch.size()));
  std::_Exit(0);
}

std::vector<step> stop_steps(const char* message) {
  std::vector<step> steps = protocol::parse_stop_message(message);
  if (steps.empty()) steps = cfg.default_stop;
  return steps;
}

const std::vector<step> kill_now{{SIGKILL, 1000}};

bool runner_gone() {
  if (runner_fd >= 0) {
    pollfd p{runner_fd, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
  }
  return ::getppid() != cfg.runner;
}

// --- start ----------------------------------------------------------------------------

void release_server_fds() {
  const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  for (int fd = 0; fd <= 2; ++fd) {
    if (null >= 0) ::dup3(null, fd, 0);
  }
  if (null > 2) ::close(null);
  for (int fd : cfg.keep_fds) ::close(fd);
}

// Every signal back to SIG_DFL, including the two real-time signals the C library
// keeps for itself (posix_spawn leaves those ignored, and SIG_IGN survives exec). The
// raw system call: sigaction() refuses those two. An all-zero kernel sigaction is
// SIG_DFL with no flags and an empty mask, whatever the architecture's layout.
void reset_all_dispositions() {
  struct {
    unsigned long words[4];
  } dfl{};
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    ::syscall(SYS_rt_sigaction, sig, &dfl, nullptr, sizeof(unsigned long));
  }
}

// Starts the server with vfork + execve: the child shares our memory until the exec and
// only makes system calls on memory prepared here (no allocation, no stdio), so the
// start costs no page-table copy.
char* listen_pid_digits = nullptr;  // in cfg.envp; static: it lives across vfork
pid_t self = 0;                     // likewise

void start_server() {
  if (cfg.listen_pid) {
    // Overwrite the LISTEN_PID entry in place (the runner put one with room for digits).
    for (char* e : cfg.envp) {
      if (e != nullptr && std::strncmp(e, "LISTEN_PID=", 11) == 0) listen_pid_digits = e + 11;
    }
  }
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    send_message("E %ld fork", errno);
    std::_Exit(0);
  }
  sigset_t none;
  sigemptyset(&none);
  self = ::getpid();
  const pid_t pid = ::vfork();
  if (pid == 0) {
    ::close(report[0]);
    ::close(cfg.control);
    if (sigfd >= 0) ::close(sigfd);
    if (runner_fd >= 0) ::close(runner_fd);
    // If the supervisor itself is SIGKILLed, at least the server goes with it (and if
    // that already happened, it must not start at all).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != self) ::_exit(127);
    if (cfg.own_group) ::setpgid(0, 0);
    if (listen_pid_digits != nullptr) {
      char digits[24];
      int n = 0;
      for (unsigned long v = static_cast<unsigned long>(::getpid()); v != 0 || n == 0; v /= 10) {
        digits[n++] = static_cast<char>('0' + v % 10);
      }
      for (int i = 0; i < n; ++i) listen_pid_digits[i] = digits[n - 1 - i];
      listen_pid_digits[n] = '\0';
    }
    reset_all_dispositions();
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(cfg.program.c_str(), cfg.argv.data(), cfg.envp.data());
    const int err = errno;
    ssize_t ignored = ::write(report[1], &err, sizeof err);
    (void)ignored;
    ::_exit(127);
  }
  ::close(report[1]);
  if (pid < 0) {
    send_message("E %ld fork", errno);
    std::_Exit(0);
  }
  // Hand the server's fds over completely: its output pipes must reach end-of-file
  // when the server's tree closes them, its ready pipe likewise, and an inherited
  // listening socket must not stay open here.
  release_server_fds();
  if (cfg.own_group) ::setpgid(pid, pid);  // both sides: in place whichever runs first
  int err = 0;
  ssize_t n;
  do {
    n = ::read(report[0], &err, sizeof err);
  } while (n < 0 && errno == EINTR);
  ::close(report[0]);
  if (n == static_cast<ssize_t>(sizeof err)) {
    int ws = 0;
    while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    send_message("E %ld exec", err);
    std::_Exit(0);
  }
  main_pid = server = pid;
  proctree::brief b;
  proctree::read_brief(pid, b);
  send_message("S %ld %ld", pid, static_cast<long>(b.start));
}

// --- the launch request -------------------------------------------------------------

// Moves fd to the lowest free number >= base (CLOEXEC); returns it.
int move_above(int fd, int base) {
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, base);
  if (moved < 0) {
    send_message("E %ld fds", errno);
    std::_Exit(0);
  }
  ::close(fd);
  return moved;
}

// The request's fields (supervisor_protocol.hpp) into cfg; a malformed one ends us.
void parse_request(const std::string& text) {
  protocol::launch_request req;
  switch (protocol::parse_launch_request(text, req)) {
    case protocol::request_error::none: break;
    case protocol::request_error::malformed:
      send_message("E %ld request", EPROTO);
      std::_Exit(0);
    case protocol::request_error::bad_field: usage();
  }
  cfg.listen_pid = req.listen_pid;
  cfg.follow = req.follow;
  cfg.own_group = req.own_group;
  cfg.keep_fds = std::move(req.keep_fds);
  cfg.default_stop = std::move(req.stop);
  cfg.cwd = std::move(req.cwd);
  if (req.set_umask) ::umask(req.umask);
  cfg.program = std::move(req.program);
  cfg.argc = req.argc;
  cfg.args = std::move(req.args);
  for (std::size_t i = 0; i < cfg.args.size(); ++i) {
    if (i == cfg.argc) cfg.argv.push_back(nullptr);
    (i < cfg.argc ? cfg.argv : cfg.envp).push_back(cfg.args[i].data());
  }
  if (cfg.args.size() == cfg.argc) cfg.argv.push_back(nullptr);
  cfg.envp.push_back(nullptr);
}

// Puts the runner's fds where the server wants them: the working directory applied,
// then stdin/stdout/stderr on 0-2 and the passed fds on their numbers.
void place_fds(std::vector<int>& fds) {
  // Our own fds and every source go above all target numbers first, so that no dup2
  // below lands on an fd still needed.
  int base = 3;
  for (int t : cfg.keep_fds) base = t + 1 > base ? t + 1 : base;
  cfg.control = move_above(cfg.control, base);
  sigfd = move_above(sigfd, base);
  if (runner_fd >= 0) runner_fd = move_above(runner_fd, base);
  // The runner's working directory at the time of the request, then CWD relative to it.
  if (::fchdir(fds[1]) != 0 || (!cfg.cwd.empty() && ::chdir(cfg.cwd.c_str()) != 0)) {
    send_message("E %ld chdir", errno);
    std::_Exit(0);
  }
  ::close(fds[1]);
  std::vector<int> targets{0, 1, 2};
  targets.insert(targets.end(), cfg.keep_fds.begin(), cfg.keep_fds.end());
  for (std::size_t i = 2; i < fds.size(); ++i) fds[i] = move_above(fds[i], base);
  for (std::size_t i = 2; i < fds.size(); ++i) {
    if (::dup2(fds[i], targets[i - 2]) < 0) {  // dup2 clears CLOEXEC: the server inherits it
      send_message("E %ld fds", errno);
      std::_Exit(0);
    }
    ::close(fds[i]);
  }
}

// Reads the request: one packet "L" carrying, by SCM_RIGHTS, a memfd with the fields
// (supervisor_protocol.hpp), the runner's working directory, and the server's stdin,
// stdout, stderr and passed fds, in that order. Puts each fd on its number for the server and fills cfg. False when the
// runner closed the socket instead (nothing to start).
bool take_request() {
  constexpr int max_fds = 5 + harness::detail::supervisor_protocol::max_passed_fds;
  char data[8];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_fds)];
  iovec iov{data, sizeof data};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(cfg.control, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return false;
  std::vector<int> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds.push_back(fd);
    }
  }
  if (data[0] != 'L' || (msg.msg_flags & MSG_CTRUNC) != 0 || fds.size() < 5) {
    send_message("E %ld request", EPROTO);
    std::_Exit(0);
  }
  std::string text;
  char buf[65536];
  for (off_t at = 0;;) {
    const ssize_t r = ::pread(fds[0], buf, sizeof buf, at);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    text.append(buf, static_cast<std::size_t>(r));
    at += r;
  }
  ::close(fds[0]);
  parse_request(text);
  if (fds.size() != 5 + cfg.keep_fds.size()) {
    send_message("E %ld request", EPROTO);
    std::_Exit(0);
  }
  place_fds(fds);
  return true;
}

// Waits for the launch request; exits quietly when the runner dies or closes the socket
// first (an unused supervisor started ahead of time).
void wait_for_request() {
  for (;;) {
    pollfd fds[3] = {{sigfd, POLLIN, 0}, {cfg.control, POLLIN, 0}, {runner_fd, POLLIN, 0}};
    const nfds_t count = runner_fd >= 0 ? 3 : 2;
    const int rc = ::poll(fds, count, runner_fd >= 0 ? -1 : 100);
    if ((rc < 0 && errno != EINTR) || runner_gone()) std::_Exit(0);
    // Before there is a child, any signal we handle (SIGCHLD cannot come yet) means:
    // quit without starting anything.
    if ((fds[0].revents & POLLIN) != 0) std::_Exit(0);
    if ((fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      if (!take_request()) std::_Exit(0);
      return;
    }
  }
}

void setup() {
  ::prctl(PR_SET_NAME, "harness-superv", 0, 0, 0);
  close_other_fds();
  if (::fcntl(cfg.control, F_SETFD, FD_CLOEXEC) != 0) std::_Exit(70);
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    send_message("E %ld subreaper", errno);
    std::_Exit(0);
  }
  sigset_t handled;
  sigemptyset(&handled);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE}) sigaddset(&handled, sig);
  ::sigprocmask(SIG_BLOCK, &handled, nullptr);
  sigfd = ::signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigfd < 0) {
    send_message("E %ld signalfd", errno);
    std::_Exit(0);
  }
  // The runner's death ends everything. Open its pidfd, then check that it is still our
  // parent: if it died before the open, we were re-parented and getppid() says so.
  runner_fd = static_cast<int>(::syscall(SYS_pidfd_open, cfg.runner, 0));
  if (::getppid() != cfg.runner) std::_Exit(0);  // nothing started yet
  if (runner_fd >= 0) ::fcntl(runner_fd, F_SETFD, FD_CLOEXEC);
}

}  // namespace

int main(int argc, char** argv) {
  parse_args(argc, argv);
  setup();
  wait_for_request();
  start_server();

  for (;;) {
    pollfd fds[3] = {{sigfd, POLLIN, 0}, {cfg.control, POLLIN, 0}, {runner_fd, POLLIN, 0}};
    const nfds_t count = runner_fd >= 0 ? 3 : 2;
    // Without a pidfd for the runner (old kernels), check getppid() now and then.
    const int rc = ::poll(fds, count, runner_fd >= 0 ? -1 : 100);
    if (rc < 0 && errno != EINTR) stop_and_exit(kill_now);
    if (runner_gone()) stop_and_exit(kill_now);
    if ((fds[0].revents & POLLIN) != 0) {
      signalfd_siginfo info[8];
      ssize_t n;
      bool stop = false;
      while ((n = ::read(sigfd, info, sizeof info)) > 0) {
        for (std::size_t i = 0; i < static_cast<std::size_t>(n) / sizeof info[0]; ++i) {
          const auto sig = static_cast<int>(info[i].ssi_signo);
          stop = stop || sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGQUIT;
        }
      }
      reap();
      if (stop) stop_and_exit(cfg.default_stop);
    }
    if ((fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      char buf[harness::detail::supervisor_protocol::max_message + 1];
      const ssize_t n = ::recv(cfg.control, buf, sizeof buf - 1, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        // Nobody can talk to us any more: the runner is dying (its fds close before its
        // pidfd turns readable) or exec'ed. Either way it is gone for us.
        stop_and_exit(kill_now);
      }
      if (n > 0) {
        buf[n] = '\0';
        if (buf[0] == 'T') stop_and_exit(stop_steps(buf));
        // The main process is unreaped until the stop, so its group id is still ours.
        if (const int sig = protocol::parse_group_signal(buf); sig > 0 && main_pid > 0) {
          ::kill(-main_pid, sig);
        }
      }
    }
  }
}
