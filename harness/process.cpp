#include "harness/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <future>
#include <mutex>
#include <thread>
#include <unordered_set>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/readable_pipe.hpp>
#include <boost/asio/steady_timer.hpp>

#include "harness/detail/io_thread.hpp"
#include "harness/detail/log_prune.hpp"
#include "harness/detail/output_state.hpp"
#include "harness/detail/pidfd.hpp"
#include "harness/detail/private_dir.hpp"
#include "harness/detail/proc_fs.hpp"
#include "harness/detail/reaper_posix.hpp"
#include "harness/detail/spawn_posix.hpp"

extern char** environ;

namespace harness {
namespace asio = boost::asio;
using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace detail {

struct process_state {
  explicit process_state(process_options o)
      : opts(std::move(o)), out(std::make_shared<output_state>(opts.output)) {}
  ~process_state() {
    if (pidfd >= 0) ::close(pidfd);
  }

  process_options opts;
  std::string name;
  std::string id;
  std::string command;
  pid_t pid = -1;
  // Where the child's descendants can be (see procfs::find_tree).
  detail::procfs::tree_scope scope;
  int pidfd = -1;  // -1 when the kernel has no pidfd
  std::shared_ptr<output_state> out;

  // Exit tracking, guarded by m.
  std::mutex m;
  std::condition_variable cv;
  bool exited = false;
  exit_status status;
  bool reaped = false;
  bool abandoned = false;  // stop() gave up on it; reap when it finally exits
  bool exit_reported = false;  // on_exit has run (I/O thread only)
  // Somebody else reaped the child (waitpid(-1), SIGCHLD set to SIG_IGN): its pid,
  // and so its process group id, may belong to another process now.
  bool lost = false;
  // The process that started the child. A fork()ed copy of the runner (a gtest
  // death test) must not stop the parent's servers when it destroys its copies.
  pid_t owner = ::getpid();

  // stop() is serialised and runs once.
  std::mutex stop_m;
  bool finalized = false;
  exit_status final_status;

  // I/O-thread objects.
  std::unique_ptr<asio::posix::stream_descriptor> exit_watch;
  std::unique_ptr<asio::steady_timer> exit_poll;
  milliseconds exit_poll_delay{1};
  std::unique_ptr<asio::readable_pipe> pipes[2];
  std::array<char, 32 * 1024> buffers[2];
};

namespace {

std::atomic<std::uint64_t> next_session{1};

constexpr int pidfd_idtype = 3;  // P_PIDFD (Linux 5.4), not in every libc's headers

exit_status from_siginfo(const siginfo_t& si) {
  switch (si.si_code) {
    case CLD_EXITED: return exit_status::exited_with(si.si_status);
    case CLD_KILLED: return exit_status::killed_by(si.si_status, false);
    case CLD_DUMPED: return exit_status::killed_by(si.si_status, true);
    default: return {};
  }
}

// Records the exit of an exited child without reaping it (so its pid and process
// group stay reserved until stop() is done signalling). True once exited.
bool record_exit_locked(process_state& s) {
  if (s.exited) return true;
  if (s.reaped) return true;
  siginfo_t si{};
  int rc;
  // Through the pidfd when there is one: it names exactly our child, even if somebody
  // else reaped it and its pid went to another process.
  const idtype_t by = s.pidfd >= 0 ? static_cast<idtype_t>(pidfd_idtype) : P_PID;
  const id_t id = s.pidfd >= 0 ? static_cast<id_t>(s.pidfd) : static_cast<id_t>(s.pid);
  do {
    rc = ::waitid(by, id, &si, WEXITED | WNOHANG | WNOWAIT);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0 && errno == EINVAL && by != P_PID) {
    // A kernel without P_PIDFD (before 5.4): by pid, while it is still ours.
    do {
      rc = ::waitid(P_PID, static_cast<id_t>(s.pid), &si, WEXITED | WNOHANG | WNOWAIT);
    } while (rc < 0 && errno == EINTR);
  }
  if (rc == 0 && si.si_pid == 0) return false;  // still running
  s.exited = true;
  // ECHILD: somebody else reaped our child (waitpid(-1), SIGCHLD ignored).
  s.status = rc == 0 ? from_siginfo(si) : exit_status{};
  if (rc != 0) {
    s.lost = true;
    s.reaped = true;
  }
  if (s.abandoned) {
    int ws = 0;
    ::waitpid(s.pid, &ws, WNOHANG);
    s.reaped = true;
  }
  return true;
}

// I/O thread: the child may have exited. Reports the exit exactly once, whoever
// noticed it first (this thread or stop()).
void on_child_event(const std::shared_ptr<process_state>& s) {
  exit_status status;
  {
    std::lock_guard lock(s->m);
    if (s->exit_reported || !record_exit_locked(*s)) return;
    s->exit_reported = true;
    status = s->status;
  }
  s->cv.notify_all();
  s->out->log_note("process " + std::to_string(s->pid) + " " + status.str());
  if (s->opts.on_exit) s->opts.on_exit(status);
}

void watch_exit_by_polling(const std::shared_ptr<process_state>& s) {
  s->exit_poll->expires_after(s->exit_poll_delay);
  s->exit_poll->async_wait([s](const boost::system::error_code& ec) {
    if (ec) return;
    bool done;
    {
      std::lock_guard lock(s->m);
      done = s->exited || s->reaped;
    }
    on_child_event(s);
    {
      std::lock_guard lock(s->m);
      done = done || s->exited;
    }
    if (done) return;
    s->exit_poll_delay = std::min(s->exit_poll_delay * 2, timeouts::poll_cap);
    watch_exit_by_polling(s);
  });
}

void read_stream(const std::shared_ptr<process_state>& s, int i) {
  auto& pipe = *s->pipes[i];
  pipe.async_read_some(asio::buffer(s->buffers[i]),
                       [s, i](const boost::system::error_code& ec, std::size_t n) {
                         const stream which = i == 0 ? stream::out : stream::err;
                         if (n > 0) s->out->feed(which, std::string_view(s->buffers[i].data(), n));
                         if (ec) {
                           s->out->close(which);
                           boost::system::error_code ignored;
                           s->pipes[i]->close(ignored);
                           return;
                         }
                         read_stream(s, i);
                       });
}

// Closes the I/O-thread objects of a finished process (runs on the I/O thread).
void release_io(const std::shared_ptr<process_state>& s) {
  on_child_event(s);  // on_exit runs even if stop() saw the exit first
  boost::system::error_code ignored;
  for (auto& p : s->pipes) {
    if (p && p->is_open()) p->close(ignored);
  }
  bool reaped;
  {
    std::lock_guard lock(s->m);
    reaped = s->reaped;
  }
  // An abandoned child (it survived SIGKILL) keeps its watcher so it is reaped later.
  if (!reaped) return;
  if (s->exit_watch) s->exit_watch->close(ignored);
  if (s->exit_poll) s->exit_poll->cancel();
}

// --- spawning ---------------------------------------------------------------

struct fd_closer {
  int fd = -1;
  fd_closer() = default;
  explicit fd_closer(int f) : fd(f) {}
  fd_closer(const fd_closer&) = delete;
  fd_closer& operator=(const fd_closer&) = delete;
  ~fd_closer() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  int release() { return std::exchange(fd, -1); }
};

bool is_never_inherited(std::string_view name) {
  return name == "LISTEN_FDS" || name == "LISTEN_PID" || name == "LISTEN_FDNAMES" ||
         name == "NOTIFY_SOCKET" || name == "HARNESS_READY_FD" || name == "HARNESS_SESSION";
}

struct env_result {
  std::vector<std::string> entries;
  int listen_pid_entry = -1;
};

result<env_result> build_env(const process_options& o, const std::string& id) {
  env_result r;
  auto& env = r.entries;
  env.push_back("HARNESS_SESSION=" + id);  // first, so scanners find it early
  auto name_of = [](std::string_view entry) { return entry.substr(0, entry.find('=')); };
  auto find = [&](std::string_view name) -> std::string* {
    for (auto& e : env) {
      if (name_of(e) == name) return &e;
    }
    return nullptr;
  };
  auto removed = [&](std::string_view name) {
    if (is_never_inherited(name)) return true;
    for (const auto& u : o.env.unset) {
      if (u == name) return true;
    }
    return false;
  };
  if (o.env.inherit) {
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      std::string_view entry(*e);
      if (entry.find('=') == std::string_view::npos) continue;
      if (removed(name_of(entry)) || find(name_of(entry)) != nullptr) continue;
      env.emplace_back(entry);
    }
  } else {
    for (const auto& name : o.env.allow) {
      if (removed(name) || find(name) != nullptr) continue;
      if (const char* v = std::getenv(name.c_str())) env.push_back(name + "=" + v);
    }
  }
  for (const auto& [k, v] : o.env.set) {
    if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos) {
      return make_failure(errc::invalid_argument, "bad environment variable name \"" + k + "\"");
    }
    if (k == "HARNESS_SESSION") {
      return make_failure(errc::invalid_argument, "HARNESS_SESSION is set by the harness");
    }
    if (std::string* e = find(k)) {
      *e = k + "=" + v;
    } else {
      env.push_back(k + "=" + v);
    }
  }
  if (o.set_listen_pid) {
    if (std::string* e = find("LISTEN_PID")) {
      r.listen_pid_entry = static_cast<int>(e - env.data());
    } else {
      env.emplace_back("LISTEN_PID=");
      r.listen_pid_entry = static_cast<int>(env.size() - 1);
    }
  }
  return r;
}

std::string env_value(const process_options& o, const std::string& name) {
  for (const auto& [k, v] : o.env.set) {
    if (k == name) return v;
  }
  if (!o.env.inherit) {
    bool allowed = false;
    for (const auto& a : o.env.allow) allowed = allowed || a == name;
    if (!allowed) return {};
  }
  const char* v = std::getenv(name.c_str());
  return v != nullptr ? v : "";
}

result<void> check_program(const std::filesystem::path& p, const std::string& shown) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) {
    return make_failure(errc::program_not_found, shown + " (" + std::strerror(errno) + ")");
  }
  if (S_ISDIR(st.st_mode)) return make_failure(errc::program_is_directory, shown);
  if (!S_ISREG(st.st_mode) || ::access(p.c_str(), X_OK) != 0) {
    return make_failure(errc::program_not_executable, shown);
  }
  return {};
}

