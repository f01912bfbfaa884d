// Sharing and lifecycle: one server for a whole suite, several servers at once, and a
// restart on the same port.
#include <harness/gtest/gtest.hpp>

#include "line_client.hpp"

namespace {

using harness::port_mode;

// One server for every test of the suite: started once in SetUpTestSuite, stopped in
// TearDownTestSuite. If it cannot start, every test of the suite fails with the reason.
// (Under ctest with gtest_discover_tests each TEST runs in a process of its own, so
// each process starts the suite's server once; run the binary directly and all the
// suite's tests share one.)
class SharedServer : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    server.start({.command = {EXAMPLE_SERVER, "--port={port}"}, .name = "shared"});
  }
  static void TearDownTestSuite() { server.stop(); }
  static inline harness::gtest::shared_server server;
};

TEST_F(SharedServer, AnswersPing) { EXPECT_EQ(example::ping(server->port()), "pong: ping"); }

TEST_F(SharedServer, AnswersAnotherLine) {
  EXPECT_EQ(example::ping(server->port(), "again"), "pong: again");
  EXPECT_THAT(*server, harness::gtest::LogContains("^PID "));  // the server's own output
}

class Lifecycle : public harness::gtest::server_test {};

// Three servers started at once: the slow starts overlap instead of adding up.
TEST_F(Lifecycle, ThreeServersInParallel) {
  const auto servers = start_servers({
      {.command = {EXAMPLE_SERVER, "--delay-ms=300", "--port={port}"}, .name = "a"},
      {.command = {EXAMPLE_SERVER, "--delay-ms=300", "--port={port}"}, .name = "b"},
      {.command = {EXAMPLE_SERVER, "--delay-ms=300", "--port=0", "--announce=ready-fd"},
       .port = {.mode = port_mode::announce},
       .name = "c"},
  });
  ASSERT_EQ(servers.size(), 3u);
  for (auto* s : servers) EXPECT_EQ(example::ping(s->port()), "pong: ping") << s->name();
}

// restart() stops the server and starts it again on the same port, so a test can
// check that clients reconnect (or that state survives, for a server with storage).
TEST_F(Lifecycle, RestartKeepsThePort) {
  auto* s = start_server({.command = {EXAMPLE_SERVER, "--port={port}"}});
  ASSERT_NE(s, nullptr);
  const auto port = s->port();
  const int old_pid = s->pid();
  ASSERT_THAT(s->restart(), harness::gtest::IsOk());
  EXPECT_EQ(s->port(), port);
  EXPECT_NE(s->pid(), old_pid);
  EXPECT_EQ(example::ping(port), "pong: ping");
}

}  // namespace
