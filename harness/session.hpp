// harness/session.hpp — a server under test: port, spawn, ready, use, stop.
//
//   harness::session redis = harness::session::start({
//       .command = {"redis-server", "--port", "{port}", "--save", ""},
//       .ready = {.probes = {harness::probe::log("Ready to accept connections"),
//                            harness::probe::tcp()}},
//   });
//   connect_to(redis.host(), redis.port());
//   ...                                  // destruction stops the whole tree
//
// The port comes from one of three modes (port_options::mode):
//   * lease (default when {port} appears in the command or an env value): a port
//     leased from the cross-process pool (lease.hpp) replaces {port}; if the server
//     still loses it, the session leases a fresh one and starts again (respawn.hpp);
//   * announce: the server binds port 0 and reports the port — "PORT=<n>\n" on the fd
//     named by HARNESS_READY_FD, "READY=1\nPORT=<n>" over NOTIFY_SOCKET, or a line of
//     output matching port_options::port_from (first capture group);
//   * inherit: the session binds the listening socket itself and passes it as fd 3
//     with LISTEN_FDS=1 and LISTEN_PID=<child pid> (systemd socket activation).
// {host} is replaced by port_options::host everywhere {port} is.
//
// When a start fails, the error (harness::error / result::error()) says everything a
// test log needs: the command line, the exit status, which process holds the port
// (pid, name, user), the stderr tail, the log file and every attempt.
#pragma once

#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "harness/collision.hpp"
#include "harness/error.hpp"
#include "harness/exit_status.hpp"
#include "harness/lease.hpp"
#include "harness/output.hpp"
#include "harness/process.hpp"
#include "harness/readiness.hpp"
#include "harness/respawn.hpp"
#include "harness/session_info.hpp"

namespace harness {

struct port_options {
  // automatic: lease when {port} appears in the command or an env value, else an
  // error asking for a mode.
  port_mode mode = port_mode::automatic;
  // The address the server listens on; also what {host} becomes.
  std::string host = "127.0.0.1";
  // lease: the pool (default: default_port_range()).
  std::optional<port_range> range{};
  // inherit: the port to bind (0: any free port).
  std::uint16_t port = 0;
  // announce: a regex whose first capture group is the port, searched in each line of
  // stdout and stderr. Empty: HARNESS_READY_FD and NOTIFY_SOCKET are offered instead.
  std::string port_from{};
  // lease: extra port-in-use messages for the classifier (checked first).
  std::vector<collision_pattern> collision_patterns{};
};

// What makes the end of a started server a failure of the test that owns it
// (session::check(); the GoogleTest layer fails the test with it).
struct verdict_options {
  // It exits on its own while it runs: not by stop() or restart(), nor after
  // session::expect_exit().
  bool fail_on_unexpected_exit = true;
  // At stop(), a status other than those below or the stop's own doing (killed by the
  // stop signal or SIGKILL, or exit status 128 + the stop signal, as JVMs and shells
  // report SIGTERM).
  bool fail_on_exit_status = true;
  std::vector<exit_status> expected_exits{exit_status::exited_with(0)};
  // A sanitizer report in its output: AddressSanitizer, LeakSanitizer, MemorySanitizer,
  // ThreadSanitizer, or UBSan's "runtime error:".
  bool fail_on_sanitizer_report = true;
  // Its main process exited (on its own, or after expect_exit()) and processes of its
  // tree were still running: a warning (session::warnings()), or a failure.
  bool fail_on_left_processes = false;
};

// A file rendered into the session's scratch directory before every start attempt (so a
// respawn on a fresh port re-renders it): nginx.conf, redis.conf, an envoy bootstrap.
struct file_template {
  std::string name{};  // a relative path inside {dir} ("nginx.conf", "conf/app.ini"); no ".."
  std::string text{};  // {port}, {host} and {dir} substituted; {{port}} is a literal {port}
};

// The session's private scratch directory, {dir}: created (0700) before the first
// attempt when anything names {dir} (command, env values, cwd, files, command probes)
// or a file is to be rendered, or when `create` asks for one; its path is in summary(),
// session_info::dir and failure reports. Removed when the session ends, unless kept.
struct scratch_options {
  enum class keep_policy {
    on_failure,  // kept when the start failed, the verdict failed (check()), or keep_dir() was called
    always,
    never,
  };
  bool create = false;
  keep_policy keep = keep_policy::on_failure;
  // Where scratch directories are made (created if missing). Empty: <state dir>/scratch.
  std::filesystem::path parent{};
};

struct server_spec {
  // argv; {port} and {host} are replaced (lease mode; {host} in every mode).
  std::vector<std::string> command{};
  port_options port{};
  ready_options ready{};
  respawn_policy respawn{};
  env_options env{};          // values may use {port} and {host} as well
  std::filesystem::path cwd{};  // may use {dir}
  output_options output{};
  stop_policy stop{};
  std::string name{};         // label in messages and log file names
  // A server that daemonizes (the started process exits with status 0 and leaves its
  // copy running: redis --daemonize yes, nginx's `daemon on`, memcached -d, pg_ctl
  // start) is followed: the copy is the server, pid() names it, stop() ends it. false:
  // such an exit fails the start ("it daemonized"), and what it left is stopped.
  bool allow_daemon = true;
  verdict_options verdict{};
  // Called on the harness I/O thread when the server exits on its own after it was
  // ready (see verdict_options::fail_on_unexpected_exit). It must return quickly and
  // must not call back into the session.
  std::function<void(const exit_status&)> on_exit{};
  // Files rendered into {dir} before each attempt, and the scratch directory itself.
  std::vector<file_template> files{};
  scratch_options scratch{};
};

namespace detail {
struct session_state;
}

class session {
 public:
  // Starts the server and waits until it is ready. Blocks at most about
  // respawn.attempts × ready.timeout (scaled). Throws harness::error.
  [[nodiscard]] static session start(server_spec spec);
  [[nodiscard]] static result<session> try_start(server_spec spec);
  // Starts on a background thread; get() the result later (see start_all()).
  [[nodiscard]] static std::future<result<session>> start_async(server_spec spec);