result<std::string> resolve_program(const process_options& o) {
  const std::string& prog = o.argv.front();
  if (prog.empty()) return make_failure(errc::program_not_found, "argv[0] is an empty string");
  if (prog.find('/') != std::string::npos) {
    std::error_code ec;
    auto abs = std::filesystem::absolute(prog, ec);
    if (ec) return make_failure(errc::program_not_found, prog);
    if (auto ok = check_program(abs, prog); !ok) return std::move(ok).error();
    return abs.string();
  }
  std::string path = env_value(o, "PATH");
  if (path.empty()) path = "/usr/local/bin:/usr/bin:/bin";
  std::optional<failure> first_problem;
  std::size_t start = 0;
  while (start <= path.size()) {
    auto end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    if (dir.empty()) dir = ".";
    std::filesystem::path candidate = std::filesystem::path(dir) / prog;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0) {
      auto ok = check_program(candidate, candidate.string());
      if (ok) {
        std::error_code ec;
        auto abs = std::filesystem::absolute(candidate, ec);
        return ec ? candidate.string() : abs.string();
      }
      if (!first_problem) first_problem = std::move(ok).error();
    }
    start = end + 1;
  }
  if (first_problem) return std::move(*first_problem);
  return make_failure(errc::program_not_found, prog + " (not found in PATH=" + path + ")");
}

