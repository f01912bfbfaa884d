// Private: running a short command to completion (a readiness command probe), with
// its output and a time limit.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "harness/error.hpp"
#include "harness/exit_status.hpp"

namespace harness::detail {

struct command_run {
  std::optional<exit_status> status;  // nullopt: still running at the limit (then killed)
  std::string output;                 // stdout and stderr, at most 64 KiB
  std::string last_line;              // its last non-empty line, at most 200 bytes
};

// Runs argv (argv[0] looked up on PATH) in a process group of its own, stdin from
// /dev/null, stdout and stderr into one pipe, until it exits or `limit` passes; then the
// group is SIGKILLed and reaped. Fails (errc::program_not_found, spawn_failed) only when
// it cannot be started.
result<command_run> run_command(const std::vector<std::string>& argv, std::chrono::milliseconds limit);

}  // namespace harness::detail
