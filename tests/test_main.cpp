// The main() of every serve-harness test program.
#include <gtest/gtest.h>

#include <csignal>

int main(int argc, char** argv) {
  // A test that writes to a peer that went away must see EPIPE, not die.
  std::signal(SIGPIPE, SIG_IGN);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
