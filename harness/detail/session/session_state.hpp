// Private: the state behind one harness::session (session.cpp is its facade).
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <vector>

#include "harness/detail/session/respawn_loop.hpp"
#include "harness/detail/session/server_watch.hpp"
#include "harness/detail/session/start_events.hpp"
#include "harness/lease.hpp"
#include "harness/process.hpp"
#include "harness/session.hpp"

namespace harness::detail {

struct session_state {
  server_spec spec;
  port_mode mode = port_mode::lease;
  std::uint16_t port = 0;
  harness::lease lease;
  int listen_fd = -1;  // inherit mode
  harness::process proc;
  std::vector<attempt> attempts;
  std::chrono::milliseconds ready_time{0};
  std::shared_ptr<const matchers> match;
  bool need_ready_signal = false;  // inherit mode without probes
  bool reported = false;           // the HARNESS_REPORT line is written
  // The process that started it: a fork()ed copy (a death test) neither stops nor
  // reports it.
  pid_t owner = ::getpid();
  // Guards proc, port, attempts and ready_time against live_sessions() readers while
  // restart() changes them (never held across a stop or a start).
  mutable std::mutex info_m;
  std::size_t server_first_attempt = 0;  // attempts of the running server start here
  // Exits, sanitizer reports and the stop's status, for check().
  std::shared_ptr<server_watch> watch = std::make_shared<server_watch>();
  std::optional<exit_status> stop_status;  // what the test's stop() found (not set when it had already exited)
  int left_at_exit = 0;                    // processes left when it exited on its own or as expected

  std::filesystem::path dir;  // the scratch directory ({dir}); empty when none
  bool keep_dir = false;      // session::keep_dir() was called
  bool start_failed = false;

  ~session_state() {
    try {
      proc.stop();
    } catch (...) {
      // Never let anything out of a destructor.
    }
    if (listen_fd >= 0) ::close(listen_fd);
    remove_dir();
  }

  result<void> make_dir();
  result<void> render_files(std::uint16_t use_port) const;
  void remove_dir() noexcept;

  result<void> validate_and_compile();
  result<void> choose_mode();
  result<void> compile_matchers();
  start_outcome start_once(std::uint16_t port);
  // Stops the server; the first stop of each started server appends its
  // HARNESS_REPORT line. Records what the verdict needs (an exit before the stop, the
  // stop's status).
  exit_status stop_and_report();
  // The server is ready: from now on an exit of its own is unexpected.
  void arm();
  failure report(std::error_code code, const std::string& reason, const harness::process* p,
                 bool show_holder) const;
};

// session::check() and session::warnings() of a session's state.
std::optional<failure> verdict_of(const session_state& s);
std::vector<std::string> warnings_of(const session_state& s);

}  // namespace harness::detail
