// gtest_layer_unavailable — a test program whose servers cannot start (their program is
// missing). Not a CTest test: e2e_test.cpp runs it with filters and checks that every
// test of a suite / of the program fails (or, if asked, is skipped) with the library's
// full error text, and that no SetUp or test body ran against a missing server.
//
//   --env=fail | --env=skip   also register a per-program server_environment whose
//                             server is missing (if_unavailable::fail / skip)
//
// It has its own main() and installs the listener with install_listener().
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>

#include "harness/gtest/gtest.hpp"
#include "missing_server.hpp"

namespace {

using harness::gtest::if_unavailable;

// A per-suite server that cannot start; the tests must fail with the full text.
class SuiteServerMissing : public testing::Test {
 protected:
  static void SetUpTestSuite() { server.start(e2e::missing_server("missing-db")); }
  static void TearDownTestSuite() {
    // The library's own text, for the checking test to find verbatim in each failure.
    if (server.error() != nullptr) {
      std::printf("E2E suite error begin\n%s\nE2E suite error end\n", server.error()->message().c_str());
    }
    server.stop();
  }
  void SetUp() override { std::puts("E2E SETUP RAN"); }
  static inline harness::gtest::shared_server server;
};

TEST_F(SuiteServerMissing, First) { std::printf("E2E BODY RAN, port %u\n", server->port()); }
TEST_F(SuiteServerMissing, Second) { std::printf("E2E BODY RAN, port %u\n", server->port()); }

// The same, but the suite asked to skip when the program is not installed.
class SuiteServerSkipped : public testing::Test {
 protected:
  static void SetUpTestSuite() { server.start(e2e::missing_server("optional-db"), if_unavailable::skip); }
  static void TearDownTestSuite() { server.stop(); }
  static inline harness::gtest::shared_server server;
};

TEST_F(SuiteServerSkipped, First) { std::printf("E2E BODY RAN, port %u\n", server->port()); }
TEST_F(SuiteServerSkipped, Second) { std::printf("E2E BODY RAN, port %u\n", server->port()); }

// A per-test server that asks to skip.
class TestServerSkipped : public harness::gtest::server_test {
 protected:
  void SetUp() override {
    server_ = start_server(e2e::missing_server("optional-cache"), if_unavailable::skip);
    if (server_ == nullptr) return;
    std::puts("E2E SETUP CONTINUED");
  }
  harness::session* server_ = nullptr;
};

TEST_F(TestServerSkipped, Skips) { std::printf("E2E BODY RAN, port %u\n", server_->port()); }

TEST(Plain, Passes) { std::puts("E2E PLAIN RAN"); }

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleMock(&argc, argv);
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--env=fail") == 0) {
      harness::gtest::add_server_environment({e2e::missing_server("missing-env")});
    } else if (std::strcmp(argv[i], "--env=skip") == 0) {
      harness::gtest::add_server_environment({e2e::missing_server("optional-env")}, if_unavailable::skip);
    }
  }
  harness::gtest::install_listener();
  return RUN_ALL_TESTS();
}
