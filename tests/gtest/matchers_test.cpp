// The matchers of harness/gtest/matchers.hpp on values (no processes): each one's match,
// mismatch, description, negation and explanation text, and what EXPECT_THAT prints.
// LogContains needs real output: it is tested in fixture_test.cpp.
#include "harness/gtest/matchers.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <csignal>
#include <optional>
#include <string>
#include <system_error>

namespace {

using harness::errc;
using harness::exit_status;
using harness::failure;
using harness::result;
using harness::gtest::ErrorIs;
using harness::gtest::ExitedWith;
using harness::gtest::IsOk;
using harness::gtest::KilledBy;
using testing::DescribeMatcher;
using testing::HasSubstr;
using testing::Not;

// The explanation `matcher` gives for `value` (as a Matcher<const T&>).
template <class T, class M>
std::string explain(const M& matcher, const T& value) {
  testing::Matcher<const T&> m = matcher;
  testing::StringMatchResultListener listener;
  m.MatchAndExplain(value, &listener);
  return listener.str();
}

template <class T, class M>
bool matches(const M& matcher, const T& value) {
  testing::Matcher<const T&> m = matcher;
  return m.Matches(value);
}

const failure timeout_failure =
    harness::make_failure(errc::ready_timeout, "my-server: still waiting for tcp\n  stderr (last 1 line):\n  | hello");

// --- ExitedWith -------------------------------------------------------------------------

TEST(ExitedWith, MatchesTheExitCode) {
  EXPECT_TRUE(matches(ExitedWith(0), exit_status::exited_with(0)));
  EXPECT_TRUE(matches(ExitedWith(3), exit_status::exited_with(3)));
  EXPECT_FALSE(matches(ExitedWith(0), exit_status::exited_with(1)));
  // A signal number equal to the code is not an exit.
  EXPECT_FALSE(matches(ExitedWith(9), exit_status::killed_by(9)));
  EXPECT_FALSE(matches(ExitedWith(0), exit_status{}));
  EXPECT_THAT(exit_status::exited_with(1), Not(ExitedWith(0)));
}

TEST(ExitedWith, WorksOnOptionalStatus) {
  EXPECT_TRUE(matches(ExitedWith(2), std::optional<exit_status>(exit_status::exited_with(2))));
  EXPECT_FALSE(matches(ExitedWith(2), std::optional<exit_status>(exit_status::exited_with(3))));
  EXPECT_FALSE(matches(ExitedWith(0), std::optional<exit_status>()));
  EXPECT_EQ(explain(ExitedWith(0), std::optional<exit_status>()), "which has no exit status yet (still running)");
}

TEST(ExitedWith, DescribesItself) {
  EXPECT_EQ(DescribeMatcher<exit_status>(ExitedWith(3)), "exited with status 3");
  EXPECT_EQ(DescribeMatcher<exit_status>(ExitedWith(3), true), "did not exit with status 3");
  // The printed value says what happened; no explanation repeats it.
  EXPECT_EQ(explain(ExitedWith(0), exit_status::killed_by(SIGKILL)), "");
}

TEST(ExitedWith, FailureMessageShowsBothSides) {
  EXPECT_NONFATAL_FAILURE(EXPECT_THAT(exit_status::killed_by(SIGKILL), ExitedWith(0)),
                          "Expected: exited with status 0\n  Actual: killed by signal 9 (SIGKILL)");
}

// --- KilledBy --------------------------------------------------------------------------------

TEST(KilledBy, MatchesTheSignal) {
  EXPECT_TRUE(matches(KilledBy(SIGKILL), exit_status::killed_by(SIGKILL)));
  EXPECT_TRUE(matches(KilledBy(SIGSEGV), exit_status::killed_by(SIGSEGV, true)));  // core or not
  EXPECT_FALSE(matches(KilledBy(SIGKILL), exit_status::killed_by(SIGTERM)));
  EXPECT_FALSE(matches(KilledBy(9), exit_status::exited_with(9)));
  EXPECT_FALSE(matches(KilledBy(SIGTERM), exit_status{}));
  EXPECT_TRUE(matches(KilledBy(SIGTERM), std::optional<exit_status>(exit_status::killed_by(SIGTERM))));
  EXPECT_FALSE(matches(KilledBy(SIGTERM), std::optional<exit_status>()));
}

TEST(KilledBy, DescribesItself) {
  EXPECT_EQ(DescribeMatcher<exit_status>(KilledBy(SIGKILL)), "was killed by signal 9 (SIGKILL)");
  EXPECT_EQ(DescribeMatcher<exit_status>(KilledBy(SIGTERM), true), "was not killed by signal 15 (SIGTERM)");
  EXPECT_NONFATAL_FAILURE(EXPECT_THAT(std::optional<exit_status>(), KilledBy(SIGTERM)),
                          "Actual: (nullopt), which has no exit status yet (still running)");
}

// --- IsOk ---------------------------------------------------------------------------------------

TEST(IsOk, MatchesResultsWithAValue) {
  EXPECT_TRUE(matches(IsOk(), result<int>(3)));
  EXPECT_TRUE(matches(IsOk(), result<void>()));
  EXPECT_FALSE(matches(IsOk(), result<int>(timeout_failure)));
  EXPECT_FALSE(matches(IsOk(), result<void>(timeout_failure)));
  EXPECT_EQ(explain(IsOk(), result<int>(3)), "which holds a value");
}

TEST(IsOk, ExplainsTheFullFailureMessage) {
  EXPECT_EQ(explain(IsOk(), result<int>(timeout_failure)),
            "which failed with harness::errc::ready_timeout: " + timeout_failure.message());
  EXPECT_EQ(explain(IsOk(), result<void>(timeout_failure)),
            "which failed with harness::errc::ready_timeout: " + timeout_failure.message());
}

TEST(IsOk, DescribesItself) {
  EXPECT_EQ(DescribeMatcher<result<int>>(IsOk()), "is ok (holds a value)");
  EXPECT_EQ(DescribeMatcher<result<int>>(IsOk(), true), "is a failure (holds no value)");
}

TEST(IsOk, FailureMessageHasTheFullTextOnce) {
  testing::TestPartResultArray results;
  {
    testing::ScopedFakeTestPartResultReporter reporter(
        testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &results);
    EXPECT_THAT(result<int>(timeout_failure), IsOk());
  }
  ASSERT_EQ(results.size(), 1);
  const std::string msg = results.GetTestPartResult(0).message();
  EXPECT_THAT(msg, HasSubstr("Expected: is ok (holds a value)"));
  // The value prints its headline; the explanation carries the full text.
  EXPECT_THAT(msg, HasSubstr("Actual: failure: [harness::errc::ready_timeout] server did not become ready in "
                             "time: my-server: still waiting for tcp (+2 more lines) (of type harness::result<int>), which "
                             "failed with"));
  EXPECT_THAT(msg, HasSubstr("| hello"));
  EXPECT_EQ(msg.find("| hello"), msg.rfind("| hello")) << msg;
}

// --- ErrorIs ----------------------------------------------------------------------------------------

TEST(ErrorIs, MatchesTheCodeOfAResult) {
  EXPECT_TRUE(matches(ErrorIs(errc::ready_timeout), result<int>(timeout_failure)));
  EXPECT_TRUE(matches(ErrorIs(errc::ready_timeout), result<void>(timeout_failure)));
  EXPECT_FALSE(matches(ErrorIs(errc::timeout), result<int>(timeout_failure)));
  EXPECT_FALSE(matches(ErrorIs(errc::timeout), result<int>(1)));
  EXPECT_FALSE(matches(ErrorIs(errc::timeout), result<void>()));
}

TEST(ErrorIs, ExplainsWhatItFound) {
  EXPECT_EQ(explain(ErrorIs(errc::timeout), result<int>(1)), "which holds a value, not an error");
  EXPECT_EQ(explain(ErrorIs(errc::timeout), result<int>(timeout_failure)),
            "which failed with harness::errc::ready_timeout: " + timeout_failure.message());
  EXPECT_EQ(explain(ErrorIs(errc::timeout), timeout_failure),
            "whose code is harness::errc::ready_timeout (\"server did not become ready in time\")");
}

TEST(ErrorIs, MatchesFailuresErrorsAndErrorCodes) {
  EXPECT_TRUE(matches(ErrorIs(errc::ready_timeout), timeout_failure));
  EXPECT_FALSE(matches(ErrorIs(errc::port_collision), timeout_failure));
  const harness::error thrown(timeout_failure);
  EXPECT_TRUE(matches(ErrorIs(errc::ready_timeout), thrown));
  EXPECT_FALSE(matches(ErrorIs(errc::timeout), thrown));
  EXPECT_TRUE(matches(ErrorIs(errc::not_running), harness::make_error_code(errc::not_running)));
  const std::error_code in_use(EADDRINUSE, std::system_category());
  EXPECT_TRUE(matches(ErrorIs(in_use), in_use));
  EXPECT_TRUE(matches(ErrorIs(in_use), harness::make_system_failure(EADDRINUSE, "bind")));
  EXPECT_FALSE(matches(ErrorIs(errc::port_collision), in_use));
  EXPECT_EQ(explain(ErrorIs(errc::port_collision), in_use),
            "which is system:" + std::to_string(EADDRINUSE) + " (\"" + in_use.message() + "\")");
}

TEST(ErrorIs, DescribesItself) {
  EXPECT_EQ(DescribeMatcher<failure>(ErrorIs(errc::program_not_found)),
            "is the error harness::errc::program_not_found (\"program not found\")");
  EXPECT_EQ(DescribeMatcher<failure>(ErrorIs(errc::program_not_found), true),
            "is not the error harness::errc::program_not_found (\"program not found\")");
}

TEST(ErrorIs, FailureMessageOfAFailureValue) {
  EXPECT_NONFATAL_FAILURE(EXPECT_THAT(timeout_failure, ErrorIs(errc::timeout)),
                          "Actual: [harness::errc::ready_timeout] server did not become ready in time: my-server");
}

}  // namespace