result<void> check_options(const process_options& o) {
  if (o.argv.empty()) return make_failure(errc::empty_argv);
  if (!o.cwd.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_directory(o.cwd, ec)) {
      return make_failure(errc::invalid_argument,
                          "working directory " + o.cwd.string() + " is not a directory");
    }
  }
  std::unordered_set<int> targets;
  for (const auto& f : o.fds) {
    if (f.child_fd < 3) {
      return make_failure(errc::invalid_argument,
                          "fd_pass target " + std::to_string(f.child_fd) + " must be >= 3");
    }
    if (!targets.insert(f.child_fd).second) {
      return make_failure(errc::invalid_argument,
                          "fd_pass target " + std::to_string(f.child_fd) + " given twice");
    }
    if (f.fd < 0 || ::fcntl(f.fd, F_GETFD) < 0) {
      return make_failure(errc::invalid_argument,
                          "fd_pass source " + std::to_string(f.fd) + " is not an open descriptor");
    }
  }
  for (const auto& a : o.argv) {
    if (a.find('\0') != std::string::npos) {
      return make_failure(errc::invalid_argument, "an argument contains a NUL byte");
    }
  }
  return {};
}

std::string sanitize(std::string_view name) {
  std::string out;
  for (char c : name.substr(0, 40)) {
    out.push_back((std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '_' ||
                   c == '-')
                      ? c
                      : '_');
  }
  return out.empty() ? "process" : out;
}

