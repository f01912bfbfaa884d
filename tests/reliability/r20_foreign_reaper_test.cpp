// R20: the runner ignores SIGCHLD (the kernel reaps its children at once), or another
// thread of it reaps every child it can with waitpid(-1). Exit statuses stay exact
// (the runner's only children are supervisors, which relay them), or say "status
// unknown" when a supervisor was lost; and nothing is ever signalled through a pid that
// was reused meanwhile: an unrelated process is put on each freed pid (clone3 set_tid)
// before the harness is asked to do anything more with the object.
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <random>
#include <thread>

#include "battery.hpp"
#include "harness/detail/os/pidfd.hpp"
#include "harness/process.hpp"
#include "harness/session.hpp"

namespace {

using namespace std::chrono_literals;
using harness::exit_status;
using harness::process;
using harness_test::fx;

// How the runner takes its children's statuses away.
enum class thief { sigchld_ignored, reaper_thread };

// Sets up the thief for its lifetime.
class status_thief {
 public:
  explicit status_thief(thief kind) : kind_(kind) {
    if (kind == thief::sigchld_ignored) {
      struct sigaction ign {};
      ign.sa_handler = SIG_IGN;
      ::sigaction(SIGCHLD, &ign, &old_);
    } else {
      reaper_ = std::thread([this] {
        while (!done_) {
          // A polling reaper (a blocking one could not be told to stop).
          if (::waitpid(-1, nullptr, WNOHANG) > 0) {
            ++reaped_;
          } else {
            std::this_thread::sleep_for(1ms);
          }
        }
      });
    }
  }
  ~status_thief() {
    if (kind_ == thief::sigchld_ignored) {
      ::sigaction(SIGCHLD, &old_, nullptr);
    } else {
      done_ = true;
      reaper_.join();
    }
  }
  status_thief(const status_thief&) = delete;
  status_thief& operator=(const status_thief&) = delete;
  [[nodiscard]] int reaped() const { return reaped_; }

