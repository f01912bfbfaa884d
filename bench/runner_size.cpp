// runner-size — does starting a server cost more when the runner is big?
//
//   runner-size --heap-mib=N --launcher=harness|fork --iters=K [--out=FILE]
//
// Touches N MiB of heap (so it is resident: a test binary holding gigabytes), then
// starts the fixture server K times and prints one spawn->ready sample (µs) per line:
//   harness   session::try_start in announce mode (HARNESS_READY_FD) + stop
//   fork      the fork-based launch the harness no longer uses, as a baseline: fork()
//             this process, execve the fixture in the child, read PORT= from a pipe
// scripts/bench runs small and big runners of both kinds in alternating rounds, so the
// ratios big/small are taken side by side on the same machine load.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "bench_util.hpp"
#include "harness/session.hpp"

namespace {

// fork + execve of the fixture with a ready pipe; the time until it announces.
double fork_launch() {
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) return -1;
  const auto t0 = bench::clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(ready[1], 3);
    ::setenv("HARNESS_READY_FD", "3", 1);
    const int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 1);
    ::dup2(null, 2);
    const char* argv[] = {bench::fixture_server(), "--port=0", "--announce=ready-fd", nullptr};
    ::execv(argv[0], const_cast<char* const*>(argv));
    ::_exit(127);
  }
  ::close(ready[1]);
  char buf[64];
  const ssize_t n = ::read(ready[0], buf, sizeof buf);
  const double us = bench::micros(bench::clock::now() - t0);
  ::close(ready[0]);
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
  return n > 0 ? us : -1;
}

double harness_launch() {
  const auto t0 = bench::clock::now();
  auto s = harness::session::try_start(
      {.command = {bench::fixture_server(), "--port=0", "--announce=ready-fd"},
       .port = {.mode = harness::port_mode::announce},
       .output = {.log_file = false}});
  const double us = bench::micros(bench::clock::now() - t0);
  if (!s) {
    std::cerr << s.error().message() << "\n";
    return -1;
  }
  s->stop();
  return us;
}

}  // namespace

int main(int argc, char** argv) {
  long heap_mib = 0;
  int iters = 20;
  std::string launcher = "harness", out;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a.rfind("--heap-mib=", 0) == 0) heap_mib = std::strtol(argv[i] + 11, nullptr, 10);
    else if (a.rfind("--iters=", 0) == 0) iters = std::atoi(argv[i] + 8);
    else if (a.rfind("--launcher=", 0) == 0) launcher = std::string(a.substr(11));
    else if (a.rfind("--out=", 0) == 0) out = std::string(a.substr(6));
    else {
      std::cerr << "usage: runner-size --heap-mib=N --launcher=harness|fork --iters=K [--out=FILE]\n";
      return 64;
    }
  }
  // Resident, not just reserved: every page written.
  std::vector<char> heap(static_cast<std::size_t>(heap_mib) << 20);
  for (std::size_t i = 0; i < heap.size(); i += 4096) heap[i] = 1;

  // One untimed start: the harness thread and state directory are created once.
  if (launcher == "harness") harness_launch();
  std::vector<double> samples;
  for (int i = 0; i < iters; ++i) {
    const double us = launcher == "fork" ? fork_launch() : harness_launch();
    if (us < 0) return 1;
    samples.push_back(us);
  }
  std::ofstream file;
  if (!out.empty()) file.open(out, std::ios::app);
  std::ostream& o = out.empty() ? std::cout : file;
  for (double us : samples) o << launcher << "," << heap_mib << "," << us << "," << bench::rss_kib() << "\n";
  return 0;
}
