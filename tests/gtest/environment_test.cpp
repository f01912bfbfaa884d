// A per-program server_environment in the success path: two fixture servers started
// together before the first test, reachable by name and position from every test.
// (Its failure path — every test of the program failing or skipping with the full
// error text — is checked end to end by e2e_test.cpp.)
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "../support.hpp"
#include "harness/gtest/gtest.hpp"

namespace {

using harness::errc;
using harness::gtest::ErrorIs;
using harness_test::tcp_request;

std::vector<std::string> fx(std::vector<std::string> args) {
  args.insert(args.begin(), harness_test::fixture_server());
  return args;
}

// Registered before main() runs; gtest owns it and sets it up before the first test.
harness::gtest::server_environment* const servers = harness::gtest::add_server_environment({
    {.command = fx({"--port={port}"}), .name = "alpha"},
    {.command = fx({"--port={port}"}), .name = "beta"},
});

TEST(ServerEnvironment, EveryServerIsReadyBeforeTheFirstTest) {
  ASSERT_EQ(servers->size(), 2u);
  EXPECT_EQ(tcp_request(servers->server("alpha").port(), "a"), "pong: a");
  EXPECT_EQ(tcp_request(servers->server("beta").port(), "b"), "pong: b");
  EXPECT_NE(servers->server("alpha").port(), servers->server("beta").port());
}

TEST(ServerEnvironment, ServersByPosition) {
  EXPECT_EQ(&servers->server(0), &servers->server("alpha"));
  EXPECT_EQ(&servers->server(1), &servers->server("beta"));
  EXPECT_EQ(servers->server(1).name(), "beta");
}

TEST(ServerEnvironment, UnknownServersThrowTypedErrors) {
  try {
    (void)servers->server("gamma");
    ADD_FAILURE() << "no exception";
  } catch (const harness::error& e) {
    EXPECT_THAT(e, ErrorIs(errc::invalid_argument));
    EXPECT_THAT(e.what(), testing::HasSubstr("no server named \"gamma\""));
  }
  try {
    (void)servers->server(2);
    ADD_FAILURE() << "no exception";
  } catch (const harness::error& e) {
    EXPECT_THAT(e, ErrorIs(errc::not_running));
  }
}

}  // namespace
