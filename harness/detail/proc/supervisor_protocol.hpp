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
//
// The parsers of both sides are here (supervisor_protocol.cpp, linked into the library
// and into the supervisor), as plain functions of the text, for tests and fuzzing.
#pragma once

#include <sys/types.h>

#include <csignal>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace harness::detail::supervisor_protocol {

inline constexpr int max_message = 256;
inline constexpr int max_stop_steps = 8;
inline constexpr int max_passed_fds = 64;

// Strict decimal (strtol): the whole NUL-terminated text, no overflow.
bool parse_long(const char* text, long& out);

struct stop_step {
  int signal = SIGKILL;
  long ms = 0;
};

// The launch request's fields.
struct launch_request {
  bool listen_pid = false;  // FLAGS l
  bool follow = false;      // FLAGS f
  bool own_group = false;   // FLAGS g
  std::vector<int> keep_fds;
  std::vector<stop_step> stop;  // STOP_STEPS
  std::string cwd;
  bool set_umask = false;       // UMASK is not "-"
  mode_t umask = 0;
  std::string program;
  std::size_t argc = 0;
  std::vector<std::string> args;  // ARGC arguments, then the environment
};

// Why a request was refused: `malformed` (too few fields, a bad ARGC: the supervisor
// answers "E <EPROTO> request"), `bad_field` (a bad KEEP_FDS or STOP_STEPS entry: it
// exits with its usage message).
enum class request_error { none, malformed, bad_field };

// Parses the request memfd's text into `out`.
request_error parse_launch_request(std::string_view text, launch_request& out);

// STOP_STEPS ("15:5000,9:2000", at most max_stop_steps); false on a bad entry.
bool parse_stop_steps(std::string_view text, std::vector<stop_step>& out);

// "T <sig> <ms> [<sig> <ms>]...": the steps up to the first that does not parse (at
// most max_stop_steps); empty when none does.
std::vector<stop_step> parse_stop_message(const char* text);

// "G <sig>": the signal, 0 when the message is not one (or the signal is not one).
int parse_group_signal(const char* text);

// A message of the supervisor, as the runner reads it. kind is 0 when the text is
// none of the forms above, or a number in it is out of range (a pid beyond pid_t, an
// exit code beyond 255, a signal beyond NSIG, a negative count).
struct message {
  char kind = 0;      // 'S', 'E', 'F', 'X' or 'Z'
  long a = 0;         // S, F: pid; E: errno; X: exit code or signal; Z: left
  long b = 0;         // S, F: start time; X: left
  char how = 0;       // X: 'e', 'k' or 'c'
  std::string step;   // E
};
message parse_message(const char* text);

}  // namespace harness::detail::supervisor_protocol
