// cli/run.hpp — `harness run`: start a server, wait until ready, then run a client
// against it (--then) or hold it until a signal.
#pragma once

#include "events_posix.hpp"
#include "run_options.hpp"

namespace harness_cli {

// Runs the command; returns the exit status (exit_codes.hpp). Throws usage_error for
// a bad command line. `signals` must have been installed before any thread started.
int run_command(run_args& args, signal_watch& signals);

}  // namespace harness_cli
