#include "harness/detail/spawn_posix.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <optional>

#include <boost/asio/io_context.hpp>
#include <boost/process/v2/posix/default_launcher.hpp>
#include <boost/process/v2/process.hpp>
#include <boost/system/system_error.hpp>

namespace harness::detail {
namespace bp = boost::process::v2;

namespace {

std::atomic<int> injected_fork_failures{0};

// The most fds we move into a child (besides 0, 1, 2) without allocating.
constexpr int max_passed_fds = 64;

// Everything the child needs between fork and exec, prepared in the parent so that
// the child only reads memory and makes system calls (async-signal-safe).
//
// on_exec_setup() does the whole child side itself, exec included, and never returns
// to Boost.Process: on success execve() replaces the image; on any failure the errno
// goes to the launcher's error pipe (which Boost's parent side reads: nothing on that
// pipe means the exec succeeded) and the child _exit()s. That sidesteps three things
// in Boost 1.81's child path: it calls exit() (running the runner's atexit handlers in
// the forked copy) when exec fails, its closing of inherited fds skips everything
// above its error pipe and in gaps between kept fds, and it reports errno rather than
// the failing step's error.
struct child_setup {
  pid_t parent = 0;
  const char* const* envp = nullptr;
  char* listen_pid_value = nullptr;  // points at the digits of LISTEN_PID=
  const char* cwd = nullptr;
  int stdio[3] = {-1, -1, -1};
  int pass_from[max_passed_fds] = {};
  int pass_to[max_passed_fds] = {};
  int pass_count = 0;

  template <class Launcher, class Path, class Argv>
  bp::error_code on_setup(Launcher& launcher, const Path&, Argv&) {
    launcher.env = envp;
    return {};
  }

  template <class Launcher, class Path, class Argv>
  bp::error_code on_exec_setup(Launcher& launcher, const Path& executable, Argv& argv) {
    int report = launcher.fd_whitelist.back();  // the launcher's error pipe
    // The runner may die at any moment: arm PDEATHSIG, then check we are not already
    // orphaned (if the parent died before prctl, the signal will never come).
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(report);
    if (::getppid() != parent) ::_exit(127);

    if (::setpgid(0, 0) != 0) fail(report);

    // Default dispositions and an empty mask, whatever the runner had (SIG_IGN
    // survives exec; the harness thread blocks every signal).
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; ++sig) {
      if (sig == SIGKILL || sig == SIGSTOP) continue;
      ::sigaction(sig, &dfl, nullptr);  // fails harmlessly for reserved signals
    }
    sigset_t none;
    ::sigemptyset(&none);
    if (::sigprocmask(SIG_SETMASK, &none, nullptr) != 0) fail(report);

    if (listen_pid_value != nullptr) write_pid(listen_pid_value, ::getpid());

    // Park the error pipe and every source above all fds involved (so that no copy
    // lands on a target, whatever the numbers; the limit on open fds may be as low as
    // 1024, so no fixed high number), then move the sources onto their targets.
    // dup2 clears FD_CLOEXEC on the copies the server inherits.
    int base = 3;
    auto above = [&base](int fd) {
      if (fd >= base) base = fd + 1;
    };
    above(report);
    for (int fd : stdio) above(fd);
    for (int i = 0; i < pass_count; ++i) {
      above(pass_from[i]);
      above(pass_to[i]);
    }
    const int parked_report = ::fcntl(report, F_DUPFD_CLOEXEC, base);
    if (parked_report < 0) fail(report);
    ::close(report);
    report = parked_report;
    int high[max_passed_fds];
    for (int i = 0; i < pass_count; ++i) {
      high[i] = ::fcntl(pass_from[i], F_DUPFD_CLOEXEC, base);
      if (high[i] < 0) fail(report);
    }
    int stdio_high[3];
    for (int i = 0; i < 3; ++i) {
      stdio_high[i] = ::fcntl(stdio[i], F_DUPFD_CLOEXEC, base);
      if (stdio_high[i] < 0) fail(report);
    }
    for (int i = 0; i < 3; ++i) {
      if (::dup2(stdio_high[i], i) < 0) fail(report);
    }
    for (int i = 0; i < pass_count; ++i) {
      if (::dup2(high[i], pass_to[i]) < 0) fail(report);
    }

    if (cwd != nullptr && ::chdir(cwd) != 0) fail(report);

    // Close everything else: keep 0-2, the passed targets and the error pipe (which is
    // CLOEXEC: the exec closes it, and that tells the parent the exec succeeded).
    for (int fd = 3;;) {
      int next_keep = -1;  // the smallest kept fd >= fd
      for (int i = 0; i < pass_count; ++i) {
        if (pass_to[i] >= fd && (next_keep < 0 || pass_to[i] < next_keep)) next_keep = pass_to[i];
      }
      if (report >= fd && (next_keep < 0 || report < next_keep)) next_keep = report;
      const unsigned last = next_keep < 0 ? ~0U : static_cast<unsigned>(next_keep - 1);
      if (next_keep != fd) close_range(static_cast<unsigned>(fd), last);
      if (next_keep < 0) break;
      fd = next_keep + 1;
    }

