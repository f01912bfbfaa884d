#include "harness/detail/os/proc_net.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <optional>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "harness/detail/os/proc_fs.hpp"

namespace harness::detail::procnet {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

template <class T>
bool hex(std::string_view s, T& out) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), out, 16);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

template <class T>
bool dec(std::string_view s, T& out) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  while (!line.empty()) {
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    if (line.empty()) break;
    auto end = line.find_first_of(" \t");
    out.push_back(line.substr(0, end));
    if (end == std::string_view::npos) break;
    line.remove_prefix(end);
  }
  return out;
}

std::string user_name(unsigned uid) {
  passwd pw{};
  passwd* found = nullptr;
  char buf[1024];
  if (::getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found != nullptr) return pw.pw_name;
  return "uid " + std::to_string(uid);
}

std::vector<pid_t> all_pids() {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  while (const dirent* e = ::readdir(d)) {
    pid_t pid = 0;
    if (dec(std::string_view(e->d_name), pid) && pid > 0) out.push_back(pid);
  }
  ::closedir(d);
  return out;
}

}  // namespace

std::vector<tcp_socket> parse_tcp_table(std::string_view text) {
  // "  sl  local_address rem_address   st tx_queue:rx_queue tr:tm->when retrnsmt   uid  timeout inode ..."
  std::vector<tcp_socket> out;
  bool header = true;
  while (!text.empty()) {
    auto eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    if (header) {
      header = false;
      continue;
    }
    auto f = fields(line);
    if (f.size() < 10) continue;
    auto colon = f[1].rfind(':');
    if (colon == std::string_view::npos) continue;
    tcp_socket s;
    unsigned port = 0;
    if (!hex(f[1].substr(colon + 1), port) || port > 65535 || !hex(f[3], s.state) ||
        !dec(f[7], s.uid) || !dec(f[9], s.inode)) {
      continue;
    }
    s.local_port = static_cast<std::uint16_t>(port);
    out.push_back(s);
  }
  return out;
}

diag_reply parse_diag_reply(const char* data, std::size_t size, std::uint16_t port,
                            std::vector<listener>& out) {
  // Signed and wider than nlmsg_len (__u32): NLMSG_OK compares the two, and with an
  // int that is a signed/unsigned comparison (clang's -Wsign-compare).
  auto len = static_cast<ssize_t>(size);
  for (auto* h = reinterpret_cast<const nlmsghdr*>(data); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
    if (h->nlmsg_type == NLMSG_DONE) return diag_reply::done;
    if (h->nlmsg_type == NLMSG_ERROR) return diag_reply::error;
    // Too short for a socket: not the reply we asked for (and reading it would run past
    // the message).
    if (h->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) return diag_reply::error;
    const auto* d = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
    if (ntohs(d->id.idiag_sport) == port && d->idiag_inode != 0) {
      out.push_back({d->idiag_inode, d->idiag_uid});
    }
  }
  return diag_reply::more;
}

namespace {

// Listening TCP sockets on `port` from the kernel's sock_diag netlink interface: the
// kernel filters by state, so the cost does not grow with the thousands of
// established and TIME_WAIT sockets a busy test machine has. nullopt when netlink is
// not available (then /proc/net/tcp is read instead).
std::optional<std::vector<listener>> listeners_by_netlink(std::uint16_t port) {
  const int fd = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return std::nullopt;
  constexpr unsigned tcp_listen = 10;  // TCP_LISTEN in the kernel's state numbering
  std::vector<listener> out;
  bool ok = true;
  for (const int family : {AF_INET, AF_INET6}) {
    struct {
      nlmsghdr nlh;
      inet_diag_req_v2 req;
    } msg{};
    msg.nlh.nlmsg_len = sizeof msg;
    msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    msg.req.sdiag_family = static_cast<std::uint8_t>(family);
    msg.req.sdiag_protocol = IPPROTO_TCP;
    msg.req.idiag_states = 1u << tcp_listen;
    if (::send(fd, &msg, sizeof msg, 0) < 0) {
      ok = false;
      break;
    }
    alignas(nlmsghdr) char buf[16384];
    for (bool done = false; !done;) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) {
        ok = false;
        break;
      }
      const auto reply = parse_diag_reply(buf, static_cast<std::size_t>(n), port, out);
      done = reply != diag_reply::more;
      ok = reply != diag_reply::error;
    }
    if (!ok) break;
  }
  ::close(fd);
  if (!ok) return std::nullopt;
  return out;
}