result<std::filesystem::path> log_directory(const output_options& o) {
  if (!o.log_dir.empty() ||
      (std::getenv("HARNESS_LOG_DIR") != nullptr && *std::getenv("HARNESS_LOG_DIR") != '\0')) {
    // A directory the user chose: created if needed, and otherwise left to them.
    std::filesystem::path dir = !o.log_dir.empty() ? o.log_dir : std::getenv("HARNESS_LOG_DIR");
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (!std::filesystem::is_directory(dir, ec)) {
      return make_failure(ec ? ec : std::make_error_code(std::errc::not_a_directory),
                          "log directory " + dir.string() + " cannot be created");
    }
    return dir;
  }
  // The private default: old logs are pruned there (log_prune.hpp).
  auto dir = state_subdir("logs");
  if (!dir) return dir;
  prune_logs_in_background(*dir);
  return dir;
}

std::string now_text() {
  const auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  ::localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

}  // namespace
}  // namespace detail

using detail::process_state;

std::string quote_command(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    const bool plain = !a.empty() && a.find_first_not_of(
                                         "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                         "0123456789_@%+=:,./-{}") == std::string::npos;
    if (plain) {
      out += a;
      continue;
    }
    out += '\'';
    for (char c : a) {
      if (c == '\'') {
        out += "'\\''";
      } else {
        out += c;
      }
    }
    out += '\'';
  }
  return out;
}

result<process> process::try_spawn(process_options options) {
  using namespace detail;
  if (auto ok = check_options(options); !ok) return std::move(ok).error();
  auto program = resolve_program(options);
  if (!program) return std::move(program).error();

  auto& io = io_thread::get();
  auto state = std::make_shared<process_state>(std::move(options));
  process_state& s = *state;
  s.id = io.runner_token() + "-" + std::to_string(next_session.fetch_add(1));
  s.command = quote_command(s.opts.argv);
  s.name = !s.opts.name.empty()
               ? s.opts.name
               : std::filesystem::path(s.opts.argv.front()).filename().string();

  auto env = build_env(s.opts, s.id);
  if (!env) return std::move(env).error();

  if (s.opts.output.log_file) {
    auto dir = log_directory(s.opts.output);
    if (!dir) return std::move(dir).error();
    auto path = *dir / (sanitize(s.name) + "-" + s.id + ".log");
    auto ok = s.out->open_log(path, "# serve-harness log of " + s.command + " (session " + s.id +
                                         ", started " + now_text() + ")");
    if (!ok) return std::move(ok).error();
  }

  // Pipes for stdout/stderr and /dev/null for stdin, all CLOEXEC in the runner.
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return make_system_failure(errno, "pipe2");
  fd_closer out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return make_system_failure(errno, "pipe2");
  fd_closer err_r(err_pipe[0]), err_w(err_pipe[1]);
  fd_closer null_in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (null_in.fd < 0) return make_system_failure(errno, "open /dev/null");

  spawn_request req;
  req.program = *program;
  req.argv = s.opts.argv;
  req.env = std::move(env->entries);
  req.listen_pid_entry = env->listen_pid_entry;
  req.cwd = s.opts.cwd.string();
  req.stdin_fd = null_in.fd;
  req.stdout_fd = out_w.fd;
  req.stderr_fd = err_w.fd;
  req.fds = s.opts.fds;

  // Fork on the harness thread, and hook the child up to it there as well.
  auto spawned = io.run([&]() -> result<pid_t> {
    ensure_reaper(io.runner_token());
    const std::uint64_t forks_before = procfs::fork_count().value_or(0);
    auto pid = spawn_child(req);
    if (!pid) return pid;
    s.pid = *pid;
    s.pidfd = pidfd::open(s.pid);
    s.scope.leader = s.pid;
    s.scope.forks_before = forks_before;
    if (auto st = procfs::read_stat(s.pid)) s.scope.start_time = st->start_time;
    reaper_note_group(s.pid, s.scope.start_time);
    auto& ctx = io.context();
    s.pipes[0] = std::make_unique<asio::readable_pipe>(ctx, out_r.release());
    s.pipes[1] = std::make_unique<asio::readable_pipe>(ctx, err_r.release());
    read_stream(state, 0);
    read_stream(state, 1);
    int watch_fd = s.pidfd >= 0 ? ::fcntl(s.pidfd, F_DUPFD_CLOEXEC, 3) : -1;
    if (watch_fd >= 0) {
      s.exit_watch = std::make_unique<asio::posix::stream_descriptor>(ctx, watch_fd);
      s.exit_watch->async_wait(asio::posix::stream_descriptor::wait_read,
                               [state](const boost::system::error_code& ec) {
                                 if (!ec) on_child_event(state);
                               });
    } else {
      s.exit_poll = std::make_unique<asio::steady_timer>(ctx);
      watch_exit_by_polling(state);
    }
    return pid;
  });
  if (!spawned) {
    s.out->log_note("spawn failed: " + spawned.error().message());
    return std::move(spawned).error();
  }
  return process(std::move(state));
}