    ::execve(executable.c_str(), const_cast<char* const*>(argv), const_cast<char* const*>(envp));
    fail(report);
  }

  // Reports errno to the parent through the error pipe and ends the child.
  [[noreturn]] static void fail(int report) {
    const int err = errno;
    ssize_t ignored = ::write(report, &err, sizeof err);
    (void)ignored;
    ::_exit(127);
  }

  static void write_pid(char* out, pid_t pid) {
    char digits[listen_pid_digits];
    int n = 0;
    auto v = static_cast<unsigned long>(pid);
    do {
      digits[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0 && n < listen_pid_digits);
    for (int i = 0; i < n; ++i) out[i] = digits[n - 1 - i];
    out[n] = '\0';
  }

  static void close_range(unsigned first, unsigned last) {
    if (first > last) return;
#ifdef SYS_close_range
    if (::syscall(SYS_close_range, first, last, 0) == 0) return;
#endif
    // Old kernels: close one by one up to the soft limit.
    long limit = ::sysconf(_SC_OPEN_MAX);
    if (limit < 0 || limit > 1 << 20) limit = 1 << 20;
    for (unsigned long fd = first; fd <= last && fd < static_cast<unsigned long>(limit); ++fd) {
      ::close(static_cast<int>(fd));
    }
  }
};

}  // namespace

void inject_fork_failures_for_testing(int count) { injected_fork_failures = count; }

result<pid_t> spawn_child(const spawn_request& req) {
  if (static_cast<int>(req.fds.size()) > max_passed_fds) {
    return make_failure(errc::invalid_argument, "too many fds to pass (at most 64)");
  }
  if (injected_fork_failures.load() > 0) {
    injected_fork_failures.fetch_sub(1);
    return make_failure(errc::spawn_failed,
                        "fork: " + std::error_code(EAGAIN, std::system_category()).message());
  }

  // Storage the child reads between fork and exec.
  std::vector<std::string> env = req.env;
  std::vector<const char*> envp;
  envp.reserve(env.size() + 1);
  child_setup setup;
  setup.parent = ::getpid();
  for (std::size_t i = 0; i < env.size(); ++i) {
    if (static_cast<int>(i) == req.listen_pid_entry) {
      env[i] = "LISTEN_PID=" + std::string(listen_pid_digits + 1, '\0');
    }
    envp.push_back(env[i].c_str());
  }
  envp.push_back(nullptr);
  if (req.listen_pid_entry >= 0) {
    setup.listen_pid_value = env[static_cast<std::size_t>(req.listen_pid_entry)].data() + 11;
  }
  setup.envp = envp.data();
  setup.cwd = req.cwd.empty() ? nullptr : req.cwd.c_str();
  setup.stdio[0] = req.stdin_fd;
  setup.stdio[1] = req.stdout_fd;
  setup.stdio[2] = req.stderr_fd;
  for (const auto& p : req.fds) {
    setup.pass_from[setup.pass_count] = p.fd;
    setup.pass_to[setup.pass_count] = p.child_fd;
    ++setup.pass_count;
  }

  std::vector<const char*> argv;
  argv.reserve(req.argv.size() + 1);
  for (const auto& a : req.argv) argv.push_back(a.c_str());
  argv.push_back(nullptr);

  // A context only for the launcher: Boost calls notify_fork() on it around fork(),
  // which must not happen on the io_context the harness thread is running.
  static boost::asio::io_context launch_context;
  bp::posix::default_launcher launcher;
  bp::error_code ec;
  std::optional<bp::basic_process<boost::asio::io_context::executor_type>> child;
  try {
    child.emplace(launcher(launch_context.get_executor(), ec, bp::filesystem::path(req.program),
                           argv.data(), setup));
  } catch (const boost::system::system_error&) {
    // The exec succeeded, but Boost's process handle could not open a pidfd for the
    // child: it was already reaped by somebody else (SIGCHLD set to SIG_IGN, a
    // waitpid(-1) elsewhere), or this process is out of fds. The pid is ours either
    // way; the caller tracks it without a pidfd.
    if (launcher.pid <= 0) throw;
    ::setpgid(launcher.pid, launcher.pid);
    return static_cast<pid_t>(launcher.pid);
  }
  if (ec) {
    if (launcher.pid > 0) {
      // The child reported its exec failure and is exiting: reap it.
      int status = 0;
      while (::waitpid(launcher.pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
    return make_failure(errc::spawn_failed, req.program + ": " + ec.message());
  }
  const pid_t pid = child->id();
  // Both sides set the group, so it is in place whichever runs first.
  ::setpgid(pid, pid);
  // From here on the harness owns the child: Boost must not kill it on destruction.
  child->detach();
  return pid;
}

}  // namespace harness::detail
