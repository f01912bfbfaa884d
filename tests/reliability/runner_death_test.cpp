// R1: when the runner is SIGKILLed, every process it started dies with it, however
// far down the tree and whether or not it left the process group.
#include <gtest/gtest.h>
#include <unistd.h>

#include <thread>

#include "harness/detail/proc_fs.hpp"
#include "harness/process.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;

TEST(RunnerDeath, SigkilledRunnerLeavesNothingBehind) {
  constexpr int rounds = 5;
  for (int round = 0; round < rounds; ++round) {
    harness::process runner = harness::process::spawn(
        {.argv = {HARNESS_TREE_RUNNER, harness_test::fixture_server()}});
    auto ready = runner.output().wait_for_line("^READY$", 30s);
    ASSERT_TRUE(ready) << ready.error().message() << "\n" << runner.output().tail(harness::stream::err);

    std::string token;
    std::vector<int> pidfds;
    for (const auto& line : runner.output().tail_lines(harness::stream::out)) {
      if (line.rfind("TOKEN ", 0) == 0) token = line.substr(6);
      if (line.rfind("PID ", 0) == 0) {
        const int fd = harness_test::open_pidfd(std::stoi(line.substr(4)));
        ASSERT_GE(fd, 0) << line;
        pidfds.push_back(fd);
      }
    }
    ASSERT_FALSE(token.empty());
    ASSERT_EQ(pidfds.size(), 11u);

    ASSERT_TRUE(runner.signal(SIGKILL));
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    for (int fd : pidfds) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      EXPECT_TRUE(harness_test::pidfd_exited(fd, std::max(left, 0ms)))
          << "round " << round << ": a process outlived its runner by 2 s";
      ::close(fd);
    }
    EXPECT_TRUE(harness::detail::procfs::find_by_environ("HARNESS_SESSION=" + token + "-", true)
                    .empty());
    EXPECT_EQ(runner.stop(), harness::exit_status::killed_by(SIGKILL));
  }
}

}  // namespace
