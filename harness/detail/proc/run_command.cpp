#include "harness/detail/proc/run_command.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "harness/detail/os/pidfd.hpp"
#include "harness/detail/os/unique_fd.hpp"

extern char** environ;

namespace harness::detail {

namespace {

std::string last_line_of(const std::string& text) {
  auto end = text.find_last_not_of("\r\n \t");
  if (end == std::string::npos) return {};
  const auto start = text.rfind('\n', end);
  std::string line = text.substr(start == std::string::npos ? 0 : start + 1, end + 1 - (start == std::string::npos ? 0 : start + 1));
  if (line.size() > 200) line = line.substr(0, 200) + "...";
  return line;
}

}  // namespace

result<command_run> run_command(const std::vector<std::string>& argv, std::chrono::milliseconds limit) {
  if (argv.empty() || argv[0].empty()) return make_failure(errc::empty_argv, "the probe's command is empty");
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return make_system_failure(errno, "pipe2");
  unique_fd read_end(pipe_fds[0]);
  unique_fd write_end(pipe_fds[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, write_end.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, write_end.get(), 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  sigset_t all;
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, argv[0].c_str(), &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc == ENOENT) return make_failure(errc::program_not_found, argv[0] + " (not a file, or not found on PATH)");
  if (rc == EACCES) return make_failure(errc::program_not_executable, argv[0]);
  if (rc != 0) return make_system_failure(rc, "start " + argv[0]);
  write_end.reset();

  command_run run;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  bool open = true;
  while (open) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{read_end.get(), POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 3'600'000)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    char buf[4096];
    const ssize_t got = ::read(read_end.get(), buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      open = false;  // every writer is gone: it has exited (or closed its output)
      break;
    }
    if (run.output.size() < 64 * 1024) run.output.append(buf, static_cast<std::size_t>(std::min<ssize_t>(got, 64 * 1024)));
  }
  // Its output is closed (or the time is up): reap it, within what is left.
  int status = 0;
  pid_t done = 0;
  if (!open) {
    unique_fd exited(pidfd::open(pid));
    for (;;) {
      done = ::waitpid(pid, &status, WNOHANG);
      if (done == pid || (done < 0 && errno != EINTR)) break;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      // Wait for its exit on the pidfd; without one (old kernels), look again in 1 ms.
      pollfd p{exited.get(), POLLIN, 0};
      ::poll(&p, exited ? 1 : 0, exited ? static_cast<int>(std::min<long long>(left.count(), 3'600'000)) : 1);
    }
  }
  if (done == pid) {
    run.status = exit_status::from_wait_status(status);
  } else {
    ::kill(-pid, SIGKILL);
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  run.last_line = last_line_of(run.output);
  return run;
}

}  // namespace harness::detail
