// Ownership of a server's tree, with the fixture server imitating what real servers do
// (tests/real/ has the real ones): a title written over the environment (setproctitle),
// setsid, daemonizing, a detached child with an empty environment, dropping to nobody.
// Each must be ours — no false collision, followed where it daemonizes — and gone after
// stop and after the runner is SIGKILLed. Leftovers are found by a token in the
// process title, never by the harness's own marker or bookkeeping.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <string>

#include "harness/lease.hpp"
#include "harness/process.hpp"
#include "harness/session.hpp"
#include "leftovers.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using harness::exit_status;
using harness::session;

// A title unique to this test run, so that parallel tests never count each other.
std::string unique_title(const char* what) {
  std::random_device rd;
  return std::string("fixture-") + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(rd());
}

void expect_gone_within_2s(const std::string& token, const std::string& when) {
  std::vector<harness_test::seen_process> left;
  EXPECT_TRUE(harness_test::holds_within(std::chrono::steady_clock::now() + 2s, [&] {
    left = harness_test::with_token(token);
    return left.empty();
  })) << when << ": still running" << harness_test::describe(left);
}

TEST(Ownership, ATitleOverTheEnvironmentAndSetsidStayOurs) {
  const std::string title = unique_title("title");
  auto r = session::try_start(
      {.command = {"/bin/sh", "-c", "setsid \"$0\" --title=\"$1\" --port=\"$2\" & wait",
                   harness_test::fixture_server(), title, "{port}"}});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->attempts().size(), 1u) << "judged a stranger: " << r->summary();
  // The imitation is faithful: the marker is gone from the server's environment.
  const auto found = harness_test::with_token(title);
  ASSERT_EQ(found.size(), 1u);
  const std::string env = harness_test::read_text("/proc/" + std::to_string(found[0].pid) + "/environ");
  EXPECT_EQ(env.find("HARNESS_SESSION="), std::string::npos);
  EXPECT_EQ(harness_test::tcp_request(r->port(), "hi"), "pong: hi");
  r->stop();
  expect_gone_within_2s(title, "after stop");
}

TEST(Ownership, AServerThatDaemonizesIsFollowedAndStopped) {
  const std::string title = unique_title("daemon");
  auto r = session::try_start(
      {.command = {harness_test::fixture_server(), "--title=" + title, "--daemonize", "--port={port}"}});
  ASSERT_TRUE(r) << r.error().message();
  session s = std::move(*r);
  auto daemon = s.output().wait_for_line(R"(^DAEMON (\d+)$)", 10s);
  ASSERT_TRUE(daemon);
  EXPECT_TRUE(harness_test::holds_within(std::chrono::steady_clock::now() + 5s,
                                         [&] { return s.pid() == std::stoi(daemon->groups[1]); }))
      << "pid() should name the daemon";
  EXPECT_TRUE(s.process().daemonized());
  EXPECT_TRUE(s.running());
  EXPECT_EQ(harness_test::tcp_request(s.port(), "hi"), "pong: hi");
  EXPECT_EQ(s.stop(), exit_status::exited_with(0));  // the daemon's "got SIGTERM" exit
  expect_gone_within_2s(title, "after stop");
}

TEST(Ownership, ADetachedChildWithAnEmptyEnvironmentIsStopped) {
  harness::process p = harness::process::spawn(
      {.argv = {harness_test::fixture_server(), "--fork-clean-env", "--port=0", "--serve=none"}});
  auto block = p.output().wait_for_line(R"(^BLOCK (\d+)$)", 10s);
  ASSERT_TRUE(block) << block.error().message();
  const pid_t child = std::stoi(block->groups[1]);
  EXPECT_EQ(harness_test::read_text("/proc/" + std::to_string(child) + "/environ"), "");
  const auto tree = p.tree();
  EXPECT_NE(std::find(tree.begin(), tree.end(), child), tree.end()) << "not in the tree";
  const int fd = harness_test::open_pidfd(child);
  ASSERT_GE(fd, 0);
  p.stop();
  EXPECT_TRUE(harness_test::pidfd_exited(fd)) << "the detached child outlived stop()";
  ::close(fd);
}

TEST(Ownership, AServerThatDropsPrivilegesIsStillOurs) {
  if (::geteuid() != 0) GTEST_SKIP() << "dropping privileges needs a root runner";
  const std::string title = unique_title("nobody");
  auto r = session::try_start({.command = {harness_test::fixture_server(), "--title=" + title,
                                           "--drop-privileges", "--port={port}"}});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->attempts().size(), 1u) << "a false collision: " << r->summary();
  ASSERT_TRUE(r->output().wait_for_line("^DROPPED ", 10s));
  const std::string status = harness_test::read_text("/proc/" + std::to_string(r->pid()) + "/status");
  EXPECT_NE(status.find("Uid:\t65534"), std::string::npos) << status;
  EXPECT_EQ(harness_test::tcp_request(r->port(), "hi"), "pong: hi");
  r->stop();
  expect_gone_within_2s(title, "after stop");
}

TEST(Ownership, ARunnerWithAForkedChildStillLeavesNothingAndFreesItsPorts) {
  const std::string title = unique_title("forked");
  harness::process runner = harness::process::spawn(
      {.argv = {HARNESS_SERVER_RUNNER, "--fork", harness_test::fixture_server(), "--title=" + title,
                "--fork-setsid", "--port={port}", "---", harness_test::fixture_server(),
                "--title=" + title, "--daemonize", "--port={port}"},
       .follow_daemon = false});
  auto forked = runner.output().wait_for_line(R"(^FORKED (\d+)$)", 30s);
  ASSERT_TRUE(forked) << forked.error().message() << runner.output().tail(harness::stream::err);
  ASSERT_TRUE(runner.output().wait_for_line("^READY$", 10s));
  const auto ports = harness_test::runner_ports(runner);
  ASSERT_EQ(ports.size(), 2u);
  const int child = harness_test::open_pidfd(std::stoi(forked->groups[1]));
  ASSERT_GE(child, 0);

  ASSERT_TRUE(runner.signal(SIGKILL));  // the runner only: its fork()ed child lives on
  expect_gone_within_2s(title, "runner killed, its forked child alive");
  EXPECT_EQ(harness_test::listeners_on(ports), 0);
  EXPECT_FALSE(harness_test::pidfd_exited(child)) << "the forked child was meant to live on";
  for (auto port : ports) {
    auto again = harness::lease::try_acquire({.range = harness::port_range{port, port}});
    EXPECT_TRUE(again) << "port " << port << " is still leased: " << again.error().message();
  }
  ::close(child);
  runner.stop();
}

TEST(Ownership, ARunnerKilledDuringAGracefulStopLeavesNothing) {
  // The runner is stopping a server that ignores SIGTERM, with a long grace, when it is
  // SIGKILLed: nobody waits for that grace any more.
  const std::string title = unique_title("graceful");
  harness::process runner = harness::process::spawn(
      {.argv = {HARNESS_SERVER_RUNNER, "--stop-with-grace=60000", harness_test::fixture_server(),
                "--title=" + title, "--ignore-sigterm", "--port={port}"}});
  auto stopping = runner.output().wait_for_line("^STOPPING$", 30s);
  ASSERT_TRUE(stopping) << stopping.error().message() << runner.output().tail(harness::stream::err);
  ASSERT_FALSE(harness_test::with_token(title).empty()) << "the check does not see the server";
  ASSERT_TRUE(runner.signal(SIGKILL));
  expect_gone_within_2s(title, "runner killed while stopping");
  runner.stop();
}

}  // namespace
