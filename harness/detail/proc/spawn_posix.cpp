#include "harness/detail/proc/spawn_posix.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <pthread.h>
#include <grp.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/mman.h>
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
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/process/v2/process.hpp>

#include "harness/detail/os/pidfd.hpp"
#include "harness/detail/os/proc_fs.hpp"
#include "harness/detail/proc/supervisor_protocol.hpp"
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
  bool null_stdio = false;  // 0, 1 and 2 from /dev/null (after the maps)

  template <class Launcher>
  bp::error_code on_setup(Launcher& launcher, const bp::filesystem::path&, const char* const*) {
    launcher.envp = envp;
    for (const auto& m : maps) {
      if (int rc = ::posix_spawn_file_actions_adddup2(&launcher.actions, m.from, m.to); rc != 0) {
        return {rc, bp::system_category()};
      }
    }
    if (null_stdio) {
      for (int fd = 0; fd <= 2; ++fd) {
        if (int rc = ::posix_spawn_file_actions_addopen(&launcher.actions, fd, "/dev/null",
                                                        fd == 0 ? O_RDONLY : O_WRONLY, 0);
            rc != 0) {
          return {rc, bp::system_category()};
        }
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
  std::string text;
  for (const auto& step : effective_steps(p)) {
    if (!text.empty()) text += ",";
    text += std::to_string(step.signal) + ":" + std::to_string(step.wait.count());
  }
  return text;
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
  const auto m = supervisor_protocol::parse_message(buf);
  if (m.kind == 'S') {
    c.pid = static_cast<pid_t>(m.a);
    c.start_time = static_cast<unsigned long long>(m.b);
    return {};
  }
  if (m.kind == 'E') {
    const std::string what = m.step == "exec" ? req.program : m.step;
    return make_failure(errc::spawn_failed,
                        what + ": " + std::error_code(static_cast<int>(m.a), std::system_category()).message());
  }
  return make_failure(errc::spawn_failed, "harness-supervisor said \"" + std::string(buf) + "\"");
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

// A supervisor started ahead of time: it waits for its launch request.
// What a process started now would inherit from the thread starting it, besides the
// working directory and umask (those are sent with each request): credentials,
// resource limits, the thread's nice value and CPU affinity, and its namespaces. A
// spare supervisor started under other values is not used.
struct inherited_state {
  uid_t uid[3] = {};
  gid_t gid[3] = {};
  std::vector<gid_t> groups;
  std::vector<rlimit> limits;
  int nice = 0;
  std::vector<unsigned char> affinity;
  std::vector<ino_t> namespaces;

  static inherited_state now() {
    inherited_state st;
    ::getresuid(&st.uid[0], &st.uid[1], &st.uid[2]);
    ::getresgid(&st.gid[0], &st.gid[1], &st.gid[2]);
    const int n = ::getgroups(0, nullptr);
    st.groups.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    if (n > 0 && ::getgroups(n, st.groups.data()) != n) st.groups.clear();
    for (int r = 0; r < RLIMIT_NLIMITS; ++r) {
      rlimit l{};
      ::getrlimit(static_cast<__rlimit_resource>(r), &l);
      st.limits.push_back(l);
    }
    errno = 0;
    st.nice = ::getpriority(PRIO_PROCESS, 0);  // this thread's, on Linux
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) == 0) {
      const auto* bytes = reinterpret_cast<const unsigned char*>(&set);
      st.affinity.assign(bytes, bytes + sizeof set);
    }
    for (const char* ns : {"mnt", "net", "pid_for_children", "user", "uts", "ipc", "cgroup"}) {
      struct stat info {};
      const std::string path = std::string("/proc/thread-self/ns/") + ns;
      st.namespaces.push_back(::stat(path.c_str(), &info) == 0 ? info.st_ino : 0);
    }
    return st;
  }

  friend bool operator==(const inherited_state& a, const inherited_state& b) {
    auto same_limits = [&] {
      for (std::size_t i = 0; i < a.limits.size(); ++i) {
        if (a.limits[i].rlim_cur != b.limits[i].rlim_cur || a.limits[i].rlim_max != b.limits[i].rlim_max) {
          return false;
        }
      }
      return a.limits.size() == b.limits.size();
    };
    return std::equal(std::begin(a.uid), std::end(a.uid), std::begin(b.uid)) &&
           std::equal(std::begin(a.gid), std::end(a.gid), std::begin(b.gid)) && a.groups == b.groups &&
           same_limits() && a.nice == b.nice && a.affinity == b.affinity && a.namespaces == b.namespaces;
  }
};

// A supervisor started ahead of time: it waits for its launch request.
struct idle_supervisor {
  pid_t pid = -1;
  unique_fd pidfd;
  unique_fd control;
  pid_t owner = 0;  // the runner process that started it
  inherited_state state;
  unsigned long long start = 0;  // its start time, which with its pid names it
};

// The number the supervisor's end of the control socket gets.
constexpr int supervisor_control_fd = 3;

result<idle_supervisor> start_supervisor(const std::string& path) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return make_system_failure(errno, "socketpair");
  }
  idle_supervisor sup;
  sup.control.reset(pair[0]);
  unique_fd theirs(pair[1]);
  // Its stdio is /dev/null: it must not hold the runner's output open (CTest waits for
  // that pipe to close). Its control socket goes to fd 3.
  fd_plan fds;
  if (auto ok = fds.add_all({{theirs.get(), supervisor_control_fd}, {-1, 0}, {-1, 1}, {-1, 2}}); !ok) {
    return std::move(ok).error();
  }
  fds.maps.resize(1);
  spawn_plan plan{fds.maps, nullptr, nullptr};
  plan.null_stdio = true;
  static char* const no_env[] = {nullptr};
  plan.envp = no_env;
  const std::string control = std::to_string(supervisor_control_fd);
  const std::string runner = std::to_string(::getpid());
  const char* argv[] = {path.c_str(), control.c_str(), runner.c_str(), nullptr};
  // Only names an executor; never run. Never destroyed: a spare may be started while
  // the process exits.
  static auto* launch_context = new boost::asio::io_context;
  sup.state = inherited_state::now();
  posix_spawn_launcher launcher;
  bp::error_code ec;
  auto child = launcher(launch_context->get_executor(), ec, bp::filesystem::path(path), argv, plan);
  if (ec) return make_failure(errc::spawn_failed, "cannot start " + path + ": " + ec.message());
  // From here on we own the supervisor: Boost's handle must not terminate it.
  if (child.is_open()) child.detach();
  sup.pid = launcher.pid;
  sup.pidfd = std::move(launcher.pidfd);
  sup.owner = ::getpid();
  // Our unreaped child (it does not exit before it is told to): the pid is surely it.
  if (auto st = procfs::read_stat(sup.pid)) sup.start = st->start_time;
  return sup;
}

