// A test program that FAILS ON PURPOSE (tests/gtest/e2e_test.cpp runs it): servers
// that crash, print a sanitizer report or end badly make otherwise green tests fail.
// It links GTest::gtest_main, not harness::gtest_main: the fixtures install the
// listener on first use.
#include <gtest/gtest.h>
#include <signal.h>

#include <string>
#include <vector>

#include "harness/gtest/gtest.hpp"
#include "harness/timeouts.hpp"

namespace {

using namespace std::chrono_literals;

std::vector<std::string> fx(std::vector<std::string> args) {
  args.insert(args.begin(), HARNESS_FIXTURE_SERVER);
  return args;
}

// A fixture server below a shell that runs `on_term` when the stop's SIGTERM reaches it.
// The trap waits for the server first (the stop signals it too), so that the server's
// "got SIGTERM" line comes before what `on_term` prints, never in between its lines.
std::vector<std::string> with_term_trap(const std::string& on_term) {
  return {"/bin/sh", "-c", "trap 'wait; " + on_term + "' TERM; \"$0\" --port=\"$1\" & wait", HARNESS_FIXTURE_SERVER,
          "{port}"};
}

class PerTest : public harness::gtest::server_test {};

// Green on its own: the server it started crashes in the middle.
TEST_F(PerTest, ServerCrashesMidTest) {
  auto* s = start_server({.command = fx({"--print=warming up on stdout", "--port={port}"}), .name = "crasher"});
  ASSERT_NE(s, nullptr);
  // SIGABRT rather than SIGSEGV: under ASan or TSan a sanitized server takes a SIGSEGV
  // sent by kill() for a memory fault, reports it and exits 66 instead of dying by it.
  ASSERT_EQ(::kill(s->pid(), SIGABRT), 0);
  ASSERT_TRUE(s->process().wait_for(10s));
}

// Green on its own: the server prints a LeakSanitizer report and exits 1 when stopped.
TEST_F(PerTest, ServerLeaksAtStop) {
  auto* s = start_server(
      {.command = with_term_trap("echo \"==1==ERROR: LeakSanitizer: detected memory leaks\" >&2; "
                                 "echo \"Direct leak of 64 byte(s) in 1 object(s) allocated from:\" >&2; exit 1"),
       .name = "leaker"});
  ASSERT_NE(s, nullptr);
}

// Passes: the test says the exit is its own doing.
TEST_F(PerTest, AnnouncedExitPasses) {
  auto* s = start_server({.command = fx({"--port={port}"}), .name = "announced"});
  ASSERT_NE(s, nullptr);
  s->expect_exit();
  ASSERT_EQ(::kill(s->pid(), SIGKILL), 0);
  ASSERT_TRUE(s->process().wait_for(10s));
}

// Passes, slowly: the progress line shows while it starts. It comes after 2 s scaled by
// HARNESS_TIMEOUT_SCALE, so the delay scales too.
TEST_F(PerTest, SlowStartShowsProgress) {
  const auto delay = "--delay-ms=" + std::to_string(harness::timeouts::scaled(2500ms).count());
  ASSERT_NE(start_server({.command = fx({delay, "--port={port}"}), .name = "slowpoke"}), nullptr);
}

// A shared server that dies during the first test: that test fails, not the next.
class Shared : public testing::Test {
 protected:
  static void SetUpTestSuite() { server.start({.command = fx({"--port={port}"}), .name = "shared-victim"}); }
  static void TearDownTestSuite() { server.stop(); }
  static inline harness::gtest::shared_server server;
};

TEST_F(Shared, KillsTheServer) {
  ASSERT_EQ(::kill(server->pid(), SIGKILL), 0);
  ASSERT_TRUE(server->process().wait_for(10s));
}

TEST_F(Shared, RunsAfterwards) { SUCCEED(); }

}  // namespace
