#include "harness/detail/spawn_posix.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <optional>

#include <boost/asio/io_context.hpp>
#include <boost/process/v2/process.hpp>

#include "harness/detail/pidfd.hpp"
#include "harness/detail/supervisor_protocol.hpp"
#include "harness/timeouts.hpp"

#ifndef HARNESS_SUPERVISOR_BUILD_PATH
#define HARNESS_SUPERVISOR_BUILD_PATH ""
#endif
#ifndef HARNESS_SUPERVISOR_INSTALL_PATH
#define HARNESS_SUPERVISOR_INSTALL_PATH ""
#endif

extern char** environ;

namespace harness::detail {
namespace bp = boost::process::v2;

namespace {

std::atomic<int> injected_fork_failures{0};

// One fd of the runner that the supervisor gets at a fixed number.
struct fd_map {
  int from = -1;
  int to = -1;
};

// The launch plan, a Boost.Process v2 initializer: its on_setup hook fills the
// launcher's file actions and attributes.
struct spawn_plan {
  std::vector<fd_map> maps;
  const char* cwd = nullptr;
  char* const* envp = nullptr;

  template <class Launcher>
  bp::error_code on_setup(Launcher& launcher, const bp::filesystem::path&, const char* const*) {
    launcher.envp = envp;
    for (const auto& m : maps) {
      if (int rc = ::posix_spawn_file_actions_adddup2(&launcher.actions, m.from, m.to); rc != 0) {
        return {rc, bp::system_category()};
      }
    }
    if (cwd != nullptr) {
      if (int rc = ::posix_spawn_file_actions_addchdir_np(&launcher.actions, cwd); rc != 0) {
        return {rc, bp::system_category()};
      }
    }
    return {};
  }
};

// A launcher in Boost.Process v2's launcher interface (call operator over an executor,
// an error_code, the executable, argv and initializers; returns a basic_process) that
// starts through posix_spawn instead of fork. Boost 1.81's own launchers fork the whole
// runner (default_launcher) or run initializer code in a vfork child with the runner's
// signal handlers live (vfork_launcher); posix_spawn blocks signals and resets the
// handlers in the child and copies nothing of the runner's memory.
//
// The child gets an empty signal mask, default dispositions for every signal and a
// process group of its own; fds not mapped by an initializer keep their flags (the
// runner's are CLOEXEC; the supervisor closes any leaked one itself).
struct posix_spawn_launcher {
  posix_spawn_file_actions_t actions{};
  posix_spawnattr_t attr{};
  char* const* envp = environ;
  pid_t pid = -1;
  unique_fd pidfd;  // ours; the returned basic_process holds a copy