// Ends a supervisor that will not run a server (or did not hand one over), and reaps
// it. Closing its socket first lets it sweep whatever it started (its tree would be
// re-parented away if it were killed outright); SIGKILL only if it does not exit.
void discard(idle_supervisor& s) {
  if (s.pid <= 0) return;
  s.control.reset();
  if (s.owner == ::getpid()) {
    const auto limit = timeouts::scaled(std::chrono::milliseconds(2000));
    if (!reap_supervisor(s.pid, s.pidfd.get(), s.start, limit)) {
      kill_supervisor(s.pid, s.pidfd.get(), s.start);
      reap_supervisor(s.pid, s.pidfd.get(), s.start, limit);
    }
  }
  s.pid = -1;
  s.pidfd.reset();
}

// The spare: one supervisor kept started ahead of time, so that a spawn does not wait
// for the supervisor's own exec. A fork()ed copy of the runner never uses its parent's.
// Never destroyed (the refill thread may run while the process exits). Nothing blocks
// while its mutex is held, and a fork() waits for the mutex (pthread_atfork), so a
// forked copy never inherits it locked.
struct spare_slot {
  std::mutex m;
  std::optional<idle_supervisor> supervisor;
  std::atomic<bool> enabled{true};

  static spare_slot& get() {
    static spare_slot* slot = [] {
      auto* s = new spare_slot;
      ::pthread_atfork([] { get().m.lock(); }, [] { get().m.unlock(); }, [] { get().m.unlock(); });
      return s;
    }();
    return *slot;
  }

