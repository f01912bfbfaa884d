// R5: the pid of a stopped server (and of its supervisor, and its process group) is
// taken by an unrelated process; everything the harness may still do with the object —
// stop() again, signal(), signal_group(), tree(), move-assignment, destruction — must
// leave that process alone. The unrelated process is put on exactly that pid with
// clone3's set_tid (root), so the reuse is certain rather than hoped for.
//
// While the object has not been stopped, the pids stay reserved: even a server that
// exited on its own is kept unreaped by its supervisor, so nothing can take its pid.
#include <random>

#include "battery.hpp"
#include "harness/process.hpp"
#include "harness/session.hpp"

namespace {

using namespace std::chrono_literals;
using harness::exit_status;
using harness::process;
using harness_test::fx;

enum class ending { stopped, exited_by_itself, killed, daemon_stopped, session_stopped, count };

const char* name_of(ending e) {
  switch (e) {
    case ending::stopped: return "stopped";
    case ending::exited_by_itself: return "exited by itself";
    case ending::killed: return "killed by SIGKILL";
    case ending::daemon_stopped: return "a followed daemon, stopped";
    case ending::session_stopped: return "a session, stopped";
    case ending::count: break;
  }
  return "?";
}

// The process the harness started (its "PID <pid>" line): a daemon's parent, the
// leader of the server's process group.
pid_t reported_first_pid(const process& p) {
  auto line = p.output().wait_for_line(R"(^PID (\d+)$)", 10s);
  return line ? std::stoi(line->groups[1]) : -1;
}

// Everything that may still be done with a finished process object.
void poke(process& p) {
  EXPECT_FALSE(p.signal(SIGTERM));
  EXPECT_FALSE(p.signal(SIGKILL));
  EXPECT_FALSE(p.signal_group(SIGKILL));
  EXPECT_FALSE(p.running());
  EXPECT_TRUE(p.tree().empty());
  (void)p.stop();
  (void)p.stop({.signal = SIGKILL, .grace = 0ms, .kill_wait = 100ms});
}

TEST(R05, ThePidsOfAStoppedServerTakenByAnotherProcessAreNeverSignalled) {
  if (!harness_test::can_choose_pids()) GTEST_SKIP() << "clone3 with set_tid is not available (needs root)";
  const unsigned seed = harness_test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  const std::string token = harness_test::unique_token("r05");

  harness_test::bounded_rounds(40, 12s, 5, [&](int round) {
    const auto e = static_cast<ending>(rng() % static_cast<unsigned>(ending::count));
    SCOPED_TRACE("round " + std::to_string(round) + ": " + name_of(e));
    harness::session session;
    process bare;
    exit_status expected = exit_status::exited_with(0);
    const int code = 1 + static_cast<int>(rng() % 100);
    switch (e) {
      case ending::stopped:
      case ending::killed:
        bare = process::spawn({.argv = fx({"--print=" + token, "--port=0", "--announce-line=up"})});
        ASSERT_TRUE(bare.output().wait_for_line("^up$", 10s));
        if (e == ending::killed) {
          ASSERT_TRUE(bare.signal(SIGKILL));
          expected = exit_status::killed_by(SIGKILL);
        }
        break;
      case ending::exited_by_itself:
        bare = process::spawn({.argv = fx({"--print=" + token, "--exit-before-ready=" + std::to_string(code)})});
        expected = exit_status::exited_with(code);
        break;
      case ending::daemon_stopped:
        bare = process::spawn({.argv = fx({"--print=" + token, "--daemonize", "--port=0", "--announce-line=up"})});
        ASSERT_TRUE(bare.output().wait_for_line("^up$", 10s));
        ASSERT_TRUE(harness_test::holds_within(harness_test::steady_clock::now() + 5s,
                                               [&] { return bare.daemonized(); }));
        break;
      case ending::session_stopped: {
        auto r = harness::session::try_start({.command = fx({"--print=" + token, "--port={port}"})});
        ASSERT_TRUE(r) << r.error().message();
        session = std::move(*r);
        break;
      }
      case ending::count: break;
    }
    process& p = e == ending::session_stopped ? session.process() : bare;
    const pid_t first = reported_first_pid(p);
    const pid_t server = p.pid();
    const pid_t supervisor = p.supervisor_pid();
    ASSERT_GT(first, 0);

    // Not stopped yet: the server's pids are reserved, even when it has exited.
    if (e == ending::exited_by_itself || e == ending::killed) {
      ASSERT_EQ(p.wait_for(10s), expected);
    }
    for (pid_t pid : {first, server, supervisor}) {
      const pid_t taken = harness_test::spawn_on_pid(pid, {"/bin/true"});
      EXPECT_LT(taken, 0) << "pid " << pid << " was free before stop()";
      if (taken > 0) harness_test::end_occupant(taken);
    }

    EXPECT_EQ(e == ending::session_stopped ? session.stop() : bare.stop(), expected);
    // Now they are free: unrelated processes take them (the server's group id too:
    // each occupant leads a process group of its own number).
    const auto occupants = harness_test::occupy({first, server, supervisor});
    ASSERT_FALSE(HasFailure());

    poke(p);
    if (e == ending::session_stopped) {
      (void)session.stop();
      session = harness::session{};  // move-assignment over the stopped one
    } else {
      bare = process{};
    }
    for (pid_t pid : occupants) {
      EXPECT_TRUE(harness_test::alive_and_running(pid)) << "the unrelated process on pid " << pid << " was signalled";
      harness_test::end_occupant(pid);
    }
  });
  harness_test::expect_gone(token, 2s, "after the rounds");
}

}  // namespace
