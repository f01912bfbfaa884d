// Private: who listens on a TCP port, from /proc/net/tcp{,6} and /proc/<pid>/fd.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace harness::detail::procnet {

struct tcp_socket {
  std::uint16_t local_port = 0;
  int state = 0;              // 0x0A = LISTEN
  std::uint64_t inode = 0;
  unsigned uid = 0;
};

// Parses the text of /proc/net/tcp or /proc/net/tcp6 (exposed for tests and fuzzing);
// malformed lines are skipped.
std::vector<tcp_socket> parse_tcp_table(std::string_view text);

// A listening socket as sock_diag reports it.
struct listener {
  std::uint64_t inode = 0;
  unsigned uid = 0;
};

enum class diag_reply { more, done, error };

// One buffer of a sock_diag dump reply, as recv() returned it (`data` aligned for
// nlmsghdr): the listeners on `port` are appended to `out`. `done` at NLMSG_DONE,
// `error` at NLMSG_ERROR or a message too short for a socket, `more` when the dump
// continues in the next buffer. Exposed for tests and fuzzing.
diag_reply parse_diag_reply(const char* data, std::size_t size, std::uint16_t port,
                            std::vector<listener>& out);

// Inodes of the sockets listening on `port` (IPv4 and IPv6).
std::vector<std::uint64_t> listening_inodes(std::uint16_t port);

// Socket inodes the process has open (empty when it is gone or not ours to read).
std::vector<std::uint64_t> socket_inodes(pid_t pid);

struct holder {
  pid_t pid = 0;
  std::string name;     // comm
  std::string user;     // user name, or the uid as text
  std::string command;  // cmdline, space-separated
};

// The processes holding a socket listening on `port`; only those whose fds we may
// read are found. `listener_uids` receives the uids the kernel reports for the
// listening sockets even when the process cannot be found.
std::vector<holder> listening_holders(std::uint16_t port, std::vector<unsigned>* listener_uids = nullptr);

// "pid 1234 (nginx, user www-data): nginx -g daemon off;" lines, or a note that the
// holder is invisible to us.
std::string describe_holders(std::uint16_t port);

// Who holds the sockets listening on `port` (every address, both families): none,
// only processes of `pids`, only others, or both (`shared`).
enum class ownership { ours, foreign, nobody, shared };
ownership listener_owner(std::uint16_t port, const std::vector<pid_t>& pids);

}  // namespace harness::detail::procnet
