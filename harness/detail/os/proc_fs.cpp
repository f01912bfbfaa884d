#include "harness/detail/os/proc_fs.hpp"

#include <cerrno>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <cstring>

namespace harness::detail::procfs {

std::string read_file(const std::string& path) {
  std::string out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return out;
  char buf[4096];
  while (out.size() < 1024 * 1024) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}
namespace {

bool read_file(const char* path, std::string& out, std::size_t limit) {
  out.clear();
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() >= limit) break;
  }
  ::close(fd);
  return true;
}

template <class T>
bool parse_num(std::string_view s, T& v) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

std::optional<pid_t> pid_of(const char* name) {
  pid_t pid = 0;
  if (!parse_num(std::string_view(name), pid) || pid <= 0) return std::nullopt;
  return pid;
}

}  // namespace

std::optional<stat_info> parse_stat(std::string_view text) {
  // "<pid> (<comm>) <state> <ppid> <pgrp> <session> ... field 22 = starttime".
  // comm may itself contain spaces and parentheses: it ends at the *last* ')'.
  const auto open = text.find('(');
  const auto close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) {
    return std::nullopt;
  }
  stat_info info;
  std::string_view head = text.substr(0, open);
  while (!head.empty() && head.back() == ' ') head.remove_suffix(1);
  if (!parse_num(head, info.pid)) return std::nullopt;
  info.comm = std::string(text.substr(open + 1, close - open - 1));
  std::string_view rest = text.substr(close + 1);
  std::vector<std::string_view> fields;
  while (!rest.empty()) {
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\n')) rest.remove_prefix(1);
    if (rest.empty()) break;
    auto end = rest.find_first_of(" \n");
    fields.push_back(rest.substr(0, end));
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end);
  }
  // fields[0] = state (field 3), fields[19] = starttime (field 22).
  if (fields.size() < 20 || fields[0].size() != 1) return std::nullopt;
  info.state = fields[0][0];
  if (!parse_num(fields[1], info.ppid) || !parse_num(fields[2], info.pgrp) ||
      !parse_num(fields[3], info.session) || !parse_num(fields[19], info.start_time)) {
    return std::nullopt;
  }
  return info;
}

std::optional<stat_info> read_stat(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  std::string text;
  if (!read_file(path, text, 4096)) return std::nullopt;
  return parse_stat(text);
}

std::optional<uid_t> owner(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d", static_cast<int>(pid));
  struct stat st {};
  if (::stat(path, &st) != 0) return std::nullopt;
  return st.st_uid;
}

bool environ_has(pid_t pid, std::string_view entry, bool prefix, std::string& buffer) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/environ", static_cast<int>(pid));
  if (!read_file(path, buffer, 1 << 20)) return false;
  std::string_view env(buffer);
  while (!env.empty()) {
    auto end = env.find('\0');
    std::string_view item = env.substr(0, end);
    if (prefix ? item.substr(0, entry.size()) == entry : item == entry) return true;
    if (end == std::string_view::npos) break;
    env.remove_prefix(end + 1);
  }
  return false;
}

namespace {

// Calls keep(pid) for every process of our uid other than ourselves whose pid passes
// `wanted` (checked before anything is read), collecting the pids it accepts.
template <class Wanted, class Keep>
std::vector<pid_t> own_processes(Wanted wanted, Keep keep) {
  std::vector<pid_t> found;
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return found;
  const pid_t self = ::getpid();
  const uid_t uid = ::getuid();
  const int dfd = ::dirfd(dir);
  while (const dirent* e = ::readdir(dir)) {
    auto pid = pid_of(e->d_name);
    if (!pid || *pid == self || !wanted(*pid)) continue;
    struct stat st {};
    if (::fstatat(dfd, e->d_name, &st, 0) != 0 || st.st_uid != uid) continue;
    if (keep(*pid)) found.push_back(*pid);
  }
  ::closedir(dir);
  return found;
}

}  // namespace

std::vector<pid_t> find_by_environ(std::string_view entry, bool prefix) {
  std::string buffer;
  return own_processes([](pid_t) { return true; },
                       [&](pid_t pid) { return environ_has(pid, entry, prefix, buffer); });
}


}  // namespace harness::detail::procfs
