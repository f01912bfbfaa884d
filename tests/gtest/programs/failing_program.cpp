// gtest_layer_failing — a test program that FAILS ON PURPOSE. Not a CTest test: e2e_test.cpp
// runs it and checks what the listener (installed by harness::gtest_main, linked instead
// of a main() of our own) printed, and the properties in its XML report.
//
// Each server's facts are printed on a line of their own ("E2E <tag> port=... ") so that
// the checking test can compare them with the listener's report and the XML.
#include <cstdio>
#include <string>
#include <vector>

#include "harness/gtest/gtest.hpp"

namespace {

using harness::probe;

std::vector<std::string> fx(std::vector<std::string> args) {
  args.insert(args.begin(), HARNESS_FIXTURE_SERVER);
  return args;
}

void facts(const char* tag, const harness::session& s) {
  std::printf("E2E %s port=%u attempts=%zu ready_ms=%lld pid=%d log=%s\n", tag, static_cast<unsigned>(s.port()),
              s.attempts().size(), static_cast<long long>(s.ready_time().count()), s.pid(),
              s.log_path().c_str());
  std::fflush(stdout);
}

class Failing : public harness::gtest::server_test {};

// The server prints two known stderr lines (ready only once both are drained), then an
// assertion fails: the listener must print the server with both lines.
TEST_F(Failing, ServerPrintsThenAnAssertionFails) {
  harness::session* s = start_server(
      {.command = fx({"--eprint=e2e-stderr: first line", "--eprint=e2e-stderr: second line", "--port={port}"}),
       .ready = {.probes = {probe::log("e2e-stderr: second line"), probe::tcp()}},
       .name = "e2e-server",
       .files = {{"e2e.conf", "port {port}\n"}}});  // a scratch directory, kept: the test fails
  ASSERT_NE(s, nullptr);
  facts("single", *s);
  EXPECT_EQ(1 + 1, 3) << "failing on purpose";
}

// Passes: properties are recorded for passing tests too, prefixed with two servers.
TEST_F(Failing, TwoServersPass) {
  auto servers = start_servers({{.command = fx({"--port={port}"}), .name = "alpha"},
                                {.command = fx({"--port={port}"}), .name = "beta"}});
  ASSERT_EQ(servers.size(), 2u);
  facts("alpha", *servers[0]);
  facts("beta", *servers[1]);
}

// A session started by hand, without a harness fixture: the listener still sees it
// (harness::live_sessions()) when the assertion fails.
TEST(Bare, SessionStartedByHandFails) {
  harness::session s = harness::session::start(
      {.command = fx({"--eprint=bare-session: stderr line", "--port={port}"}),
       .ready = {.probes = {probe::log("bare-session: stderr line"), probe::tcp()}},
       .name = "bare-server"});
  facts("bare", s);
  ADD_FAILURE() << "failing on purpose with a bare session";
}

TEST(Bare, PassesWithoutServers) { SUCCEED(); }

}  // namespace
