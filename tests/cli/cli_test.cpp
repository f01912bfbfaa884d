// The `harness` command: every option of `harness run`, every exit status, the
// signals, runner death, `harness ports`, and the acceptance check of the issue.
//
// Each test starts build/bin/harness through harness::process and synchronises on its
// output lines and its exit (with deadlines), never on sleeps.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <filesystem>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "harness/lease.hpp"
#include "harness/process.hpp"
#include "harness/timeouts.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using harness::exit_status;
using harness::stream;
using harness_test::fixture_server;
using clock_type = std::chrono::steady_clock;

const std::string fx = fixture_server();

harness::process spawn_cli(std::vector<std::string> args, std::size_t tail_bytes = 64 * 1024) {
  args.insert(args.begin(), HARNESS_CLI);
  return harness::process::spawn(
      {.argv = std::move(args), .output = {.tail_bytes = tail_bytes}, .name = "harness-cli"});
}

// A finished run of the CLI.
struct outcome {
  exit_status status{};
  std::string out{};
  std::string err{};
  std::chrono::milliseconds took{0};
};

std::ostream& operator<<(std::ostream& os, const outcome& o) {
  return os << o.status << "\n--- stdout:\n" << o.out << "--- stderr:\n" << o.err;
}

// Waits (bounded) for the CLI to exit and collects everything it printed.
outcome finish(harness::process& p, clock_type::time_point started,
               std::chrono::milliseconds limit = 60s) {
  outcome o;
  if (!p.wait_for(limit)) ADD_FAILURE() << "harness did not exit within " << limit.count() << " ms";
  o.status = p.stop();
  o.took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - started);
  EXPECT_TRUE(p.output().wait_closed(10s));
  o.out = p.output().tail(stream::out);
  o.err = p.output().tail(stream::err);
  return o;
}

