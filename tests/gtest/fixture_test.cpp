// The fixtures of harness/gtest/fixture.hpp with real fixture servers: server_test
// (per test) and shared_server (per suite) in the success path, their start failures
// and skips as GoogleTest sees them (intercepted with ScopedFakeTestPartResultReporter),
// plus LogContains and the session/process/output printers, which need real output.
// The failure paths that take down whole suites and programs, the listener and the
// XML report are checked end to end by e2e_test.cpp.
#include "harness/gtest/gtest.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <vector>

#include "../support.hpp"

namespace {

using namespace std::chrono_literals;
using harness::errc;
using harness::probe;
using harness::server_spec;
using harness::gtest::ErrorIs;
using harness::gtest::ExitedWith;
using harness::gtest::if_unavailable;
using harness::gtest::IsOk;
using harness::gtest::LogContains;
using harness_test::fixture_server;
using harness_test::tcp_request;
using testing::HasSubstr;
using testing::Not;

std::vector<std::string> fx(std::vector<std::string> args) {
  args.insert(args.begin(), fixture_server());
  return args;
}

constexpr const char* missing_program = "/nonexistent/serve-harness/no-such-server";

bool alive(int pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }

// Runs `fn` with GoogleTest's results for this thread intercepted.
template <class F>
std::vector<testing::TestPartResult> intercept(F&& fn) {
  testing::TestPartResultArray results;
  {
    testing::ScopedFakeTestPartResultReporter reporter(
        testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &results);
    fn();
  }
  std::vector<testing::TestPartResult> out;
  for (int i = 0; i < results.size(); ++i) out.push_back(results.GetTestPartResult(i));
  return out;
}

// --- server_test, success --------------------------------------------------------------

class EchoTest : public harness::gtest::server_test {
 protected:
  void SetUp() override {
    echo_ = start_server({.command = fx({"--eprint=echo: starting", "--port={port}"}),
                          .ready = {.probes = {probe::log("echo: starting"), probe::tcp()}},
                          .name = "echo"});
    if (echo_ == nullptr) return;
  }
  harness::session* echo_ = nullptr;
};

TEST_F(EchoTest, TalksToTheServerStartedInSetUp) {
  ASSERT_NE(echo_, nullptr);
  EXPECT_EQ(tcp_request(echo_->port(), "hello"), "pong: hello");
  EXPECT_EQ(server_count(), 1u);
  EXPECT_EQ(&server(), echo_);
  EXPECT_EQ(echo_->name(), "echo");
  EXPECT_THROW((void)server(1), std::out_of_range);
  EXPECT_THAT(*echo_, LogContains("^echo: starting$"));
}

TEST_F(EchoTest, StartsMoreServersInTheBodyAllAtOnce) {
  ASSERT_NE(echo_, nullptr);
  auto more = start_servers({{.command = fx({"--port={port}"}), .name = "a"},
                             {.command = fx({"--port={port}"}), .name = "b"}});
  ASSERT_EQ(more.size(), 2u);
  EXPECT_EQ(tcp_request(more[0]->port(), "a"), "pong: a");
  EXPECT_EQ(tcp_request(more[1]->port(), "b"), "pong: b");
  EXPECT_NE(more[0]->port(), more[1]->port());
  EXPECT_EQ(server_count(), 3u);
  EXPECT_EQ(&server(2), more[1]);
}

// A server_test made by hand (not run by gtest), to see what its methods report to the
// running test and what its destructor does.
class direct_fixture : public harness::gtest::server_test {
 public:
  void TestBody() override {}
  using server_test::server;
  using server_test::server_count;
  using server_test::start_server;
  using server_test::start_servers;
};

TEST(ServerTest, DestructionStopsTheServersNewestFirst) {
  std::vector<int> pids;
  {
    direct_fixture f;
    auto* first = f.start_server({.command = fx({"--port={port}"})});
    auto* second = f.start_server({.command = fx({"--port={port}"})});
    ASSERT_NE(first, nullptr);
    ASSERT_NE(second, nullptr);
    pids = {first->pid(), second->pid()};
  }
  for (int pid : pids) EXPECT_FALSE(alive(pid)) << "pid " << pid << " outlived its fixture";
}

TEST(ServerTest, AFailedStartIsAFatalFailureWithTheFullTextAtTheCallersLine) {
  direct_fixture f;
  harness::session* s = nullptr;
  int line = 0;
  auto results = intercept([&] {
    line = __LINE__ + 1;
    s = f.start_server({.command = fx({"--eprint=cannot open config", "--exit-before-ready=3", "--port={port}"}),
                        .name = "broken"});
  });
  EXPECT_EQ(s, nullptr);
  EXPECT_EQ(f.server_count(), 0u);
  ASSERT_EQ(results.size(), 1u);
  const auto& part = results[0];
  EXPECT_EQ(part.type(), testing::TestPartResult::kFatalFailure);
  EXPECT_STREQ(part.file_name(), __FILE__);
  EXPECT_EQ(part.line_number(), line);
  const std::string msg = part.message();
  for (const char* piece : {"server exited before it was ready", "broken", "exited with status 3",
                            "cannot open config", "log: ", "attempts:"}) {
    EXPECT_THAT(msg, HasSubstr(piece));
  }
}

TEST(ServerTest, AMissingProgramFailsUnlessAskedToSkip) {
  direct_fixture f;
  auto failed = intercept([&] { EXPECT_EQ(f.start_server({.command = {missing_program, "--port={port}"}}), nullptr); });
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].type(), testing::TestPartResult::kFatalFailure);
  EXPECT_THAT(failed[0].message(), HasSubstr("program not found: " + std::string(missing_program)));

  auto skipped = intercept([&] {
    EXPECT_EQ(f.start_server({.command = {missing_program, "--port={port}"}}, if_unavailable::skip), nullptr);
  });
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_EQ(skipped[0].type(), testing::TestPartResult::kSkip);
  EXPECT_THAT(skipped[0].message(), HasSubstr("not available here"));
  EXPECT_THAT(skipped[0].message(), HasSubstr("program not found: " + std::string(missing_program)));

  // skip is only for "not installed": a server that crashes still fails the test.
  auto crashed = intercept([&] {
    EXPECT_EQ(f.start_server({.command = fx({"--exit-before-ready=4", "--port={port}"})}, if_unavailable::skip),
              nullptr);
  });
  ASSERT_EQ(crashed.size(), 1u);
  EXPECT_EQ(crashed[0].type(), testing::TestPartResult::kFatalFailure);
}

