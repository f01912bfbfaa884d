// harness/process.hpp — start a child process and own it completely.
//
//   harness::process p = harness::process::spawn({
//       .argv = {"redis-server", "--port", "7001"},
//       .env = {.set = {{"LANG", "C"}}},
//   });
//   ... use it ...
//   harness::exit_status s = p.stop();    // SIGTERM to its tree, grace, SIGKILL, reap
//   EXPECT_TRUE(s.signaled() || s.success()) << s;
//
// How a server's processes are owned: each server runs below a small supervisor
// program of its own (harness-supervisor, started with posix_spawn, so starting costs
// the same whatever the runner's size). The supervisor is a child subreaper
// (PR_SET_CHILD_SUBREAPER): every process the server starts stays below it, whatever
// it does — setsid, a double fork, daemonizing, a fresh environment, rewriting its
// title over the environment (setproctitle), dropping privileges. "The tree" of a server
// is everything below its supervisor, and that one definition is used by stop(),
// tree(), the listener checks of a session and the runner-death guard. ownership()
// names the strategy for reports.
//
// What the server gets:
//   * a process group of its own (it is the leader), an empty signal mask and default
//     signal dispositions, whatever the runner uses;
//   * stdin from /dev/null, stdout and stderr into pipes the harness drains, plus the
//     fds you list in `fds`; nothing else, even fds the runner left without CLOEXEC;
//   * HARNESS_SESSION=<id> in its environment: a label for humans, not proof of
//     ownership (real servers erase it).
//
// Daemonizing servers are followed: when the started process exits with status 0 and
// leaves processes of its tree running (redis-server --daemonize yes, nginx's default
// `daemon on`, memcached -d, pg_ctl start), the oldest of them becomes the server:
// pid() names it, running() and status() describe it, and daemonized() is true. Set
// follow_daemon = false to treat that exit as the server's exit instead.
//
// Stopping (stop(), the destructor, move-assignment over a live process): the first
// signal (SIGTERM) goes to every process of the tree, the supervisor waits up to
// `grace` for all of them to exit, sends SIGKILL to whatever is left (again and again,
// for a tree that still forks), reaps until the tree is empty and reports the server's
// exit status. The destructor does the same, never throws and is bounded by grace +
// kill_wait + about 5 s (all scaled by HARNESS_TIMEOUT_SCALE, see timeouts.hpp). Signals go
// through pidfds, checked to be in the tree, so a recycled pid is never signalled.
//
// When the runner dies (SIGKILL, a CTest timeout), each supervisor sees it through a
// pidfd on the runner and SIGKILLs its whole tree at once. A fork()ed copy of the
// runner (a gtest death test) that lives on does not delay this.
//
// Gotchas:
//   * on_exit and output_options::on_line run on the harness I/O thread; keep them short.
//     An exception from either is caught and recorded (output().callback_failure());
//     the pipes keep draining and stop() is not disturbed.
//   * Reaping children yourself (waitpid(-1), SIGCHLD set to SIG_IGN) does not disturb
//     exit statuses: the runner's only child is the supervisor, which reports them.
#pragma once

#include <chrono>
#include <csignal>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "harness/error.hpp"
#include "harness/exit_status.hpp"
#include "harness/output.hpp"
#include "harness/timeouts.hpp"

