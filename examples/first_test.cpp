// Your first serve-harness test: copy this file and put your server in the command.
//
// The fixture starts the server in SetUp on a leased port ({port}), waits until it
// accepts connections, and stops it (with everything it started) after the test.
// If the server cannot start, the test fails with the full story: command line, exit
// status, who holds the port, the server's stderr, its log file.
#include <harness/gtest/gtest.hpp>

#include "line_client.hpp"

namespace {

class PingTest : public harness::gtest::server_test {
 protected:
  void SetUp() override {
    server_ = start_server({
        .command = {EXAMPLE_SERVER, "--port={port}"},  // e.g. {"redis-server", "--port", "{port}"}
        .name = "ping-server",
    });
    if (server_ == nullptr) return;  // the failure is already recorded; no test body runs
  }

  harness::session* server_ = nullptr;
};

TEST_F(PingTest, AnswersPing) {
  EXPECT_EQ(example::ping(server_->port()), "pong: ping");
}

TEST_F(PingTest, AnswersEveryLine) {
  EXPECT_EQ(example::ping(server_->port(), "one"), "pong: one");
  EXPECT_EQ(example::ping(server_->port(), "two"), "pong: two");
}

}  // namespace
