// R3: a server ignores SIGTERM and forks workers (in its group, in a session of their
// own, orphaned daemons; some ignoring SIGTERM too). stop() returns within grace + 1 s,
// the whole tree is gone (counted by a token in the command lines, and through pidfds
// of the workers), the status says SIGKILL and the runner has no zombie child.
#include <random>

#include "battery.hpp"
#include "harness/process.hpp"
#include "harness/session.hpp"
#include "harness/timeouts.hpp"

namespace {

using namespace std::chrono_literals;
using harness::exit_status;
using harness_test::fx;

TEST(R03, IgnoresSigtermAndForksWorkersStoppedWithinGracePlusOneSecond) {
  const unsigned seed = harness_test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);

  harness_test::bounded_rounds(24, 15s, 4, [&](int round) {
    const std::string token = harness_test::unique_token("r03");
    const auto grace = std::chrono::milliseconds(100 + rng() % 300);
    const bool as_session = rng() % 2 == 0;
    const bool stop_while_forking = rng() % 3 == 0;  // else once every worker reported
    std::vector<std::string> args = {"--print=" + token, "--ignore-sigterm"};
    std::vector<std::string> tags;
    for (const auto& [flag, tag] : {std::pair{"--fork-child", "CHILD"}, {"--fork-setsid", "SETSID"},
                                    {"--fork-daemon", "DAEMON"}}) {
      if (rng() % 3 != 0) {
        args.emplace_back(flag);
        tags.emplace_back(tag);
      }
    }
    if (tags.empty()) {
      args.emplace_back("--fork-setsid");
      tags.emplace_back("SETSID");
    }
    if (rng() % 4 != 0) args.emplace_back("--child-ignores-sigterm");
    SCOPED_TRACE("round " + std::to_string(round) + ": grace " + std::to_string(grace.count()) + " ms, " +
                 (as_session ? "session" : "process") + (stop_while_forking ? ", stopped while forking" : ""));

    const harness::stop_policy policy{.grace = grace, .kill_wait = 5s};
    harness::session session;
    harness::process bare;
    if (as_session) {
      args.emplace_back("--port={port}");
      auto s = harness::session::try_start({.command = fx(args), .stop = policy});
      ASSERT_TRUE(s) << s.error().message();
      session = std::move(*s);
    } else {
      args.insert(args.end(), {"--port=0", "--announce-line=up"});
      auto p = harness::process::try_spawn({.argv = fx(args), .stop = policy});
      ASSERT_TRUE(p) << p.error().message();
      bare = std::move(*p);
    }
    harness::process& p = as_session ? session.process() : bare;
    // SIGTERM is ignored from here on; before, it would simply end the server.
    ASSERT_TRUE(p.output().wait_for_line("^ignoring SIGTERM$", 10s));

    std::vector<int> pidfds;
    if (!stop_while_forking) {
      for (const auto& tag : tags) {
        auto line = p.output().wait_for_line("^" + tag + R"( (\d+)$)", 10s);
        ASSERT_TRUE(line) << tag << ": " << line.error().message();
        const int fd = harness_test::open_pidfd(std::stoi(line->groups[1]));
        ASSERT_GE(fd, 0) << tag;
        pidfds.push_back(fd);
      }
      ASSERT_FALSE(harness_test::with_token(token).empty()) << "the leftover check does not see the tree";
    }

    const auto t0 = harness_test::steady_clock::now();
    const exit_status status = as_session ? session.stop() : bare.stop();
    const auto took = harness_test::steady_clock::now() - t0;
    EXPECT_EQ(status, exit_status::killed_by(SIGKILL));
    EXPECT_LT(took, harness::timeouts::scaled(grace) + harness::timeouts::scaled(1s))
        << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
    // stop() returns once the tree is gone: nothing of it may be seen afterwards.
    const auto left = harness_test::with_token(token);
    EXPECT_TRUE(left.empty()) << "left after stop():" << harness_test::describe(left);
    for (int fd : pidfds) {
      EXPECT_TRUE(harness_test::pidfd_exited(fd)) << "a worker outlived stop()";
      ::close(fd);
    }
    const auto zombies = harness_test::zombie_children();
    EXPECT_TRUE(zombies.empty()) << zombies.size() << " zombie children of the runner";
  });
}

}  // namespace
