#include "harness/detail/session/report.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "harness/session_info.hpp"

namespace harness::detail {

namespace {
// The runner's program name, in full (/proc/self/comm stops at 15 characters).
std::string runner_name() {
  std::ifstream in("/proc/self/cmdline");
  std::string argv0;
  std::getline(in, argv0, '\0');
  const auto slash = argv0.rfind('/');
  return slash == std::string::npos ? argv0 : argv0.substr(slash + 1);
}
}  // namespace

void append_report(const session_info& info, const exit_status& final_status, long long stop_ms) {
  const char* path = std::getenv("HARNESS_REPORT");
  if (path == nullptr || *path == '\0') return;

  nlohmann::ordered_json attempts = nlohmann::ordered_json::array();
  for (const auto& a : info.attempts) {
    attempts.push_back({{"port", a.port},
                        {"outcome", to_string(a.outcome)},
                        {"reason", a.reason},
                        {"ms", a.duration.count()}});
  }
  const nlohmann::ordered_json line = {
      {"runner", runner_name()},
      {"runner_pid", static_cast<std::int64_t>(::getpid())},
      {"session", info.session},
      {"name", info.name},
      {"command", info.command},
      {"mode", to_string(info.mode)},
      {"endpoint", info.endpoint},
      {"port", info.port},
      {"pid", info.pid},
      {"daemonized", info.daemonized},
      {"ownership", info.ownership},
      {"attempts", std::move(attempts)},
      {"ready_ms", info.ready_time.count()},
      {"status", final_status.str()},
      {"stop_ms", stop_ms},
  };
  // Invalid UTF-8 in a server's command is replaced rather than thrown about.
  std::string text = line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  text.push_back('\n');

  // O_NONBLOCK: a FIFO without a reader fails at once (ENXIO) instead of hanging stop().
  const int fd = ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
  const ssize_t n = fd >= 0 ? ::write(fd, text.data(), text.size()) : -1;
  const bool ok = n == static_cast<ssize_t>(text.size());
  const int err = n < 0 ? errno : ENOSPC;
  if (n > 0 && !ok) {
    // Cut short (the disk is full): the torn line must not stay, or the next one would be
    // glued to it. One write() per line, so ours are the last n bytes.
    const off_t end = ::lseek(fd, 0, SEEK_CUR);
    if (end >= n) ::ftruncate(fd, end - n);
  }
  if (fd >= 0) ::close(fd);
  static std::atomic<bool> warned{false};
  if (!ok && !warned.exchange(true)) {
    std::fprintf(stderr, "serve-harness: cannot append to HARNESS_REPORT=%s: %s\n", path,
                 std::strerror(err));
  }
}

}  // namespace harness::detail