TEST(ServerTest, StartServersIsAllOrNothing) {
  direct_fixture f;
  std::vector<harness::session*> got{nullptr};
  auto results = intercept([&] {
    got = f.start_servers({{.command = fx({"--port={port}"}), .name = "good"},
                           {.command = {missing_program, "--port={port}"}, .name = "bad"}});
  });
  EXPECT_TRUE(got.empty());
  EXPECT_EQ(f.server_count(), 0u);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].type(), testing::TestPartResult::kFatalFailure);
  EXPECT_THAT(results[0].message(), HasSubstr("program not found"));

  auto skipped = intercept([&] {
    got = f.start_servers({{.command = {missing_program, "--port={port}"}}}, if_unavailable::skip);
  });
  EXPECT_TRUE(got.empty());
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_EQ(skipped[0].type(), testing::TestPartResult::kSkip);
}

TEST(ServerTest, UnavailableMeansNotInstalled) {
  using harness::gtest::is_unavailable;
  EXPECT_TRUE(is_unavailable(harness::make_failure(errc::program_not_found)));
  EXPECT_TRUE(is_unavailable(harness::make_failure(errc::program_not_executable)));
  EXPECT_TRUE(is_unavailable(harness::make_failure(errc::program_is_directory)));
  EXPECT_FALSE(is_unavailable(harness::make_failure(errc::exited_before_ready)));
  EXPECT_FALSE(is_unavailable(harness::make_failure(errc::ready_timeout)));
}

// --- shared_server per suite ------------------------------------------------------------------

class SharedServerSuite : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    started_in_set_up = server.start({.command = fx({"--port={port}"}), .name = "shared"});
  }
  static void TearDownTestSuite() { server.stop(); }
  static inline harness::gtest::shared_server server;
  static inline bool started_in_set_up = false;
};

