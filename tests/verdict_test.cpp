// What the end of a started server means (session::check(), warnings(), expect_exit()):
// an exit of its own while the test runs, the status the stop finds, a sanitizer
// report in its output, processes it left running.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "harness/detail/session/server_watch.hpp"
#include "harness/session.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using harness::errc;
using harness::exit_status;
using harness::session;
using harness_test::fixture_server;

std::vector<std::string> fx(std::vector<std::string> args) {
  args.insert(args.begin(), fixture_server());
  return args;
}

// A fixture server below a shell that runs `on_term` when the stop's SIGTERM reaches it.
// The trap waits for the server first (the stop signals it too), so that the server's
// "got SIGTERM" line comes before what `on_term` prints, never in between its lines.
std::vector<std::string> with_term_trap(const std::string& on_term) {
  return {"/bin/sh", "-c", "trap 'wait; " + on_term + "' TERM; \"$0\" --port=\"$1\" & wait", fixture_server(), "{port}"};
}

TEST(Verdict, AServerThatStopsAsAskedPassesTheCheck) {
  session s = session::start({.command = fx({"--port={port}"})});
  EXPECT_FALSE(s.check());
  EXPECT_EQ(s.stop(), exit_status::exited_with(0));
  EXPECT_FALSE(s.check()) << s.check()->message();
  EXPECT_TRUE(s.warnings().empty());
}

TEST(Verdict, AServerKilledWhileTheTestRunsFailsTheCheckAndCallsOnExit) {
  std::mutex m;
  std::condition_variable cv;
  std::vector<exit_status> seen;
  session s = session::start({.command = fx({"--print=serving stdout", "--eprint=about to crash", "--port={port}"}),
                              .name = "crashy",
                              .on_exit = [&](const exit_status& st) {
                                std::lock_guard lock(m);
                                seen.push_back(st);
                                cv.notify_all();
                              }});
  // A crash nobody asked for (not through the session). SIGABRT rather than SIGSEGV:
  // under ASan or TSan a sanitized server takes a SIGSEGV sent by kill() for a memory
  // fault, reports it and exits 66 instead of dying by the signal.
  ASSERT_EQ(::kill(s.pid(), SIGABRT), 0);
  {
    std::unique_lock lock(m);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return !seen.empty(); })) << "on_exit was not called";
    EXPECT_EQ(seen, std::vector<exit_status>{exit_status::killed_by(SIGABRT)});
  }
  const auto f = s.check();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->code, errc::server_exited);
  const auto text = f->message();
  for (const std::string part : {"crashy: exited on its own while the test ran: killed by signal 6 (SIGABRT)",
                                 "out| serving stdout", "err| about to crash", "log: "}) {
    EXPECT_NE(text.find(part), std::string::npos) << "missing \"" << part << "\" in\n" << text;
  }
  // The stop that follows does not change the verdict, nor add to it.
  s.stop();
  EXPECT_EQ(s.check()->code, errc::server_exited);
  std::lock_guard lock(m);
  EXPECT_EQ(seen.size(), 1u);
}

TEST(Verdict, AnExitTheTestAnnouncedIsNotAFailure) {
  session s = session::start({.command = fx({"--port={port}"})});
  s.expect_exit();
  ASSERT_EQ(::kill(s.pid(), SIGKILL), 0);
  ASSERT_TRUE(s.process().wait_for(10s));
  EXPECT_FALSE(s.check()) << s.check()->message();
  s.stop();
  EXPECT_FALSE(s.check()) << s.check()->message();
}

