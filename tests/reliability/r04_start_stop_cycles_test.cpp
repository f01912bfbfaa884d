// R4: 500 start/stop cycles that mix exec failures, instant exits, kills and stops
// during start and whole sessions, while the runner has a foreign SIGCHLD handler that
// reaps any child it can (waitpid(-1, WNOHANG): what a careless library in the runner
// does). Every status is exact, no zombie is left, and the runner's fd count is back to
// where it was.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <atomic>
#include <random>

#include "battery.hpp"
#include "harness/detail/proc/spawn_posix.hpp"
#include "harness/process.hpp"
#include "harness/session.hpp"

namespace {

using namespace std::chrono_literals;
using harness::errc;
using harness::exit_status;
using harness::process;
using harness_test::fx;

std::atomic<int> foreign_reaps{0};

void reap_anything(int) {
  const int saved = errno;
  while (::waitpid(-1, nullptr, WNOHANG) > 0) foreign_reaps.fetch_add(1, std::memory_order_relaxed);
  errno = saved;
}

// Installs reap_anything for SIGCHLD for its lifetime.
class foreign_sigchld_handler {
 public:
  foreign_sigchld_handler() {
    struct sigaction sa {};
    sa.sa_handler = reap_anything;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGCHLD, &sa, &old_);
  }
  ~foreign_sigchld_handler() { ::sigaction(SIGCHLD, &old_, nullptr); }
  foreign_sigchld_handler(const foreign_sigchld_handler&) = delete;
  foreign_sigchld_handler& operator=(const foreign_sigchld_handler&) = delete;

 private:
  struct sigaction old_ {};
};

enum class cycle { bad_exec, not_found, instant_exit, kill_during_start, stop_during_start,
                   session_exit_before_ready, session_killed_during_start, session_served, count };

const char* name_of(cycle c) {
  switch (c) {
    case cycle::bad_exec: return "exec failure";
    case cycle::not_found: return "program not found";
    case cycle::instant_exit: return "instant exit";
    case cycle::kill_during_start: return "SIGKILL during start";
    case cycle::stop_during_start: return "stop during start";
    case cycle::session_exit_before_ready: return "session: exit before ready";
    case cycle::session_killed_during_start: return "session: SIGKILL during start";
    case cycle::session_served: return "session: served and stopped";
    case cycle::count: break;
  }
  return "?";
}