  template <class Executor, class... Inits>
  bp::basic_process<Executor> operator()(Executor exec, bp::error_code& ec,
                                         const bp::filesystem::path& executable,
                                         const char* const* argv, Inits&&... inits) {
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawnattr_init(&attr);
    struct cleanup {
      posix_spawn_launcher& l;
      ~cleanup() {
        ::posix_spawn_file_actions_destroy(&l.actions);
        ::posix_spawnattr_destroy(&l.attr);
      }
    } guard{*this};
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    ::posix_spawnattr_setsigmask(&attr, &none);
    ::posix_spawnattr_setsigdefault(&attr, &all);
    ::posix_spawnattr_setpgroup(&attr, 0);
    ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                          POSIX_SPAWN_SETPGROUP);
    ((ec = ec ? ec : inits.on_setup(*this, executable, argv)), ...);
    if (ec) return bp::basic_process<Executor>(exec);
    const int rc = ::posix_spawn(&pid, executable.c_str(), &actions, &attr,
                                 const_cast<char* const*>(argv), envp);
    if (rc != 0) {
      ec.assign(rc, bp::system_category());
      pid = -1;
      return bp::basic_process<Executor>(exec);
    }
    // The child cannot have been reaped yet: a supervisor only exits once told to or
    // once the runner is gone, and even a SIG_IGN'd SIGCHLD reaps only at its exit. A
    // pidfd may still be refused (no kernel support, out of fds): then it is pid only.
    pidfd.reset(pidfd::open(pid));
    const int copy = pidfd ? ::fcntl(pidfd.get(), F_DUPFD_CLOEXEC, 3) : -1;
    if (copy >= 0) return bp::basic_process<Executor>(exec, pid, copy);
    return bp::basic_process<Executor>(exec);
  }
};

// The supervisor's stop steps when it is signalled instead of asked: "15:5000,9:2000".
std::string stop_steps_text(const stop_policy& p) {
  return std::to_string(p.signal) + ":" + std::to_string(timeouts::scaled(p.grace).count()) +
         ",9:" + std::to_string(timeouts::scaled(p.kill_wait).count());
}

std::string fd_list(const std::vector<fd_pass>& fds) {
  if (fds.empty()) return "-";
  std::string out;
  for (const auto& f : fds) out += (out.empty() ? "" : ",") + std::to_string(f.child_fd);
  return out;
}

bool exists(const char* path) {
  struct stat st {};
  return *path != '\0' && ::stat(path, &st) == 0 && S_ISREG(st.st_mode) && ::access(path, X_OK) == 0;
}

// Reads the first message of the supervisor: the server started or failed.
result<void> handshake(spawned_child& c, const spawn_request& req) {
  const auto limit = timeouts::scaled(timeouts::spawn_handshake);
  pollfd p{c.control.get(), POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, static_cast<int>(limit.count()));
  } while (rc < 0 && errno == EINTR);
  char buf[supervisor_protocol::max_message + 1];
  ssize_t n = 0;
  if (rc > 0) {
    do {
      n = ::recv(c.control.get(), buf, sizeof buf - 1, 0);
    } while (n < 0 && errno == EINTR);
  }
  if (rc <= 0 || n <= 0) {
    return make_failure(errc::spawn_failed,
                        rc == 0 ? "harness-supervisor did not start " + req.program + " within " +
                                      std::to_string(limit.count()) + " ms"
                                : "harness-supervisor exited before starting " + req.program);
  }
  buf[n] = '\0';
  long a = 0, b = 0;
  char step[32] = {};
  if (std::sscanf(buf, "S %ld %ld", &a, &b) == 2 && a > 0) {
    c.pid = static_cast<pid_t>(a);
    c.start_time = static_cast<unsigned long long>(b);
    return {};
  }
  if (std::sscanf(buf, "E %ld %31s", &a, step) == 2) {
    const std::string what = std::string(step) == "exec" ? req.program : std::string(step);
    return make_failure(errc::spawn_failed,
                        what + ": " + std::error_code(static_cast<int>(a), std::system_category()).message());
  }
  return make_failure(errc::spawn_failed, "harness-supervisor said \"" + std::string(buf) + "\"");
}

// Ends a supervisor that did not hand over a running server, and reaps it.
void discard(spawned_child& c) {
  if (c.supervisor <= 0) return;
  pidfd::send_signal(c.supervisor_pidfd.get(), c.supervisor, SIGKILL);
  int status = 0;
  while (::waitpid(c.supervisor, &status, 0) < 0 && errno == EINTR) {
  }
  c.supervisor = -1;
}

// Maps runner fds onto the supervisor's numbers. A source that sits on some target
// number is first copied above all targets (CLOEXEC, closed when the plan is done), so
// that no dup2 of the plan overwrites another's source.
struct fd_plan {
  std::vector<fd_map> maps;
  std::vector<unique_fd> moved;

  result<void> add_all(const std::vector<fd_map>& wanted) {
    int top = 2;
    for (const auto& w : wanted) top = std::max(top, w.to);
    for (const auto& w : wanted) {
      int from = w.from;
      const bool on_target = std::any_of(wanted.begin(), wanted.end(),
                                         [&](const fd_map& o) { return o.to == from && &o != &w; });
      if (on_target) {
        from = ::fcntl(w.from, F_DUPFD_CLOEXEC, top + 1);
        if (from < 0) return make_system_failure(errno, "fcntl(F_DUPFD_CLOEXEC)");
        moved.emplace_back(from);
      }
      maps.push_back({from, w.to});
    }
    return {};
  }
};

}  // namespace

