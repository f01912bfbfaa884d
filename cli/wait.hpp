// cli/wait.hpp — `harness wait SPEC...`: wait until things that already run are ready
// (a TCP listener, an HTTP endpoint, a file, a unix socket). Starts nothing.
//
//   harness wait tcp:127.0.0.1:5432 http://[::1]:8080/health --timeout 60
//
// Every SPEC is checked in rounds, all the ones not yet ready in parallel, with a
// backoff from 1 ms doubling up to 100 ms between rounds; a SPEC that passed once is
// ready for good. Exit status: 0 all ready, 2 bad command line (nothing was checked),
// 3 the timeout passed (stderr lists what is not ready and the last error of each),
// 128 + N interrupted by signal N.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "events_posix.hpp"

namespace harness_cli {

struct wait_args {
  std::vector<std::string> specs{};
  double timeout_seconds = 30;  // scaled by HARNESS_TIMEOUT_SCALE
  bool verbose = false;
};

CLI::App* add_wait_command(CLI::App& app, wait_args& args);

// Parses every SPEC (throws usage_error for a bad one, or when there is none), then
// waits. Returns the exit status. `signals` must have been installed before any thread
// started.
int wait_command(const wait_args& args, signal_watch& signals);

}  // namespace harness_cli