class R04 : public testing::Test {
 protected:
  void SetUp() override {
    // An executable that only execve() can refuse.
    bad_exec_ = (tmp_.path() / "not-a-program").string();
    const int fd = ::open(bad_exec_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0700);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "\x7f" "ELF garbage", 12), 12);
    ::close(fd);
  }
  void TearDown() override { harness::detail::use_spare_supervisors_for_testing(true); }

  // One cycle of kind `c`; `code` is a random exit code and `delay_ms` a random delay of
  // the server before it binds.
  void run(cycle c, int code, int delay_ms, const std::string& token) {
    const std::string delay = "--delay-ms=" + std::to_string(delay_ms);
    switch (c) {
      case cycle::bad_exec: {
        auto r = process::try_spawn({.argv = {bad_exec_}});
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().code, errc::spawn_failed) << r.error().message();
        EXPECT_NE(r.error().message().find("Exec format error"), std::string::npos) << r.error().message();
        return;
      }
      case cycle::not_found: {
        auto r = process::try_spawn({.argv = {(tmp_.path() / "missing").string()}});
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().code, errc::program_not_found) << r.error().message();
        return;
      }
      case cycle::instant_exit: {
        process p = process::spawn({.argv = fx({"--print=" + token, "--exit-before-ready=" + std::to_string(code)})});
        EXPECT_EQ(p.wait_for(10s), exit_status::exited_with(code));
        EXPECT_EQ(p.stop(), exit_status::exited_with(code));
        return;
      }
      case cycle::kill_during_start: {
        process p = process::spawn({.argv = fx({"--print=" + token, delay, "--port=0"})});
        ASSERT_TRUE(p.signal(SIGKILL));
        EXPECT_EQ(p.wait_for(10s), exit_status::killed_by(SIGKILL));
        EXPECT_EQ(p.stop(), exit_status::killed_by(SIGKILL));
        return;
      }
      case cycle::stop_during_start: {
        // The SIGTERM lands before the server's handler is in place (killed by it) or
        // after (it exits 0): either is exact; anything else is not.
        process p = process::spawn({.argv = fx({"--print=" + token, delay, "--port=0"})});
        const exit_status s = p.stop();
        EXPECT_TRUE(s == exit_status::exited_with(0) || s == exit_status::killed_by(SIGTERM)) << s;
        return;
      }
      case cycle::session_exit_before_ready: {
        auto r = harness::session::try_start(
            {.command = fx({"--print=" + token, "--port={port}", "--exit-before-ready=" + std::to_string(code)})});
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().code, errc::exited_before_ready) << r.error().message();
        EXPECT_NE(r.error().message().find("exited with status " + std::to_string(code)), std::string::npos)
            << r.error().message();
        return;
      }
      case cycle::session_killed_during_start: {
        // The server is killed on its first line, while the session waits for it to bind
        // (it never would by itself). Its pid cannot have been reused: the supervisor
        // keeps it until the stop.
        auto r = harness::session::try_start(
            {.command = fx({"--print=" + token, "--delay-ms=60000", "--port={port}"}),
             .output = {.on_line = [](harness::stream, std::string_view line) {
               if (line.rfind("PID ", 0) == 0) ::kill(std::stoi(std::string(line.substr(4))), SIGKILL);
             }}});
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().code, errc::exited_before_ready) << r.error().message();
        EXPECT_NE(r.error().message().find("killed by signal 9"), std::string::npos) << r.error().message();
        return;
      }
      case cycle::session_served: {
        auto r = harness::session::try_start({.command = fx({"--print=" + token, delay, "--port={port}"})});
        ASSERT_TRUE(r) << r.error().message();
        EXPECT_EQ(harness_test::tcp_request(r->port(), "x").value_or("(none)"), "pong: x");
        EXPECT_EQ(r->stop(), exit_status::exited_with(0));
        return;
      }
      case cycle::count: break;
    }
  }

  harness_test::temp_dir tmp_{"harness-r04"};
  // A log directory of our own is never pruned: no thread opens fds in the background.
  const harness_test::scoped_env logs_{"HARNESS_LOG_DIR", (tmp_.path() / "logs").string()};
  std::string bad_exec_;
};

TEST_F(R04, FiveHundredStartStopCyclesWithAForeignSigchldHandler) {
  const unsigned seed = harness_test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  const std::string token = harness_test::unique_token("r04");

  // The baseline: harness thread and log directory in place, no spare supervisor (its
  // fds come and go in the background; off before the first spawn, none is asked for).
  harness::detail::use_spare_supervisors_for_testing(false);
  process::spawn({.argv = fx({"--exit-before-ready=0"})}).stop();
  const std::size_t fds_before = harness_test::open_fd_count();
  harness::detail::use_spare_supervisors_for_testing(true);

  std::vector<int> counts(static_cast<int>(cycle::count));
  {
    const foreign_sigchld_handler handler;
    harness_test::bounded_rounds(500, 60s, 200, [&](int i) {
      const auto c = static_cast<cycle>(rng() % static_cast<unsigned>(cycle::count));
      const int code = static_cast<int>(rng() % 120);
      const int delay = static_cast<int>(rng() % 6);
      SCOPED_TRACE("cycle " + std::to_string(i) + ": " + name_of(c));
      ++counts[static_cast<int>(c)];
      run(c, code, delay, token);
    });
  }
  for (int c = 0; c < static_cast<int>(cycle::count); ++c) {
    std::cout << name_of(static_cast<cycle>(c)) << ": " << counts[c] << "\n";
  }
  std::cout << "the foreign handler reaped " << foreign_reaps.load() << " children\n";
  EXPECT_GT(foreign_reaps.load(), 0) << "the handler reaped nothing: the test tests nothing";

  const auto zombies = harness_test::zombie_children();
  EXPECT_TRUE(zombies.empty()) << zombies.size() << " zombie children";
  // Spares off again: the one kept ready is ended at once, one being made in the
  // background (asked for by the last spawn) is ended as soon as it is made.
  harness::detail::use_spare_supervisors_for_testing(false);
  std::size_t fds_after = 0;
  EXPECT_TRUE(harness_test::holds_within(harness_test::steady_clock::now() + 5s, [&] {
    fds_after = harness_test::open_fd_count();
    return fds_after == fds_before;
  })) << "fds were left behind: " << fds_after << " open, " << fds_before << " before";
  harness_test::expect_gone(token, 2s, "after the cycles");
}

}  // namespace