process process::spawn(process_options options) { return try_spawn(std::move(options)).value(); }

process::process() noexcept = default;
process::process(std::shared_ptr<detail::process_state> state) noexcept : state_(std::move(state)) {}
process::process(process&& other) noexcept = default;

process& process::operator=(process&& other) noexcept {
  if (this != &other) {
    try {
      if (state_) stop();
    } catch (...) {
      // noexcept: the old process was stopped as far as possible.
    }
    state_ = std::move(other.state_);
  }
  return *this;
}

process::~process() {
  if (!state_) return;
  try {
    stop();
  } catch (...) {
    // stop() does not throw by design; never let anything escape a destructor.
  }
}

int process::pid() const { return state_ ? state_->pid : -1; }

const std::string& process::session_id() const {
  static const std::string empty;
  return state_ ? state_->id : empty;
}

std::string process::command_line() const { return state_ ? state_->command : std::string(); }

const std::string& process::name() const {
  static const std::string empty;
  return state_ ? state_->name : empty;
}

bool process::running() const {
  if (!state_) return false;
  std::lock_guard lock(state_->m);
  return !state_->exited && !state_->reaped;
}

std::optional<exit_status> process::status() const {
  if (!state_) return std::nullopt;
  std::lock_guard lock(state_->m);
  if (state_->finalized) return state_->final_status;
  if (!state_->exited) return std::nullopt;
  return state_->status;
}

std::optional<exit_status> process::wait_for(milliseconds timeout) const {
  if (!state_) return std::nullopt;
  std::unique_lock lock(state_->m);
  const bool done = state_->cv.wait_for(lock, timeouts::scaled(timeout),
                                        [&] { return state_->exited || state_->reaped; });
  if (!done) return std::nullopt;
  if (state_->finalized) return state_->final_status;
  return state_->status;
}

result<void> process::signal(int sig) const {
  if (!state_) return make_failure(errc::not_running, "empty process object");
  std::lock_guard lock(state_->m);
  if (state_->exited || state_->reaped) {
    return make_failure(errc::not_running, state_->name + " has exited");
  }
  if (detail::pidfd::send_signal(state_->pidfd, state_->pid, sig) != 0) {
    return make_system_failure(errno, "signal " + signal_name(sig) + " to " + state_->name);
  }
  return {};
}

result<void> process::signal_group(int sig) const {
  if (!state_) return make_failure(errc::not_running, "empty process object");
  std::lock_guard lock(state_->m);
  // While the leader is not reaped its pid cannot be reused, so the group id is ours.
  if (state_->reaped || state_->lost) {
    return make_failure(errc::not_running, state_->name + " has been stopped");
  }
  if (::kill(-state_->pid, sig) != 0) {
    return make_system_failure(errno, "signal " + signal_name(sig) + " to the group of " +
                                          state_->name);
  }
  return {};
}