std::vector<listener> listeners_by_procfs(std::uint16_t port) {
  std::vector<listener> out;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    for (const auto& s : parse_tcp_table(slurp(table))) {
      if (s.local_port == port && s.state == 0x0A && s.inode != 0) out.push_back({s.inode, s.uid});
    }
  }
  return out;
}

std::vector<listener> listeners(std::uint16_t port) {
  if (auto l = listeners_by_netlink(port)) return std::move(*l);
  return listeners_by_procfs(port);
}

}  // namespace

std::vector<std::uint64_t> listening_inodes(std::uint16_t port) {
  std::vector<std::uint64_t> out;
  for (const auto& l : listeners(port)) out.push_back(l.inode);
  return out;
}

std::vector<std::uint64_t> socket_inodes(pid_t pid) {
  std::vector<std::uint64_t> out;
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  char target[128];
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const std::string link = dir + "/" + e->d_name;
    const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
    if (n <= 0) continue;
    std::string_view t(target, static_cast<std::size_t>(n));
    if (t.rfind("socket:[", 0) != 0 || t.back() != ']') continue;
    std::uint64_t inode = 0;
    if (dec(t.substr(8, t.size() - 9), inode)) out.push_back(inode);
  }
  ::closedir(d);
  return out;
}

std::vector<holder> listening_holders(std::uint16_t port, std::vector<unsigned>* listener_uids) {
  std::vector<holder> out;
  std::vector<std::uint64_t> inodes;
  for (const auto& l : listeners(port)) {
    inodes.push_back(l.inode);
    if (listener_uids != nullptr) listener_uids->push_back(l.uid);
  }
  if (inodes.empty()) return out;
  for (pid_t pid : all_pids()) {
    auto mine = socket_inodes(pid);
    const bool holds = std::any_of(mine.begin(), mine.end(), [&](std::uint64_t i) {
      return std::find(inodes.begin(), inodes.end(), i) != inodes.end();
    });
    if (!holds) continue;
    holder h;
    h.pid = pid;
    if (auto st = procfs::read_stat(pid)) h.name = st->comm;
    if (auto uid = procfs::owner(pid)) h.user = user_name(*uid);
    std::string cmd = slurp("/proc/" + std::to_string(pid) + "/cmdline");
    std::replace(cmd.begin(), cmd.end(), '\0', ' ');
    while (!cmd.empty() && cmd.back() == ' ') cmd.pop_back();
    h.command = cmd.substr(0, 200);
    out.push_back(std::move(h));
  }
  return out;
}

std::string describe_holders(std::uint16_t port) {
  std::vector<unsigned> uids;
  auto holders = listening_holders(port, &uids);
  if (holders.empty()) {
    if (uids.empty()) return "nobody listens on port " + std::to_string(port);
    return "a process of " + user_name(uids.front()) + " listens on port " + std::to_string(port) +
           " (its pid is not visible to us)";
  }
  std::string out;
  for (const auto& h : holders) {
    if (!out.empty()) out += "; ";
    out += "pid " + std::to_string(h.pid) + " (" + h.name + ", user " + h.user + ")";
    if (!h.command.empty()) out += ": " + h.command;
  }
  return "port " + std::to_string(port) + " is held by " + out;
}

ownership listener_owner(std::uint16_t port, const std::vector<pid_t>& pids) {
  auto inodes = listening_inodes(port);
  if (inodes.empty()) return ownership::nobody;
  const std::size_t all = inodes.size();
  for (pid_t pid : pids) {
    for (std::uint64_t i : socket_inodes(pid)) {
      inodes.erase(std::remove(inodes.begin(), inodes.end(), i), inodes.end());
    }
  }
  if (inodes.empty()) return ownership::ours;
  // Someone else's listener (whether or not we can see who it is), alone or next to ours.
  return inodes.size() == all ? ownership::foreign : ownership::shared;
}

}  // namespace harness::detail::procnet
