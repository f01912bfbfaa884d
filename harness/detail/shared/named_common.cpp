#include "harness/detail/shared/named_common.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <exception>
#include <thread>

#include <nlohmann/json.hpp>

#include "harness/detail/shared/json_number.hpp"

#include "harness/detail/os/private_dir.hpp"
#include "harness/detail/os/proc_fs.hpp"
#include "harness/detail/shared/spec_json.hpp"

namespace harness::detail::named {

using json = nlohmann::ordered_json;

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 64 || name[0] == '.' || name[0] == '-') return false;
  // Not a name that reads like one of a name's files ("x.json" would own "x.json.json").
  for (std::string_view suffix : {".json", ".lock", ".log"}) {
    if (name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix) return false;
  }
  if (name.find(".json.tmp") != std::string_view::npos) return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

result<std::filesystem::path> servers_dir() {
  // A name is one server per network namespace (its port, and the keeper's abstract
  // socket, belong to one): each namespace has a directory of its own.
  auto dir = state_subdir("servers");
  if (!dir) return dir;
  struct stat st {};
  const std::string ns = ::stat("/proc/self/ns/net", &st) == 0 ? std::to_string(st.st_ino) : "unknown";
  const std::filesystem::path sub = *dir / ("net-" + ns);
  if (auto ok = ensure_private_dir(sub); !ok) return std::move(ok).error();
  return sub;
}

std::optional<std::string> holder_problem(pid_t pid) {
  if (pid <= 1) return "pid " + std::to_string(pid) + " never ends: the server would outlive every run";
  auto st = procfs::read_stat(pid);
  if (!st || st->state == 'Z' || st->state == 'X') return "process " + std::to_string(pid) + " is not running";
  if (pid == 2 || st->ppid == 2) return "pid " + std::to_string(pid) + " is a kernel thread";
  auto uid = procfs::owner(pid);
  if (!uid || *uid != ::getuid()) return "process " + std::to_string(pid) + " belongs to another user";
  return std::nullopt;
}

pid_t peer_pid(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  return ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 ? cred.pid : 0;
}

std::filesystem::path lock_path(const std::filesystem::path& dir, std::string_view name) {
  return dir / (std::string(name) + ".lock");
}
std::filesystem::path record_path(const std::filesystem::path& dir, std::string_view name) {
  return dir / (std::string(name) + ".json");
}
std::filesystem::path keeper_log_path(const std::filesystem::path& dir, std::string_view name) {
  return dir / (std::string(name) + ".log");
}

std::string socket_name(const std::filesystem::path& dir, std::string_view name) {
  return "serve-harness/named/" + std::to_string(::getuid()) + "/" +
         fingerprint(dir.string() + '\n' + std::string(name));
}

std::string to_json(const record& r) {
  json users = json::array();
  for (const auto& u : r.users) users.push_back({{"pid", u.pid}, {"start", u.start}, {"holds", u.holds}});
  const json j = {
      {"name", r.name},
      {"phase", r.phase},
      {"keeper_pid", r.keeper_pid},
      {"keeper_start", r.keeper_start},
      {"pid", r.pid},
      {"host", r.host},
      {"port", r.port},
      {"endpoint", r.endpoint},
      {"fingerprint", r.fingerprint},
      {"command", r.command},
      {"users", users},
      {"keep_warm_ms", r.keep_warm_ms ? json(*r.keep_warm_ms) : json()},
      {"created_ms", r.created_ms},
      {"ready_ms", r.ready_ms},
      {"idle_since_ms", r.idle_since_ms},
      {"log", r.log},
      {"exit_status", r.exit_status},
      {"output_tail", r.output_tail},
  };
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::optional<record> parse_record(std::string_view text) {
  try {
    const json j = json::parse(text);
    record r;
    r.name = j.at("name").get<std::string>();
    r.phase = j.at("phase").get<std::string>();
    r.keeper_pid = json_integer<pid_t>(j.at("keeper_pid"));
    r.keeper_start = json_integer<std::uint64_t>(j.at("keeper_start"));
    r.pid = json_integer<pid_t>(j.at("pid"));
    r.host = j.at("host").get<std::string>();
    r.port = json_integer<std::uint16_t>(j.at("port"));
    r.endpoint = j.at("endpoint").get<std::string>();
    r.fingerprint = j.at("fingerprint").get<std::string>();
    r.command = j.at("command").get<std::string>();
    for (const auto& u : j.at("users")) {
      r.users.push_back({json_integer<pid_t>(u.at("pid")), json_integer<std::uint64_t>(u.at("start")), json_integer<int>(u.at("holds"))});
    }
    if (const auto& k = j.at("keep_warm_ms"); !k.is_null()) r.keep_warm_ms = json_integer<std::int64_t>(k);
    r.created_ms = json_integer<std::int64_t>(j.at("created_ms"));
    r.ready_ms = json_integer<std::int64_t>(j.at("ready_ms"));
    r.idle_since_ms = json_integer<std::int64_t>(j.at("idle_since_ms"));
    r.log = j.at("log").get<std::string>();
    r.exit_status = j.at("exit_status").get<std::string>();
    r.output_tail = j.at("output_tail").get<std::string>();
    if (r.keeper_pid <= 0 || !valid_name(r.name)) return std::nullopt;
    return r;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

record_state read_record(const std::filesystem::path& path, record& out) {
  unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (!fd) return errno == ENOENT ? record_state::missing : record_state::corrupt;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::getuid() ||
      st.st_size > 1024 * 1024) {
    return record_state::corrupt;
  }
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(fd.get(), text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  text.resize(got);
  auto r = parse_record(text);
  if (!r) return record_state::corrupt;
  out = std::move(*r);
  return record_state::ok;
}

bool write_record(const std::filesystem::path& path, const record& r) {
  const std::string text = to_json(r) + "\n";
  const std::filesystem::path tmp = path.string() + ".tmp" + std::to_string(::getpid());
  ::unlink(tmp.c_str());
  unique_fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return false;
  const bool ok = ::write(fd.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size());
  fd.reset();
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

unique_fd open_lock(const std::filesystem::path& path) {
  unique_fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600));
  if (!fd) return fd;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::getuid() || st.st_nlink != 1) {
    errno = EPERM;
    return unique_fd();
  }
  return fd;
}

bool lock_until(int fd, std::chrono::steady_clock::time_point deadline) {
  auto pause = std::chrono::milliseconds(1);
  for (;;) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return true;
    if (errno != EWOULDBLOCK && errno != EINTR) return false;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    // flock() cannot wait with a deadline; the holder's work takes milliseconds to
    // seconds, so re-trying every few milliseconds (at most 50) costs nothing.
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(pause, deadline - now));
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
}

