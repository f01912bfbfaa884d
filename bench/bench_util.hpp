// bench/bench_util.hpp — small helpers shared by the benchmark programs (not part of
// the library): process metrics from /proc, percentiles, CSV output, and a plain
// posix_spawn of the fixture server for the "floor" and the naive baseline, which
// must not use any harness code.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace bench {

using clock = std::chrono::steady_clock;

inline double micros(clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

// The fixture server, from CMake ($<TARGET_FILE:fixture-server>).
inline const char* fixture_server() { return HARNESS_FIXTURE_SERVER; }

// Resident set size of this process in KiB (VmRSS), 0 when unknown.
inline long rss_kib(pid_t pid = 0) {
  std::ifstream in(pid == 0 ? std::string("/proc/self/status")
                            : "/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return 0;
}

// Open fds of this process (not counting the directory stream used to count them).
inline int open_fds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n - 1;
}

// Threads of this process.
inline int thread_count() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::atoi(line.c_str() + 8);
  }
  return -1;
}

// Nearest-rank percentile (q in [0, 1]) of unsorted samples; NaN when empty.
inline double percentile(std::vector<double> v, double q) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::clamp<std::size_t>(rank, 1, v.size()) - 1];
}

// Writes one value per line (microseconds, in the order measured).
inline bool write_samples(const std::string& path, const std::vector<double>& v) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return false;
  for (double x : v) std::fprintf(f, "%.3f\n", x);
  return std::fclose(f) == 0;
}

// environ plus extra "NAME=value" entries, as a null-terminated array. The strings
// live as long as the object.
class env_block {
 public:
  explicit env_block(std::vector<std::string> extra) : extra_(std::move(extra)) {
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string_view entry(*e);
      bool replaced = false;
      for (const auto& x : extra_) {
        const auto eq = x.find('=');
        if (entry.substr(0, eq + 1) == std::string_view(x).substr(0, eq + 1)) replaced = true;
      }
      if (!replaced) ptrs_.push_back(*e);
    }
    for (auto& x : extra_) ptrs_.push_back(x.data());
    ptrs_.push_back(nullptr);
  }
  char* const* get() const { return ptrs_.data(); }

 private:
  std::vector<std::string> extra_;
  std::vector<char*> ptrs_;
};

class argv_block {
 public:
  explicit argv_block(std::vector<std::string> args) : args_(std::move(args)) {
    for (auto& a : args_) ptrs_.push_back(a.data());
    ptrs_.push_back(nullptr);
  }
  char* const* get() const { return ptrs_.data(); }

 private:
  std::vector<std::string> args_;
  std::vector<char*> ptrs_;
};

// waitpid that retries EINTR; returns the raw status or -1.
inline int wait_child(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return status;
}

}  // namespace bench
