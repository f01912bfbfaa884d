// cli/exit_codes.hpp — the exit statuses of `harness` (documented in `harness run --help`).
#pragma once

namespace harness_cli::exit_code {

inline constexpr int ok = 0;
inline constexpr int usage = 2;          // bad command line: nothing was started
inline constexpr int start_failed = 3;   // the server could not start or never became ready
inline constexpr int server_exited = 4;  // the server exited on its own while we held it
inline constexpr int bad_end = 5;        // it ended with an unexpected status or a sanitizer report
inline constexpr int wait_timed_out = 3; // harness wait: a SPEC was not ready in time
// With --then: the client's status (exit_status::shell_code(): 128 + N for signal N).
// Interrupted by signal N (SIGINT, SIGTERM, SIGHUP) before the end: 128 + N.

}  // namespace harness_cli::exit_code
