// Private: the messages between a runner and harness-supervisor (std-only; the
// supervisor program includes it too).
//
// One supervisor runs per server: the runner starts it (posix_spawn), it becomes a
// child subreaper, starts the server and owns everything below it. They talk over a
// SOCK_SEQPACKET socket pair, one ASCII message per packet.
//
// supervisor -> runner
//   S <pid> <start>                   the server was exec'ed (start: clock ticks since boot)
//   E <errno> <step>                  starting it failed at <step> (fork, exec, subreaper)
//   F <pid> <start>                   the server process exited with status 0 and left
//                                     processes behind: it daemonized, and <pid> (the
//                                     oldest of them) is followed as the server from now on
//   X <how> <value> <left>            the server exited: how is e (exit code), k (killed by
//                                     signal) or c (killed, core dumped); left: processes of
//                                     its tree still alive
//   Z <left>                          the stop is over and the supervisor exits; left: what
//                                     even SIGKILL did not end (0 normally)
// runner -> supervisor
//   L + SCM_RIGHTS [request, cwd, stdin, stdout, stderr, passed fds...]
//                                     start the server (once; the first packet). request
//                                     is a memfd holding NUL-terminated fields:
//                                     FLAGS, KEEP_FDS, STOP_STEPS, CWD, UMASK, PROGRAM,
//                                     ARGC, ARGC arguments (argv[0] first), then the
//                                     environment. cwd is the runner's working directory
//                                     (O_PATH); CWD, when not empty, is taken relative to
//                                     it. UMASK is octal, or "-" to keep the supervisor's
//   G <sig>                           send <sig> to the process group of the server's
//                                     first process (kept unreaped, so the group id is ours)
//   T <sig> <ms> [<sig> <ms>]...      stop: each step sends <sig> to the whole tree and
//                                     waits up to <ms> for it to be empty
//
//   FLAGS      letters: l = write the server's pid into LISTEN_PID, f = follow a
//              daemonizing server, g = give the server a process group of its own; "-" = none
//   KEEP_FDS   the numbers the passed fds get in the server (>= 3), comma-separated, or "-"
//   STOP_STEPS the stop used when the supervisor itself gets SIGTERM/SIGINT/SIGHUP:
//              "15:5000,9:2000"
//
// The supervisor's command line is `harness-supervisor CONTROL_FD RUNNER_PID`: it can
// be started before anyone knows what it will run (the runner keeps one ready, so that
// a start costs the server's exec only).
#pragma once

namespace harness::detail::supervisor_protocol {

inline constexpr int max_message = 256;
inline constexpr int max_stop_steps = 8;
inline constexpr int max_passed_fds = 64;

}  // namespace harness::detail::supervisor_protocol
