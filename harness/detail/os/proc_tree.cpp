#include "harness/detail/os/proc_tree.hpp"

#include <algorithm>

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace harness::detail::proctree {
namespace {

std::atomic<bool> child_lists_disabled{false};

// Reads a small /proc file into buf (NUL-terminated); the length, or -1.
long read_small(const char* path, char* buf, std::size_t size) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  std::size_t total = 0;
  for (;;) {
    const ssize_t r = ::read(fd, buf + total, size - 1 - total);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    total += static_cast<std::size_t>(r);
    if (total == size - 1) break;
  }
  ::close(fd);
  buf[total] = '\0';
  return static_cast<long>(total);
}

bool parse_pid(const char* s, pid_t& out) {
  if (*s == '\0') return false;
  long v = 0;
  for (; *s != '\0'; ++s) {
    if (*s < '0' || *s > '9') return false;
    v = v * 10 + (*s - '0');
    if (v > 0x3fffffff) return false;
  }
  out = static_cast<pid_t>(v);
  return v > 0;
}

// Every process's parent, from one pass over /proc (kernels without child lists).
void scan_children(pid_t parent, std::vector<pid_t>& out) {
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return;
  while (const dirent* d = ::readdir(dir)) {
    pid_t pid = 0;
    if (!parse_pid(d->d_name, pid)) continue;
    brief b;
    if (read_brief(pid, b) && b.ppid == parent) out.push_back(pid);
  }
  ::closedir(dir);
}

}  // namespace

void parse_pid_list(const char* text, std::vector<pid_t>& out) {
  long v = 0;
  bool in = false;
  for (const char* p = text;; ++p) {
    if (*p >= '0' && *p <= '9') {
      // Past the largest pid a number stays out of range instead of overflowing.
      if (v <= 0x3fffffff) v = v * 10 + (*p - '0');
      in = true;
      continue;
    }
    if (in && v > 0 && v <= 0x3fffffff) out.push_back(static_cast<pid_t>(v));
    v = 0;
    in = false;
    if (*p == '\0') break;
  }
}

bool read_brief(pid_t pid, brief& out) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  char buf[1024];
  const long n = read_small(path, buf, sizeof buf);
  if (n <= 0) return false;
  return parse_brief(buf, out);
}

bool parse_brief(const char* text, brief& out) {
  // The name is in parentheses and may hold anything: count fields after the last ')'.
  const char* p = std::strrchr(text, ')');
  if (p == nullptr || p[1] != ' ') return false;
  p += 2;
  out.state = *p;
  // Fields after the name: 3 state, 4 ppid, ... 22 starttime.
  int field = 3;
  unsigned long long value = 0;
  bool in = false;
  for (;; ++p) {
    if (*p >= '0' && *p <= '9') {
      value = value * 10 + static_cast<unsigned long long>(*p - '0');
      in = true;
      continue;
    }
    if (*p == ' ' || *p == '\0' || *p == '\n') {
      if (field == 4) out.ppid = in ? static_cast<pid_t>(value) : 0;
      if (field == 20) out.threads = in ? static_cast<long>(value) : 0;
      if (field == 22) {
        out.start = value;
        return in;
      }
      if (*p != ' ') return false;
      ++field;
      value = 0;
      in = false;
      continue;
    }
    if (*p == '-') continue;  // a negative field (tty_nr, ...): not one we read
    if (field == 3) continue;
    value = 0;
    in = false;
  }
}

bool has_child_lists() {
  if (child_lists_disabled.load()) return false;
  static const bool present = [] {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/task/%d/children", static_cast<int>(::getpid()),
                  static_cast<int>(::getpid()));
    return ::access(path, R_OK) == 0;
  }();
  return present;
}

void disable_child_lists_for_testing(bool disabled) { child_lists_disabled = disabled; }

void children(pid_t pid, std::vector<pid_t>& out) {
  if (!has_child_lists()) {
    scan_children(pid, out);
    return;
  }
  char path[96];
  std::snprintf(path, sizeof path, "/proc/%d/task", static_cast<int>(pid));
  DIR* dir = ::opendir(path);
  if (dir == nullptr) return;
  // Child lists are small in practice; a very long one is read in a bigger buffer.
  std::string buf(4096, '\0');
  while (const dirent* d = ::readdir(dir)) {
    pid_t tid = 0;
    if (!parse_pid(d->d_name, tid)) continue;
    std::snprintf(path, sizeof path, "/proc/%d/task/%d/children", static_cast<int>(pid),
                  static_cast<int>(tid));
    for (;;) {
      const long n = read_small(path, buf.data(), buf.size());
      if (n < 0) break;
      if (static_cast<std::size_t>(n) < buf.size() - 1) {
        parse_pid_list(buf.c_str(), out);
        break;
      }
      buf.assign(buf.size() * 2, '\0');
    }
  }
  ::closedir(dir);
}

int is_below(pid_t pid, pid_t ancestor) {
  brief b;
  if (!read_brief(pid, b)) return -1;
  for (int depth = 0; depth < 256; ++depth) {
    if (b.ppid == ancestor) return 1;
    if (b.ppid <= 1 || !read_brief(b.ppid, b)) return 0;
  }
  return 0;
}

void descendants(pid_t root, std::vector<pid_t>& out) {
  out.clear();
  std::vector<pid_t> level, next, dead;
  const auto known = [&](pid_t pid) {
    return std::find(out.begin(), out.end(), pid) != out.end() || std::find(dead.begin(), dead.end(), pid) != dead.end();
  };
  children(root, level);
  // A process that exits while the tree is walked hands its children to the root (a
  // subreaper) after the root's list was read: they would be missed (a daemon whose
  // middle process exits just then). So the root's list is read again after each walk,
  // and what is new there is walked too, until nothing is.
  for (int pass = 0; pass < 8 && !level.empty(); ++pass) {
    while (!level.empty()) {
      next.clear();
      for (pid_t pid : level) {
        if (known(pid)) continue;
        brief b;
        if (!read_brief(pid, b) || !b.alive()) {
          dead.push_back(pid);
          continue;
        }
        out.push_back(pid);
        children(pid, next);
      }
      level.swap(next);
    }
    children(root, level);
    std::erase_if(level, known);
  }
}

}  // namespace harness::detail::proctree