outcome run_cli(std::vector<std::string> args, std::size_t tail_bytes = 64 * 1024) {
  const auto started = clock_type::now();
  harness::process p = spawn_cli(std::move(args), tail_bytes);
  return finish(p, started);
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The first capture group of the first line of `text` matching `pattern`.
std::string capture(const std::string& text, const std::string& pattern) {
  std::smatch m;
  if (std::regex_search(text, m, std::regex(pattern))) return m[1];
  return {};
}

bool is_gone(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

// A server held by `harness run` without --then: HARNESS_PORT/HARNESS_PID read.
struct held {
  harness::process cli;
  clock_type::time_point started;
  std::uint16_t port = 0;
  int pid = 0;
  int pidfd = -1;  // the server's, opened while it is surely alive
  ~held() {
    if (pidfd >= 0) ::close(pidfd);
  }
};

// Starts `harness run ARGS` and waits for HARNESS_PID. Check `ok` with ASSERT_TRUE.
std::unique_ptr<held> hold(std::vector<std::string> args) {
  auto h = std::make_unique<held>();
  h->started = clock_type::now();
  h->cli = spawn_cli(std::move(args));
  auto line = h->cli.output().wait_for_line("^HARNESS_PID=(\\d+)$", 30s, {stream::out});
  if (!line) {
    ADD_FAILURE() << "no HARNESS_PID line: " << line.error().message() << "\n"
                  << h->cli.output().tail(stream::err);
    return nullptr;
  }
  h->pid = std::stoi(line->groups[1]);
  h->pidfd = harness_test::open_pidfd(h->pid);
  const auto out = h->cli.output().tail(stream::out);
  h->port = static_cast<std::uint16_t>(std::stoi("0" + capture(out, "^HARNESS_PORT=(\\d+)\n")));
  EXPECT_EQ(out, "HARNESS_PORT=" + std::to_string(h->port) +
                     "\nHARNESS_PID=" + std::to_string(h->pid) + "\n");
  EXPECT_GE(h->pidfd, 0);
  EXPECT_NE(h->port, 0);
  return h;
}

std::string ping(std::uint16_t port) {
  return harness_test::tcp_request(port, "ping").value_or("<no answer>");
}

// Asks the held server's harness to stop with `sig`; expects exit 0 and the server gone.
void stop_held(held& h, int sig = SIGTERM) {
  ASSERT_TRUE(h.cli.signal(sig));
  const outcome o = finish(h.cli, h.started);
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  EXPECT_TRUE(harness_test::pidfd_exited(h.pidfd)) << "the server outlived harness";
}

// --- help and version ------------------------------------------------------------

TEST(CliHelp, EveryCommandHasHelp) {
  const outcome top = run_cli({"--help"});
  EXPECT_EQ(top.status, exit_status::exited_with(0)) << top;
  EXPECT_TRUE(contains(top.out, "Usage: harness [OPTIONS] SUBCOMMAND")) << top;
  EXPECT_TRUE(contains(top.out, "run")) << top;
  EXPECT_TRUE(contains(top.out, "ports")) << top;

  for (const char* help : {"--help", "-h"}) {
    const outcome run = run_cli({"run", help});
    EXPECT_EQ(run.status, exit_status::exited_with(0)) << run;
    EXPECT_TRUE(contains(run.out, "Usage: harness run [OPTIONS] -- SERVER [ARGS...]")) << run;
    for (const char* option :
         {"--mode", "--port-from", "--ready", "--host", "--timeout", "--attempts", "--env",
          "--fail-on", "--then", "--verbose", "HARNESS_PORT=<port>", "Exit status"}) {
      EXPECT_TRUE(contains(run.out, option)) << option << "\n" << run;
    }
    EXPECT_EQ(run.err, "");
  }

  const outcome ports = run_cli({"ports", "--help"});
  EXPECT_EQ(ports.status, exit_status::exited_with(0)) << ports;
  EXPECT_TRUE(contains(ports.out, "Usage: harness ports [OPTIONS]")) << ports;
  EXPECT_TRUE(contains(ports.out, "--json")) << ports;
}

TEST(CliHelp, VersionIsTheProjectVersion) {
  const outcome o = run_cli({"--version"});
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  EXPECT_EQ(o.out, "harness " HARNESS_PROJECT_VERSION "\n");
}

// --- the three modes, held until a signal -------------------------------------------

TEST(CliRun, LeaseModeByDefaultPrintsPortAndPidAndStopsOnSigterm) {
  auto h = hold({"run", "--", fx, "--port={port}"});
  ASSERT_TRUE(h);
  const auto pool = harness::default_port_range().value();
  EXPECT_GE(h->port, pool.first);
  EXPECT_LE(h->port, pool.last);
  EXPECT_EQ(ping(h->port), "pong: ping");
  EXPECT_FALSE(harness_test::pidfd_exited(h->pidfd));
  stop_held(*h, SIGTERM);
  EXPECT_EQ(h->cli.output().tail(stream::err), "") << "harness is quiet without -v";
}

TEST(CliRun, SigintAndSighupStopTheServerToo) {
  for (int sig : {SIGINT, SIGHUP}) {
    auto h = hold({"run", "--", fx, "--port={port}"});
    ASSERT_TRUE(h);
    EXPECT_EQ(ping(h->port), "pong: ping");
    stop_held(*h, sig);
  }
}

TEST(CliRun, AnnounceModeOverTheReadyFd) {
  auto h = hold({"run", "--mode", "announce", "--", fx, "--port=0", "--announce=ready-fd"});
  ASSERT_TRUE(h);
  EXPECT_EQ(ping(h->port), "pong: ping");
  stop_held(*h);
}

TEST(CliRun, AnnounceModeOverNotify) {
  auto h = hold({"run", "--mode=announce", "--", fx, "--port=0", "--announce=notify"});
  ASSERT_TRUE(h);
  EXPECT_EQ(ping(h->port), "pong: ping");
  stop_held(*h);
}

TEST(CliRun, AnnounceModeWithPortFrom) {
  // {{port}}: the fixture's own placeholder, passed through literally by the harness.
  auto h =
      hold({"run", "--mode", "announce", "--port-from", R"(Serving HTTP on \S+ port (\d+))", "--",
            fx, "--port=0", "--announce-stream=stderr",
            "--announce-line=Serving HTTP on 0.0.0.0 port {{port}} (http://0.0.0.0:{{port}}/)"});
  ASSERT_TRUE(h);
  EXPECT_EQ(ping(h->port), "pong: ping");
  stop_held(*h);
}

TEST(CliRun, InheritModePassesTheSocket) {
  auto h = hold({"run", "--mode", "inherit", "--", fx, "--listen-fds", "--announce=auto"});
  ASSERT_TRUE(h);
  EXPECT_EQ(ping(h->port), "pong: ping");
  stop_held(*h);
}

TEST(CliRun, InheritModeWithAnHttpProbe) {
  const outcome o = run_cli({"run", "--mode", "inherit", "--ready", "http:/", "--then",
                             "echo port=$HARNESS_PORT", "--", fx, "--listen-fds", "--serve=http"});
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  EXPECT_NE(capture(o.out, "port=(\\d+)"), "") << o;
}

// --- readiness checks ----------------------------------------------------------------

// The ready time reported by -v ("ready on HOST:PORT (pid N) after MS ms").
long ready_ms(const outcome& o) {
  return std::stol("0" + capture(o.err, R"(ready on \S+ \(pid \d+\) after (\d+) ms)"));
}

TEST(CliReady, ExplicitTcp) {
  auto h = hold({"run", "--ready", "tcp", "--", fx, "--port={port}"});
  ASSERT_TRUE(h);
  EXPECT_EQ(ping(h->port), "pong: ping");
  stop_held(*h);
}

TEST(CliReady, HttpWaitsForTheStatus) {
  // 503 for the first 300 ms: tcp would pass at once, http:/ only after 300 ms.
  const outcome o = run_cli({"run", "-v", "--ready", "http:/", "--then", "true", "--", fx,
                             "--port={port}", "--serve=http", "--http-delay-ready=300"});
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  EXPECT_GE(ready_ms(o), 300) << o;
}

TEST(CliReady, HttpPathAndStatus) {
  const outcome ok =
      run_cli({"run", "--ready", "http:/health:204", "--then", "true", "--", fx, "--port={port}",
               "--serve=http", "--http-path=/health", "--http-status=204"});
  EXPECT_EQ(ok.status, exit_status::exited_with(0)) << ok;
  // Without a status, any 2xx passes.
  const outcome any =
      run_cli({"run", "--ready", "http:/health", "--then", "true", "--", fx, "--port={port}", "--serve=http",
               "--http-path=/health", "--http-status=204"});
  EXPECT_EQ(any.status, exit_status::exited_with(0)) << any;
  // The same server does not pass a check that expects 200.
  const outcome bad =
      run_cli({"run", "--ready", "http:/health:200", "--timeout", "0.5", "--then", "true", "--", fx,
               "--port={port}", "--serve=http", "--http-path=/health", "--http-status=204"});
  EXPECT_EQ(bad.status, exit_status::exited_with(3)) << bad;
  EXPECT_TRUE(contains(bad.err, "answered 204")) << bad;
  // Nor is a 3xx a 2xx.
  const outcome redirect =
      run_cli({"run", "--ready", "http:/health", "--timeout", "0.5", "--then", "true", "--", fx, "--port={port}",
               "--serve=http", "--http-path=/health", "--http-status=302"});
  EXPECT_EQ(redirect.status, exit_status::exited_with(3)) << redirect;
  EXPECT_TRUE(contains(redirect.err, "http GET /health -> 2xx (answered 302)")) << redirect;
}

TEST(CliReady, LogPatternAndTcpTogether) {
  const outcome o =
      run_cli({"run", "-v", "--ready", "log:Ready to accept", "--ready", "tcp", "--then", "true",
               "--", fx, "--print=Ready to accept connections", "--port={port}"});
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  EXPECT_TRUE(contains(o.err, "ready when log /Ready to accept/ and tcp") ||
              contains(o.err, "Ready to accept"))
      << o;
  // A line that never comes: not ready.
  const outcome never = run_cli({"run", "--ready", "log:never printed", "--timeout", "0.3",
                                 "--then", "true", "--", fx, "--port={port}"});
  EXPECT_EQ(never.status, exit_status::exited_with(3)) << never;
  EXPECT_TRUE(contains(never.err, "still waiting for log")) << never;
}

TEST(CliReady, AnnounceAndNotifyInLeaseMode) {
  auto a = hold({"run", "--ready", "announce", "--", fx, "--port={port}", "--announce=ready-fd"});
  ASSERT_TRUE(a);
  EXPECT_EQ(ping(a->port), "pong: ping");
  stop_held(*a);
  auto n = hold({"run", "--ready", "notify", "--", fx, "--port={port}", "--announce=notify"});
  ASSERT_TRUE(n);
  EXPECT_EQ(ping(n->port), "pong: ping");
  stop_held(*n);
  // A server that never announces does not pass `announce`.
  const outcome o =
      run_cli({"run", "--ready", "announce", "--timeout", "0.3", "--", fx, "--port={port}"});
  EXPECT_EQ(o.status, exit_status::exited_with(3)) << o;
}

// --- the other options ---------------------------------------------------------------

TEST(CliRun, HostIsUsedForTheServerTheProbeAndTheClient) {
  // The server listens on 127.0.0.2 only: the tcp probe passes only on that address.
  const outcome o =
      run_cli({"run", "--host", "127.0.0.2", "--then", "echo host=$HARNESS_HOST arg={host}", "--",
               fx, "--port={port}", "--host={host}"});
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  EXPECT_TRUE(contains(o.out, "host=127.0.0.2 arg=127.0.0.2\n")) << o;
}

TEST(CliRun, TimeoutFailsInAboutTheTimeout) {
  const outcome o =
      run_cli({"run", "--timeout", "0.5", "--", fx, "--delay-ms=60000", "--port={port}"});
  EXPECT_EQ(o.status, exit_status::exited_with(3)) << o;
  EXPECT_GE(o.took, 500ms);
  EXPECT_LT(o.took, harness::timeouts::scaled(10s)) << o;
  EXPECT_TRUE(contains(o.err, "server did not become ready in time")) << o;
  const auto deadline = harness::timeouts::scaled(500ms);  // HARNESS_TIMEOUT_SCALE applies
  EXPECT_TRUE(contains(o.err, "not ready after " + std::to_string(deadline.count()) + " ms")) << o;
  EXPECT_TRUE(contains(o.err, "log: ")) << o;
}

TEST(CliRun, AttemptsBoundTheStartsInLeaseMode) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("harness-cli-attempts-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string count = (dir / "count").string();
  const outcome failed = run_cli({"run", "--attempts", "2", "--", fx, "--port={port}",
                                  "--fail-binds=100", "--fail-state=" + count, "--style=go"});
  EXPECT_EQ(failed.status, exit_status::exited_with(3)) << failed;
  EXPECT_TRUE(contains(failed.err, "every start attempt failed")) << failed;
  EXPECT_TRUE(contains(failed.err, "2. port ")) << failed;
  EXPECT_FALSE(contains(failed.err, "3. port ")) << failed;
  EXPECT_TRUE(contains(failed.err, "bind: address already in use")) << failed;

  const std::string count2 = (dir / "count2").string();
  const outcome ok =
      run_cli({"run", "-v", "--attempts", "3", "--then", "true", "--", fx, "--port={port}",
               "--fail-binds=2", "--fail-state=" + count2, "--style=python"});
  EXPECT_EQ(ok.status, exit_status::exited_with(0)) << ok;
  EXPECT_TRUE(contains(ok.err, "3. port ")) << ok;
  std::filesystem::remove_all(dir);
}

TEST(CliRun, EnvValuesGetThePort) {
  const outcome o = run_cli({"run", "-v", "--env", "MY_PORT={port}", "--env", "PLAIN=a=b", "--then",
                             "echo port=$HARNESS_PORT", "--", fx, "--report-env=MY_PORT",
                             "--report-env=PLAIN", "--port={port}"});
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  const std::string port = capture(o.out, "port=(\\d+)");
  ASSERT_NE(port, "") << o;
  EXPECT_TRUE(contains(o.err, "[server] ENV MY_PORT=" + port + "\n")) << o;
  EXPECT_TRUE(contains(o.err, "[server] ENV PLAIN=a=b\n")) << o;
}

TEST(CliRun, PortOnlyInAnEnvValueMeansLeaseMode) {
  // No {port} in the arguments: the server takes its port from $MY_PORT.
  const outcome o = run_cli({"run", "-v", "--timeout", "10", "--env", "MY_PORT={port}", "--then",
                             "echo port=$HARNESS_PORT", "--", "/bin/sh", "-c",
                             "exec \"$0\" --report-env=MY_PORT --port=\"$MY_PORT\"", fx});
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  EXPECT_TRUE(contains(o.err, "(lease mode")) << o;
  const std::string port = capture(o.out, "port=(\\d+)");
  EXPECT_TRUE(contains(o.err, "[server] ENV MY_PORT=" + port + "\n")) << o;
}

TEST(CliRun, FailOnPatternFailsTheStart) {
  const outcome o = run_cli({"run", "--fail-on", "^FATAL", "--fail-on", "panic:", "--", fx,
                             "--eprint=FATAL: bad config", "--delay-ms=60000", "--port={port}"});
  EXPECT_EQ(o.status, exit_status::exited_with(3)) << o;
  EXPECT_TRUE(contains(o.err, "server printed a failure pattern")) << o;
  EXPECT_TRUE(contains(o.err, "FATAL: bad config")) << o;
  EXPECT_LT(o.took, harness::timeouts::scaled(20s)) << "waited for the readiness deadline";
}

TEST(CliRun, SigchldIgnoredByWhoeverStartedItChangesNoStatus) {
  // Some CI shells start programs with SIGCHLD ignored (inherited across exec): the
  // --then client's status and the server's must still be exact.
  const auto started = clock_type::now();
  harness::process p = harness::process::spawn(
      {.argv = {"/bin/sh", "-c", "trap '' CHLD; exec \"$0\" \"$@\"", HARNESS_CLI, "run", "--then", "exit 3", "--",
                fx, "--port={port}"}});
  const outcome o = finish(p, started);
  EXPECT_EQ(o.status, exit_status::exited_with(3)) << o;
}

TEST(CliRun, ServerAndClientStartWithACleanSignalState) {
  // harness blocks SIGINT/SIGTERM/SIGHUP and ignores SIGPIPE for itself only.
  const outcome o = run_cli({"run", "-v", "--then", "grep -E '^Sig(Blk|Ign):' /proc/self/status",
                             "--", fx, "--port={port}", "--report-signals"});
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  EXPECT_TRUE(contains(o.err, "[server] SIGMASK 0000000000000000\n")) << o;
  EXPECT_TRUE(contains(o.err, "[server] SIGIGN none\n")) << o;
  EXPECT_EQ(o.out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n") << o;
}

// --- --then ------------------------------------------------------------------------

TEST(CliThen, SuccessPassesPortHostAndOutput) {
  const outcome o =
      run_cli({"run", "--then",
               "echo \"client port=$HARNESS_PORT host=$HARNESS_HOST arg={port} literal={{port}}\"; "
               "echo to-stderr >&2",
               "--", fx, "--port={port}"});
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  const std::string port = capture(o.out, "client port=(\\d+)");
  ASSERT_NE(port, "") << o;
  EXPECT_EQ(o.out, "client port=" + port + " host=127.0.0.1 arg=" + port + " literal={port}\n")
      << o;
  EXPECT_EQ(o.err, "to-stderr\n") << o;
}

TEST(CliThen, ClientFailureIsTheExitStatusAndTheServerIsStopped) {
  const outcome o =
      run_cli({"run", "--then", "echo server=$HARNESS_PID; exit 7", "--", fx, "--port={port}"});
  EXPECT_EQ(o.status, exit_status::exited_with(7)) << o;
  const std::string pid = capture(o.out, "server=(\\d+)");
  ASSERT_NE(pid, "") << o;
  EXPECT_TRUE(is_gone(std::stoi(pid))) << "the server outlived harness";
}

TEST(CliThen, AClientThatLeavesABackgroundJobEndsWithItsOwnExit) {
  // The client exits 0 and leaves a process behind: its status counts at once (it is
  // not followed as a daemon), and what it left is stopped with it.
  const outcome o = run_cli({"run", "--then", "sleep 300 & exit 0", "--", fx, "--port={port}"});
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  EXPECT_LT(o.took, harness::timeouts::scaled(20s)) << "waited for the background job";
}

TEST(CliThen, ClientKilledByASignalIs128PlusN) {
  const outcome o = run_cli({"run", "--then", "kill -USR1 $$", "--", fx, "--port={port}"});
  EXPECT_EQ(o.status, exit_status::exited_with(128 + SIGUSR1)) << o;
}

// A green client against a server that died meanwhile is not a pass: exit 4, with the
// server's status and output on stderr. (SIGABRT, not SIGSEGV: see verdict_test.cpp.)
TEST(CliThen, AServerThatDiesWhileTheClientRunsIsExit4EvenIfTheClientPassed) {
  const outcome o = run_cli(
      {"run", "--then",
       "kill -ABRT $HARNESS_PID; until grep -q '^State:.*Z' /proc/$HARNESS_PID/status 2>/dev/null; do :; done; "
       "echo client done",
       "--", fx, "--print=serving now", "--port={port}"});
  EXPECT_EQ(o.status, exit_status::exited_with(4)) << o;
  EXPECT_TRUE(contains(o.out, "client done")) << o;
  EXPECT_TRUE(contains(o.err, "the client exited with status 0, but the server exited on its own: killed by signal "
                              "6 (SIGABRT)"))
      << o;
  EXPECT_TRUE(contains(o.err, "out| serving now")) << o;
}

// The server's own end is judged when it is stopped: a sanitizer report (or a status
// it should not end with) turns a passing client into exit 5.
TEST(CliThen, ASanitizerReportAtStopIsExit5) {
  const outcome o = run_cli(
      {"run", "--then", "true", "--", "/bin/sh", "-c",
       "trap 'echo \"==9==ERROR: LeakSanitizer: detected memory leaks\" >&2; exit 1' TERM; \"$0\" --port=\"$1\" & wait",
       fx, "{port}"});
  EXPECT_EQ(o.status, exit_status::exited_with(5)) << o;
  EXPECT_TRUE(contains(o.err, "the server did not end as expected")) << o;
  EXPECT_TRUE(contains(o.err, "| ==9==ERROR: LeakSanitizer: detected memory leaks")) << o;
  // A failing client keeps its own status; the report is still printed.
  const outcome failing = run_cli(
      {"run", "--then", "exit 7", "--", "/bin/sh", "-c",
       "trap 'echo \"==9==ERROR: LeakSanitizer: detected memory leaks\" >&2; exit 1' TERM; \"$0\" --port=\"$1\" & wait",
       fx, "{port}"});
  EXPECT_EQ(failing.status, exit_status::exited_with(7)) << failing;
  EXPECT_TRUE(contains(failing.err, "LeakSanitizer")) << failing;
}

// A slow start says where it stands on stderr, from 2 s on. Those 2 s scale with
// HARNESS_TIMEOUT_SCALE like the 30 s deadline, so the server's delay does too.
TEST(CliRun, ASlowStartSaysWhereItStands) {
  using harness::timeouts::scaled;
  const auto seconds = [](std::chrono::milliseconds d) { return static_cast<double>(d.count()) / 1000.0; };
  const outcome o = run_cli({"run", "--then", "true", "--", fx,
                             "--delay-ms=" + std::to_string(scaled(2500ms).count()), "--port={port}"});
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(o.err, m,
                                std::regex("harness: still starting fixture-server: (\\d+\\.\\d) s in, (\\d+\\.\\d) s "
                                           "left; waiting for tcp \\(connection refused\\)")))
      << o;
  // Printed with one decimal each.
  const double in = std::stod(m[1]);
  const double left = std::stod(m[2]);
  EXPECT_GE(in, seconds(scaled(2s)) - 0.05) << o;
  EXPECT_LT(in, seconds(scaled(3s))) << o;
  EXPECT_NEAR(in + left, seconds(scaled(30s)), 0.11) << o;
}

TEST(CliThen, ClientOutputIsStreamedLive) {
  // The client prints a line, then blocks until the test has seen it.
  const auto fifo =
      std::filesystem::temp_directory_path() / ("harness-cli-fifo-" + std::to_string(::getpid()));
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const auto started = clock_type::now();
  harness::process p =
      spawn_cli({"run", "--then", "echo first; read go < '" + fifo.string() + "'; echo second $go",
                 "--", fx, "--port={port}"});
  auto first = p.output().wait_for_line("^first$", 30s, {stream::out});
  ASSERT_TRUE(first) << first.error().message() << "\n" << p.output().tail(stream::err);
  EXPECT_EQ(p.output().line_count(stream::out), 1u);
  {
    const int fd = ::open(fifo.c_str(), O_WRONLY | O_CLOEXEC);  // the client opens its end
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "now\n", 4), 4);
    ::close(fd);
  }
  const outcome o = finish(p, started);
  std::filesystem::remove(fifo);
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  EXPECT_EQ(o.out, "first\nsecond now\n") << o;
}

