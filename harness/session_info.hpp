// harness/session_info.hpp — what a report says about a server: the port mode and a
// snapshot of one session. (The session itself is in session.hpp; reports, the gtest
// listener and HARNESS_REPORT need only this.)
//
//   for (const harness::session_info& s : harness::live_sessions()) std::cout << s.summary;
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "harness/error.hpp"
#include "harness/exit_status.hpp"
#include "harness/output.hpp"
#include "harness/respawn.hpp"

namespace harness {

enum class port_mode { automatic, lease, announce, inherit };

// "lease", "announce", "inherit", "automatic".
const char* to_string(port_mode m);

// A snapshot of one live session, for reports (the gtest listener prints these when
// a test fails). Thread-safe.
struct session_info {
  std::string session{};   // the HARNESS_SESSION marker value of the server
  std::string name{};
  std::string command{};
  port_mode mode = port_mode::lease;
  std::string endpoint{};
  std::uint16_t port = 0;
  int pid = 0;
  bool daemonized = false;   // pid is the daemon the started process left behind
  std::string ownership{};   // how its processes are owned, e.g. "subreaper (harness-supervisor pid 12)"
  bool running = false;
  std::optional<exit_status> status{};
  std::vector<attempt> attempts{};
  std::chrono::milliseconds ready_time{0};
  // The last lines of stdout and stderr in arrival order (at most 200; reports show
  // them with format_output_tail(), identical runs collapsed).
  std::vector<output_line> output_tail{};
  std::filesystem::path log{};
  std::filesystem::path dir{};             // the scratch directory ({dir}), if any
  std::string summary{};                   // session::summary()
  // The verdict so far (session::check()) and the warnings (session::warnings()).
  std::optional<failure> problem{};
  std::vector<std::string> warnings{};
  // When it exited on its own while it ran (verdict_options::fail_on_unexpected_exit).
  std::optional<std::chrono::system_clock::time_point> exited_unexpectedly_at{};
  std::size_t sanitizer_reports = 0;       // sanitizer report headers in its output so far
};

// Every session object of this process that owns a started server, oldest first.
std::vector<session_info> live_sessions();

}  // namespace harness
