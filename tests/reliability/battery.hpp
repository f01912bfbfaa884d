// What the reliability tests (RELIABILITY.md, rows R1-R20) share: a loop bounded by a
// count and a time budget, a seeded random source that a failure names, unique tokens
// for leftover checks, and a process placed on a pid of our choosing (for the pid-reuse
// rows).
//
// Leftovers are counted as tests/leftovers.hpp does: by a token in the command line or
// title of each process we start, never by the harness's marker or bookkeeping.
#pragma once

#include <linux/sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "leftovers.hpp"
#include "support.hpp"

namespace harness_test {

using std::chrono::steady_clock;

// The seed of a test's random choices: $HARNESS_TEST_SEED when set (to replay a
// failure), else a fresh one. Printed, and named in every failure via SCOPED_TRACE.
inline unsigned test_seed() {
  if (const char* s = std::getenv("HARNESS_TEST_SEED"); s != nullptr && *s != '\0') {
    return static_cast<unsigned>(std::strtoul(s, nullptr, 10));
  }
  return std::random_device{}();
}

// Runs body(round) for round = 0, 1, ... up to `count` times, and starts no new round
// once `budget` has passed since the first one (at least `min_rounds` run whatever
// the time). Stops early after a fatal failure. Returns the rounds run and prints it.
template <class Body>
int bounded_rounds(int count, std::chrono::milliseconds budget, int min_rounds, Body body) {
  const auto start = steady_clock::now();
  int done = 0;
  while (done < count) {
    if (done >= min_rounds && steady_clock::now() - start >= budget) break;
    body(done);
    ++done;
    if (testing::Test::HasFatalFailure()) break;
  }
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - start);
  std::cout << done << " of " << count << " rounds in " << took.count() << " ms\n";
  testing::Test::RecordProperty("rounds", done);
  return done;
}

// A token no other test (or run) uses: for titles and command lines that leftover checks
// look for.
inline std::string unique_token(const std::string& what) {
  return "rel-" + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}());
}

// No fixture-server whose command line or title holds `token` within `within`;
// otherwise a failure naming `when` and what is left.
inline void expect_gone(const std::string& token, std::chrono::milliseconds within, const std::string& when) {
  std::vector<seen_process> left;
  EXPECT_TRUE(holds_within(steady_clock::now() + within, [&] {
    left = with_token(token);
    return left.empty();
  })) << when << ": still running after " << within.count() << " ms" << describe(left);
}

// Sets an environment variable for its lifetime (then restores it).
class scoped_env {
 public:
  scoped_env(std::string name, const std::string& value) : name_(std::move(name)) {
    if (const char* old = std::getenv(name_.c_str())) old_ = old;
    ::setenv(name_.c_str(), value.c_str(), 1);
  }
  ~scoped_env() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  scoped_env(const scoped_env&) = delete;
  scoped_env& operator=(const scoped_env&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

// fixture-server with `args`.
inline std::vector<std::string> fx(std::vector<std::string> args) {
  args.insert(args.begin(), fixture_server());
  return args;
}

// --- a process on a pid of our choosing --------------------------------------------

// A child of this process that runs `argv` (execv: a full path) with exactly the pid
// `pid`, made with clone3's set_tid (root only). -1 with errno set when the pid is taken
// (EEXIST) or the kernel refuses. The child dies with us (PDEATHSIG); reap it with
// end_occupant().
inline pid_t spawn_on_pid(pid_t pid, const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  pid_t tids[1] = {pid};
  clone_args ca{};
  ca.exit_signal = SIGCHLD;
  ca.set_tid = reinterpret_cast<std::uint64_t>(tids);
  ca.set_tid_size = 1;
  const long rc = ::syscall(SYS_clone3, &ca, sizeof ca);
  if (rc == 0) {
    // The child of a raw clone in a threaded program: system calls only, then exec.
    ::syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (::syscall(SYS_getppid) != parent) ::syscall(SYS_exit_group, 127);
    ::syscall(SYS_execve, args[0], args.data(), environ);
    ::syscall(SYS_exit_group, 127);
  }
  return static_cast<pid_t>(rc);
}

// Ends and reaps an occupant (SIGKILL through a pidfd, so nothing else is hit).
inline void end_occupant(pid_t pid) {
  const int fd = open_pidfd(pid);
  if (fd >= 0) {
    ::syscall(SYS_pidfd_send_signal, fd, SIGKILL, nullptr, 0);
    ::close(fd);
  }
  ::waitpid(pid, nullptr, 0);
}

// True while `pid` is alive and not stopped (a SIGSTOP would leave it alive but 'T').
inline bool alive_and_running(pid_t pid) {
  const std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return false;
  const char state = stat[close + 2];
  return state != 'Z' && state != 'X' && state != 'T' && state != 't';
}

// Whether spawn_on_pid() works here (root and clone3 with set_tid): probed on our own
// pid, which is taken (EEXIST) exactly when the kernel would honour the request.
inline bool can_choose_pids() {
  static const bool ok = [] {
    const pid_t r = spawn_on_pid(::getpid(), {"/bin/true"});
    if (r > 0) ::waitpid(r, nullptr, 0);  // cannot happen; never leave it
    return r < 0 && errno == EEXIST;
  }();
  return ok;
}

// An unrelated process on each of `pids` (a `setsid sleep` that leads a session and a
// process group of that number, so a signal to the group would reach it too). A pid
// that is not free fails the test: the pids given are those the harness is done with.
inline std::vector<pid_t> occupy(const std::vector<pid_t>& pids) {
  std::vector<pid_t> out;
  for (pid_t pid : pids) {
    if (std::find(out.begin(), out.end(), pid) != out.end()) continue;
    const pid_t got = spawn_on_pid(pid, {"/usr/bin/setsid", "/bin/sleep", "600"});
    if (got < 0) {
      ADD_FAILURE() << "pid " << pid << " is not free: " << std::strerror(errno);
      continue;
    }
    out.push_back(got);
  }
  // setsid has run (the process group is its own) before anything may poke at it.
  for (pid_t pid : out) {
    EXPECT_TRUE(holds_within(steady_clock::now() + std::chrono::seconds(5), [&] {
      return read_text("/proc/" + std::to_string(pid) + "/comm") == "sleep\n";
    })) << "occupant " << pid << " did not start";
  }
  return out;
}

}  // namespace harness_test