std::vector<int> process::tree() const {
  if (!state_) return {};
  {
    std::lock_guard lock(state_->m);
    if (state_->reaped) return {};
  }
  std::vector<int> pids = detail::procfs::find_tree("HARNESS_SESSION=" + state_->id, state_->scope);
  pids.insert(pids.begin(), state_->pid);
  return pids;
}

harness::output process::output() const {
  if (!state_) {
    static const auto empty = std::make_shared<detail::output_state>(output_options{});
    return harness::output(empty);
  }
  return harness::output(state_->out);
}

exit_status process::stop() {
  if (!state_) return {};
  return stop(state_->opts.stop);
}

namespace {

// A marked descendant of the child found in /proc, held through a pidfd when the
// kernel has them so that a recycled pid is never signalled.
struct member {
  pid_t pid = 0;
  int fd = -1;
};

void close_members(std::vector<member>& ms) {
  for (auto& m : ms) {
    if (m.fd >= 0) ::close(m.fd);
  }
  ms.clear();
}

// Every live process of our uid in the child's process group or carrying its marker
// (descendants that left the group), except the child itself.
std::vector<member> collect_marked(const std::string& entry, const detail::procfs::tree_scope& scope) {
  const pid_t leader = scope.leader;
  std::vector<member> out;
  std::string buffer;
  for (pid_t pid : detail::procfs::find_tree(entry, scope)) {
    int fd = detail::pidfd::open(pid);
    if (fd >= 0) {
      // Holding a pidfd now: make sure it is still a member of the tree we saw (the pid
      // was not recycled in between).
      auto st = detail::procfs::read_stat(pid);
      const bool in_group = st && st->pgrp == leader;
      if (!in_group && !detail::procfs::environ_has(pid, entry, false, buffer)) {
        ::close(fd);
        continue;
      }
    } else if (detail::pidfd::available()) {
      continue;  // gone already
    }
    out.push_back({pid, fd});
  }
  return out;
}

bool member_alive(const member& m) {
  if (m.fd >= 0) {
    pollfd p{m.fd, POLLIN, 0};
    return ::poll(&p, 1, 0) == 0;
  }
  if (::kill(m.pid, 0) != 0) return false;
  auto st = detail::procfs::read_stat(m.pid);
  return st && st->state != 'Z';
}

bool lost(process_state& s) {
  std::lock_guard lock(s.m);
  return s.lost;
}

bool leader_exited(process_state& s) {
  std::lock_guard lock(s.m);
  return detail::record_exit_locked(s);
}

// Waits until the leader and every member have exited or the deadline passes.
bool wait_tree(process_state& s, std::vector<member>& members, clock::time_point deadline) {
  milliseconds backoff{1};
  for (;;) {
    std::erase_if(members, [](member& m) {
      if (member_alive(m)) return false;
      if (m.fd >= 0) ::close(m.fd);
      return true;
    });
    const bool leader_done = leader_exited(s);
    if (leader_done && members.empty()) return true;
    const auto now = clock::now();
    if (now >= deadline) return false;
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - now) + milliseconds(1);
    std::vector<pollfd> fds;
    bool all_pollable = !leader_done ? s.pidfd >= 0 : true;
    if (!leader_done && s.pidfd >= 0) fds.push_back({s.pidfd, POLLIN, 0});
    for (const auto& m : members) {
      if (m.fd >= 0) {
        fds.push_back({m.fd, POLLIN, 0});
      } else {
        all_pollable = false;
      }
    }
    if (all_pollable) {
      ::poll(fds.data(), fds.size(),
             static_cast<int>(std::min<milliseconds::rep>(left.count(), 3'600'000)));
    } else {
      // No pidfd for something we wait on (old kernel): poll its state with backoff.
      std::this_thread::sleep_for(std::min(backoff, left));
      backoff = std::min(backoff * 2, timeouts::poll_cap);
    }
  }
}

void signal_tree(process_state& s, const std::vector<member>& members, int sig) {
  // The leader is not reaped yet, so its pid (and thus its process group id) cannot
  // have been reused: signalling the group is safe. Unless somebody else reaped it.
  if (!lost(s)) ::kill(-s.pid, sig);
  for (const auto& m : members) detail::pidfd::send_signal(m.fd, m.pid, sig);
}

}  // namespace