namespace harness {

struct env_options {
  // Start from the runner's environment. When false, only the variables named in
  // `allow` are copied from it.
  bool inherit = true;
  std::vector<std::string> allow{};
  // Removed after inheriting. The socket-activation and notify variables (LISTEN_FDS,
  // LISTEN_PID, LISTEN_FDNAMES, NOTIFY_SOCKET, HARNESS_READY_FD) are never inherited.
  std::vector<std::string> unset{};
  // Set last; wins over everything above.
  std::vector<std::pair<std::string, std::string>> set{};
};

// One step of a stop: send `signal` to the whole tree, then wait up to `wait` for it
// to be gone.
struct stop_step {
  int signal = SIGTERM;
  std::chrono::milliseconds wait{0};
};

struct stop_policy {
  // The first signal, sent to the whole tree.
  int signal = SIGTERM;
  // How long the tree may take to exit after the first signal before SIGKILL.
  std::chrono::milliseconds grace = timeouts::stop_grace;
  // How long to wait for the tree to vanish after SIGKILL before giving up.
  std::chrono::milliseconds kill_wait = timeouts::kill_wait;
  // Steps instead of `signal` and `grace` (at most 7), e.g. nginx's graceful stop:
  //   {.steps = {{SIGQUIT, 5s}, {SIGTERM, 2s}}}
  // SIGKILL with kill_wait always comes last. Empty: {{signal, grace}}.
  std::vector<stop_step> steps{};
};

// The steps a stop runs, SIGKILL last, every wait scaled by HARNESS_TIMEOUT_SCALE.
std::vector<stop_step> effective_steps(const stop_policy& policy);
// "SIGQUIT 5 s, SIGTERM 2 s, SIGKILL 5 s".
std::string describe(const stop_policy& policy);

// A descriptor of the runner passed to the child as `child_fd` (>= 3).
struct fd_pass {
  int fd = -1;
  int child_fd = 3;
};

struct process_options {
  // argv[0] is the program: a path (relative paths are resolved against the runner's
  // working directory) or a name looked up in PATH.
  std::vector<std::string> argv{};
  env_options env{};
  // Working directory of the child; empty: the runner's.
  std::filesystem::path cwd{};
  output_options output{};
  std::vector<fd_pass> fds{};
  // Set LISTEN_PID to the child's own pid (systemd socket activation). The value is
  // written in the child between fork and exec.
  bool set_listen_pid = false;
  // Used by the destructor and by stop() without arguments.
  stop_policy stop{};
  // A label for log file names and messages; default: the program's file name.
  std::string name{};
  // Follow a server that daemonizes (see the top of this file); false: the started
  // process's exit is the server's exit, and what it left behind is stopped with the
  // rest at stop().
  bool follow_daemon = true;
  // Called once on the harness I/O thread when the server has exited (status() is
  // already set).
  std::function<void(const exit_status&)> on_exit{};
};

namespace detail {
struct process_state;
}

class process {
 public:
  // Starts the program. Blocks until the exec has succeeded or failed (milliseconds).
  // Bad input and exec failures are typed: errc::empty_argv, program_not_found,
  // program_not_executable, program_is_directory, invalid_argument (bad cwd or fds),
  // spawn_failed (with the system error in the detail).
  [[nodiscard]] static process spawn(process_options options);
  [[nodiscard]] static result<process> try_spawn(process_options options);

  // An empty object: owns nothing.
  process() noexcept;
  process(process&& other) noexcept;
  // Stops the process this object owned (with its stop policy), then takes `other`.
  process& operator=(process&& other) noexcept;
  process(const process&) = delete;
  process& operator=(const process&) = delete;
  // Stops the process with options.stop; bounded, never throws.
  ~process();

  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }
  explicit operator bool() const noexcept { return valid(); }

  // The server's pid: the process started, or the daemon it left (see daemonized()).
  [[nodiscard]] int pid() const;
  // True when the started process daemonized and pid() is the daemon.
  [[nodiscard]] bool daemonized() const;
  // After the server exited: how many processes of its tree were still running at that
  // moment (during a stop, those the stop signal had not ended yet). 0 before.
  [[nodiscard]] int left_at_exit() const;
  // The supervisor that owns the tree (the runner's direct child).
  [[nodiscard]] int supervisor_pid() const;
  // How the tree is owned, for reports: "subreaper (harness-supervisor pid 1234)".
  [[nodiscard]] std::string ownership() const;
  // The HARNESS_SESSION marker value of this process.
  [[nodiscard]] const std::string& session_id() const;
  // The argv, shell-quoted, for messages.
  [[nodiscard]] std::string command_line() const;
  // The label (options.name or the program's file name).
  [[nodiscard]] const std::string& name() const;

  // True until the child has exited (it may not be reaped yet). When it has just
  // exited, blocks until the supervisor's report of it arrives (milliseconds; at most
  // the scaled spawn_handshake), so that a status() follows.
  [[nodiscard]] bool running() const;
  // The exit status once the child has exited.
  [[nodiscard]] std::optional<exit_status> status() const;

  // Blocks until the child exits or the (scaled) timeout passes; does not signal it.
  std::optional<exit_status> wait_for(std::chrono::milliseconds timeout) const;

  // Sends `signal` to the server process only (through its pidfd). errc::not_running
  // once it has exited.
  result<void> signal(int signal) const;
  // Sends `signal` to the process group of the started process.
  result<void> signal_group(int signal) const;

  // Stops the whole tree (see the top of this file) and reaps the child. Idempotent:
  // later calls return the same status. Blocks at most grace + kill_wait (scaled).
  exit_status stop();
  exit_status stop(const stop_policy& policy);

  // The child's output (tails, log file, waits). Valid while this object lives.
  [[nodiscard]] harness::output output() const;

  // The server's pid followed by every other live process of its tree (everything
  // below its supervisor). Empty once stopped. Reads the kernel's child lists.
  [[nodiscard]] std::vector<int> tree() const;

 private:
  explicit process(std::shared_ptr<detail::process_state> state) noexcept;
  std::shared_ptr<detail::process_state> state_;
};

// Shell-quotes argv for display: my-server --name 'a b'.
std::string quote_command(const std::vector<std::string>& argv);

// The label of a command when none is given: its program's file name ("redis-server"
// for /usr/bin/redis-server); empty for an empty argv.
std::string default_name(const std::vector<std::string>& argv);

}  // namespace harness