  // The spare, if it can serve a spawn from this thread now; anything else that was
  // there is handed back to be discarded (outside the lock).
  std::optional<idle_supervisor> take(const inherited_state& now, std::optional<idle_supervisor>& unusable) {
    std::lock_guard lock(m);
    if (!supervisor) return std::nullopt;
    std::optional<idle_supervisor> s = std::move(supervisor);
    supervisor.reset();
    if (s->owner == ::getpid() && s->state == now) return s;
    unusable = std::move(s);
    return std::nullopt;
  }
};

result<idle_supervisor> take_supervisor(const std::string& path) {
  std::optional<idle_supervisor> unusable;
  auto s = spare_slot::get().take(inherited_state::now(), unusable);
  if (unusable) discard(*unusable);  // the parent's (only our copies of its fds close), or stale
  if (s) return std::move(*s);
  return start_supervisor(path);
}

void refill_spare(const std::string& path) {
  auto& slot = spare_slot::get();
  if (!slot.enabled.load()) return;
  {
    std::lock_guard lock(slot.m);
    if (slot.supervisor && slot.supervisor->owner == ::getpid()) return;
  }
  // Started outside the lock: posix_spawn from a big multi-threaded runner takes a
  // fraction of a millisecond, and a spawn that needs a supervisor meanwhile starts one.
  auto started = start_supervisor(path);
  if (!started) return;  // (out of fds, say): the next spawn starts its supervisor itself
  std::optional<idle_supervisor> drop;
  {
    std::lock_guard lock(slot.m);
    if ((slot.supervisor && slot.supervisor->owner == ::getpid()) || !slot.enabled.load()) {
      drop = std::move(*started);  // somebody was quicker, or spares were turned off
    } else {
      drop = std::move(slot.supervisor);
      slot.supervisor = std::move(*started);
    }
  }
  if (drop) discard(*drop);
}

// Starts the next spare off the spawning thread: a thread of its own, woken after each
// spawn, so that the spawn's caller waits for its server only. One per process: a
// fork()ed copy of the runner gets a fresh one (the parent's thread does not exist
// there, and its mutex may have been held at the fork).
class spare_maker {
 public:
  static void request(const std::string& path) {
    static std::atomic<spare_maker*> current{nullptr};
    spare_maker* m = current.load();
    if (m == nullptr || m->pid_ != ::getpid()) {
      try {
        m = new spare_maker(path);  // lives as long as the process, like the I/O thread
      } catch (const std::system_error&) {
        return;  // no thread to be had (RLIMIT_NPROC, say): each spawn starts its own supervisor
      }
      current = m;
    }
    {
      std::lock_guard lock(m->m_);
      m->wanted_ = true;
    }
    m->cv_.notify_one();
  }

 private:
  explicit spare_maker(std::string path) : path_(std::move(path)) {
    std::thread([this] { run(); }).detach();
  }
  [[noreturn]] void run() {
    for (;;) {
      {
        std::unique_lock lock(m_);
        cv_.wait(lock, [this] { return wanted_; });
        wanted_ = false;
      }
      refill_spare(path_);
    }
  }
  const pid_t pid_ = ::getpid();
  const std::string path_;
  std::mutex m_;
  std::condition_variable cv_;
  bool wanted_ = false;
};