  session() noexcept;
  session(session&&) noexcept;
  // Stops the server this object owned, then takes the other's.
  session& operator=(session&&) noexcept;
  session(const session&) = delete;
  session& operator=(const session&) = delete;
  // Stops the server (spec.stop policy); bounded, never throws.
  ~session();

  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }
  explicit operator bool() const noexcept { return valid(); }

  [[nodiscard]] port_mode mode() const;
  [[nodiscard]] const std::string& host() const;
  [[nodiscard]] std::uint16_t port() const;
  // "127.0.0.1:20417" ("[::1]:20417" for IPv6).
  [[nodiscard]] std::string endpoint() const;
  // "http://127.0.0.1:20417" + path.
  [[nodiscard]] std::string url(std::string_view path = "/") const;
  [[nodiscard]] int pid() const;
  [[nodiscard]] const std::string& name() const;
  [[nodiscard]] std::string command_line() const;
  // Every start, the successful one last.
  [[nodiscard]] const std::vector<attempt>& attempts() const;
  // Spawn to ready, of the successful start.
  [[nodiscard]] std::chrono::milliseconds ready_time() const;
  [[nodiscard]] harness::output output() const;
  [[nodiscard]] std::filesystem::path log_path() const;
  // The scratch directory ({dir}), or empty when the session has none.
  [[nodiscard]] const std::filesystem::path& dir() const;
  // Keep the scratch directory when the session ends (the GoogleTest layer calls this
  // for a failed test).
  void keep_dir();
  // The server process (e.g. to send it a signal).
  [[nodiscard]] harness::process& process();
  [[nodiscard]] bool running() const;
  [[nodiscard]] std::optional<exit_status> status() const;

  // Stops the server and starts it again on the same port (lease and inherit modes;
  // in announce mode the server picks a new port, which port() then reports), then
  // waits until it is ready. The lease is kept throughout.
  result<void> restart();
  // Stops the whole tree; idempotent. Keeps port() and the attempts for inspection.
  exit_status stop();

  // Whether the server is as the test expects (spec.verdict): nullopt, or a failure
  // (errc::server_exited, bad_exit_status, sanitizer_report, left_processes; several
  // problems are listed in one text) with the status, the output tail and the log.
  // Call it after stop() to include the stop's verdict. Never blocks.
  [[nodiscard]] std::optional<failure> check() const;
  // What is worth a line but fails nothing (processes left running at an exit, with
  // fail_on_left_processes off).
  [[nodiscard]] std::vector<std::string> warnings() const;
  // The test is about to make the server exit (a shutdown command, a kill): that exit
  // is not a failure. Lasts until the server exits or is restarted.
  void expect_exit();
  // Sends `sig` to the server (process::signal). An exit by that signal (killed by it,
  // or exit code 128 + it), or a clean exit after SIGTERM, SIGINT or SIGQUIT, is then
  // the test's doing, not a failure; any other exit still is (a SIGHUP the server
  // should survive, say).
  result<void> signal(int sig);

  // A multi-line summary: command, mode, port, pid, attempts, ready time, log file.
  [[nodiscard]] std::string summary() const;
  // A snapshot of this session, as live_sessions() reports it.
  [[nodiscard]] session_info info() const;

 private:
  explicit session(std::shared_ptr<detail::session_state> s) noexcept;
  std::shared_ptr<detail::session_state> state_;
};

// How a server is named in messages: spec.name, else its program's file name, else
// "server".
std::string server_label(const server_spec& spec);

// The placeholder rules of server_spec, for tools that build commands the same way:
// {port} and {host} are replaced; "{{port}}" and "{{host}}" stand for the literal text.
std::string substitute_placeholders(std::string_view text, std::string_view host,
                                    std::string_view port);
// The same, and {dir} (a literal {dir} is written {{dir}}).
std::string substitute_placeholders(std::string_view text, std::string_view host, std::string_view port,
                                    std::string_view dir);
// Whether the spec names {dir} anywhere (command, env values, cwd, files, command probes).
bool uses_dir_placeholder(const server_spec& spec);
// True when `text` uses {port} (the escaped "{{port}}" does not count).
bool uses_port_placeholder(std::string_view text);
// True when the spec's command, one of its env values or one of its files uses {port}:
// what makes port_mode::automatic choose lease mode.
bool uses_port_placeholder(const server_spec& spec);

// Starts every spec at once and waits for all. The results are in spec order; a
// failed start does not stop the others.
std::vector<result<session>> start_all(std::vector<server_spec> specs);

}  // namespace harness
