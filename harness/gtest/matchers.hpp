// harness/gtest/matchers.hpp — GoogleMock matchers for exit statuses, output and errors.
//
//   using namespace harness::gtest;   // or name the matchers one by one
//   EXPECT_THAT(server.stop(), ExitedWith(0));
//   EXPECT_THAT(proc.status(), KilledBy(SIGKILL));          // std::optional<exit_status>
//   EXPECT_THAT(server, LogContains(R"(listening on port \d+)"));
//   EXPECT_THAT(harness::session::try_start(spec), IsOk());
//   EXPECT_THAT(harness::session::try_start(bad), ErrorIs(harness::errc::program_not_found));
//
// What each accepts:
//   ExitedWith(code), KilledBy(signal)  harness::exit_status, std::optional<exit_status>
//                                       (nullopt — still running — never matches)
//   LogContains(pattern)                harness::session, harness::process, harness::output
//   IsOk()                              harness::result<T>, harness::result<void>
//   ErrorIs(errc or std::error_code)    result<T>, result<void>, harness::failure,
//                                       harness::error, std::error_code
//
// A mismatch explains what the printed value does not show: a result's full error text
// ("which failed with harness::errc::ready_timeout: <the library's full message>"), the
// last lines of the tails ("which has no matching line among the 12 stdout and 3
// stderr lines in its tails ..."), "which has no exit status yet (still running)".
// Values print through harness/gtest/printers.hpp ("killed by signal 9 (SIGKILL)").
//
// Blocking: none of them waits. LogContains looks only at the lines already in the
// output's in-memory tails (output::wait_for_line with a zero timeout, which is zero
// whatever HARNESS_TIMEOUT_SCALE says).
//
// Gotchas:
//   * LogContains sees only what the harness has drained so far, and only the lines
//     still in the tails (output_options::tail_bytes per stream). To wait for a line
//     that the server prints a little later, wait first:
//       ASSERT_TRUE(server.output().wait_for_line("flushed", 5s));  // scaled
//   * Patterns are Perl syntax and match anywhere in a line (search, not full match).
//     A pattern that does not compile never matches, and the explanation says why.
//   * ErrorIs compares std::error_code values exactly (category and value), so a
//     system error (std::system_category) does not equal the std::errc condition of
//     the same number.
#pragma once

#include <gmock/gmock.h>

#include <optional>
#include <ostream>
#include <string>
#include <system_error>

#include "harness/error.hpp"
#include "harness/exit_status.hpp"
#include "harness/gtest/printers.hpp"
#include "harness/output.hpp"
#include "harness/process.hpp"
#include "harness/session.hpp"

namespace harness::gtest {

namespace matchers_internal {

// ExitedWith / KilledBy.
class exit_status_matcher {
 public:
  explicit exit_status_matcher(exit_status expected) : expected_(expected) {}
  bool MatchAndExplain(const exit_status& actual, ::testing::MatchResultListener* listener) const;
  bool MatchAndExplain(const std::optional<exit_status>& actual,
                       ::testing::MatchResultListener* listener) const;
  void DescribeTo(std::ostream* os) const;
  void DescribeNegationTo(std::ostream* os) const;

 private:
  exit_status expected_;
};

// LogContains.
class log_matcher {
 public:
  explicit log_matcher(std::string pattern) : pattern_(std::move(pattern)) {}
  bool MatchAndExplain(const harness::output& actual, ::testing::MatchResultListener* listener) const;
  bool MatchAndExplain(const harness::process& actual, ::testing::MatchResultListener* listener) const;
  bool MatchAndExplain(const harness::session& actual, ::testing::MatchResultListener* listener) const;
  void DescribeTo(std::ostream* os) const;
  void DescribeNegationTo(std::ostream* os) const;

 private:
  std::string pattern_;
};

// "which failed with harness::errc::x: <full message>".
std::string explain_failure(const failure& f);

// IsOk.
class ok_matcher {
 public:
  template <class T>
  bool MatchAndExplain(const result<T>& actual, ::testing::MatchResultListener* listener) const {
    if (actual.has_value()) {
      *listener << "which holds a value";
      return true;
    }
    *listener << explain_failure(actual.error());
    return false;
  }
  void DescribeTo(std::ostream* os) const;
  void DescribeNegationTo(std::ostream* os) const;
};

// ErrorIs.
class error_matcher {
 public:
  explicit error_matcher(std::error_code expected) : expected_(expected) {}
  template <class T>
  bool MatchAndExplain(const result<T>& actual, ::testing::MatchResultListener* listener) const {
    if (actual.has_value()) {
      *listener << "which holds a value, not an error";
      return false;
    }
    // A result prints only the headline of its failure: explain with the full text.
    *listener << explain_failure(actual.error());
    return actual.error().code == expected_;
  }
  bool MatchAndExplain(const failure& actual, ::testing::MatchResultListener* listener) const;
  bool MatchAndExplain(const harness::error& actual, ::testing::MatchResultListener* listener) const;
  bool MatchAndExplain(const std::error_code& actual, ::testing::MatchResultListener* listener) const;
  void DescribeTo(std::ostream* os) const;
  void DescribeNegationTo(std::ostream* os) const;

 private:
  std::error_code expected_;
};

}  // namespace matchers_internal

// The process exited (did not die by a signal) with this exit code.
inline ::testing::PolymorphicMatcher<matchers_internal::exit_status_matcher> ExitedWith(int code) {
  return ::testing::MakePolymorphicMatcher(matchers_internal::exit_status_matcher(exit_status::exited_with(code)));
}

// The process was killed by this signal (whether or not it dumped core).
inline ::testing::PolymorphicMatcher<matchers_internal::exit_status_matcher> KilledBy(int signal) {
  return ::testing::MakePolymorphicMatcher(matchers_internal::exit_status_matcher(exit_status::killed_by(signal)));
}

// A line in the stdout or stderr tail matches `pattern` (Perl syntax, search).
inline ::testing::PolymorphicMatcher<matchers_internal::log_matcher> LogContains(std::string pattern) {
  return ::testing::MakePolymorphicMatcher(matchers_internal::log_matcher(std::move(pattern)));
}

// The result holds a value; a mismatch shows the failure's full message.
inline ::testing::PolymorphicMatcher<matchers_internal::ok_matcher> IsOk() {
  return ::testing::MakePolymorphicMatcher(matchers_internal::ok_matcher());
}

// The result failed (or the failure / error / error_code is) with this code.
inline ::testing::PolymorphicMatcher<matchers_internal::error_matcher> ErrorIs(errc code) {
  return ::testing::MakePolymorphicMatcher(matchers_internal::error_matcher(make_error_code(code)));
}
inline ::testing::PolymorphicMatcher<matchers_internal::error_matcher> ErrorIs(std::error_code code) {
  return ::testing::MakePolymorphicMatcher(matchers_internal::error_matcher(code));
}

}  // namespace harness::gtest