 private:
  thief kind_;
  struct sigaction old_ {};
  std::thread reaper_;
  std::atomic<bool> done_{false};
  std::atomic<int> reaped_{0};
};

// Everything that may still be done with a finished process object.
void poke(process& p) {
  EXPECT_FALSE(p.signal(SIGTERM));
  EXPECT_FALSE(p.signal_group(SIGKILL));
  EXPECT_TRUE(p.tree().empty());
  (void)p.stop();
  (void)p.running();
}

// One server run to its end in a random way; returns what its status must be.
struct ended {
  process p;
  exit_status expected;
  pid_t first = 0;
};

ended run_one(std::mt19937& rng, const std::string& token) {
  ended e;
  const int code = static_cast<int>(rng() % 100);
  switch (rng() % 4) {
    case 0:
      e.p = process::spawn({.argv = fx({"--print=" + token, "--exit-before-ready=" + std::to_string(code)})});
      e.expected = exit_status::exited_with(code);
      EXPECT_EQ(e.p.wait_for(10s), e.expected);  // before the stop, which would end it otherwise
      break;
    case 1: {
      e.p = process::spawn({.argv = fx({"--print=" + token, "--port=0", "--announce-line=up"})});
      EXPECT_TRUE(e.p.output().wait_for_line("^up$", 10s));
      const int sig = rng() % 2 == 0 ? SIGKILL : SIGUSR1;  // SIGUSR1's default action ends it too
      EXPECT_TRUE(e.p.signal(sig));
      e.expected = exit_status::killed_by(sig);
      break;
    }
    case 2:
      e.p = process::spawn({.argv = fx({"--print=" + token, "--port=0", "--announce-line=up", "--fork-setsid"})});
      EXPECT_TRUE(e.p.output().wait_for_line("^up$", 10s));
      e.expected = exit_status::exited_with(0);  // its SIGTERM handler exits 0
      break;
    default:
      e.p = process::spawn({.argv = fx({"--print=" + token, "--port=0", "--announce-line=up", "--ignore-sigterm",
                                        "--fork-child", "--child-ignores-sigterm"}),
                            .stop = {.grace = 100ms}});
      EXPECT_TRUE(e.p.output().wait_for_line("^up$", 10s));
      e.expected = exit_status::killed_by(SIGKILL);
      break;
  }
  auto first = e.p.output().wait_for_line(R"(^PID (\d+)$)", 10s);
  e.first = first ? std::stoi(first->groups[1]) : 0;
  return e;
}

// Named R20/ForeignReaper.<test>/<thief> in CTest.
class ForeignReaper : public testing::TestWithParam<thief> {};

TEST_P(ForeignReaper, ExitStatusesStayExactAndReusedPidsAreLeftAlone) {
  const unsigned seed = harness_test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  const bool occupy = harness_test::can_choose_pids();
  if (!occupy) std::cout << "clone3 set_tid unavailable: statuses only, no pid reuse\n";
  const std::string token = harness_test::unique_token("r20");
  const status_thief thief(GetParam());

  harness_test::bounded_rounds(80, 12s, 8, [&](int round) {
    ended e = run_one(rng, token);
    SCOPED_TRACE("round " + std::to_string(round) + ": expecting " + e.expected.str());
    ASSERT_GT(e.first, 0);
    const pid_t supervisor = e.p.supervisor_pid();
    EXPECT_EQ(e.p.stop(), e.expected);
    EXPECT_EQ(e.p.status(), e.expected);
    if (!occupy) return;
    const auto occupants = harness_test::occupy({e.first, supervisor});
    poke(e.p);
    e.p = process{};
    for (pid_t pid : occupants) {
      EXPECT_TRUE(harness_test::alive_and_running(pid)) << "the unrelated process on pid " << pid << " was signalled";
      harness_test::end_occupant(pid);
    }
  });
  if (GetParam() == thief::reaper_thread) {
    EXPECT_GT(thief.reaped(), 0) << "the reaper thread reaped nothing: the test tests nothing";
  }
  harness_test::expect_gone(token, 2s, "after the rounds");
}

// A supervisor that dies (SIGKILL from outside) is reaped by the thief, and its pid is
// taken by an unrelated process before the runner learns of it. stop() and the
// destructor must not wait for, reap or signal that process; the status says it is
// unknown. With and without kernel pidfds (the runner then works with plain pids).
TEST_P(ForeignReaper, ALostSupervisorsPidTakenByAnotherProcessIsLeftAlone) {
  if (!harness_test::can_choose_pids()) GTEST_SKIP() << "clone3 with set_tid is not available (needs root)";
  const unsigned seed = harness_test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  const std::string token = harness_test::unique_token("r20-lost");
  const status_thief thief(GetParam());
  struct pidfds_back_on {
    ~pidfds_back_on() { harness::detail::pidfd::disable_for_testing(false); }
  } restore;

  harness_test::bounded_rounds(20, 10s, 4, [&](int round) {
    const bool no_pidfd = rng() % 2 == 0;
    SCOPED_TRACE("round " + std::to_string(round) + (no_pidfd ? ": without pidfds" : ": with pidfds"));
    harness::detail::pidfd::disable_for_testing(no_pidfd);
    process p = process::spawn({.argv = fx({"--print=" + token, "--port=0", "--announce-line=up"})});
    ASSERT_TRUE(p.output().wait_for_line("^up$", 10s));
    const pid_t supervisor = p.supervisor_pid();
    // Our own pidfd, whatever the harness is told about the kernel.
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, supervisor, 0));
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::syscall(SYS_pidfd_send_signal, fd, SIGKILL, nullptr, 0), 0);
    ASSERT_TRUE(harness_test::pidfd_exited(fd, 5000ms));
    ::close(fd);
    // The thief reaps it (SIG_IGN: the kernel at once); then its pid is free.
    pid_t occupant = -1;
    EXPECT_TRUE(harness_test::holds_within(harness_test::steady_clock::now() + 5s, [&] {
      occupant = harness_test::spawn_on_pid(supervisor, {"/usr/bin/setsid", "/bin/sleep", "600"});
      return occupant > 0;
    })) << "the dead supervisor's pid never came free";
    ASSERT_GT(occupant, 0);

    const auto t0 = harness_test::steady_clock::now();
    const exit_status s = p.stop();
    EXPECT_LT(harness_test::steady_clock::now() - t0, 10s) << "stop() waited for an unrelated process";
    EXPECT_FALSE(s.known()) << "a lost supervisor cannot have told the status, yet stop() says " << s;
    p = process{};
    EXPECT_TRUE(harness_test::alive_and_running(occupant)) << "the unrelated process on the supervisor's pid was hit";
    harness::detail::pidfd::disable_for_testing(false);
    harness_test::end_occupant(occupant);
  });
  // The server died with its supervisor (its PDEATHSIG).
  harness_test::expect_gone(token, 2s, "after the rounds");
}

INSTANTIATE_TEST_SUITE_P(R20, ForeignReaper, testing::Values(thief::sigchld_ignored, thief::reaper_thread),
                         [](const testing::TestParamInfo<thief>& i) {
                           return i.param == thief::sigchld_ignored ? std::string("SigchldIgnored")
                                                                    : std::string("ReaperThread");
                         });

}  // namespace