TEST_F(SharedServerSuite, IsReadyBeforeTheFirstTest) {
  EXPECT_TRUE(started_in_set_up);
  ASSERT_TRUE(server.started());
  EXPECT_EQ(server.error(), nullptr);
  EXPECT_EQ(tcp_request(server->port(), "one"), "pong: one");
  EXPECT_EQ(server->name(), "shared");
}

TEST_F(SharedServerSuite, ServesEveryTestOfTheSuite) {
  ASSERT_TRUE(server.started());
  EXPECT_EQ(tcp_request((*server).port(), "two"), "pong: two");
}

TEST(SharedServer, StopReturnsTheExitStatusAndIsIdempotent) {
  harness::gtest::shared_server s;
  EXPECT_EQ(s.stop(), std::nullopt);
  ASSERT_TRUE(s.start({.command = fx({"--port={port}"})}));
  const int pid = s->pid();
  const auto status = s.stop();
  ASSERT_TRUE(status.has_value());
  EXPECT_THAT(*status, ExitedWith(0));  // the fixture exits 0 on SIGTERM
  EXPECT_FALSE(alive(pid));
  EXPECT_FALSE(s.started());
  EXPECT_EQ(s.stop(), std::nullopt);
  EXPECT_THROW((void)s.get(), harness::error);
}

TEST(SharedServer, AFailedStartDuringATestFailsItRightAway) {
  harness::gtest::shared_server s;
  bool ok = true;
  auto results = intercept([&] { ok = s.start({.command = {missing_program, "--port={port}"}, .name = "late"}); });
  EXPECT_FALSE(ok);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].type(), testing::TestPartResult::kFatalFailure);
  EXPECT_THAT(results[0].message(),
              HasSubstr("the shared server late of test suite SharedServer did not start"));
  ASSERT_NE(s.error(), nullptr);
  EXPECT_THAT(results[0].message(), HasSubstr(s.error()->message()));
  EXPECT_THAT(*s.error(), ErrorIs(errc::program_not_found));
  try {
    (void)s.get();
    ADD_FAILURE() << "get() did not throw";
  } catch (const harness::error& e) {
    EXPECT_THAT(e, ErrorIs(errc::program_not_found));
  }
  s.stop();  // withdraws the failure from the rest of the suite
  EXPECT_EQ(s.error(), nullptr);
}

TEST(SharedServer, ASkippableFailureDuringATestSkipsIt) {
  harness::gtest::shared_server s;
  auto results = intercept([&] { (void)s.start({.command = {missing_program, "--port={port}"}}, if_unavailable::skip); });
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].type(), testing::TestPartResult::kSkip);
  EXPECT_THAT(results[0].message(), HasSubstr("program not found"));
  s.stop();
}

// --- LogContains and the printers on real output ---------------------------------------------------

TEST(LogContains, MatchesALineOfStdoutOrStderr) {
  harness::session s = harness::session::start(
      {.command = fx({"--print=out: hello", "--eprint=err: world", "--port={port}"}),
       .ready = {.probes = {probe::log("out: hello"), probe::log("err: world"), probe::tcp()}}});
  EXPECT_THAT(s, LogContains("^out: hello$"));
  EXPECT_THAT(s, LogContains(R"(err: w.rld)"));
  EXPECT_THAT(s, Not(LogContains("nowhere")));
  EXPECT_THAT(s.process(), LogContains("hello"));
  EXPECT_THAT(s.output(), LogContains("world"));

  testing::StringMatchResultListener why;
  EXPECT_TRUE(testing::ExplainMatchResult(LogContains("w.rld"), s, &why));
  EXPECT_EQ(why.str(), "whose stderr line \"err: world\" matches");
}

TEST(LogContains, ExplainsAMismatchWithTheLastLines) {
  harness::process p = harness::process::spawn(
      {.argv = {"/bin/sh", "-c", "for i in 1 2 3 4 5 6 7; do echo out$i; done; echo err-only >&2"}});
  ASSERT_TRUE(p.output().wait_closed(10s));
  testing::StringMatchResultListener why;
  EXPECT_FALSE(testing::ExplainMatchResult(LogContains("nowhere"), p, &why));
  EXPECT_EQ(why.str(),
            "which has no matching line among the 7 stdout lines and 1 stderr line in its tails\n"
            "  last stdout lines:\n    | out3\n    | out4\n    | out5\n    | out6\n    | out7\n"
            "  last stderr lines:\n    | err-only");
  EXPECT_EQ(testing::DescribeMatcher<const harness::process&>(LogContains("x+")),
            "has a line in its stdout or stderr tail matching /x+/");
  EXPECT_EQ(testing::DescribeMatcher<const harness::process&>(LogContains("x+"), true),
            "has no line in its stdout or stderr tail matching /x+/");
}

