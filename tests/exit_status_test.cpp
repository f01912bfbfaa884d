#include "harness/exit_status.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <csignal>
#include <sstream>

namespace {

using harness::exit_status;

TEST(ExitStatus, PrintsItself) {
  EXPECT_EQ(exit_status::exited_with(3).str(), "exited with status 3");
  EXPECT_EQ(exit_status::killed_by(SIGKILL).str(), "killed by signal 9 (SIGKILL)");
  EXPECT_EQ(exit_status::killed_by(SIGSEGV, true).str(),
            "killed by signal 11 (SIGSEGV), core dumped");
  EXPECT_EQ(exit_status{}.str(), "status unknown");
  std::ostringstream os;
  os << exit_status::exited_with(0);
  EXPECT_EQ(os.str(), "exited with status 0");
}

TEST(ExitStatus, FromRawWaitStatus) {
  // Raw statuses as the kernel encodes them: exit code in bits 8-15, signal in 0-6.
  auto exited = exit_status::from_wait_status(42 << 8);
  EXPECT_TRUE(exited.exited());
  EXPECT_EQ(exited.code(), 42);
  EXPECT_FALSE(exited.success());
  auto killed = exit_status::from_wait_status(SIGTERM);
  EXPECT_TRUE(killed.signaled());
  EXPECT_EQ(killed.signal(), SIGTERM);
  EXPECT_FALSE(killed.core_dumped());
  auto dumped = exit_status::from_wait_status(SIGABRT | 0x80);
  EXPECT_TRUE(dumped.core_dumped());
  EXPECT_TRUE(exit_status::from_wait_status(0).success());
}

TEST(ExitStatus, ShellCodeAndEquality) {
  EXPECT_EQ(exit_status::exited_with(3).shell_code(), 3);
  EXPECT_EQ(exit_status::killed_by(SIGKILL).shell_code(), 137);
  EXPECT_EQ(exit_status{}.shell_code(), 255);
  EXPECT_EQ(exit_status::exited_with(1), exit_status::exited_with(1));
  EXPECT_NE(exit_status::exited_with(1), exit_status::killed_by(1));
  EXPECT_FALSE(exit_status{}.known());
}

TEST(ExitStatus, SignalNames) {
  EXPECT_EQ(harness::signal_name(SIGTERM), "SIGTERM");
  EXPECT_EQ(harness::signal_name(SIGRTMIN + 3), "signal " + std::to_string(SIGRTMIN + 3));
}

}  // namespace
