#include "harness/gtest/matchers.hpp"

#include <chrono>
#include <vector>

namespace harness::gtest::matchers_internal {
namespace {

// How many of the last lines of each stream a LogContains mismatch shows.
constexpr std::size_t shown_lines = 5;

bool same(const exit_status& expected, const exit_status& actual) {
  if (expected.exited()) return actual.exited() && actual.code() == expected.code();
  return actual.signaled() && actual.signal() == expected.signal();
}

std::string describe_code(std::error_code code) {
  return error_code_name(code) + " (\"" + code.message() + "\")";
}

std::string lines_word(std::size_t n) { return n == 1 ? " line" : " lines"; }

}  // namespace

// --- ExitedWith / KilledBy -------------------------------------------------------

bool exit_status_matcher::MatchAndExplain(const exit_status& actual,
                                          ::testing::MatchResultListener*) const {
  // No explanation: the value prints itself ("killed by signal 9 (SIGKILL)").
  return same(expected_, actual);
}

bool exit_status_matcher::MatchAndExplain(const std::optional<exit_status>& actual,
                                          ::testing::MatchResultListener* listener) const {
  if (!actual) {
    *listener << "which has no exit status yet (still running)";
    return false;
  }
  return MatchAndExplain(*actual, listener);
}

void exit_status_matcher::DescribeTo(std::ostream* os) const {
  if (expected_.exited()) {
    *os << "exited with status " << expected_.code();
  } else {
    *os << "was " << expected_.str();
  }
}

void exit_status_matcher::DescribeNegationTo(std::ostream* os) const {
  if (expected_.exited()) {
    *os << "did not exit with status " << expected_.code();
  } else {
    *os << "was not " << expected_.str();
  }
}

// --- LogContains -------------------------------------------------------------------

bool log_matcher::MatchAndExplain(const harness::output& actual,
                                  ::testing::MatchResultListener* listener) const {
  // A zero timeout: only the lines already in the tails; scaling zero gives zero.
  auto hit = actual.wait_for_line(pattern_, std::chrono::milliseconds(0));
  if (hit) {
    *listener << "whose " << stream_name(hit->source) << " line \"" << hit->line << "\" matches";
    return true;
  }
  if (hit.error().code == errc::bad_pattern) {
    *listener << "which cannot be searched: " << hit.error().message();
    return false;
  }
  const auto out = actual.tail_lines(stream::out);
  const auto err = actual.tail_lines(stream::err);
  *listener << "which has no matching line among the " << out.size() << " stdout" << lines_word(out.size())
            << " and " << err.size() << " stderr" << lines_word(err.size()) << " in its tails";
  for (const auto& [s, lines] : {std::pair{stream::out, &out}, std::pair{stream::err, &err}}) {
    if (lines->empty()) continue;
    const std::size_t first = lines->size() > shown_lines ? lines->size() - shown_lines : 0;
    *listener << "\n  last " << stream_name(s) << " lines:";
    for (std::size_t i = first; i < lines->size(); ++i) *listener << "\n    | " << (*lines)[i];
  }
  return false;
}

bool log_matcher::MatchAndExplain(const harness::process& actual,
                                  ::testing::MatchResultListener* listener) const {
  if (!actual.valid()) {
    *listener << "which is an empty process object";
    return false;
  }
  return MatchAndExplain(actual.output(), listener);
}

bool log_matcher::MatchAndExplain(const harness::session& actual,
                                  ::testing::MatchResultListener* listener) const {
  if (!actual.valid()) {
    *listener << "which is an empty session object";
    return false;
  }
  return MatchAndExplain(actual.output(), listener);
}

void log_matcher::DescribeTo(std::ostream* os) const {
  *os << "has a line in its stdout or stderr tail matching /" << pattern_ << "/";
}

void log_matcher::DescribeNegationTo(std::ostream* os) const {
  *os << "has no line in its stdout or stderr tail matching /" << pattern_ << "/";
}

// --- IsOk ---------------------------------------------------------------------------------

std::string explain_failure(const failure& f) {
  return "which failed with " + error_code_name(f.code) + ": " + f.message();
}

void ok_matcher::DescribeTo(std::ostream* os) const { *os << "is ok (holds a value)"; }

void ok_matcher::DescribeNegationTo(std::ostream* os) const { *os << "is a failure (holds no value)"; }

// --- ErrorIs --------------------------------------------------------------------------------

bool error_matcher::MatchAndExplain(const failure& actual, ::testing::MatchResultListener* listener) const {
  // A failure prints its full text itself (PrintTo); the code is what this compares.
  *listener << "whose code is " << describe_code(actual.code);
  return actual.code == expected_;
}

bool error_matcher::MatchAndExplain(const harness::error& actual,
                                    ::testing::MatchResultListener* listener) const {
  return MatchAndExplain(actual.info(), listener);
}

bool error_matcher::MatchAndExplain(const std::error_code& actual,
                                    ::testing::MatchResultListener* listener) const {
  *listener << "which is " << describe_code(actual);
  return actual == expected_;
}

void error_matcher::DescribeTo(std::ostream* os) const { *os << "is the error " << describe_code(expected_); }

void error_matcher::DescribeNegationTo(std::ostream* os) const {
  *os << "is not the error " << describe_code(expected_);
}

}  // namespace harness::gtest::matchers_internal
