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

// The whole of a /proc file (at most 1 MiB), or what could be read of it: a process that
// vanishes mid-read gives ESRCH, which is not an error here (std::ifstream with an
// istreambuf_iterator throws std::ios_base::failure for it).
std::string read_file(const std::string& path);

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

}  // namespace harness::detail::procfs