// A signal the test sends through the session is the test's doing — for the exit it
// causes, not for any exit that comes later.
TEST(Verdict, ASignalSentThroughTheSessionIsTheTestsDoing) {
  session killed = session::start({.command = fx({"--port={port}"})});
  ASSERT_TRUE(killed.signal(SIGKILL));
  ASSERT_TRUE(killed.process().wait_for(10s));
  EXPECT_FALSE(killed.check()) << killed.check()->message();

  session graceful = session::start({.command = fx({"--port={port}"})});
  ASSERT_TRUE(graceful.signal(SIGTERM));  // the fixture exits 0 on SIGTERM
  EXPECT_EQ(graceful.process().wait_for(10s), exit_status::exited_with(0));
  EXPECT_FALSE(graceful.check()) << graceful.check()->message();

  // SIGUSR1 kills the fixture (default action): the test sent it, so that is expected...
  session usr = session::start({.command = fx({"--port={port}"})});
  ASSERT_TRUE(usr.signal(SIGUSR1));
  ASSERT_TRUE(usr.process().wait_for(10s));
  EXPECT_FALSE(usr.check()) << usr.check()->message();
  // ...but a different death after a signal is still a crash.
  session other = session::start({.command = fx({"--port={port}"})});
  ASSERT_TRUE(other.signal(SIGCONT));  // harmless
  ASSERT_EQ(::kill(other.pid(), SIGABRT), 0);
  ASSERT_TRUE(other.process().wait_for(10s));
  ASSERT_TRUE(other.check());
  EXPECT_EQ(other.check()->code, errc::server_exited);
}

TEST(Verdict, ARestartIsTheTestsOwnDoing) {
  session s = session::start({.command = fx({"--port={port}"})});
  ASSERT_TRUE(s.restart());
  EXPECT_FALSE(s.check()) << s.check()->message();
  // Armed again after the restart.
  ASSERT_EQ(::kill(s.pid(), SIGKILL), 0);
  ASSERT_TRUE(s.process().wait_for(10s));
  ASSERT_TRUE(s.check());
  EXPECT_EQ(s.check()->code, errc::server_exited);
}

TEST(Verdict, AnUnexpectedStatusAtStopFails) {
  session s = session::start({.command = with_term_trap("exit 3"), .name = "trapper"});
  EXPECT_EQ(s.stop(), exit_status::exited_with(3));
  const auto f = s.check();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->code, errc::bad_exit_status);
  EXPECT_NE(f->message().find("stopped with exited with status 3, not as expected (exited with status 0, or ended "
                              "by the stop's SIGTERM)"),
            std::string::npos)
      << f->message();
}

TEST(Verdict, ExpectedStatusesAndTheSwitchesAreHonoured) {
  session listed = session::start({.command = with_term_trap("exit 3"),
                                   .verdict = {.expected_exits = {exit_status::exited_with(3)}}});
  listed.stop();
  EXPECT_FALSE(listed.check()) << listed.check()->message();
  session off = session::start({.command = with_term_trap("exit 3"), .verdict = {.fail_on_exit_status = false}});
  off.stop();
  EXPECT_FALSE(off.check()) << off.check()->message();
  // 143 = 128 + SIGTERM (a JVM's or a shell's way to say it): the stop's doing.
  session jvm = session::start({.command = with_term_trap("exit 143")});
  EXPECT_EQ(jvm.stop(), exit_status::exited_with(143));
  EXPECT_FALSE(jvm.check()) << jvm.check()->message();
  // Killed by the stop's escalation: the stop's doing as well.
  session stubborn = session::start({.command = fx({"--ignore-sigterm", "--port={port}"}),
                                     .stop = {.grace = 200ms}});
  EXPECT_EQ(stubborn.stop(), exit_status::killed_by(SIGKILL));
  EXPECT_FALSE(stubborn.check()) << stubborn.check()->message();
  session crash_off = session::start({.command = fx({"--port={port}"}), .verdict = {.fail_on_unexpected_exit = false}});
  ::kill(crash_off.pid(), SIGKILL);
  ASSERT_TRUE(crash_off.process().wait_for(10s));
  EXPECT_FALSE(crash_off.check()) << crash_off.check()->message();
}

