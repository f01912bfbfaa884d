// 8 processes × 200 lease-mode sessions at once: no failures, never two holders of a
// port (R6/R8 in small).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "harness/process.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;

TEST(SessionStorm, EightProcessesTwoHundredSessionsEach) {
  char tmpl[] = "/tmp/harness-storm-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
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
  std::filesystem::remove_all(dir);
}

}  // namespace
