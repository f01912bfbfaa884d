// Servers that need more than argv: a scratch directory ({dir}), files rendered into it
// for every attempt, command probes, stop steps (issue "config files, scratch space,
// health commands and their own stop signal").
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "harness/process.hpp"
#include "harness/session.hpp"
#include "harness/timeouts.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using harness::errc;
using harness::probe;
using harness::server_spec;
using harness::session;
using harness_test::fixture_server;
namespace fs = std::filesystem;

std::string read(const fs::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// The fixture server taking its port from a file, the way nginx or redis take theirs
// from their config.
std::vector<std::string> port_from_file(const std::string& file, const std::string& extra = "") {
  return {"/bin/sh", "-c", "exec \"$0\" --port=\"$(cat " + file + ")\" " + extra, fixture_server()};
}

TEST(Placeholders, DirIsSubstitutedAndEscaped) {
  using harness::substitute_placeholders;
  EXPECT_EQ(substitute_placeholders("{dir}/nginx.conf:{port}", "h", "1", "/tmp/x"), "/tmp/x/nginx.conf:1");
  EXPECT_EQ(substitute_placeholders("{{dir}} {dir}", "h", "1", "/d"), "{dir} /d");
  // Without a directory, {dir} stays as it is (the --then text of a session without one).
  EXPECT_EQ(substitute_placeholders("{dir}", "h", "1"), "{dir}");
  EXPECT_TRUE(harness::uses_dir_placeholder({.command = {"x", "--conf={dir}/a"}}));
  EXPECT_FALSE(harness::uses_dir_placeholder({.command = {"x", "--conf={{dir}}/a"}}));
  EXPECT_TRUE(harness::uses_dir_placeholder({.command = {"x"}, .cwd = "{dir}"}));
}

TEST(ScratchDir, IsPrivateNamedInTheSummaryAndGoneAfterAPassingSession) {
  fs::path dir;
  {
    session s = session::start({.command = {fixture_server(), "--port={port}", "--print=in {dir}"}});
    dir = s.dir();
    ASSERT_FALSE(dir.empty());
    struct stat st {};
    ASSERT_EQ(::stat(dir.c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    EXPECT_EQ(st.st_uid, ::getuid());
    EXPECT_NE(s.summary().find("dir: " + dir.string()), std::string::npos) << s.summary();
    EXPECT_EQ(s.info().dir, dir);
    EXPECT_TRUE(s.output().wait_for_line("in " + dir.string(), 5s)) << s.output().merged_report(10);
  }
  EXPECT_FALSE(fs::exists(dir)) << "removed when the session ended";
}

TEST(ScratchDir, NoneUnlessAskedFor) {
  session s = session::start({.command = {fixture_server(), "--port={port}"}});
  EXPECT_TRUE(s.dir().empty());
  session t = session::start({.command = {fixture_server(), "--port={port}"}, .scratch = {.create = true}});
  EXPECT_FALSE(t.dir().empty());
}

TEST(ScratchDir, KeptWhenTheStartFailsWhenAskedAndByPolicy) {
  // A failed start keeps it, and says where.
  auto failed = session::try_start({.command = {fixture_server(), "--port={port}", "--exit-before-ready=3"},
                                    .files = {{"conf", "port {port}\n"}}});
  ASSERT_FALSE(failed);
  const auto at = failed.error().detail.find("  dir: ");
  ASSERT_NE(at, std::string::npos) << failed.error().detail;
  const fs::path kept = failed.error().detail.substr(at + 7, failed.error().detail.find('\n', at) - at - 7);
  EXPECT_TRUE(fs::exists(kept / "conf")) << kept;
  fs::remove_all(kept);

  // A program that is not there ran nothing: nothing to look at afterwards.
  {
    const harness_test::temp_dir parent("scratch-parent");
    auto missing = session::try_start({.command = {"/nonexistent/server", "--port={port}"},
                                       .files = {{"conf", "port {port}\n"}},
                                       .scratch = {.parent = parent.path()}});
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, errc::program_not_found);
    EXPECT_TRUE(fs::is_empty(parent.path())) << "no directory kept for a program that is not there";
  }

  fs::path asked, always, never_dir;
  {
    session s = session::start({.command = {fixture_server(), "--port={port}"}, .scratch = {.create = true}});
    asked = s.dir();
    s.keep_dir();
  }
  EXPECT_TRUE(fs::exists(asked));
  fs::remove_all(asked);
  {
    session s = session::start({.command = {fixture_server(), "--port={port}"},
                                .scratch = {.create = true, .keep = harness::scratch_options::keep_policy::always}});
    always = s.dir();
  }
  EXPECT_TRUE(fs::exists(always));
  fs::remove_all(always);
  {
    // A failed verdict keeps it by default, not with `never`.
    session s = session::start({.command = {fixture_server(), "--port={port}"},
                                .scratch = {.create = true, .keep = harness::scratch_options::keep_policy::never}});
    never_dir = s.dir();
    ::kill(s.pid(), SIGKILL);
    ASSERT_TRUE(s.process().wait_for(10s));
    EXPECT_TRUE(s.check().has_value());
  }
  EXPECT_FALSE(fs::exists(never_dir));
  fs::path on_failure;
  {
    session s = session::start({.command = {fixture_server(), "--port={port}"}, .scratch = {.create = true}});
    on_failure = s.dir();
    ::kill(s.pid(), SIGKILL);
    ASSERT_TRUE(s.process().wait_for(10s));
  }
  EXPECT_TRUE(fs::exists(on_failure)) << "a server that crashed leaves its directory for the post-mortem";
  fs::remove_all(on_failure);
}

TEST(Files, AreRenderedForEachAttemptSoARespawnGetsTheNewPort) {
  const harness_test::temp_dir state("files-test");
  // The first start loses its port (a real EADDRINUSE, as a stranger would cause it);
  // the second must find the new port in the re-rendered file.
  session s = session::start(
      {.command = port_from_file("{dir}/port", "--fail-binds=1 --fail-state=" + (state.path() / "count").string() +
                                                   " --style=c --print=config:{dir}"),
       .respawn = {.backoff_base = 1ms},
       .files = {{"port", "{port}"}, {"conf/app.ini", "listen {host}:{port}\nroot {dir}\nliteral {{port}}\n"}}});
  ASSERT_EQ(s.attempts().size(), 2u) << harness::format_attempts(s.attempts());
  EXPECT_NE(s.attempts()[0].port, s.port());
  EXPECT_EQ(read(s.dir() / "port"), std::to_string(s.port()));
  EXPECT_EQ(read(s.dir() / "conf/app.ini"),
            "listen 127.0.0.1:" + std::to_string(s.port()) + "\nroot " + s.dir().string() + "\nliteral {port}\n");
  struct stat st {};
  ASSERT_EQ(::stat((s.dir() / "port").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(harness_test::tcp_request(s.port(), "ping").value_or(""), "pong: ping");
}

TEST(Files, NamesMustStayInsideTheDirectoryAndCwdMayBeIt) {
  for (const std::string name : {"", "/etc/passwd", "../escape", "a/../../b", "dir/"}) {
    SCOPED_TRACE(name);
    auto r = session::try_start({.command = {fixture_server(), "--port={port}"}, .files = {{name, "x"}}});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::invalid_argument);
  }
  session s = session::start({.command = {"/bin/sh", "-c", "pwd > where; exec \"$0\" --port=\"$1\"", fixture_server(),
                                          "{port}"},
                              .cwd = "{dir}"});
  std::ifstream where(s.dir() / "where");
  std::string line;
  ASSERT_TRUE(std::getline(where, line));
  EXPECT_EQ(fs::path(line), s.dir());
}

TEST(CommandProbe, ReadyWhenTheCommandSucceeds) {
  // python3 is part of what scripts/setup installs.
  session s = session::start({.command = {fixture_server(), "--port={port}", "--delay-ms=200"},
                              .ready = {.probes = {probe::command(
                                            {"python3", "-c",
                                             "import socket; socket.create_connection(('127.0.0.1', {port}), 1)"})}}});
  EXPECT_EQ(harness_test::tcp_request(s.port(), "ping").value_or(""), "pong: ping");
  EXPECT_GE(s.ready_time(), 200ms);
}

TEST(CommandProbe, TheOutputCheckAndItsFailureText) {
  session s = session::start(
      {.command = {fixture_server(), "--port={port}"},
       .ready = {.probes = {probe::tcp(), probe::command({"echo", "PONG {port} {dir}"}, [](std::string_view out) {
                   return out.find("PONG ") == 0;
                 })}}});
  EXPECT_TRUE(s.running());
  auto r = session::try_start({.command = {fixture_server(), "--port={port}"},
                               .ready = {.probes = {probe::command({"sh", "-c", "echo not yet >&2; exit 1"})},
                                         .timeout = 300ms}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::ready_timeout) << r.error().message();
  EXPECT_NE(r.error().detail.find("command sh -c echo not yet >&2; exit 1 (exited with status 1: not yet)"),
            std::string::npos)
      << r.error().detail;
}

TEST(CommandProbe, AMissingProgramFailsTheStartAndAHangingOneIsKilled) {
  auto missing = session::try_start({.command = {fixture_server(), "--port={port}"},
                                     .ready = {.probes = {probe::command({"/nonexistent/health-check"})}}});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, errc::probe_failed) << missing.error().message();
  EXPECT_NE(missing.error().detail.find("cannot run"), std::string::npos) << missing.error().detail;

  const harness_test::temp_dir marks("hang-probe");
  const auto pidfile = marks.path() / "pid";
  const auto t0 = std::chrono::steady_clock::now();
  auto hung = session::try_start(
      {.command = {fixture_server(), "--port={port}"},
       .ready = {.probes = {probe::command({"sh", "-c", "echo $$ > " + pidfile.string() + "; exec sleep 60"})},
                 .timeout = 500ms}});
  ASSERT_FALSE(hung);
  EXPECT_EQ(hung.error().code, errc::ready_timeout) << hung.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  // The probe's process was killed at the deadline, not left behind.
  const pid_t probe_pid = std::stoi(read(pidfile));
  EXPECT_NE(::kill(probe_pid, 0), 0) << "probe process " << probe_pid << " is still there";
}

TEST(HttpProbe, WithoutAStatusAny2xxPasses) {
  for (int status : {200, 204, 299}) {
    SCOPED_TRACE(status);
    session s = session::start({.command = {fixture_server(), "--port={port}", "--serve=http", "--http-path=/health",
                                            "--http-status=" + std::to_string(status)},
                                .ready = {.probes = {probe::http("/health")}}});
    EXPECT_TRUE(s.running());
  }
  auto r = session::try_start({.command = {fixture_server(), "--port={port}", "--serve=http", "--http-status=301"},
                               .ready = {.probes = {probe::http("/")}, .timeout = 300ms}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().detail.find("http GET / -> 2xx (answered 301)"), std::string::npos) << r.error().detail;
}

TEST(StopSteps, RunInOrderWithSigkillLast) {
  // Every wait is scaled by HARNESS_TIMEOUT_SCALE (sanitizer builds set it).
  using harness::timeouts::scaled;
  session s = session::start({.command = {fixture_server(), "--port={port}", "--ignore-sigterm"},
                              .stop = {.steps = {{SIGTERM, 300ms}, {SIGINT, 20s}}}});
  const auto t0 = std::chrono::steady_clock::now();
  const auto st = s.stop();
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(st, harness::exit_status::killed_by(SIGINT)) << st;
  EXPECT_GE(took, scaled(300ms)) << "SIGTERM was ignored for its whole step";
  EXPECT_LT(took, scaled(20s)) << "SIGINT ended it before its step was over";
  const auto steps = harness::effective_steps({.steps = {{SIGQUIT, 5s}, {SIGTERM, 2s}}});
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(steps[0].signal, SIGQUIT);
  EXPECT_EQ(steps[1].signal, SIGTERM);
  EXPECT_EQ(steps[2].signal, SIGKILL);
  EXPECT_EQ(steps[0].wait, scaled(5s));
  EXPECT_EQ(steps[2].wait, scaled(harness::timeouts::kill_wait));
  if (scaled(1000ms) == 1000ms) {
    EXPECT_EQ(harness::describe(harness::stop_policy{.steps = {{SIGQUIT, 5s}, {SIGTERM, 2s}}}),
              "SIGQUIT 5.0 s, SIGTERM 2.0 s, SIGKILL 5.0 s");
    EXPECT_EQ(harness::describe(harness::stop_policy{}), "SIGTERM 3.0 s, SIGKILL 5.0 s");
  }
}

TEST(StopSteps, BadStepsAreRefused) {
  harness::stop_policy eight;
  for (int i = 0; i < 8; ++i) eight.steps.push_back({SIGTERM, 1ms});
  auto r = session::try_start({.command = {fixture_server(), "--port={port}"}, .stop = eight});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_argument) << r.error().message();
  auto bad_signal = session::try_start({.command = {fixture_server(), "--port={port}"}, .stop = {.steps = {{0, 1s}}}});
  ASSERT_FALSE(bad_signal);
  EXPECT_EQ(bad_signal.error().code, errc::invalid_argument);
}

}  // namespace
