// harness/lease.hpp — ports leased from a pool shared by every process of this user.
//
//   harness::lease l = harness::lease::acquire();       // throws harness::error
//   start_server_on(l.port());                          // nobody else gets this port
//   ...                                                 // until `l` is destroyed
//
// A lease is an flock() held on <state dir>/ports/<port>.lock plus an abstract unix
// socket bound to "@serve-harness/port/<port>", both for as long as the lease object
// lives. The socket name is unique in the network namespace, so every process that
// uses serve-harness there — whatever its user, TMPDIR or state directory — asks the
// same pool, and no two of them are handed the same port at the same time; the lock
// file carries the record `harness ports` shows. When a holder dies (even by SIGKILL)
// the kernel drops both and the port is free again at once. Lock files are never
// deleted (deleting one would let two holders lock two different files for the same
// port).
//
// The pool lies outside the kernel's ephemeral range (ip_local_port_range), so the
// kernel never hands a leased port to a bind(0) or an outgoing connection. Before a
// port is handed out it is checked to be free for TCP on the lease's host; ports held
// by processes outside the pool (a database on 25432, say) are skipped, never touched.
//
// Gotchas:
//   * A lease protects against other serve-harness users only. A program that binds a
//     fixed port in the pool without asking can still take it; session's lease mode
//     detects that and moves to a fresh port.
//   * The state directory must be private to the user (see HARNESS_STATE_DIR in the
//     README); anything else is refused with errc::unsafe_state_dir.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "harness/error.hpp"

namespace harness {

// An inclusive range of TCP ports.
struct port_range {
  std::uint16_t first = 0;
  std::uint16_t last = 0;
  [[nodiscard]] std::size_t size() const { return last >= first ? last - first + 1u : 0u; }
  friend bool operator==(const port_range&, const port_range&) = default;
};

// Parses "lo-hi" (1 <= lo <= hi <= 65535). errc::bad_port_range otherwise.
result<port_range> parse_port_range(std::string_view text);

// The kernel's ephemeral range, from /proc/sys/net/ipv4/ip_local_port_range.
port_range ephemeral_port_range();

// Why a pool of `r` is a poor choice, or "" when it is not: overlapping the ephemeral
// range (the kernel may hand those ports out at any moment: race-freedom weakens to
// detect-and-respawn) or reaching below the unprivileged port start.
std::string port_range_warning(const port_range& r);

// The pool used when a lease does not name one: $HARNESS_PORT_RANGE when set (a bad
// value is an error; a poor one is used, with port_range_warning() printed once on
// stderr), else the widest block of ports outside the ephemeral range,
// starting at 20000 when the ephemeral range allows it (20000-32767 on a default
// Linux whose ephemeral range is 32768-60999).
result<port_range> default_port_range();

struct lease_options {
  // The pool; default: default_port_range().
  std::optional<port_range> range{};
  // The address the port must be free on (an IP literal or "localhost").
  std::string host = "127.0.0.1";
  // Where lock files live; default: <state dir>/ports.
  std::filesystem::path directory{};
  // Written into the lock file for `harness ports` (e.g. the server's command line).
  std::string note{};
  // Also claim the port for the whole network namespace — which is what a port belongs
  // to — with an abstract unix socket per port ("@serve-harness/port/<port>"), so that
  // pools in different state directories (another TMPDIR or HARNESS_STATE_DIR, a
  // sandbox per test) never hand out the same port at once. Turn it off only for a
  // private pool carved out of ports this process already holds leases on.
  bool network_wide = true;
};

// A lease lives exactly as long as the process that took it: the kernel drops the
// lock when the holder dies. A fork()ed copy of the runner that never execs (a gtest
// death test) closes its copies of the lock files at once, so a runner killed while
// such a copy lives on still frees its ports.
class lease {
 public:
  // Leases a free port. errc::pool_exhausted (with counts of ports held by other
  // leases and in use by other programs) when none is left; errc::bad_port_range,
  // errc::unsafe_state_dir, errc::invalid_argument (bad host) on bad input.
  // Non-blocking: it never waits for a port to come free.
  [[nodiscard]] static result<lease> try_acquire(const lease_options& options = {});
  [[nodiscard]] static lease acquire(const lease_options& options = {});

  lease() noexcept = default;
  lease(lease&& other) noexcept;
  lease& operator=(lease&& other) noexcept;
  lease(const lease&) = delete;
  lease& operator=(const lease&) = delete;
  // Releases the port (closes the lock file; the file itself stays).
  ~lease();

  [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] const std::filesystem::path& lock_file() const noexcept { return path_; }

  // Replaces the note in the lock file (what `harness ports` shows).
  void set_note(std::string_view note);
  // Gives the port back now.
  void release() noexcept;

 private:
  lease(int fd, int claim, std::uint16_t port, std::filesystem::path path) noexcept;
  int fd_ = -1;
  int claim_ = -1;  // the abstract socket holding the port's name (network_wide)
  std::uint16_t port_ = 0;
  std::filesystem::path path_;
};

// What a lock file says about its holder (for `harness ports`).
struct lease_record {
  std::uint16_t port = 0;
  bool held = false;        // some process holds the lock right now
  int pid = 0;              // the holder that wrote the record (0 if unknown)
  std::int64_t since = 0;   // unix time the lease was taken
  std::string note{};
};

// The ports claimed by leases in this network namespace, from the text of
// /proc/net/unix (exposed for tests and fuzzing; malformed lines are skipped).
std::vector<std::uint16_t> claimed_ports(std::string_view proc_net_unix);

// Every lock file in the pool directory, with whether it is held right now, and the
// ports leased in this network namespace from elsewhere (another state directory or
// user: held, pid 0, a note saying so).
result<std::vector<lease_record>> list_leases(const std::filesystem::path& directory = {});

}  // namespace harness
