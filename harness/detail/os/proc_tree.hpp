// Private: the process tree below a process, as the kernel keeps it (Linux, std-only).
//
// A server's tree is everything below its supervisor, a child subreaper: whatever a
// process of the tree does (setsid, a double fork, a fresh environment, setproctitle, a
// uid change), it stays below the supervisor, because an orphan is re-parented to its
// nearest subreaper ancestor. This file is the one definition of "the tree": the
// supervisor sweeps it on stop and on runner death, and the runner reads it for
// process::tree() and the listener checks. The supervisor links it too (no Boost).
//
// Everything here tolerates processes vanishing mid-read: a process that is gone is
// simply absent from the result.
#pragma once

#include <sys/types.h>

#include <vector>

namespace harness::detail::proctree {

struct brief {
  char state = '?';              // R, S, D, Z, ...
  pid_t ppid = 0;
  long threads = 0;
  unsigned long long start = 0;  // clock ticks since boot

  // Not yet dead. A process whose main thread has exited shows state Z while its other
  // threads still run: it is alive (and has children) until the last one exits.
  [[nodiscard]] bool alive() const { return state != 'X' && (state != 'Z' || threads > 1); }
};

// State, parent and start time of `pid` from /proc/<pid>/stat; false when it is gone.
bool read_brief(pid_t pid, brief& out);

// The parsers behind read_brief() and children(), over NUL-terminated text: a
// /proc/<pid>/stat line (false when it does not parse), and a child list
// ("12 345 6789 ", pids appended to `out`). Exposed for tests and fuzzing.
bool parse_brief(const char* text, brief& out);
void parse_pid_list(const char* text, std::vector<pid_t>& out);

// The direct children of `pid` (of all its threads), zombies included, appended to
// `out`.
void children(pid_t pid, std::vector<pid_t>& out);

// The live descendants of `root` (root excluded), parents before their children,
// zombies left out (see brief::alive()), into `out` (cleared first). Reads the kernel's child lists
// (/proc/<pid>/task/<tid>/children); on a kernel without them, one scan of /proc.
void descendants(pid_t root, std::vector<pid_t>& out);

// Whether `pid` is below `ancestor`, following parents in /proc: 1 yes, 0 no, -1 when
// `pid` is gone (nothing can be said).
int is_below(pid_t pid, pid_t ancestor);

// Whether the kernel keeps child lists (CONFIG_PROC_CHILDREN); tests can turn them off
// to exercise the /proc scan.
bool has_child_lists();
void disable_child_lists_for_testing(bool disabled);

}  // namespace harness::detail::proctree