TEST(LogContains, ABadPatternNeverMatchesAndSaysWhy) {
  harness::process p = harness::process::spawn({.argv = {"/bin/sh", "-c", "echo x"}});
  ASSERT_TRUE(p.output().wait_closed(10s));
  testing::StringMatchResultListener why;
  EXPECT_FALSE(testing::ExplainMatchResult(LogContains("("), p, &why));
  EXPECT_THAT(why.str(), HasSubstr("which cannot be searched: bad regular expression"));
}

TEST(LogContains, EmptyOwnersNeverMatch) {
  testing::StringMatchResultListener why;
  EXPECT_FALSE(testing::ExplainMatchResult(LogContains(""), harness::session(), &why));
  EXPECT_EQ(why.str(), "which is an empty session object");
  EXPECT_FALSE(testing::ExplainMatchResult(LogContains(""), harness::process(), &why));
}

TEST(LogContains, FailureMessagePrintsTheSession) {
  harness::session s = harness::session::start({.command = fx({"--port={port}"}), .name = "quiet"});
  EXPECT_NONFATAL_FAILURE(EXPECT_THAT(s, LogContains("never printed")),
                          "Actual: session quiet on 127.0.0.1:");
}

TEST(Printers, LiveSessionProcessAndOutput) {
  harness::session s = harness::session::start({.command = fx({"--print=one", "--port={port}"}),
                                                .ready = {.probes = {probe::log("^one$"), probe::tcp()}},
                                                .name = "printed"});
  EXPECT_EQ(testing::PrintToString(s), "session printed on " + s.endpoint() + " (pid " + std::to_string(s.pid()) +
                                           ", running, 1 attempt, ready in " +
                                           std::to_string(s.ready_time().count()) + " ms)");
  EXPECT_THAT(testing::PrintToString(s.process()),
              testing::MatchesRegex("process '.*fixture-server.*--port=[0-9]+' \\(pid [0-9]+, running\\)"));
  EXPECT_THAT(testing::PrintToString(s.output()), testing::StartsWith("output ("));
  EXPECT_THAT(testing::PrintToString(s.output()), HasSubstr(", log " + s.log_path().string() + ")"));
  s.stop();
  EXPECT_THAT(testing::PrintToString(s), HasSubstr("exited with status 0"));
}

TEST(Snapshot, CopiesWhatTheListenerReports) {
  harness::session s = harness::session::start({.command = fx({"--eprint=snap", "--port={port}"}),
                                                .ready = {.probes = {probe::log("^snap$"), probe::tcp()}},
                                                .name = "snapped"});
  const auto info = harness::gtest::snapshot(s);
  EXPECT_EQ(info.name, "snapped");
  EXPECT_EQ(info.port, s.port());
  EXPECT_EQ(info.pid, s.pid());
  EXPECT_EQ(info.endpoint, s.endpoint());
  EXPECT_EQ(info.attempts.size(), 1u);
  EXPECT_EQ(info.ready_time, s.ready_time());
  EXPECT_EQ(info.log, s.log_path());
  EXPECT_TRUE(info.running);
  ASSERT_FALSE(info.output_tail.empty());
  EXPECT_EQ(info.output_tail.back(), (harness::output_line{harness::stream::err, "snap"}));
  // The same as the core's own view of live sessions.
  bool found = false;
  for (const auto& live : harness::live_sessions()) {
    if (live.pid != s.pid()) continue;
    found = true;
    EXPECT_EQ(live.name, info.name);
    EXPECT_EQ(live.endpoint, info.endpoint);
    EXPECT_EQ(live.command, info.command);
  }
  EXPECT_TRUE(found);
}

}  // namespace