TEST(CliThen, SigtermToHarnessStopsClientAndServer) {
  const auto started = clock_type::now();
  harness::process p =
      spawn_cli({"run", "--then", "echo server=$HARNESS_PID client=$$; exec sleep 600", "--", fx,
                 "--port={port}"});
  auto line = p.output().wait_for_line(R"(^server=(\d+) client=(\d+)$)", 30s, {stream::out});
  ASSERT_TRUE(line) << line.error().message() << "\n" << p.output().tail(stream::err);
  const int server = harness_test::open_pidfd(std::stoi(line->groups[1]));
  const int client = harness_test::open_pidfd(std::stoi(line->groups[2]));
  ASSERT_GE(server, 0);
  ASSERT_GE(client, 0);
  ASSERT_TRUE(p.signal(SIGTERM));
  const outcome o = finish(p, started);
  EXPECT_EQ(o.status, exit_status::exited_with(128 + SIGTERM)) << o;
  EXPECT_TRUE(harness_test::pidfd_exited(server));
  EXPECT_TRUE(harness_test::pidfd_exited(client));
  ::close(server);
  ::close(client);
}

// --- the server's own exit, runner death ------------------------------------------

TEST(CliRun, ServerExitingOnItsOwnIsExit4WithStatusAndTail) {
  auto h = hold({"run", "--", fx, "--port={port}", "--eprint=about to leave", "--exit-after=500"});
  ASSERT_TRUE(h);
  const outcome o = finish(h->cli, h->started);
  EXPECT_EQ(o.status, exit_status::exited_with(4)) << o;
  EXPECT_TRUE(contains(o.err, "the server exited on its own: exited with status 0")) << o;
  EXPECT_TRUE(contains(o.err, "about to leave")) << o;
  EXPECT_TRUE(contains(o.err, "log: ")) << o;
}