TEST(Verdict, ASanitizerReportFailsWithItsFirstLines) {
  session s = session::start(
      {.command = with_term_trap("echo \"==42==ERROR: LeakSanitizer: detected memory leaks\" >&2; "
                                 "echo \"Direct leak of 8 byte(s) in 1 object(s) allocated from:\" >&2; "
                                 "echo \"    #0 0x4a2b in malloc\" >&2; exit 1"),
       .name = "leaky"});
  s.stop();
  const auto f = s.check();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->code, errc::bad_exit_status) << "the first problem names the code";
  const auto text = f->message();
  for (const std::string part :
       {"stopped with exited with status 1", "; 1 sanitizer report in its output", "sanitizer report (first lines):\n"
        "    | ==42==ERROR: LeakSanitizer: detected memory leaks\n"
        "    | Direct leak of 8 byte(s) in 1 object(s) allocated from:\n    |     #0 0x4a2b in malloc\n"}) {
    EXPECT_NE(text.find(part), std::string::npos) << "missing \"" << part << "\" in\n" << text;
  }
  session off = session::start({.command = fx({"--eprint=x.cc:3:7: runtime error: signed integer overflow",
                                               "--port={port}"}),
                                .verdict = {.fail_on_sanitizer_report = false}});
  off.stop();
  EXPECT_FALSE(off.check());
  session ub = session::start({.command = fx({"--eprint=x.cc:3:7: runtime error: signed integer overflow",
                                              "--port={port}"})});
  ub.stop();
  ASSERT_TRUE(ub.check());
  EXPECT_EQ(ub.check()->code, errc::sanitizer_report);
}

TEST(Verdict, ProcessesLeftAtAnExitAreAWarningOrAFailure) {
  for (const bool fail : {false, true}) {
    SCOPED_TRACE(fail ? "fail_on_left_processes" : "default");
    session s = session::start({.command = fx({"--fork-child", "--exit-after=100", "--port={port}"}),
                                .name = "forgetful",
                                .allow_daemon = false,  // its exit 0 is an exit, not a daemon to follow
                                .verdict = {.fail_on_left_processes = fail}});
    s.expect_exit();  // it exits by itself: only what it leaves is in question
    ASSERT_TRUE(s.process().wait_for(10s));
    s.stop();
    if (fail) {
      ASSERT_TRUE(s.check());
      EXPECT_EQ(s.check()->code, errc::left_processes);
      EXPECT_NE(s.check()->message().find("leaving 1 process of its tree running"), std::string::npos)
          << s.check()->message();
      EXPECT_TRUE(s.warnings().empty());
    } else {
      EXPECT_FALSE(s.check()) << s.check()->message();
      ASSERT_EQ(s.warnings().size(), 1u);
      EXPECT_NE(s.warnings()[0].find("forgetful exited and left 1 process of its tree running"), std::string::npos)
          << s.warnings()[0];
    }
  }
}

TEST(SanitizerLines, HeadersOfEverySanitizerAndNothingElse) {
  EXPECT_TRUE(harness::detail::is_sanitizer_report_line("==12==ERROR: AddressSanitizer: heap-use-after-free on x"));
  EXPECT_TRUE(harness::detail::is_sanitizer_report_line("==1==ERROR: LeakSanitizer: detected memory leaks"));
  EXPECT_TRUE(harness::detail::is_sanitizer_report_line("==7==ERROR: MemorySanitizer: use-of-uninitialized-value"));
  EXPECT_TRUE(harness::detail::is_sanitizer_report_line("WARNING: ThreadSanitizer: data race (pid=5)"));
  EXPECT_TRUE(harness::detail::is_sanitizer_report_line("a.cc:3:7: runtime error: load of null pointer"));
  EXPECT_FALSE(harness::detail::is_sanitizer_report_line("ERROR: AddressSanitizer is mentioned here"));
  EXPECT_FALSE(harness::detail::is_sanitizer_report_line("==1==ERROR: something else"));
  EXPECT_FALSE(harness::detail::is_sanitizer_report_line("runtime error without the colon form"));
  EXPECT_FALSE(harness::detail::is_sanitizer_report_line(""));
}

}  // namespace
