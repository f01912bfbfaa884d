// harness/readiness.hpp — how a session knows its server is ready.
//
// A server is ready when every probe in ready_options::probes has passed (all-of),
// checked against one deadline (ready_options::timeout, scaled by
// HARNESS_TIMEOUT_SCALE). The wait fails at once, with the reason, when the server
// exits, prints a line matching one of ready_options::fail_on, or (lease mode) turns
// out not to own its port.
//
//   using harness::probe;
//   spec.ready.probes = {probe::tcp()};                               // accepts a connection
//   spec.ready.probes = {probe::http("/health", 200)};                // GET /health -> 200
//   spec.ready.probes = {probe::log(R"(Ready to accept connections)"), probe::tcp()};
//   spec.ready.probes = {probe::announce()};                          // HARNESS_READY_FD
//   spec.ready.probes = {probe::notify()};                            // sd_notify READY=1
//   spec.ready.probes = {probe::callback("schema loaded", [](const harness::probe_context& c) {
//     return harness::probe_result::ready;                            // or not_yet / a failure
//   })};
//   spec.ready.fail_on = {"FATAL", "panic:"};
//
// Polling probes (tcp, http, callback) are retried with a delay that starts at
// poll_initial and doubles up to poll_cap; event probes (log, announce, notify) wake
// the wait the moment the event arrives. No fixed sleeps.
//
// Defaults when `probes` is empty: lease mode → tcp; announce mode → the announcement;
// inherit mode → announce (HARNESS_READY_FD) or notify, whichever the server uses.
//
// Gotchas:
//   * In lease mode the server is ready only once a process of its tree listens on the
//     leased port (checked after the probes pass, by socket inode): a log probe alone
//     does not make a server that never listens on {port} ready.
//   * In inherit mode the harness holds the listening socket, so a TCP connect
//     succeeds before the server even runs: a probe list made only of tcp is refused
//     (errc::invalid_argument). Use http, log, announce or notify.
//   * A log probe sees only lines printed after the spawn; it matches anywhere in the
//     line (search), on stdout and stderr.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "harness/error.hpp"
#include "harness/output.hpp"
#include "harness/timeouts.hpp"

namespace harness {

// What a callback probe sees.
struct probe_context {
  std::string host{};
  std::uint16_t port = 0;  // 0 while not known yet (announce mode before the announcement)
  int pid = 0;
  const harness::output* output = nullptr;
};

enum class probe_result { ready, not_yet };

struct probe {
  enum class kind { tcp, http, log, announce, notify, callback, command, redis, memcached };

  // A TCP connection to host:port succeeds.
  static probe tcp();
  // GET `path` answers `status` (0, the default: any 2xx), and `body` (when given)
  // accepts the body.
  static probe http(std::string path = "/", int status = 0,
                    std::function<bool(std::string_view body)> body = {});
  // A line of output matches `pattern` (Perl syntax, searched anywhere in the line).
  static probe log(std::string pattern);
  // The server wrote "PORT=<n>" or "READY=1" to HARNESS_READY_FD.
  static probe announce();
  // The server sent "READY=1" over NOTIFY_SOCKET (sd_notify).
  static probe notify();
  // `fn` returns probe_result::ready / not_yet (polled), or a failure (fatal).
  static probe callback(std::string name,
                        std::function<result<probe_result>(const probe_context&)> fn);
  // Runs `argv` ({port}, {host} and {dir} substituted; found on PATH) until it exits 0
  // and `output` (when given) accepts what it printed on stdout and stderr, like a
  // Docker HEALTHCHECK or `pg_isready -p {port}`. Each run is bounded by the start's
  // deadline (its process group is killed then); a run that cannot start at all (no such
  // program) fails the start.
  static probe command(std::vector<std::string> argv,
                       std::function<bool(std::string_view output)> output = {});
  // Redis (and compatible servers) answer PING with +PONG, spoken over RESP on a
  // connection of our own: no redis-cli needed. "-LOADING" and errors are "not yet".
  static probe redis();
  // memcached answers "version" with "VERSION ...".
  static probe memcached();

  // "tcp", "http GET /health -> 2xx", "log /Ready/", "command pg_isready -p {port}", ...
  [[nodiscard]] std::string describe() const;
  // Whether the engine polls it (rather than waiting for an event), and whether that
  // needs the port to be known first.
  [[nodiscard]] bool polled() const;
  [[nodiscard]] bool needs_port() const;

  kind what = kind::tcp;
  std::string path{};      // http
  int status = 0;          // http: the exact status, or 0 for any 2xx
  std::function<bool(std::string_view)> body{};  // http
  std::string pattern{};   // log
  std::string name{};      // callback
  std::function<result<probe_result>(const probe_context&)> fn{};  // callback
  std::vector<std::string> argv{};                  // command
  std::function<bool(std::string_view)> output{};   // command
};

struct start_progress {
  std::chrono::milliseconds elapsed{0};  // since this attempt's spawn
  std::chrono::milliseconds left{0};     // until its deadline
  std::string waiting_for{};             // what is still missing, as a timeout would say
};

// "7.0 s in, 23.0 s left; waiting for tcp (connection refused)".
std::string to_string(const start_progress& p);

struct ready_options {
  // All must pass. Empty: the default of the port mode (see above).
  std::vector<probe> probes{};
  // One deadline for the whole wait (per start attempt), scaled.
  std::chrono::milliseconds timeout = timeouts::ready;
  // Lines that mean the server failed (Perl syntax, searched in stdout and stderr).
  std::vector<std::string> fail_on{};
  // Polling backoff: first delay and cap.
  std::chrono::microseconds poll_initial{100};
  std::chrono::milliseconds poll_cap = timeouts::poll_cap;
  // Called on the waiting thread once an attempt has waited progress_after, then every
  // progress_every (both scaled), so that a slow start does not look like a hang. The
  // GoogleTest layer and the CLI print a line; it must not block.
  std::function<void(const start_progress&)> on_progress{};
  std::chrono::milliseconds progress_after{2000};
  std::chrono::milliseconds progress_every{5000};
};

}  // namespace harness
