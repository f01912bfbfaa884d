// Private: start one server under its own harness-supervisor (POSIX only).
//
// The runner never forks. It starts supervisors with posix_spawn (glibc: clone with
// CLONE_VM|CLONE_VFORK, so the cost does not grow with the runner's memory, and the
// child runs no code of ours before exec) through a launcher written in Boost.Process
// v2's launcher interface. One supervisor is kept started ahead of time (the spare):
// a spawn hands it the server's command, environment and fds over its socket, and the
// supervisor starts the server (vfork + execve) and owns its whole tree (see
// tools/supervisor/supervisor.cpp and supervisor_protocol.hpp); a new spare is started
// while the server starts. The runner's cost per spawn is constant, and the critical
// path holds one exec, the server's.
//
// Safe to call from any thread: nothing here depends on which thread spawned (the
// supervisor watches the runner *process* through a pidfd, not PDEATHSIG).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "harness/detail/os/unique_fd.hpp"
#include "harness/error.hpp"
#include "harness/process.hpp"

namespace harness::detail {

struct spawn_request {
  std::string program;            // absolute path, already checked
  std::vector<std::string> argv;  // argv[0] as the user gave it
  std::vector<std::string> env;   // final "NAME=value" entries
  // Index in env of a "LISTEN_PID=" entry whose value the supervisor fills in with the
  // server's pid; -1: none.
  int listen_pid_entry = -1;
  std::string cwd;                // empty: inherit
  int stdin_fd = -1;              // runner fds duplicated onto 0, 1, 2
  int stdout_fd = -1;
  int stderr_fd = -1;
  std::vector<fd_pass> fds;       // extra fds (child_fd >= 3)
  bool follow_daemon = true;
  // Used by the supervisor when it is told to stop by a signal rather than by us.
  stop_policy stop{};
};

// A started server: its supervisor (our child) and the server's pid.
struct spawned_child {
  pid_t supervisor = -1;
  unique_fd supervisor_pidfd;  // empty without kernel pidfds
  unsigned long long supervisor_start = 0;  // its start time (clock ticks since boot)
  unique_fd control;           // SOCK_SEQPACKET to the supervisor, CLOEXEC
  pid_t pid = -1;              // the server process
  unsigned long long start_time = 0;
};

// Starts the supervisor and waits (bounded) until it reports the server exec'ed or
// failed. On failure the supervisor is told to sweep whatever it started and is reaped
// (SIGKILLed only if it does not exit within 2 s).
result<spawned_child> spawn_child(const spawn_request& request);

// Reaps the supervisor `pid` (our child, started at `start`) once it has exited,
// waiting at most `limit` for that; returns whether it is gone. Through `pidfd` when
// there is one. Without, by pid only while that pid is still the supervisor (our child,
// with its start time and name): somebody else's waitpid(-1) or a SIG_IGN'd SIGCHLD may
// have reaped it, and its pid may be an unrelated process's by now, which must be
// neither waited for nor reaped.
bool reap_supervisor(pid_t pid, int pidfd, unsigned long long start, std::chrono::milliseconds limit);

// SIGKILLs the supervisor `pid` (see reap_supervisor), through `pidfd` when there is one,
// else by pid only while that pid is still the supervisor.
void kill_supervisor(pid_t pid, int pidfd, unsigned long long start);

// Where the supervisor program is: $HARNESS_SUPERVISOR, else the build tree's copy,
// else the installed one (libexec). Empty when none exists.
const std::string& supervisor_path();

// Lets tests simulate a failing spawn (errno EAGAIN) for the next `count` spawns.
void inject_fork_failures_for_testing(int count);

// Tests that count the runner's fds exactly: no supervisor kept ready (and the current
// one ended) while disabled.
void use_spare_supervisors_for_testing(bool enabled);

// The supervisor kept ready right now (0: none yet), for tests.
pid_t spare_supervisor_for_testing();

}  // namespace harness::detail