// This process's umask in octal ("022"), from /proc: umask() can only read it by
// changing it, which other threads would see. "-" when unknown.
std::string current_umask() {
  const int fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "-";
  char buf[4096];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return "-";
  buf[n] = '\0';
  const char* at = std::strstr(buf, "\nUmask:");
  if (at == nullptr) return "-";
  at += 7;
  while (*at == ' ' || *at == '\t') ++at;
  std::string digits;
  while (*at >= '0' && *at <= '7') digits.push_back(*at++);
  return digits.empty() ? "-" : digits;
}

// The request fields (supervisor_protocol.hpp) in a memfd.
result<unique_fd> write_request(const spawn_request& req, const std::vector<std::string>& env) {
  std::string flags = req.follow_daemon ? "fg" : "g";
  if (req.listen_pid_entry >= 0) flags += 'l';
  std::string text;
  auto field = [&text](const std::string& f) {
    text += f;
    text.push_back('\0');
  };
  field(flags);
  field(fd_list(req.fds));
  field(stop_steps_text(req.stop));
  field(req.cwd);
  field(current_umask());
  field(req.program);
  field(std::to_string(req.argv.size()));
  for (const auto& a : req.argv) field(a);
  for (const auto& e : env) field(e);
  unique_fd fd(::memfd_create("harness-request", MFD_CLOEXEC));
  if (!fd) return make_system_failure(errno, "memfd_create");
  for (std::size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return make_system_failure(errno, "write the launch request");
    done += static_cast<std::size_t>(n);
  }
  return fd;
}

// Sends the launch request with the server's fds. errno-style failure on a dead peer.
result<void> send_request(const idle_supervisor& sup, int request, int cwd, const spawn_request& req) {
  std::vector<int> fds{request, cwd, req.stdin_fd, req.stdout_fd, req.stderr_fd};
  for (const auto& f : req.fds) fds.push_back(f.fd);
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  char tag = 'L';
  iovec iov{&tag, 1};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  ssize_t n;
  do {
    n = ::sendmsg(sup.control.get(), &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n != 1) return make_system_failure(errno, "send the launch request to harness-supervisor");
  return {};
}

}  // namespace

namespace {

enum class identity { ours, not_ours, unknown };

// Whether `pid` is still the supervisor started at `start`: our child, with that start
// time and the supervisor's name (PR_SET_NAME, or the one exec gave it before that).
// Unknown when /proc cannot tell (out of fds, say) or the start time was never learnt:
// then it is taken to be ours, as it was when it was started.
identity supervisor_identity(pid_t pid, unsigned long long start) {
  if (start == 0) return identity::unknown;
  const std::string path = "/proc/" + std::to_string(pid) + "/stat";
  const unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno == ENOENT || errno == ESRCH ? identity::not_ours : identity::unknown;
  char buf[1024];
  const ssize_t n = ::read(fd.get(), buf, sizeof buf);
  if (n <= 0) return n < 0 && errno == ESRCH ? identity::not_ours : identity::unknown;
  const auto st = procfs::parse_stat(std::string_view(buf, static_cast<std::size_t>(n)));
  if (!st) return identity::unknown;
  return st->ppid == ::getpid() && st->start_time == start && st->comm.rfind("harness-superv", 0) == 0
             ? identity::ours
             : identity::not_ours;
}

}  // namespace

bool reap_supervisor(pid_t pid, int pidfd, unsigned long long start, std::chrono::milliseconds limit) {
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    int rc;
    do {
      rc = ::poll(&p, 1, static_cast<int>(std::min<std::chrono::milliseconds::rep>(limit.count(), 3'600'000)));
    } while (rc < 0 && errno == EINTR);
    if (rc != 1) return false;
    // It has exited; reap it unless somebody else already did (its pid may be reused).
    if (supervisor_identity(pid, start) != identity::not_ours) ::waitpid(pid, nullptr, WNOHANG);
    return true;
  }
  const auto deadline = std::chrono::steady_clock::now() + limit;
  auto delay = std::chrono::milliseconds(1);
  for (;;) {
    if (supervisor_identity(pid, start) == identity::not_ours) return true;  // reaped by somebody else
    const pid_t rc = ::waitpid(pid, nullptr, WNOHANG);
    if (rc == pid || (rc < 0 && errno != EINTR)) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(delay);  // no pidfd to wait on: the old kernels' way
    delay = std::min(delay * 2, std::chrono::milliseconds(20));
  }
}

