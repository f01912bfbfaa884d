// harness/gtest/printers.hpp — how GoogleTest prints serve-harness values.
//
// GoogleTest prints the values an assertion compares ("Actual: ...", "Which is: ...").
// Without help it prints an object it does not know as raw bytes; with these PrintTo
// overloads (found by argument-dependent lookup, so they live in namespace harness) a
// failed assertion reads like the library's own messages:
//
//   #include "harness/gtest/printers.hpp"
//   EXPECT_EQ(p.stop(), harness::exit_status::exited_with(0));
//   //   Actual: killed by signal 9 (SIGKILL)
//   //   Expected: exited with status 0
//   EXPECT_THAT(r, harness::gtest::IsOk());      // r: a harness::result<session>
//   //   Actual: failure: [harness::errc::ready_timeout] server did not become ready in
//   //   time: still waiting for tcp (+14 more lines), which failed with <full text>
//
// Nothing here blocks: printing a session or a process reads a snapshot of its state.
//
// Gotchas:
//   * Include this header (or harness/gtest/gtest.hpp) in every test file that prints
//     these types. A file that does not see the overloads prints them differently (as
//     bytes, or with operator<< where the type has one), and two different printers
//     for one type in one program is an ODR violation GoogleTest documents.
//   * Printing a result<T> that holds a value prints the value with GoogleTest's own
//     printer, so T needs a printer too (or is printed as bytes).
#pragma once

#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <system_error>

#include "harness/error.hpp"
#include "harness/exit_status.hpp"
#include "harness/output.hpp"
#include "harness/process.hpp"
#include "harness/respawn.hpp"
#include "harness/session.hpp"

namespace harness {

// "harness::errc::ready_timeout" for a harness code, "system:98" / "generic:2" for
// others (category name and value).
[[nodiscard]] std::string error_code_name(std::error_code code);

// "exited with status 3", "killed by signal 9 (SIGKILL)", "status unknown".
void PrintTo(const exit_status& s, std::ostream* os);
// "harness::errc::port_collision".
void PrintTo(errc e, std::ostream* os);
// "[harness::errc::ready_timeout] server did not become ready in time: <detail>"
// (the full failure::message(), which may span several lines).
void PrintTo(const failure& f, std::ostream* os);
// As for the failure it carries.
void PrintTo(const error& e, std::ostream* os);
// "port 20417: ready after 12 ms".
void PrintTo(const attempt& a, std::ostream* os);
// "session fixture-server on 127.0.0.1:20417 (pid 4242, running, 1 attempt, ready in 3 ms)",
// "session (empty)".
void PrintTo(const session& s, std::ostream* os);
// "process 'fixture-server --port=0' (pid 4242, exited with status 0)", "process (empty)".
void PrintTo(const process& p, std::ostream* os);
// "output (3 stdout lines, 1 stderr line, log /tmp/.../x.log)".
void PrintTo(const output& o, std::ostream* os);

// The headline of a failed result: "failure: [harness::errc::exited_before_ready] server
// exited before it was ready: my-server exited with status 7 (+23 more lines)". Only
// the first line of the message: the matchers (IsOk, ErrorIs) put the full text in
// their explanation, and printing it twice would double a long stderr tail.
void print_failure_headline(const failure& f, std::ostream* os);

// "ok" / "failure: [code] <first line of the message> (+N more lines)".
void PrintTo(const result<void>& r, std::ostream* os);
// "ok: <value>" / "failure: [code] <first line of the message> (+N more lines)".
template <class T>
void PrintTo(const result<T>& r, std::ostream* os) {
  if (r.has_value()) {
    *os << "ok: " << ::testing::PrintToString(r.value());
  } else {
    print_failure_headline(r.error(), os);
  }
}

}  // namespace harness
