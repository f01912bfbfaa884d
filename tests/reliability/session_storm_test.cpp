// 8 processes × 200 lease-mode sessions at once: no failures, every server answers a
// request, never two holders of a port (R6/R8 in small). Each session-storm process
// holds an O_EXCL claim file per port from ready until just before stop(), so two
// sessions ready on one port at the same time are caught (see helpers/session_storm.cpp).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "harness/process.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;

TEST(SessionStorm, EightProcessesTwoHundredSessionsEach) {
  const harness_test::temp_dir tmp{"harness-storm"};
  const std::string dir = tmp.path().string();
  constexpr int processes = 8;
  constexpr int sessions = 200;
  std::vector<harness::process> storm;
  for (int i = 0; i < processes; ++i) {
    storm.push_back(harness::process::spawn(
        {.argv = {HARNESS_SESSION_STORM, harness_test::fixture_server(), std::to_string(sessions), dir}}));
  }
  int total = 0;
  for (auto& p : storm) {
    auto done = p.output().wait_for_line(R"(^DONE (\d+) (\d+) (\d+) (\d+)$)", 300s);
    ASSERT_TRUE(done) << done.error().message() << "\n" << p.output().tail(harness::stream::err);
    EXPECT_EQ(done->groups[2], "0") << "failed sessions:\n" << p.output().tail(harness::stream::err);
    EXPECT_EQ(done->groups[3], "0") << "a port was held twice:\n" << p.output().tail(harness::stream::err);
    total += std::stoi(done->groups[1]);
    auto st = p.wait_for(30s);
    ASSERT_TRUE(st);
    EXPECT_TRUE(st->success()) << *st;
  }
  EXPECT_EQ(total, processes * sessions);
  // Every claim was given back (a leftover one is a holder that never stopped cleanly).
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(dir)) left.push_back(e.path().filename());
  EXPECT_TRUE(left.empty()) << "claims left behind: " << testing::PrintToString(left);
}

}  // namespace