void kill_supervisor(pid_t pid, int pidfd, unsigned long long start) {
  if (pidfd >= 0) {
    pidfd::send_signal(pidfd, pid, SIGKILL);
  } else if (supervisor_identity(pid, start) != identity::not_ours) {
    pidfd::send_signal(-1, pid, SIGKILL);
  }
}

void inject_fork_failures_for_testing(int count) { injected_fork_failures = count; }

void use_spare_supervisors_for_testing(bool enabled) {
  auto& slot = spare_slot::get();
  slot.enabled = enabled;
  std::optional<idle_supervisor> drop;
  {
    std::lock_guard lock(slot.m);
    drop = std::move(slot.supervisor);
    slot.supervisor.reset();
  }
  if (drop) discard(*drop);
}

pid_t spare_supervisor_for_testing() {
  auto& slot = spare_slot::get();
  std::lock_guard lock(slot.m);
  return slot.supervisor && slot.supervisor->owner == ::getpid() ? slot.supervisor->pid : 0;
}

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
  if (static_cast<int>(req.fds.size()) > supervisor_protocol::max_passed_fds) {
    return make_failure(errc::invalid_argument, "too many fds to pass (at most 64)");
  }
  const std::string& path = supervisor_path();
  if (path.empty() || !exists(path.c_str())) {
    return make_failure(errc::spawn_failed,
                        "harness-supervisor not found (looked at $HARNESS_SUPERVISOR, " +
                            std::string(HARNESS_SUPERVISOR_BUILD_PATH) + " and " +
                            std::string(HARNESS_SUPERVISOR_INSTALL_PATH) + ")");
  }

  // The environment, with room for the supervisor to write the server's pid.
  std::vector<std::string> env = req.env;
  if (req.listen_pid_entry >= 0) {
    env[static_cast<std::size_t>(req.listen_pid_entry)] = "LISTEN_PID=" + std::string(20, '0');
  }
  auto request = write_request(req, env);
  if (!request) return std::move(request).error();
  // The runner's working directory as it is now (a spare was started earlier): the
  // server starts there, or at req.cwd taken relative to it.
  unique_fd cwd(::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!cwd) return make_system_failure(errno, "open the working directory");

  // A spare first; if it is gone (killed, say), a fresh one.
  auto sup = take_supervisor(path);
  if (!sup) return std::move(sup).error();
  if (auto sent = send_request(*sup, request->get(), cwd.get(), req); !sent) {
    discard(*sup);
    sup = start_supervisor(path);
    if (!sup) return std::move(sup).error();
    if (auto again = send_request(*sup, request->get(), cwd.get(), req); !again) {
      discard(*sup);
      return std::move(again).error();
    }
  }
  request->reset();
  // The next spawn's supervisor starts now, on another thread, while this one starts
  // its server.
  if (spare_slot::get().enabled.load()) spare_maker::request(path);

  spawned_child c;
  c.supervisor = sup->pid;
  c.supervisor_pidfd = std::move(sup->pidfd);
  c.supervisor_start = sup->start;
  c.control = std::move(sup->control);
  if (auto ok = handshake(c, req); !ok) {
    idle_supervisor failed{c.supervisor, std::move(c.supervisor_pidfd), std::move(c.control), ::getpid(), {},
                           c.supervisor_start};
    discard(failed);
    return std::move(ok).error();
  }
  return c;
}

}  // namespace harness::detail
