// A test program that FAILS ON PURPOSE (tests/gtest/e2e_test.cpp runs it): a named
// shared server (attach_named) that dies during one test fails that test only; the
// listener records its properties and reports it with the end of its log.
// $HARNESS_TEST_NAMED is the server's name (unique per run of the e2e test).
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "harness/gtest/gtest.hpp"

namespace {

std::string name() {
  const char* n = std::getenv("HARNESS_TEST_NAMED");
  return n != nullptr ? n : "gtest-named";
}

harness::server_spec spec() {
  return {.command = {HARNESS_FIXTURE_SERVER, "--port={port}", "--print=named server says hello"}};
}

TEST(Named, AttachesOnceAndIsShared) {
  auto* a = harness::gtest::attach_named(name(), spec());
  ASSERT_NE(a, nullptr);
  auto* b = harness::gtest::attach_named(name(), spec());
  EXPECT_EQ(a, b);
  std::printf("E2E named port=%u pid=%d\n", a->port(), a->pid());
}

TEST(Named, KillsTheServer) {
  auto* a = harness::gtest::attach_named(name(), spec());
  ASSERT_NE(a, nullptr);
  const int keeper = a->info().keeper_pid;
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, keeper, 0));
  ASSERT_EQ(::kill(a->pid(), SIGKILL), 0);
  // Its keeper ends once it has recorded how the server ended.
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 20000), 1);
  ::close(fd);
}

TEST(Named, RunsAfterwards) { SUCCEED(); }

TEST(Named, UnavailableIsASkip) {
  auto* s = harness::gtest::attach_named(name() + "-missing", {.command = {"/nonexistent/server", "{port}"}},
                                         harness::gtest::if_unavailable::skip);
  EXPECT_EQ(s, nullptr);
}

}  // namespace