bool lock_is_held(const std::filesystem::path& path) {
  unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (!fd) return false;
  if (::flock(fd.get(), LOCK_SH | LOCK_NB) == 0) return false;
  return errno == EWOULDBLOCK;
}

namespace {
socklen_t make_address(const std::string& socket, sockaddr_un& addr) {
  addr = {};
  addr.sun_family = AF_UNIX;
  const std::size_t n = std::min(socket.size(), sizeof addr.sun_path - 1);
  std::memcpy(addr.sun_path + 1, socket.data(), n);  // sun_path[0] = '\0': abstract
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n);
}
}  // namespace

result<unique_fd> connect_keeper(const std::string& socket) {
  unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return make_system_failure(errno, "socket");
  sockaddr_un addr;
  const socklen_t len = make_address(socket, addr);
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), len);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    if (errno == ECONNREFUSED || errno == ENOENT) return unique_fd();
    if (errno == EAGAIN) {
      // A full backlog: the keeper lives but does not accept (stopped, wedged).
      return make_failure(errc::timeout, "the keeper's socket (@" + socket + ") accepts no connection");
    }
    return make_system_failure(errno, "connect to the keeper of a shared server");
  }
  ucred cred{};
  socklen_t clen = sizeof cred;
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0) {
    return make_system_failure(errno, "SO_PEERCRED");
  }
  if (cred.uid != ::getuid()) {
    return make_failure(errc::unsafe_state_dir, "the socket of this shared server's name (@" + socket +
                                                    ") is held by process " + std::to_string(cred.pid) +
                                                    " of user " + std::to_string(cred.uid) + ", not by us");
  }
  return fd;
}

unique_fd listen_keeper(const std::string& socket) {
  unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return fd;
  sockaddr_un addr;
  const socklen_t len = make_address(socket, addr);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), len) != 0 || ::listen(fd.get(), 128) != 0) {
    const int err = errno;
    fd.reset();
    errno = err;
  }
  return fd;
}

std::optional<std::string> read_line(int fd, std::string& buffer, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    if (const auto nl = buffer.find('\n'); nl != std::string::npos) {
      std::string line = buffer.substr(0, nl);
      buffer.erase(0, nl + 1);
      return line;
    }
    if (buffer.size() > 4 * 1024 * 1024) return std::nullopt;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
    const int rc = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 3'600'000)));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) return std::nullopt;
    char chunk[4096];
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return std::nullopt;
    buffer.append(chunk, static_cast<std::size_t>(n));
  }
}

bool write_line(int fd, std::string_view line) {
  std::string text(line);
  text.push_back('\n');
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::send(fd, text.data() + done, text.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, 5000) <= 0) return false;
      continue;
    }
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::uint64_t start_time(pid_t pid) {
  auto st = procfs::read_stat(pid);
  if (!st || st->state == 'Z' || st->state == 'X') return 0;
  return st->start_time;
}

bool alive(pid_t pid, std::uint64_t start) { return pid > 0 && start != 0 && start_time(pid) == start; }

}  // namespace harness::detail::named