namespace {

// The body of stop(): false when the process was already finalized (`final` then
// holds its status).
bool stop_tree(process_state& s, const stop_policy& policy, exit_status& final) {
  std::lock_guard stop_lock(s.stop_m);
  if (s.finalized) {
    final = s.final_status;
    return false;
  }

  const std::string marker = "HARNESS_SESSION=" + s.id;
  const auto grace = timeouts::scaled(policy.grace);
  const auto kill_wait = timeouts::scaled(policy.kill_wait);
  const auto started = clock::now();

  // 1. The first signal to the whole tree, then up to `grace` for it to exit.
  auto members = collect_marked(marker, s.scope);
  bool clean = leader_exited(s) && members.empty();
  bool escalated = false;
  if (!clean) {
    signal_tree(s, members, policy.signal);
    clean = wait_tree(s, members, started + grace);
  }
  // 2. SIGKILL whatever is left; then sweep for marked stragglers (a dying tree may
  //    still fork) until a pass finds none.
  const auto kill_deadline = clock::now() + kill_wait;
  if (!clean) {
    escalated = true;
    signal_tree(s, members, SIGKILL);
    wait_tree(s, members, kill_deadline);
  }
  close_members(members);
  for (int pass = 0; pass < 100 && clock::now() < kill_deadline; ++pass) {
    auto stragglers = collect_marked(marker, s.scope);
    if (stragglers.empty()) break;
    escalated = true;
    signal_tree(s, stragglers, SIGKILL);
    wait_tree(s, stragglers, kill_deadline);
    close_members(stragglers);
  }

  // 3. Reap the leader. Until now it was only observed (WNOWAIT).
  bool gave_up = false;
  {
    std::unique_lock lock(s.m);
    if (!detail::record_exit_locked(s)) {
      gave_up = true;  // even SIGKILL did not end it (e.g. stuck in the kernel)
      s.abandoned = true;
    } else {
      // Catch group members that appeared after the last signal, while the group id
      // is still reserved by the unreaped leader.
      if ((escalated || !clean) && !s.lost) ::kill(-s.pid, SIGKILL);
      final = s.status;
      detail::reaper_forget_group(s.pid);
      if (!s.lost) {
        int ws = 0;
        pid_t r;
        do {
          r = ::waitpid(s.pid, &ws, WNOHANG);
        } while (r < 0 && errno == EINTR);
        if (r == s.pid) final = exit_status::from_wait_status(ws);
      }
      s.reaped = true;
      if (s.pidfd >= 0) ::close(s.pidfd);  // nothing may signal a reaped child
      s.pidfd = -1;
    }
    s.finalized = true;
    s.final_status = final;
  }
  s.cv.notify_all();

  // 4. The tree is gone, so both pipes reach end-of-file almost at once; wait briefly
  //    so the tails hold the last lines, then release the I/O objects.
  if (!gave_up) harness::output(s.out).wait_closed(milliseconds(500));
  s.out->log_note(gave_up ? "stop: the process did not die after SIGKILL; abandoned"
                          : "stopped: " + final.str());
  return true;
}

}  // namespace

exit_status process::stop(const stop_policy& policy) {
  if (!state_) return {};
  process_state& s = *state_;
  if (::getpid() != s.owner) return {};  // a fork()ed copy: the servers are its parent's
  exit_status final;
  if (!stop_tree(s, policy, final)) return final;
  // Release the pipes and the exit watch now, so that when stop() returns the
  // runner's fd count is back where it was before the spawn. Done outside the stop
  // lock: an on_exit callback run from here may itself call stop().
  auto keep = state_;
  auto& io = detail::io_thread::get();
  if (io.on_this_thread()) {  // stop() from an on_exit callback
    detail::release_io(keep);
    return final;
  }
  // The reads and the exit watch cancelled by release_io() complete in handlers queued
  // behind it, and those hold the state (and its log file) until they have run: the
  // signal that we are done is queued behind them.
  std::promise<void> released;
  auto done = released.get_future();
  io.post([keep = std::move(keep), &io, &released]() mutable {
    detail::release_io(keep);
    keep.reset();
    io.post([&released] { released.set_value(); });
  });
  done.wait();
  return final;
}


}  // namespace harness