TEST(CliRun, SigkilledHarnessLeavesNoServerBehind) {
  // -v passes the server's lines through: the fixture names its setsid child there.
  auto h = hold({"run", "-v", "--", fx, "--port={port}", "--fork-setsid"});
  ASSERT_TRUE(h);
  auto child = h->cli.output().wait_for_line(R"(^\[server\] SETSID (\d+)$)", 10s, {stream::err});
  ASSERT_TRUE(child) << child.error().message();
  const int child_fd = harness_test::open_pidfd(std::stoi(child->groups[1]));
  ASSERT_GE(child_fd, 0);
  EXPECT_FALSE(harness_test::pidfd_exited(child_fd));

  ASSERT_TRUE(h->cli.signal(SIGKILL));
  const auto deadline = clock_type::now() + 2s;
  for (int fd : {h->pidfd, child_fd}) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
    EXPECT_TRUE(harness_test::pidfd_exited(fd, std::max(left, 0ms)))
        << "a server process outlived harness by 2 s";
  }
  ::close(child_fd);
  EXPECT_EQ(h->cli.stop(), exit_status::killed_by(SIGKILL));
}

TEST(CliRun, SignalWhileStartingExitsAndTheServerDies) {
  const auto started = clock_type::now();
  harness::process p = spawn_cli({"run", "-v", "--", fx, "--delay-ms=60000", "--port={port}"});
  auto line = p.output().wait_for_line(R"(^\[server\] PID (\d+)$)", 30s, {stream::err});
  ASSERT_TRUE(line) << line.error().message();
  const int server = harness_test::open_pidfd(std::stoi(line->groups[1]));
  ASSERT_GE(server, 0);
  ASSERT_TRUE(p.signal(SIGTERM));
  const outcome o = finish(p, started);
  EXPECT_EQ(o.status, exit_status::exited_with(128 + SIGTERM)) << o;
  EXPECT_TRUE(contains(o.err, "interrupted by SIGTERM before the server was ready")) << o;
  EXPECT_TRUE(harness_test::pidfd_exited(server, 2000ms)) << "the server outlived harness by 2 s";
  ::close(server);
}