void inject_fork_failures_for_testing(int count) { injected_fork_failures = count; }

const std::string& supervisor_path() {
  static const std::string path = [] {
    if (const char* env = std::getenv("HARNESS_SUPERVISOR"); env != nullptr && *env != '\0') {
      return std::string(env);
    }
    for (const char* candidate : {HARNESS_SUPERVISOR_BUILD_PATH, HARNESS_SUPERVISOR_INSTALL_PATH}) {
      if (exists(candidate)) return std::string(candidate);
    }
    return std::string();
  }();
  return path;
}

result<spawned_child> spawn_child(const spawn_request& req) {
  if (injected_fork_failures.load() > 0) {
    injected_fork_failures.fetch_sub(1);
    return make_failure(errc::spawn_failed,
                        "posix_spawn: " + std::error_code(EAGAIN, std::system_category()).message());
  }
  const std::string& supervisor = supervisor_path();
  if (supervisor.empty() || !exists(supervisor.c_str())) {
    return make_failure(errc::spawn_failed,
                        "harness-supervisor not found (looked at $HARNESS_SUPERVISOR, " +
                            std::string(HARNESS_SUPERVISOR_BUILD_PATH) + " and " +
                            std::string(HARNESS_SUPERVISOR_INSTALL_PATH) + ")");
  }

  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return make_system_failure(errno, "socketpair");
  }
  spawned_child c;
  c.control.reset(pair[0]);
  unique_fd theirs(pair[1]);

  int control_target = 3;
  for (const auto& f : req.fds) control_target = std::max(control_target, f.child_fd + 1);
  std::vector<fd_map> wanted{{req.stdin_fd, 0}, {req.stdout_fd, 1}, {req.stderr_fd, 2}};
  for (const auto& f : req.fds) wanted.push_back({f.fd, f.child_fd});
  wanted.push_back({theirs.get(), control_target});
  fd_plan fds;
  if (auto ok = fds.add_all(wanted); !ok) return std::move(ok).error();

  // The environment, with room for the supervisor to write the server's pid.
  std::vector<std::string> env = req.env;
  if (req.listen_pid_entry >= 0) {
    env[static_cast<std::size_t>(req.listen_pid_entry)] = "LISTEN_PID=" + std::string(20, '0');
  }
  std::vector<char*> envp;
  envp.reserve(env.size() + 1);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  std::string flags = req.follow_daemon ? "fg" : "g";
  if (req.listen_pid_entry >= 0) flags += 'l';
  std::vector<std::string> args{supervisor,
                                std::to_string(control_target),
                                std::to_string(::getpid()),
                                flags,
                                fd_list(req.fds),
                                stop_steps_text(req.stop),
                                req.program};
  args.insert(args.end(), req.argv.begin(), req.argv.end());
  std::vector<const char*> argv;
  argv.reserve(args.size() + 1);
  for (const auto& a : args) argv.push_back(a.c_str());
  argv.push_back(nullptr);

  spawn_plan plan{fds.maps, req.cwd.empty() ? nullptr : req.cwd.c_str(), envp.data()};
  static boost::asio::io_context launch_context;  // only names an executor; never run
  posix_spawn_launcher launcher;
  bp::error_code ec;
  auto child = launcher(launch_context.get_executor(), ec, bp::filesystem::path(supervisor),
                        argv.data(), plan);
  if (ec) {
    return make_failure(errc::spawn_failed, "cannot start " + supervisor + ": " + ec.message());
  }
  c.supervisor = launcher.pid;
  c.supervisor_pidfd = std::move(launcher.pidfd);
  // From here on the process object owns the supervisor: Boost's handle must not
  // terminate it on destruction.
  if (child.is_open()) child.detach();
  theirs.reset();  // the supervisor has its copy; EOF on ours now means it is gone

  if (auto ok = handshake(c, req); !ok) {
    discard(c);
    return std::move(ok).error();
  }
  return c;
}

}  // namespace harness::detail
