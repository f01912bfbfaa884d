// Private: reading /proc (Linux).
//
// Everything here tolerates processes vanishing mid-read: a process that is gone is
// simply absent from the result.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace harness::detail::procfs {

struct stat_info {
  pid_t pid = 0;
  std::string comm;      // the name in parentheses
  char state = '?';      // R, S, D, Z, ...
  pid_t ppid = 0;
  pid_t pgrp = 0;
  pid_t session = 0;
  std::uint64_t start_time = 0;  // clock ticks since boot
};

// Parses the text of /proc/<pid>/stat (exposed for tests and fuzzing).
std::optional<stat_info> parse_stat(std::string_view text);
std::optional<stat_info> read_stat(pid_t pid);

// Owner uid of /proc/<pid>, or nullopt when the process is gone.
std::optional<uid_t> owner(pid_t pid);

// True when the environment of `pid` holds exactly the entry `entry` ("NAME=value"),
// or, with `prefix`, an entry that starts with `entry`. `buffer` is reused storage.
bool environ_has(pid_t pid, std::string_view entry, bool prefix, std::string& buffer);

// Pids (other than our own) owned by our uid whose environment holds `entry`.
std::vector<pid_t> find_by_environ(std::string_view entry, bool prefix = false);

// The kernel's fork counter ("processes" in /proc/stat): every pid allocated since
// boot, threads included.
std::optional<std::uint64_t> fork_count();

// Where a harness child's tree can be: its pid and start time, and the fork counter
// read just before it was forked (0: unknown).
struct tree_scope {
  pid_t leader = 0;
  std::uint64_t start_time = 0;
  std::uint64_t forks_before = 0;
};

// The tree of a harness child: pids (other than ours and the leader's) owned by our
// uid that are in the leader's process group or whose environment holds `marker`
// exactly. Zombies are left out (they are dead already), and so are processes that
// started before the leader: no descendant is older than its ancestor.
//
// Pids are handed out in increasing order until they wrap at pid_max, so while no
// wrap can have happened since the leader was forked (judged from the fork counter,
// the pids in use and the last pid handed out), only pids above the leader's are
// read; otherwise, or with `full_scan`, every process of ours is.
std::vector<pid_t> find_tree(std::string_view marker, const tree_scope& scope,
                             bool full_scan = false);

}  // namespace harness::detail::procfs