// --- bad command lines ---------------------------------------------------------------

struct usage_case {
  const char* name;
  std::vector<std::string> args;
  const char* says;
};

// Names the case in test output and in CTest's test names (not a byte dump).
void PrintTo(const usage_case& c, std::ostream* os) { *os << c.name; }

class CliUsage : public testing::TestWithParam<usage_case> {};

TEST_P(CliUsage, ExitsWith2AndSaysWhy) {
  const auto& c = GetParam();
  const outcome o = run_cli(c.args);
  EXPECT_EQ(o.status, exit_status::exited_with(2)) << o;
  EXPECT_TRUE(contains(o.err, c.says)) << "expected: " << c.says << "\n" << o;
  EXPECT_TRUE(contains(o.err, "--help' for more information")) << o;
  EXPECT_EQ(o.out, "") << o;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CliUsage,
    testing::Values(
        usage_case{"NoCommand", {}, "A subcommand is required"},
        usage_case{"UnknownCommand", {"launch"}, "unknown command 'launch'"},
        usage_case{"UnknownOption", {"run", "--bogus", "--", fx, "--port={port}"}, "--bogus"},
        usage_case{"MissingSeparator", {"run", fx, "--port={port}"}, "go after '--'"},
        usage_case{
            "MissingSeparatorPlainWords", {"run", fx}, "missing '--' before the server command"},
        usage_case{"WordBeforeSeparator",
                   {"run", "oops", "--", fx, "--port={port}"},
                   "unexpected argument 'oops'"},
        usage_case{"NoServerCommand", {"run"}, "no server command"},
        usage_case{"EmptyServerCommand", {"run", "--"}, "the server command after '--' is empty"},
        usage_case{"BadReadySpec",
                   {"run", "--ready", "tcpx", "--", fx, "--port={port}"},
                   "--ready: 'tcpx' is not a readiness check"},
        usage_case{"BadReadyHttpPath",
                   {"run", "--ready", "http:health", "--", fx, "--port={port}"},
                   "the path must start with '/'"},
        usage_case{"BadReadyHttpStatus",
                   {"run", "--ready", "http:/:999", "--", fx, "--port={port}"},
                   "the HTTP status must be 100..599"},
        usage_case{"BadReadyLog",
                   {"run", "--ready", "log:", "--", fx, "--port={port}"},
                   "needs a regular expression"},
        usage_case{"BadReadyRegex",
                   {"run", "--ready", "log:(", "--", fx, "--port={port}"},
                   "bad regular expression"},
        usage_case{"BadMode",
                   {"run", "--mode", "borrow", "--", fx, "--port={port}"},
                   "--mode: borrow not in"},
        usage_case{"ZeroTimeout",
                   {"run", "--timeout", "0", "--", fx, "--port={port}"},
                   "--timeout: must be more than 0"},
        usage_case{"NegativeTimeout",
                   {"run", "--timeout=-1", "--", fx, "--port={port}"},
                   "--timeout: must be more than 0"},
        usage_case{"TextTimeout",
                   {"run", "--timeout", "soon", "--", fx, "--port={port}"},
                   "not a number of seconds"},
        usage_case{"ZeroAttempts",
                   {"run", "--attempts", "0", "--", fx, "--port={port}"},
                   "--attempts: needs a whole number"},
        usage_case{"TextAttempts",
                   {"run", "--attempts", "2.5", "--", fx, "--port={port}"},
                   "--attempts: needs a whole number"},
        usage_case{"BadEnv",
                   {"run", "--env", "NOEQUALS", "--", fx, "--port={port}"},
                   "not of the form NAME=VALUE"},
        usage_case{"BadFailOn",
                   {"run", "--fail-on", "(", "--", fx, "--port={port}"},
                   "bad regular expression"},
        usage_case{"NoModeWithoutPort", {"run", "--", fx, "--port=0"}, "--mode is needed"},
        usage_case{"TcpInInheritMode",
                   {"run", "--mode", "inherit", "--ready", "tcp", "--", fx, "--listen-fds"},
                   "in inherit mode a tcp probe proves nothing"},
        usage_case{"PortPlaceholderInAnnounceMode",
                   {"run", "--mode", "announce", "--", fx, "--port={port}"},
                   "{port} is only substituted in lease mode"},
        usage_case{"PortFromOutsideAnnounceMode",
                   {"run", "--port-from", "(\\d+)", "--", fx, "--port={port}"},
                   "--port-from needs --mode announce"},
        usage_case{"BadHost",
                   {"run", "--host", "not a host", "--", fx, "--port={port}"},
                   "not an IP address"},
        usage_case{"SeparatorWithoutRun", {"ports", "--", "x"}, "belong to 'harness run'"}),
    [](const testing::TestParamInfo<usage_case>& info) { return std::string(info.param.name); });

