// The PrintTo overloads of harness/gtest/printers.hpp, through GoogleTest's own
// PrintToString (what an assertion prints), on values that need no process.
#include "harness/gtest/printers.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <optional>
#include <system_error>
#include <vector>

namespace {

using harness::errc;
using harness::exit_status;
using harness::result;
using testing::PrintToString;

TEST(Printers, ExitStatus) {
  EXPECT_EQ(PrintToString(exit_status::exited_with(3)), "exited with status 3");
  EXPECT_EQ(PrintToString(exit_status::killed_by(SIGKILL)), "killed by signal 9 (SIGKILL)");
  EXPECT_EQ(PrintToString(exit_status{}), "status unknown");
  EXPECT_EQ(PrintToString(std::optional<exit_status>(exit_status::exited_with(0))), "(exited with status 0)");
  EXPECT_EQ(PrintToString(std::optional<exit_status>()), "(nullopt)");
}

TEST(Printers, ErrorCodes) {
  EXPECT_EQ(PrintToString(errc::port_collision), "harness::errc::port_collision");
  EXPECT_EQ(harness::error_code_name(harness::make_error_code(errc::output_closed)), "harness::errc::output_closed");
  EXPECT_EQ(harness::error_code_name(std::error_code(98, std::system_category())), "system:98");
  // A code the gtest layer has no name for still prints, by number.
  EXPECT_EQ(harness::error_code_name(std::error_code(999, harness::harness_category())), "harness::errc(999)");
}

TEST(Printers, EveryHarnessCodeHasAName) {
  for (int v = static_cast<int>(errc::invalid_argument); v <= static_cast<int>(errc::name_in_use); ++v) {
    const auto name = harness::error_code_name(std::error_code(v, harness::harness_category()));
    EXPECT_EQ(name.find("harness::errc("), std::string::npos) << "code " << v << " has no name";
  }
}

TEST(Printers, FailureAndErrorPrintTheFullMessage) {
  const auto f = harness::make_failure(errc::exited_before_ready, "db exited with status 7\n  | giving up");
  EXPECT_EQ(PrintToString(f),
            "[harness::errc::exited_before_ready] server exited before it was ready: db exited with status 7\n"
            "  | giving up");
  EXPECT_EQ(PrintToString(harness::error(f)), PrintToString(f));
}

TEST(Printers, ResultsPrintTheValueOrTheFailureHeadline) {
  EXPECT_EQ(PrintToString(result<int>(42)), "ok: 42");
  EXPECT_EQ(PrintToString(result<std::string>(std::string("x"))), "ok: \"x\"");
  EXPECT_EQ(PrintToString(result<void>()), "ok");
  const auto one_line = harness::make_failure(errc::timeout, "no line matched \"x\"");
  EXPECT_EQ(PrintToString(result<int>(one_line)),
            "failure: [harness::errc::timeout] timed out: no line matched \"x\"");
  const auto three_lines = harness::make_failure(errc::ready_timeout, "still waiting\n  a\n  b");
  EXPECT_EQ(PrintToString(result<void>(three_lines)),
            "failure: [harness::errc::ready_timeout] server did not become ready in time: still waiting "
            "(+2 more lines)");
  const auto two_lines = harness::make_failure(errc::ready_timeout, "still waiting\n  a");
  EXPECT_EQ(PrintToString(result<int>(two_lines)),
            "failure: [harness::errc::ready_timeout] server did not become ready in time: still waiting "
            "(+1 more line)");
}

TEST(Printers, Attempts) {
  harness::attempt a{.port = 20417, .outcome = harness::attempt::result::ready, .reason = {},
                     .duration = std::chrono::milliseconds(12)};
  EXPECT_EQ(PrintToString(a), harness::to_string(a));
  EXPECT_NE(PrintToString(a).find("port 20417"), std::string::npos) << PrintToString(a);
  EXPECT_EQ(PrintToString(std::vector<harness::attempt>{a}), "{ " + harness::to_string(a) + " }");
}

TEST(Printers, EmptyOwners) {
  EXPECT_EQ(PrintToString(harness::session()), "session (empty)");
  EXPECT_EQ(PrintToString(harness::process()), "process (empty)");
}

}  // namespace
