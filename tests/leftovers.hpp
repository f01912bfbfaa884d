// Leftover checks that do not trust the harness: processes are found by their start
// time and executable (or a token in their command line) straight from /proc, and
// listeners by `ss`. Neither the HARNESS_SESSION marker nor anything the library
// records is used.
#pragma once

#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace harness_test {

// Clock ticks since boot, the unit of the start time in /proc/<pid>/stat.
inline unsigned long long boot_ticks_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  const auto hz = static_cast<unsigned long long>(::sysconf(_SC_CLK_TCK));
  return static_cast<unsigned long long>(ts.tv_sec) * hz +
         static_cast<unsigned long long>(ts.tv_nsec) * hz / 1'000'000'000ULL;
}

struct seen_process {
  pid_t pid = 0;
  std::string exe;      // file name of /proc/<pid>/exe
  std::string exe_path; // /proc/<pid>/exe in full
  std::string cmdline;  // what /proc/<pid>/cmdline says now (a title may replace it)
};

namespace leftovers_detail {
inline std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// State and start time from /proc/<pid>/stat; false when gone.
inline bool stat_of(pid_t pid, char& state, unsigned long long& start) {
  const std::string text = read_all("/proc/" + std::to_string(pid) + "/stat");
  const auto close = text.rfind(')');
  if (close == std::string::npos || close + 2 >= text.size()) return false;
  std::istringstream in(text.substr(close + 2));
  std::string field;
  in >> state;
  for (int i = 4; i <= 22; ++i) {
    if (!(in >> field)) return false;
  }
  start = std::stoull(field);
  return true;
}

template <class Match>
std::vector<seen_process> scan(Match match) {
  std::vector<seen_process> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = std::stoi(name);
    if (pid == ::getpid()) continue;
    char state = '?';
    unsigned long long start = 0;
    if (!stat_of(pid, state, start) || state == 'Z' || state == 'X') continue;
    seen_process p;
    p.pid = pid;
    std::error_code ec;
    p.exe_path = std::filesystem::read_symlink(e.path() / "exe", ec).string();
    p.exe = std::filesystem::path(p.exe_path).filename().string();
    p.cmdline = read_all(e.path().string() + "/cmdline");
    for (char& c : p.cmdline) {
      if (c == '\0') c = ' ';
    }
    if (match(p, start)) out.push_back(std::move(p));
  }
  return out;
}
}  // namespace leftovers_detail

// The file a program name runs, with every symlink resolved, as /proc/<pid>/exe shows
// it (Debian's redis-server is a link to redis-check-rdb). Looked up in PATH and in
// /usr/sbin; empty when not found.
inline std::string executable_of(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = std::string(path != nullptr ? path : "/usr/bin:/bin") + ":/usr/sbin:/sbin";
  for (std::size_t start = 0; start <= dirs.size();) {
    auto end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::error_code ec;
    const auto candidate = std::filesystem::path(dirs.substr(start, end - start)) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return std::filesystem::canonical(candidate, ec).string();
    start = end + 1;
  }
  return {};
}

// Live processes started at or after `since` (boot_ticks_now() taken before the test
// started them) that run one of the programs `names` (found as executable_of() does).
inline std::vector<seen_process> started_since(unsigned long long since,
                                               const std::vector<std::string>& names) {
  std::vector<std::string> files;
  for (const auto& n : names) {
    if (auto f = executable_of(n); !f.empty()) files.push_back(f);
  }
  return leftovers_detail::scan([&](const seen_process& p, unsigned long long start) {
    if (start < since) return false;
    for (const auto& f : files) {
      if (p.exe_path == f || p.exe_path == f + " (deleted)") return true;
    }
    return false;
  });
}

// Live processes of executable `exe` whose command line (or title) contains `token`.
inline std::vector<seen_process> with_token(const std::string& token, const std::string& exe = "fixture-server") {
  return leftovers_detail::scan([&](const seen_process& p, unsigned long long) {
    return (p.exe == exe || p.exe == exe + " (deleted)") && p.cmdline.find(token) != std::string::npos;
  });
}

// How many TCP sockets listen on any of `ports`, as `ss` sees them (-1: ss failed).
inline int listeners_on(const std::vector<std::uint16_t>& ports) {
  if (ports.empty()) return 0;
  std::string filter;
  for (auto p : ports) filter += std::string(filter.empty() ? "" : " or ") + "sport = :" + std::to_string(p);
  const std::string cmd = "ss -Htln '( " + filter + " )' 2>/dev/null";
  FILE* f = ::popen(cmd.c_str(), "r");
  if (f == nullptr) return -1;
  int lines = 0;
  char buf[512];
  while (std::fgets(buf, sizeof buf, f) != nullptr) ++lines;
  return ::pclose(f) == 0 ? lines : -1;
}

inline std::string describe(const std::vector<seen_process>& ps) {
  std::string out;
  for (const auto& p : ps) out += "\n  pid " + std::to_string(p.pid) + " (" + p.exe + "): " + p.cmdline;
  return out;
}

// Re-evaluates `done` with a bounded backoff (1 ms doubling to 20 ms) until it holds or
// `deadline` passes; returns its last value. It checks a deadline after the fact ("gone
// within 2 s"); it is not how a test waits for an event.
template <class F>
bool holds_within(std::chrono::steady_clock::time_point deadline, F done) {
  auto delay = std::chrono::milliseconds(1);
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(20));
  }
}

}  // namespace harness_test