TEST(CliRun, MissingProgramIsExit3) {
  const outcome o =
      run_cli({"run", "--", "/nonexistent/serve-harness-no-such-server", "--port={port}"});
  EXPECT_EQ(o.status, exit_status::exited_with(3)) << o;
  EXPECT_TRUE(contains(o.err, "program not found")) << o;
  const outcome path = run_cli({"run", "--", "serve-harness-no-such-server", "--port={port}"});
  EXPECT_EQ(path.status, exit_status::exited_with(3)) << path;
  EXPECT_TRUE(contains(path.err, "program not found")) << path;
}

// The CLI with NAME=VALUE settings added to its environment.
outcome run_cli_with_env(const std::vector<std::string>& env, const std::vector<std::string>& args) {
  std::vector<std::string> argv{"/usr/bin/env"};
  argv.insert(argv.end(), env.begin(), env.end());
  argv.push_back(HARNESS_CLI);
  argv.insert(argv.end(), args.begin(), args.end());
  const auto started = clock_type::now();
  harness::process p = harness::process::spawn({.argv = std::move(argv), .name = "harness-cli"});
  return finish(p, started);
}

// Empty values and a bad HARNESS_PORT_RANGE are usage errors (exit 2) named at once,
// not a 30 s wait, a skip-worthy "program not found" or a start failure.
TEST(CliRun, EmptyHostProgramAndABadPortRangeAreUsageErrors) {
  const outcome host = run_cli({"run", "--host", "", "--", fx, "--port={port}"});
  EXPECT_EQ(host.status, exit_status::exited_with(2)) << host;
  EXPECT_TRUE(contains(host.err, "the host is empty")) << host;
  EXPECT_LT(host.took, 10s) << host;
  const outcome program = run_cli({"run", "--", "", "{port}"});
  EXPECT_EQ(program.status, exit_status::exited_with(2)) << program;
  EXPECT_TRUE(contains(program.err, "the program (argv[0]) is an empty string")) << program;
  const outcome range = run_cli_with_env({"HARNESS_PORT_RANGE=abc"}, {"run", "--", fx, "--port={port}"});
  EXPECT_EQ(range.status, exit_status::exited_with(2)) << range;
  EXPECT_TRUE(contains(range.err, "HARNESS_PORT_RANGE: \"abc\" is not of the form LOW-HIGH")) << range;
}

