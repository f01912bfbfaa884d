// Private: fork/exec of one child through Boost.Process v2 (POSIX only).
//
// Must be called on the harness I/O thread (see io_thread.hpp). Everything the child
// does between fork and exec is async-signal-safe: it only touches memory prepared
// here beforehand.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "harness/error.hpp"
#include "harness/process.hpp"

namespace harness::detail {

struct spawn_request {
  std::string program;            // absolute path, already checked
  std::vector<std::string> argv;  // argv[0] as the user gave it
  std::vector<std::string> env;   // final "NAME=value" entries
  // Index in env of a "LISTEN_PID=" entry whose value the child fills in; -1: none.
  int listen_pid_entry = -1;
  std::string cwd;                // empty: inherit
  int stdin_fd = -1;              // parent fds duplicated onto 0, 1, 2
  int stdout_fd = -1;
  int stderr_fd = -1;
  std::vector<fd_pass> fds;       // extra fds (child_fd >= 3)
};

// Room reserved for the pid digits in the LISTEN_PID entry.
inline constexpr int listen_pid_digits = 20;

// Forks and execs. On success returns the child's pid; the child is in its own
// process group, has PDEATHSIG armed and is not yet reaped. On failure nothing is
// left behind (a child that failed to exec has been reaped).
result<pid_t> spawn_child(const spawn_request& request);

// Lets tests simulate a failing fork (errno EAGAIN) for the next `count` spawns.
void inject_fork_failures_for_testing(int count);

}  // namespace harness::detail
