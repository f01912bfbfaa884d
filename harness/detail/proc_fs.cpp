#include "harness/detail/proc_fs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <cstring>

namespace harness::detail::procfs {
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

std::optional<std::uint64_t> fork_count() {
  std::string text;
  if (!read_file("/proc/stat", text, 1 << 16)) return std::nullopt;
  const auto at = text.find("\nprocesses ");
  if (at == std::string::npos) return std::nullopt;
  std::uint64_t n = 0;
  const char* begin = text.data() + at + 11;
  auto r = std::from_chars(begin, text.data() + text.size(), n);
  if (r.ec != std::errc()) return std::nullopt;
  return n;
}

namespace {

// pid_max, and from /proc/loadavg the number of tasks and the last pid handed out.
struct pid_space {
  long pid_max = 0;
  long tasks = 0;
  long last_pid = 0;
};

std::optional<pid_space> read_pid_space() {
  pid_space p;
  std::string text;
  if (!read_file("/proc/sys/kernel/pid_max", text, 64)) return std::nullopt;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (!parse_num(std::string_view(text), p.pid_max)) return std::nullopt;
  if (!read_file("/proc/loadavg", text, 256)) return std::nullopt;
  // "0.12 0.34 0.56 2/345 67890"
  const auto slash = text.find('/');
  if (slash == std::string::npos) return std::nullopt;
  const auto space = text.find(' ', slash);
  if (space == std::string::npos) return std::nullopt;
  std::string_view tasks(text.data() + slash + 1, space - slash - 1);
  std::string_view last(text.data() + space + 1, text.size() - space - 1);
  while (!last.empty() && (last.back() == '\n' || last.back() == ' ')) last.remove_suffix(1);
  if (!parse_num(tasks, p.tasks) || !parse_num(last, p.last_pid)) return std::nullopt;
  return p;
}

// True when no pid at or below the leader's can have been handed out since it was
// forked. A wrap takes at least pid_max - 300 - (pids in use) allocations (pids in
// use are skipped); fewer forks than that since the leader, and the counter not near
// pid_max, rule it out. Margins cover tasks that come and go while we look.
bool pids_above_leader_only(const tree_scope& scope) {
  if (scope.forks_before == 0 || scope.leader <= 0) return false;
  auto forks = fork_count();
  auto space = read_pid_space();
  if (!forks || !space || *forks < scope.forks_before) return false;
  const auto since = static_cast<long>(*forks - scope.forks_before);
  return space->last_pid >= scope.leader && space->last_pid + 1000 < space->pid_max &&
         since + space->tasks + 1300 < space->pid_max;
}

}  // namespace

std::vector<pid_t> find_tree(std::string_view marker, const tree_scope& scope, bool full_scan) {
  const bool above_only = !full_scan && pids_above_leader_only(scope);
  std::string buffer;
  return own_processes(
      [&](pid_t pid) { return pid != scope.leader && (!above_only || pid > scope.leader); },
      [&](pid_t pid) {
        auto info = read_stat(pid);
        if (!info || info->state == 'Z' || info->start_time < scope.start_time) return false;
        return info->pgrp == scope.leader || environ_has(pid, marker, false, buffer);
      });
}

}  // namespace harness::detail::procfs