// A range in the kernel's ephemeral range is used as asked, with a warning that says why
// race-freedom weakens.
TEST(CliRun, APortRangeInTheEphemeralRangeIsUsedWithAWarning) {
  const auto eph = harness::ephemeral_port_range();
  const std::string range = std::to_string(eph.last - 200) + "-" + std::to_string(eph.last);
  const outcome o = run_cli_with_env({"HARNESS_PORT_RANGE=" + range},
                                     {"run", "--then", "echo port=$HARNESS_PORT", "--", fx,
                                      "--port={port}"});
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  EXPECT_TRUE(contains(o.err, "warning: HARNESS_PORT_RANGE " + range + " overlaps the kernel's ephemeral range"))
      << o;
  EXPECT_TRUE(contains(o.out, "port=")) << o;
}

// --- harness ports -------------------------------------------------------------------

// A note with terminal escape sequences (from a server's command line) is shown with
// its control characters escaped in the table; the JSON escapes them as JSON does.
TEST(CliPorts, ControlCharactersInANoteReachNoTerminal) {
  const std::string tag = "cli-escape-" + std::to_string(::getpid());
  harness::lease l = harness::lease::acquire({.note = tag + " \x1b]0;pwned\x07 \x1b[2J"});
  const outcome table = run_cli({"ports"}, 4 << 20);
  EXPECT_EQ(table.status, exit_status::exited_with(0)) << table;
  EXPECT_TRUE(contains(table.out, tag + " \\x1b]0;pwned\\x07 \\x1b[2J")) << table;
  EXPECT_FALSE(contains(table.out, "\x1b")) << "an escape character reached the output";
  const outcome json = run_cli({"ports", "--json"}, 4 << 20);
  EXPECT_FALSE(contains(json.out, "\x1b")) << "an escape character reached the output";
  EXPECT_TRUE(contains(json.out, "\\u001b]0;pwned")) << json;
}

TEST(CliPorts, ListsAHeldLease) {
  const std::string note = "cli-test-" + std::to_string(::getpid());
  harness::lease l = harness::lease::acquire({.note = note});
  const std::string port = std::to_string(l.port());
  const std::string me = std::to_string(::getpid());

  const outcome table = run_cli({"ports"}, 4 << 20);
  EXPECT_EQ(table.status, exit_status::exited_with(0)) << table;
  EXPECT_TRUE(contains(table.out, "PORT")) << table;
  EXPECT_TRUE(std::regex_search(
      table.out, std::regex("(^|\n)" + port + " +yes +" + me + " +\\S+ +" + note + "\n")))
      << table;

  // The JSON entry of our port, or null (the output must parse as an array either way).
  auto entry_of = [&](const outcome& o) {
    const auto list = nlohmann::json::parse(o.out, nullptr, false);
    EXPECT_TRUE(list.is_array()) << o;
    if (list.is_array()) {
      for (const auto& e : list) {
        if (e.value("port", 0) == l.port()) return e;
      }
    }
    return nlohmann::json();
  };
  const outcome json = run_cli({"ports", "--json"}, 4 << 20);
  EXPECT_EQ(json.status, exit_status::exited_with(0)) << json;
  const auto mine = entry_of(json);
  ASSERT_TRUE(mine.is_object()) << json;
  EXPECT_EQ(mine.value("held", false), true) << mine;
  EXPECT_EQ(mine.value("pid", 0), ::getpid()) << mine;
  EXPECT_EQ(mine.value("note", ""), note) << mine;
  EXPECT_GE(mine.value("age_seconds", -1), 0) << mine;
  EXPECT_GT(mine.value("since", 0), 0) << mine;
  // Keys in the documented order, one entry per port.
  EXPECT_TRUE(contains(json.out, "\"port\": " + port + ",\n    \"held\": true,\n    \"pid\": " + me)) << json;

  l.release();
  const outcome held = run_cli({"ports", "--json"}, 4 << 20);
  const auto gone = entry_of(held);
  EXPECT_FALSE(gone.is_object() && gone.value("note", "") == note) << held;
  const outcome all = run_cli({"ports", "--json", "--all"}, 16 << 20);
  // (Another process may lease the port again at once: only the entry must remain.)
  const auto kept = entry_of(all);
  ASSERT_TRUE(kept.is_object()) << all;
  EXPECT_FALSE(kept.value("held", false) && kept.value("pid", 0) == ::getpid()) << kept;
}

// --- the acceptance check of the issue -----------------------------------------------

bool have_python3() {
  auto p = harness::process::try_spawn({.argv = {"python3", "-c", "pass"}});
  if (!p) return false;
  return p->wait_for(30s).value_or(exit_status{}).success();
}

TEST(CliAcceptance, PythonHttpServerAndClient) {
  if (!have_python3()) GTEST_SKIP() << "python3 is not installed";
  const std::string client =
      "python3 -c \"import os,urllib.request; "
      "urllib.request.urlopen(\\\"http://127.0.0.1:\\\"+os.environ[\\\"HARNESS_PORT\\\"]+\\\"/"
      "\\\")\"";
  const outcome ok = run_cli({"run", "--then", client, "--", "python3", "-m", "http.server",
                              "{port}", "--bind", "127.0.0.1"});
  EXPECT_EQ(ok.status, exit_status::exited_with(0)) << ok;

  const outcome failing =
      run_cli({"run", "--then", "python3 -c 'import sys; sys.exit(5)'", "--", "python3", "-m",
               "http.server", "{port}", "--bind", "127.0.0.1"});
  EXPECT_EQ(failing.status, exit_status::exited_with(5)) << failing;
}

// --- config files, scratch space, health commands, stop signals, several servers -------

TEST(CliConfig, AFileTemplateCarriesThePortAndTheServerRunsInItsDir) {
  const harness_test::temp_dir t("cli-file");
  const auto tmpl = t.path() / "port.in";
  { std::ofstream(tmpl) << "{port}"; }
  const outcome o = run_cli(
      {"run", "--file", "port.txt=" + tmpl.string(), "--cwd", "{dir}", "--keep-dir", "always", "--then",
       "cat {dir}/port.txt; echo; cat {dir}/cwd; echo $HARNESS_PORT", "--", "/bin/sh", "-c",
       "pwd > cwd; exec \"$0\" --port=\"$(cat port.txt)\"", fx});
  ASSERT_EQ(o.status, exit_status::exited_with(0)) << o;
  std::istringstream lines(o.out);
  std::string port_line, dir, harness_port;
  std::getline(lines, port_line);
  std::getline(lines, dir);
  std::getline(lines, harness_port);
  EXPECT_EQ(port_line, harness_port) << o;
  EXPECT_NE(dir.find("/scratch/"), std::string::npos) << o;
  EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(dir) / "port.txt")) << "--keep-dir always: " << dir;
  std::filesystem::remove_all(dir);
}

