#include "harness/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <future>
#include <mutex>
#include <system_error>
#include <unordered_set>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/readable_pipe.hpp>

#include "harness/detail/proc/io_thread.hpp"
#include "harness/detail/os/log_prune.hpp"
#include "harness/detail/proc/output_state.hpp"
#include "harness/detail/os/pidfd.hpp"
#include "harness/detail/os/private_dir.hpp"
#include "harness/detail/os/proc_tree.hpp"
#include "harness/detail/proc/spawn_posix.hpp"
#include "harness/detail/proc/supervisor_protocol.hpp"
#include "harness/detail/stop_quietly.hpp"
#include "harness/detail/os/unique_fd.hpp"

extern char** environ;

namespace harness {
namespace asio = boost::asio;
using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace detail {

// One server and its supervisor. The supervisor is our child and stays unreaped until
// stop(), so its pid (the root of "the tree") cannot be recycled while we use it.
struct process_state {
  explicit process_state(process_options o)
      : opts(std::move(o)), out(std::make_shared<output_state>(opts.output)) {}

  process_options opts;
  std::string name;
  std::string id;
  std::string command;
  pid_t supervisor = -1;
  unique_fd supervisor_pidfd;  // empty without kernel pidfds
  unsigned long long supervisor_start = 0;  // with its pid, names the supervisor
  unique_fd control;           // to the supervisor (supervisor_protocol.hpp)
  pid_t group = -1;            // the first server process: leader of the server's group
  std::shared_ptr<output_state> out;

  // Guarded by m.
  std::mutex m;
  std::condition_variable cv;
  pid_t pid = -1;              // the server: the process we started, or the daemon it left
  unique_fd pid_fd;            // pidfd of `pid` (checked to be in the tree); may be empty
  bool followed = false;       // pid is a daemon that the started process left behind
  bool exited = false;         // the server has exited (status is set)
  exit_status status;
  int left_at_exit = 0;        // processes of the tree alive when it exited
  bool tree_gone = false;      // the supervisor finished its stop (or is gone)
  bool lost = false;           // the supervisor vanished without reporting
  bool exit_reported = false;  // on_exit has run (I/O thread only)
  bool finalized = false;
  exit_status final_status;
  // The process that started the server. A fork()ed copy of the runner (a gtest death
  // test) must not stop the parent's servers when it destroys its copies.
  pid_t owner = ::getpid();

  std::mutex pump_m;  // one reader of the control socket at a time
  std::mutex stop_m;  // stop() is serialised and runs once

  // I/O-thread objects.
  std::unique_ptr<asio::posix::stream_descriptor> control_watch;
  std::unique_ptr<asio::readable_pipe> pipes[2];
  std::array<char, 32 * 1024> buffers[2];
};

namespace {

std::atomic<std::uint64_t> next_session{1};

exit_status status_from(char how, long value) {
  switch (how) {
    case 'e': return exit_status::exited_with(static_cast<int>(value));
    case 'k': return exit_status::killed_by(static_cast<int>(value), false);
    case 'c': return exit_status::killed_by(static_cast<int>(value), true);
    default: return {};
  }
}

// A pidfd for `pid` when it is (still) a live process of the tree: its parent is the
// supervisor. Checked after the open, so the fd cannot name a recycled pid.
unique_fd open_member(pid_t pid, pid_t supervisor) {
  unique_fd fd(pidfd::open(pid));
  proctree::brief b;
  if (!proctree::read_brief(pid, b) || !b.alive() || b.ppid != supervisor) return unique_fd();
  return fd;
}

// Applies one message of the supervisor (s.m held).
void take_message_locked(process_state& s, const char* msg) {
  const auto m = supervisor_protocol::parse_message(msg);
  if (m.kind == 'X') {
    s.exited = true;
    s.status = status_from(m.how, m.a);
    s.left_at_exit = static_cast<int>(m.b);
    s.pid_fd.reset();
  } else if (m.kind == 'F') {
    s.pid = static_cast<pid_t>(m.a);
    s.followed = true;
    s.pid_fd = open_member(s.pid, s.supervisor);
  } else if (m.kind == 'Z') {
    s.tree_gone = true;
  }
}

// Reads whatever the supervisor has sent, without blocking. Safe from any thread.
void pump(process_state& s) {
  // A fork()ed copy of the runner shares the socket: it must not take the parent's
  // messages.
  if (::getpid() != s.owner) return;
  std::lock_guard pump_lock(s.pump_m);
  bool changed = false;
  for (;;) {
    char buf[supervisor_protocol::max_message + 1];
    const ssize_t n = ::recv(s.control.get(), buf, sizeof buf - 1, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    std::lock_guard lock(s.m);
    changed = true;
    if (n <= 0) {
      // The supervisor is gone. Without its report the status is unknown.
      if (!s.exited) {
        s.exited = true;
        s.lost = true;
      }
      s.tree_gone = true;
      s.pid_fd.reset();
      break;
    }
    buf[n] = '\0';
    take_message_locked(s, buf);
  }
  if (changed) s.cv.notify_all();
}

// I/O thread: runs on_exit once the server has exited, exactly once.
void report_exit(const std::shared_ptr<process_state>& s) {
  exit_status status;
  {
    std::lock_guard lock(s->m);
    if (s->exit_reported || !s->exited) return;
    s->exit_reported = true;
    status = s->status;
  }
  s->out->log_note("process " + std::to_string(s->pid) + " " + status.str());
  if (s->opts.on_exit) s->out->contain("on_exit", [&] { s->opts.on_exit(status); });
}

void watch_control(const std::shared_ptr<process_state>& s) {
  s->control_watch->async_wait(asio::posix::stream_descriptor::wait_read,
                               [s](const boost::system::error_code& ec) {
                                 if (ec) return;
                                 pump(*s);
                                 report_exit(s);
                                 bool gone;
                                 {
                                   std::lock_guard lock(s->m);
                                   gone = s->tree_gone;
                                 }
                                 if (!gone) watch_control(s);
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
  report_exit(s);  // on_exit runs even if stop() saw the exit first
  boost::system::error_code ignored;
  for (auto& p : s->pipes) {
    if (p && p->is_open()) p->close(ignored);
  }
  if (s->control_watch) s->control_watch->close(ignored);
}

// --- spawning ---------------------------------------------------------------

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
    if (v.find('\0') != std::string::npos) {
      return make_failure(errc::invalid_argument, "the value of " + k + " contains a NUL byte");
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
  if (prog.empty()) return make_failure(errc::invalid_argument, "the program (argv[0]) is an empty string");
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
  if (o.stop.steps.size() > 7) {
    return make_failure(errc::invalid_argument, "stop.steps: at most 7 steps (SIGKILL comes after them)");
  }
  for (const auto& step : o.stop.steps) {
    if (step.signal <= 0 || step.signal >= NSIG) {
      return make_failure(errc::invalid_argument, "stop.steps: no signal " + std::to_string(step.signal));
    }
    if (step.wait.count() < 0) return make_failure(errc::invalid_argument, "stop.steps: a negative wait");
  }
  if (o.stop.signal <= 0 || o.stop.signal >= NSIG) {
    return make_failure(errc::invalid_argument, "stop.signal: no signal " + std::to_string(o.stop.signal));
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

// The session's log file (output_options::log_file), in the log directory.
result<void> open_log_file(process_state& s) {
  if (!s.opts.output.log_file) return {};
  auto dir = log_directory(s.opts.output);
  if (!dir) return std::move(dir).error();
  auto path = *dir / (sanitize(s.name) + "-" + s.id + ".log");
  return s.out->open_log(path, "# serve-harness log of " + s.command + " (session " + s.id + ", started " +
                                   now_text() + ")");
}

}  // namespace
}  // namespace detail

using detail::process_state;

std::string default_name(const std::vector<std::string>& argv) {
  return argv.empty() ? std::string() : std::filesystem::path(argv.front()).filename().string();
}

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

  io_thread* io_ptr = nullptr;
  try {
    io_ptr = &io_thread::get();
  } catch (const std::system_error& e) {  // no thread to be had (RLIMIT_NPROC, say)
    return make_failure(errc::spawn_failed, "cannot start the harness I/O thread: " + e.code().message());
  }
  auto& io = *io_ptr;
  auto state = std::make_shared<process_state>(std::move(options));
  process_state& s = *state;
  s.id = io.runner_token() + "-" + std::to_string(next_session.fetch_add(1));
  s.command = quote_command(s.opts.argv);
  s.name = !s.opts.name.empty() ? s.opts.name : default_name(s.opts.argv);

  auto env = build_env(s.opts, s.id);
  if (!env) return std::move(env).error();

  if (auto ok = open_log_file(s); !ok) return std::move(ok).error();

  // Pipes for stdout/stderr and /dev/null for stdin, all CLOEXEC in the runner.
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return make_system_failure(errno, "pipe2");
  unique_fd out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return make_system_failure(errno, "pipe2");
  unique_fd err_r(err_pipe[0]), err_w(err_pipe[1]);
  unique_fd null_in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null_in) return make_system_failure(errno, "open /dev/null");

  spawn_request req;
  req.program = *program;
  req.argv = s.opts.argv;
  req.env = std::move(env->entries);
  req.listen_pid_entry = env->listen_pid_entry;
  req.cwd = s.opts.cwd.string();
  req.stdin_fd = null_in.get();
  req.stdout_fd = out_w.get();
  req.stderr_fd = err_w.get();
  req.fds = s.opts.fds;
  req.follow_daemon = s.opts.follow_daemon;
  req.stop = s.opts.stop;

  // Launched on the calling thread (posix_spawn; nothing depends on which thread).
  auto child = spawn_child(req);
  if (!child) {
    s.out->log_note("spawn failed: " + child.error().message());
    return std::move(child).error();
  }
  out_w.reset();
  err_w.reset();
  s.supervisor = child->supervisor;
  s.supervisor_pidfd = std::move(child->supervisor_pidfd);
  s.supervisor_start = child->supervisor_start;
  s.control = std::move(child->control);
  s.pid = s.group = child->pid;
  s.pid_fd = open_member(s.pid, s.supervisor);

  // Hook the pipes and the control socket up to the harness thread.
  const int watch_fd = ::fcntl(s.control.get(), F_DUPFD_CLOEXEC, 3);
  if (watch_fd < 0) {
    const int err = errno;
    process doomed(std::move(state));  // stops the server on the way out
    return make_system_failure(err, "fcntl(F_DUPFD_CLOEXEC)");
  }
  io.run([&] {
    auto& ctx = io.context();
    s.pipes[0] = std::make_unique<asio::readable_pipe>(ctx, out_r.release());
    s.pipes[1] = std::make_unique<asio::readable_pipe>(ctx, err_r.release());
    s.control_watch = std::make_unique<asio::posix::stream_descriptor>(ctx, watch_fd);
    read_stream(state, 0);
    read_stream(state, 1);
    watch_control(state);
  });
  return process(std::move(state));
}

process process::spawn(process_options options) { return try_spawn(std::move(options)).value(); }

process::process() noexcept = default;
process::process(std::shared_ptr<detail::process_state> state) noexcept : state_(std::move(state)) {}
process::process(process&& other) noexcept = default;

process& process::operator=(process&& other) noexcept {
  if (this != &other) {
    if (state_) detail::stop_quietly(*this);
    state_ = std::move(other.state_);
  }
  return *this;
}

process::~process() {
  if (state_) detail::stop_quietly(*this);
}

int process::pid() const {
  if (!state_) return -1;
  detail::pump(*state_);
  std::lock_guard lock(state_->m);
  return state_->pid;
}

int process::supervisor_pid() const { return state_ ? state_->supervisor : -1; }

int process::left_at_exit() const {
  if (!state_) return 0;
  detail::pump(*state_);
  std::lock_guard lock(state_->m);
  return state_->exited ? state_->left_at_exit : 0;
}

bool process::daemonized() const {
  if (!state_) return false;
  detail::pump(*state_);
  std::lock_guard lock(state_->m);
  return state_->followed;
}

std::string process::ownership() const {
  if (!state_) return {};
  return "subreaper (harness-supervisor pid " + std::to_string(state_->supervisor) + ")";
}

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
  detail::pump(*state_);
  std::unique_lock lock(state_->m);
  // The kernel knows of an exit a moment before the supervisor's report of it arrives.
  // When the server's pidfd already says it has exited, wait for that report (an exit,
  // or a daemon followed from now on), so that running() is not true for a server that
  // has exited. The harness thread delivers the report: not when we are that thread,
  // nor in a fork()ed copy of the runner, which reads no reports.
  if (!state_->exited && state_->pid_fd && ::getpid() == state_->owner &&
      !detail::io_thread::get().on_this_thread()) {
    pollfd exited{state_->pid_fd.get(), POLLIN, 0};
    if (::poll(&exited, 1, 0) > 0) {
      const pid_t pid = state_->pid;
      state_->cv.wait_for(lock, timeouts::scaled(timeouts::spawn_handshake),
                          [&] { return state_->exited || state_->pid != pid; });
    }
  }
  return !state_->exited;
}

std::optional<exit_status> process::status() const {
  if (!state_) return std::nullopt;
  detail::pump(*state_);
  std::lock_guard lock(state_->m);
  if (state_->finalized) return state_->final_status;
  if (!state_->exited) return std::nullopt;
  return state_->status;
}

std::optional<exit_status> process::wait_for(milliseconds timeout) const {
  if (!state_) return std::nullopt;
  detail::pump(*state_);
  std::unique_lock lock(state_->m);
  const bool done =
      state_->cv.wait_for(lock, timeouts::scaled(timeout), [&] { return state_->exited; });
  if (!done) return std::nullopt;
  if (state_->finalized) return state_->final_status;
  return state_->status;
}

result<void> process::signal(int sig) const {
  if (!state_) return make_failure(errc::not_running, "empty process object");
  detail::pump(*state_);
  std::lock_guard lock(state_->m);
  if (state_->exited) return make_failure(errc::not_running, state_->name + " has exited");
  // Through the pidfd opened (and checked to be in the tree) when the pid was learnt;
  // without kernel pidfds, by pid: the supervisor has not reported it gone.
  const int rc = state_->pid_fd ? detail::pidfd::send_signal(state_->pid_fd.get(), state_->pid, sig)
                 : detail::pidfd::available() ? (errno = ESRCH, -1)
                                              : ::kill(state_->pid, sig);
  if (rc != 0) {
    return make_system_failure(errno, "signal " + signal_name(sig) + " to " + state_->name);
  }
  return {};
}

result<void> process::signal_group(int sig) const {
  if (!state_) return make_failure(errc::not_running, "empty process object");
  if (sig <= 0 || sig >= NSIG) return make_failure(errc::invalid_argument, "no signal " + std::to_string(sig));
  detail::pump(*state_);
  std::lock_guard lock(state_->m);
  if (state_->finalized || state_->lost || state_->tree_gone) {
    return make_failure(errc::not_running, state_->name + " has been stopped");
  }
  // The supervisor sends it: it keeps the first server process unreaped until the stop,
  // so the group id cannot have been handed to anybody else meanwhile.
  const std::string msg = "G " + std::to_string(sig);
  if (::send(state_->control.get(), msg.data(), msg.size(), MSG_NOSIGNAL) < 0) {
    return make_system_failure(errno, "signal " + signal_name(sig) + " to the group of " + state_->name);
  }
  return {};
}

std::vector<int> process::tree() const {
  if (!state_) return {};
  pid_t server;
  detail::pump(*state_);
  {
    std::lock_guard lock(state_->m);
    if (state_->finalized || state_->tree_gone) return {};
    server = state_->pid;
  }
  std::vector<pid_t> below;
  detail::proctree::descendants(state_->supervisor, below);
  std::vector<int> pids{server};
  for (pid_t p : below) {
    if (p != server) pids.push_back(p);
  }
  return pids;
}

harness::output process::output() const {
  if (!state_) {
    static const auto empty = std::make_shared<detail::output_state>(output_options{});
    return harness::output(empty);
  }
  return harness::output(state_->out);
}

std::vector<stop_step> effective_steps(const stop_policy& policy) {
  std::vector<stop_step> steps = policy.steps;
  if (steps.empty()) steps.push_back({policy.signal, policy.grace});
  steps.push_back({SIGKILL, policy.kill_wait});
  for (auto& step : steps) step.wait = timeouts::scaled(step.wait);
  return steps;
}

std::string describe(const stop_policy& policy) {
  std::string text;
  for (const auto& step : effective_steps(policy)) {
    if (!text.empty()) text += ", ";
    char buf[32];
    std::snprintf(buf, sizeof buf, " %.1f s", static_cast<double>(step.wait.count()) / 1000.0);
    text += signal_name(step.signal) + buf;
  }
  return text;
}

exit_status process::stop() {
  if (!state_) return {};
  return stop(state_->opts.stop);
}

namespace {

// Asks the supervisor to run the stop steps and waits (bounded) until it reports the
// tree gone. False when it did not answer in time.
bool stop_through_supervisor(process_state& s, const stop_policy& policy) {
  std::string msg = "T";
  milliseconds total{0};
  for (const auto& step : effective_steps(policy)) {
    msg += " " + std::to_string(step.signal) + " " + std::to_string(step.wait.count());
    total += step.wait;
  }
  while (::send(s.control.get(), msg.data(), msg.size(), MSG_NOSIGNAL) < 0 && errno == EINTR) {
  }
  // The supervisor adds a last SIGKILL sweep of up to 2 s after the steps.
  const auto deadline = clock::now() + total + timeouts::scaled(milliseconds(2500));
  for (;;) {
    detail::pump(s);
    {
      std::lock_guard lock(s.m);
      if (s.tree_gone) return true;
    }
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - clock::now());
    if (left.count() <= 0) return false;
    pollfd p{s.control.get(), POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(std::min<milliseconds::rep>(left.count() + 1, 3'600'000)));
  }
}

// Reaps the supervisor (it exits right after reporting). Somebody else may have reaped
// it already (SIGCHLD ignored, waitpid(-1)), and its pid may be another process's by
// now: detail::reap_supervisor() waits for and reaps only the supervisor itself.
void reap_supervisor(process_state& s, bool answered) {
  const auto limit = timeouts::scaled(milliseconds(2000));
  const int fd = s.supervisor_pidfd ? s.supervisor_pidfd.get() : -1;
  if (!answered) {
    // Unresponsive. Shutting its socket down asks it to kill its tree at once; if it
    // still does not exit, SIGKILL it (its tree is then re-parented and out of reach).
    ::shutdown(s.control.get(), SHUT_RDWR);
    if (detail::reap_supervisor(s.supervisor, fd, s.supervisor_start, limit)) return;
    detail::kill_supervisor(s.supervisor, fd, s.supervisor_start);
  }
  detail::reap_supervisor(s.supervisor, fd, s.supervisor_start, limit);
}

// The body of stop(): false when the process was already finalized (`final` then
// holds its status).
bool stop_tree(process_state& s, const stop_policy& policy, exit_status& final) {
  std::lock_guard stop_lock(s.stop_m);
  {
    std::lock_guard lock(s.m);
    if (s.finalized) {
      final = s.final_status;
      return false;
    }
  }
  const bool answered = stop_through_supervisor(s, policy);
  reap_supervisor(s, answered);
  {
    std::lock_guard lock(s.m);
    final = s.exited ? s.status : exit_status{};
    s.exited = true;
    s.pid_fd.reset();
    s.finalized = true;
    s.final_status = final;
  }
  s.cv.notify_all();
  // The tree is gone, so both pipes reach end-of-file almost at once; wait briefly so
  // the tails hold the last lines, then release the I/O objects.
  if (answered) harness::output(s.out).wait_closed(milliseconds(500));
  s.out->log_note(answered ? "stopped: " + final.str()
                           : "stop: the supervisor did not answer; abandoned");
  return true;
}

}  // namespace

exit_status process::stop(const stop_policy& policy) {
  if (!state_) return {};
  process_state& s = *state_;
  if (::getpid() != s.owner) return {};  // a fork()ed copy: the servers are its parent's
  exit_status final;
  if (!stop_tree(s, policy, final)) return final;
  // Release the pipes and the control watch now, so that when stop() returns the
  // runner's fd count is back where it was before the spawn. Done outside the stop
  // lock: an on_exit callback run from here may itself call stop().
  auto keep = state_;
  auto& io = detail::io_thread::get();
  if (io.on_this_thread()) {  // stop() from an on_exit callback
    detail::release_io(keep);
    return final;
  }
  // The reads and the watch cancelled by release_io() complete in handlers queued
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
