// harness/gtest/listener.hpp — when a test fails, say what its servers were doing.
//
// A GoogleTest event listener that
//   * prints, when a test fails, every server that was live during it: command, endpoint,
//     pid, exit status, attempts, ready time, the tail of its stdout and stderr (merged in
//     arrival order, runs of identical lines collapsed) and the path of its
//     full log (so the reason a server misbehaved is in the test output, not lost);
//   * records the servers of every test (failed or not) as test properties, which
//     `--gtest_output=xml:report.xml` writes on the test's <testcase> element:
//       <property name="harness.port" value="20417"/>
//       <property name="harness.attempts" value="1"/>
//       <property name="harness.ready_ms" value="3"/>
//       <property name="harness.log" value="/tmp/.../fixture-server-....log"/>
//
// Install it once, after InitGoogleTest and before RUN_ALL_TESTS — or link
// harness::gtest_main, whose main() does exactly that:
//
//   int main(int argc, char** argv) {
//     testing::InitGoogleMock(&argc, argv);
//     harness::gtest::install_listener();
//     return RUN_ALL_TESTS();
//   }
//
// Which servers belong to a test: every session (harness::session, however it was
// started) that is live when the test starts (per-suite and per-program servers), when
// an assertion fails, when a harness::gtest fixture starts or tears down a server, and
// when the test ends (harness::live_sessions()). Their snapshots are taken at those
// moments, on the test's thread; the report printed at the end of a failed test shows
// the latest snapshot of each (a fixture's servers are already stopped by then — gtest
// destroys the fixture before the test-end event — so they show how they ended, with
// what they printed while stopping).
//
// Property names: a test with exactly one server gets harness.port, harness.attempts,
// harness.ready_ms and harness.log. A test with several gets the same four per server,
// prefixed with the server's name (server_spec::name, else the program's file name):
// harness.<name>.port, ...; a name seen again in the same test gets "#2", "#3", ...
// appended (harness.redis#2.port), in the order the servers were first seen.
// Properties are recorded at the end of the test (OnTestEnd, which gtest 1.12 still
// attributes to the test's <testcase>).
//
// Blocking: nothing waits. Each snapshot copies at most 200 output lines per server.
//
// Gotchas:
//   * A session that a test starts and destroys itself, with no failure in between and
//     without a harness::gtest fixture, is never seen; call note_session() after
//     starting it if you want its properties recorded.
//   * Failures reported from other threads (e.g. an EXPECT in a probe callback) mark
//     the test failed but take no snapshot: the listener calls into the harness only
//     on the thread that runs the test.
//   * The report goes to stdout, next to GoogleTest's own output, before the
//     "[  FAILED  ]" line of the test.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "harness/named_server.hpp"
#include "harness/session.hpp"

namespace harness::gtest {

struct listener_options {
  // Print the servers of a failed test.
  bool print_on_failure = true;
  // Record harness.* properties for every test.
  bool record_properties = true;
  // How many of the last output lines (stdout and stderr merged, a run of identical
  // lines counting once) to print per server.
  std::size_t output_lines = 20;
};

class listener : public ::testing::EmptyTestEventListener {
 public:
  explicit listener(listener_options options = {});
  void OnTestStart(const ::testing::TestInfo& test) override;
  void OnTestPartResult(const ::testing::TestPartResult& result) override;
  void OnTestEnd(const ::testing::TestInfo& test) override;

  [[nodiscard]] const listener_options& options() const { return options_; }

 private:
  listener_options options_;
};

// Appends a listener to GoogleTest's listeners (which own and delete it). Idempotent: a
// second call returns the listener of the first and ignores `options`. Call it from
// main() before RUN_ALL_TESTS().
listener& install_listener(listener_options options = {});

// Whether install_listener() has run in this process.
[[nodiscard]] bool listener_installed();

// Tells the listener about a session of the running test (the harness::gtest fixtures
// call this for every server they start). Cheap; does nothing without a listener or
// outside a test.
void note_session(const harness::session& s);

// Tells the listener about a named shared server this program holds (attach_named()
// does it): judged and recorded at each test's end, reported when a test fails. The
// server object must outlive the tests.
void note_named(const harness::named_server& s);

// A snapshot of one session (what live_sessions() returns for it).
[[nodiscard]] session_info snapshot(const harness::session& s);

// The properties for a test with these servers, in order (see "Property names" above).
[[nodiscard]] std::vector<std::pair<std::string, std::string>> test_properties(
    const std::vector<session_info>& servers);

// The text printed for a failed test `test_name` ("Suite.Test") with these servers.
[[nodiscard]] std::string format_report(const std::string& test_name,
                                        const std::vector<session_info>& servers,
                                        std::size_t output_lines = 20);

}  // namespace harness::gtest