TEST(CliConfig, StopSignalAndGrace) {
  // The server ignores SIGTERM; --stop-signal INT ends it at once, within its grace.
  const outcome o = run_cli({"run", "-v", "--stop-signal", "INT", "--grace", "5", "--then", "true", "--", fx,
                             "--port={port}", "--ignore-sigterm"});
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  EXPECT_TRUE(contains(o.err, "server killed by signal 2 (SIGINT)")) << o;
  EXPECT_LT(o.took, 5s) << o;
  const outcome sigterm = run_cli({"run", "-v", "--grace", "0.2", "--then", "true", "--", fx, "--port={port}",
                                   "--ignore-sigterm"});
  EXPECT_TRUE(contains(sigterm.err, "server killed by signal 9 (SIGKILL)")) << sigterm;
}

TEST(CliConfig, ACommandProbe) {
  const outcome o = run_cli({"run", "--ready", "tcp", "--ready", "cmd:test -d {dir} && echo ok {port}", "--then",
                             "true", "--", fx, "--port={port}"});
  EXPECT_EQ(o.status, exit_status::exited_with(0)) << o;
  const outcome never = run_cli({"run", "--timeout", "0.4", "--ready", "cmd:echo not yet; exit 3", "--", fx,
                                 "--port={port}"});
  EXPECT_EQ(never.status, exit_status::exited_with(3)) << never;
  EXPECT_TRUE(contains(never.err, "(exited with status 3: not yet)")) << never;
}

TEST(CliConfig, TwoNamedServersInOneRun) {
  const outcome o = run_cli({"run", "--name", "web", "--then",
                             "echo web=$WEB_PORT/$WEB_HOST/$WEB_PID db=$DB_PORT first=$HARNESS_PORT", "--", fx,
                             "--port={port}", "--and", "--name", "db", "--ready", "tcp", "--", fx, "--port={port}",
                             "--print=second"});
  ASSERT_EQ(o.status, exit_status::exited_with(0)) << o;
  const std::string web = capture(o.out, R"(web=(\d+)/)");
  const std::string db = capture(o.out, R"(db=(\d+))");
  EXPECT_FALSE(web.empty()) << o;
  EXPECT_FALSE(db.empty()) << o;
  EXPECT_NE(web, db);
  EXPECT_EQ(capture(o.out, R"(first=(\d+))"), web) << o;
  EXPECT_TRUE(contains(o.out, "/127.0.0.1/")) << o;

  // Without --then: every server's lines, until a signal.
  harness::process held = spawn_cli({"run", "--name", "a", "--", fx, "--port={port}", "--and", "--name", "b-2", "--",
                                     fx, "--port={port}"});
  ASSERT_TRUE(held.output().wait_for_line("B_2_PID=", 20s)) << held.output().merged_report(20);
  const std::string text = held.output().merged_report(20);
  EXPECT_TRUE(contains(text, "HARNESS_PORT=")) << text;
  EXPECT_TRUE(contains(text, "A_PORT=")) << text;
  EXPECT_TRUE(contains(text, "B_2_PORT=")) << text;
  ASSERT_TRUE(held.signal(SIGTERM));
  ASSERT_TRUE(held.wait_for(20s));
  EXPECT_EQ(held.stop(), exit_status::exited_with(0));
}

TEST(CliConfig, OneOfTwoServersDyingIsExit4AndNamesIt) {
  const outcome o = run_cli({"run", "--name", "web", "--then", "kill -9 $DB_PID; sleep 0.2", "--", fx, "--port={port}",
                             "--and", "--name", "db", "--", fx, "--port={port}"});
  EXPECT_EQ(o.status, exit_status::exited_with(4)) << o;
  EXPECT_TRUE(contains(o.err, "the server db exited on its own: killed by signal 9")) << o;
}

TEST(CliConfig, UsageErrorsOfTheNewOptions) {
  const harness_test::temp_dir t("cli-usage");
  struct bad {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<bad> cases = {
      {{"run", "--file", "x", "--", fx, "--port={port}"}, "NAME=TEMPLATE_PATH"},
      {{"run", "--file", "x=" + (t.path() / "missing").string(), "--", fx, "--port={port}"}, "cannot read the template"},
      {{"run", "--file", "../x=/etc/hostname", "--", fx, "--port={port}"}, "must be a relative file path"},
      {{"run", "--stop-signal", "NOPE", "--", fx, "--port={port}"}, "is not a signal"},
      {{"run", "--stop-signal", "99", "--", fx, "--port={port}"}, "is not a signal number"},
      {{"run", "--grace", "-1", "--", fx, "--port={port}"}, "--grace"},
      {{"run", "--keep-dir", "sometimes", "--", fx, "--port={port}"}, "--keep-dir"},
      {{"run", "--ready", "cmd:", "--", fx, "--port={port}"}, "cmd: needs a command"},
      {{"run", "--", fx, "--port={port}", "--and", "--", fx, "--port={port}"}, "--name"},
      {{"run", "--name", "a", "--", fx, "--port={port}", "--and", "--name", "b"}, "no server command"},
      {{"run", "--name", "a", "--", fx, "--port={port}", "--and", "--name", "A", "--", fx, "--port={port}"},
       "two servers are called"},
      {{"run", "--name", "a", "--", fx, "--port={port}", "--and", "--name", "b", "--bogus", "--", fx, "--port={port}"},
       "server 2 (after --and)"},
  };
  for (const auto& c : cases) {
    const outcome o = run_cli(c.args);
    EXPECT_EQ(o.status, exit_status::exited_with(2)) << o;
    EXPECT_TRUE(contains(o.err, c.says)) << "expected \"" << c.says << "\" in\n" << o;
  }
}

}  // namespace
