// Private: what a named shared server's client (named_server.cpp) and its keeper
// (tools/keeper/keeper.cpp) share: where its files are, the keeper's socket, the record, and the
// line protocol between them.
//
// Per name, in <state dir>/servers/net-<netns inode>/:
//   <name>.lock   flock'ed by whoever decides: a caller while it starts or attaches
//                 (so the next caller waits, then sees the result: double-check), the
//                 keeper for its whole stop (so nobody starts or attaches meanwhile).
//   <name>.json   the record, written by the keeper only, whole (a temporary file
//                 renamed over it): phase, keeper and server identity, port, users...
//   <name>.log    the keeper's own messages (the server's output has its log file).
// The keeper listens on the abstract unix socket
//   "@serve-harness/named/<uid>/<fingerprint of the servers directory and the name>":
// the kernel frees it when the keeper dies, so a socket that answers is a live keeper
// and a record nobody answers for is stale. Both ends check SO_PEERCRED (our uid).
//
// Requests (one line each; one reply line):
//   info                       -> the record
//   attach FP PID START        -> "ok RECORD" | "mismatch RECORD" | "stopping" | "failed TEXT"
//   reserve FP PID START       -> the same, but a reserved server is not started
//   detach PID START [all]     -> "ok RECORD" (all: every hold of that process)
//   stop                       -> "stopping" at once; the connection closes when it is over
//   replace                    -> stop now: the caller holds the lock for the keeper
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "harness/detail/os/unique_fd.hpp"
#include "harness/error.hpp"

namespace harness::detail::named {

// A valid name: 1-64 of [A-Za-z0-9._-], not starting with '.' or '-', not ending in
// .json, .lock or .log.
bool valid_name(std::string_view name);

// <state dir>/servers/net-<network namespace inode>: a name is one server per network
// namespace.
result<std::filesystem::path> servers_dir();

// Why `pid` cannot hold a server (pid 1 and kernel threads never end, another user's
// process is not ours to track), or nullopt when it can.
std::optional<std::string> holder_problem(pid_t pid);
// The pid at the other end of a unix socket (0 when unknown).
pid_t peer_pid(int fd);
std::filesystem::path lock_path(const std::filesystem::path& dir, std::string_view name);
std::filesystem::path record_path(const std::filesystem::path& dir, std::string_view name);
std::filesystem::path keeper_log_path(const std::filesystem::path& dir, std::string_view name);
std::string socket_name(const std::filesystem::path& dir, std::string_view name);

struct user {
  pid_t pid = 0;
  std::uint64_t start = 0;  // clock ticks since boot (/proc/<pid>/stat)
  int holds = 0;
};

struct record {
  std::string name;
  std::string phase;  // reserved | starting | ready | stopping | exited
  pid_t keeper_pid = 0;
  std::uint64_t keeper_start = 0;
  pid_t pid = 0;  // the server (0 until started)
  std::string host;
  std::uint16_t port = 0;
  std::string endpoint;
  std::string fingerprint;
  std::string command;
  std::vector<user> users;
  std::optional<std::int64_t> keep_warm_ms;
  std::int64_t created_ms = 0;  // unix ms
  std::int64_t ready_ms = 0;
  std::int64_t idle_since_ms = 0;
  std::string log;
  std::string exit_status;  // phase exited: how it ended
  std::string output_tail;  // phase exited: its last lines
};

std::string to_json(const record& r);
std::optional<record> parse_record(std::string_view text);

enum class record_state { ok, missing, corrupt };
// Reads a record (refusing anything that is not a regular file of ours).
record_state read_record(const std::filesystem::path& path, record& out);
// Writes it whole: a temporary file, then rename().
bool write_record(const std::filesystem::path& path, const record& r);

// A lock file opened safely (O_NOFOLLOW, regular, ours, one link).
unique_fd open_lock(const std::filesystem::path& path);
// Takes `fd`'s flock before the deadline (re-trying with growing pauses: flock has
// no timeout). False when the deadline passed.
bool lock_until(int fd, std::chrono::steady_clock::time_point deadline);
// True when some process holds `path`'s lock right now.
bool lock_is_held(const std::filesystem::path& path);

// Connects to the keeper of `socket` (an abstract name). Empty when nobody listens;
// errc::unsafe_state_dir when a process of another user holds the name.
result<unique_fd> connect_keeper(const std::string& socket);
// The socket the keeper listens on; empty with errno EADDRINUSE when the name is taken.
unique_fd listen_keeper(const std::string& socket);

// One line (without '\n'), or nullopt on EOF, error or deadline.
std::optional<std::string> read_line(int fd, std::string& buffer, std::chrono::steady_clock::time_point deadline);
bool write_line(int fd, std::string_view line);

std::int64_t unix_ms();
std::uint64_t start_time(pid_t pid);  // 0 when the process is gone
bool alive(pid_t pid, std::uint64_t start);

}  // namespace harness::detail::named
