// harness::gtest_main — a main() for test programs that use serve-harness.
//
// Link harness::gtest_main instead of GTest::gtest_main / GTest::gmock_main. It
//   * ignores SIGPIPE, so a test that writes to a server that went away sees EPIPE
//     instead of dying (the servers themselves start with default dispositions);
//   * initialises GoogleMock (which initialises GoogleTest and parses both flag sets);
//   * installs harness::gtest::listener (install_listener());
//   * runs every test.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>

#include "harness/gtest/listener.hpp"

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  ::testing::InitGoogleMock(&argc, argv);
  harness::gtest::install_listener();
  return RUN_ALL_TESTS();
}
