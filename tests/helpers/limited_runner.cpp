// A runner that may not start many processes: fork() and clone() fail with EAGAIN as
// RLIMIT_NPROC is reached. Used by tests/reliability/r14_failing_syscalls_test.cpp.
//
//   limited-runner <uid> <extra tasks> <warm 0|1> <fixture-server> <token>
//
// Started as root, it becomes <uid> (no capabilities left, so the limit applies; the
// test gives each run a uid nothing else uses). Cold (warm=0), the limited start is the
// first: the harness thread and the spare supervisor's thread are started under the
// limit. Warm, it first turns spare supervisors off (so that no fd comes and goes in the
// background) and starts and stops one session (the harness thread exists then).
// Then it lowers RLIMIT_NPROC to the tasks <uid> has now plus <extra tasks>, starts one
// lease-mode session of `fixture-server --print=<token> --port={port}`, raises the limit
// again and stops the session. It prints
//   RESULT ok | RESULT error <errc value> <message> | RESULT threw <what>
//   FDS <before> <after>   (warm runs: open fds around the limited start)
//   LEFT <n>               processes with <token> in their command line afterwards
//   ZOMBIES <n>            unreaped children afterwards
// and exits 0 (64 on bad arguments, 70 when it cannot become <uid>).
// HARNESS_STATE_DIR and HARNESS_LOG_DIR must name directories <uid> owns.
#include <grp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "harness/detail/os/proc_fs.hpp"
#include "harness/detail/proc/spawn_posix.hpp"
#include "harness/session.hpp"
#include "leftovers.hpp"

namespace {

// Tasks (threads of all processes) whose real uid is `uid`: what RLIMIT_NPROC counts.
long tasks_of(uid_t uid) {
  long total = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(e.path() / "status");
    long threads = 0;
    bool ours = false;
    for (std::string line; std::getline(in, line);) {
      std::istringstream fields(line);
      std::string key;
      fields >> key;
      if (key == "Uid:") {
        long real = -1;
        fields >> real;
        ours = real == static_cast<long>(uid);
      } else if (key == "Threads:") {
        fields >> threads;
      }
    }
    if (ours) total += threads;
  }
  return total;
}

std::size_t open_fds() {
  std::size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)e;
    ++n;
  }
  return n;
}

std::size_t zombies() {
  std::size_t n = 0;
  const std::string me = std::to_string(::getpid());
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    // A process that ends while it is read gives ESRCH: read it with read(2), not an
    // istreambuf_iterator (whose filebuf throws for a read error).
    const std::string text = harness::detail::procfs::read_file((e.path() / "stat").string());
    const auto close = text.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(text.substr(close + 2));
    std::string state, ppid;
    rest >> state >> ppid;
    if (state == "Z" && ppid == me) ++n;
  }
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::cerr << "usage: limited-runner <uid> <extra tasks> <warm 0|1> <fixture-server> <token>\n";
    return 64;
  }
  const auto uid = static_cast<uid_t>(std::stoul(argv[1]));
  const long extra = std::stol(argv[2]);
  const bool warm = std::string(argv[3]) == "1";
  const std::string fixture = argv[4];
  const std::string token = argv[5];
  if (::setgroups(0, nullptr) != 0 || ::setgid(uid) != 0 || ::setuid(uid) != 0) {
    std::perror("limited-runner: cannot become the given uid");
    return 70;
  }
  const harness::server_spec spec{.command = {fixture, "--print=" + token, "--port={port}"}};
  std::size_t fds_before = 0;
  if (warm) {
    // No spare supervisor, in the background or kept ready: the fd count is exact.
    harness::detail::use_spare_supervisors_for_testing(false);
    auto s = harness::session::try_start(spec);
    if (!s) {
      std::cout << "WARM-UP FAILED " << s.error().message() << std::endl;
      return 0;
    }
    *s = harness::session{};
    fds_before = open_fds();
  }

  rlimit old{};
  ::getrlimit(RLIMIT_NPROC, &old);
  rlimit low = old;
  low.rlim_cur = static_cast<rlim_t>(tasks_of(uid) + extra);
  ::setrlimit(RLIMIT_NPROC, &low);
  std::string outcome;
  harness::session session;
  try {
    auto s = harness::session::try_start(spec);
    if (s) {
      outcome = "ok";
      session = std::move(*s);
    } else {
      std::string message = s.error().message();
      message = message.substr(0, message.find('\n'));
      outcome = "error " + std::to_string(static_cast<int>(s.error().code.value())) + " " + message;
    }
  } catch (const std::exception& e) {
    outcome = std::string("threw ") + e.what();
  }
  ::setrlimit(RLIMIT_NPROC, &old);
  std::cout << "RESULT " << outcome << std::endl;
  session = harness::session{};  // stopped, its lease and log file given back
  if (warm) std::cout << "FDS " << fds_before << " " << open_fds() << std::endl;
  std::cout << "LEFT " << harness_test::with_token(token).size() << std::endl;
  std::cout << "ZOMBIES " << zombies() << std::endl;
  return 0;
}
