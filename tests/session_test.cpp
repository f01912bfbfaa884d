// Sessions: the three port modes, every probe, collisions and respawn, failures.
#include "harness/session.hpp"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <stdexcept>

#include "harness/detail/proc/io_thread.hpp"
#include "harness/detail/proc/spawn_posix.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using harness::errc;
using harness::port_mode;
using harness::probe;
using harness::server_spec;
using harness::session;
using harness_test::fixture_server;

std::vector<std::string> fx(std::vector<std::string> args) {
  args.insert(args.begin(), fixture_server());
  return args;
}

std::string ping(const session& s) {
  return harness_test::tcp_request(s.port(), "ping").value_or("<no answer>");
}

// A scratch directory per test, removed afterwards.
class SessionTest : public testing::Test {
 protected:
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  const harness_test::temp_dir tmp_{"harness-session-test"};
  const std::filesystem::path& dir_ = tmp_.path();
};

TEST(Placeholders, SubstitutionAndEscapes) {
  using harness::substitute_placeholders;
  EXPECT_EQ(substitute_placeholders("--listen={host}:{port}", "127.0.0.1", "20417"),
            "--listen=127.0.0.1:20417");
  EXPECT_EQ(substitute_placeholders("{{port}} is {port}; {{host}}", "h", "1"), "{port} is 1; {host}");
  EXPECT_EQ(substitute_placeholders("{port}{port}{", "", "7"), "77{");
  EXPECT_TRUE(harness::uses_port_placeholder("x{port}"));
  EXPECT_FALSE(harness::uses_port_placeholder("x{{port}}"));
  EXPECT_FALSE(harness::uses_port_placeholder("{host}"));
  EXPECT_TRUE(harness::uses_port_placeholder(server_spec{.command = {"srv"}, .env = {.set = {{"P", "{port}"}}}}));
  EXPECT_FALSE(harness::uses_port_placeholder(server_spec{.command = {"srv", "--port=0"}}));
}

// --- the three modes ------------------------------------------------------------

TEST_F(SessionTest, LeaseModeSubstitutesThePortAndProbesTcp) {
  session s = session::start({.command = fx({"--port={port}", "--host={host}"})});
  EXPECT_EQ(s.mode(), port_mode::lease);
  const auto pool = harness::default_port_range().value();
  EXPECT_GE(s.port(), pool.first);
  EXPECT_LE(s.port(), pool.last);
  EXPECT_EQ(s.endpoint(), "127.0.0.1:" + std::to_string(s.port()));
  EXPECT_NE(s.command_line().find("--port=" + std::to_string(s.port())), std::string::npos);
  EXPECT_EQ(ping(s), "pong: ping");
  ASSERT_EQ(s.attempts().size(), 1u);
  EXPECT_EQ(s.attempts()[0].outcome, harness::attempt::result::ready);
  EXPECT_TRUE(s.running());
  // The lease is held while the session lives: nobody else can lease the port.
  auto other = harness::lease::try_acquire({.range = harness::port_range{s.port(), s.port()}});
  EXPECT_FALSE(other);
}

TEST_F(SessionTest, PortPlaceholderInTheEnvironment) {
  session s = session::start({.command = fx({"--report-env=MY_PORT", "--port={port}"}),
                              .env = {.set = {{"MY_PORT", "{port}"}}}});
  auto line = s.output().wait_for_line("^ENV MY_PORT=", 10s);
  ASSERT_TRUE(line);
  EXPECT_EQ(line->line, "ENV MY_PORT=" + std::to_string(s.port()));
}

TEST_F(SessionTest, AnnounceModeOverTheReadyFd) {
  session s = session::start({.command = fx({"--port=0", "--announce=ready-fd"}),
                              .port = {.mode = port_mode::announce}});
  EXPECT_EQ(s.mode(), port_mode::announce);
  EXPECT_NE(s.port(), 0);
  EXPECT_EQ(ping(s), "pong: ping");
}

TEST_F(SessionTest, AnnounceModeOverNotify) {
  session s = session::start({.command = fx({"--port=0", "--announce=notify"}),
                              .port = {.mode = port_mode::announce}});
  EXPECT_NE(s.port(), 0);
  EXPECT_EQ(ping(s), "pong: ping");
}

TEST_F(SessionTest, AnnounceModeFromAnOutputLine) {
  // {{port}} is the escape for a literal {port}: here the fixture's own placeholder.
  session s = session::start(
      {.command = fx({"--port=0", "--announce-stream=stderr",
                      "--announce-line=Serving HTTP on 0.0.0.0 port {{port}} (http://0.0.0.0:{{port}}/)"}),
       .port = {.mode = port_mode::announce, .port_from = R"(Serving HTTP on \S+ port (\d+))"}});
  EXPECT_NE(s.port(), 0);
  EXPECT_EQ(ping(s), "pong: ping");
}

TEST_F(SessionTest, InheritModePassesTheListeningSocket) {
  session s = session::start({.command = fx({"--listen-fds", "--announce=auto",
                                             "--report-env=LISTEN_FDS", "--report-env=LISTEN_PID"}),
                              .port = {.mode = port_mode::inherit}});
  EXPECT_EQ(s.mode(), port_mode::inherit);
  EXPECT_EQ(ping(s), "pong: ping");
  const auto out = s.output().tail(harness::stream::out);
  EXPECT_NE(out.find("ENV LISTEN_FDS=1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("ENV LISTEN_PID=" + std::to_string(s.pid()) + "\n"), std::string::npos) << out;
}

TEST_F(SessionTest, InheritModeOnAChosenPortWithAnHttpProbe) {
  auto block = harness_test::reserve_block(1);
  const auto port = block[0].port();
  block.clear();  // free it for our own bind
  session s = session::start({.command = fx({"--listen-fds", "--serve=http"}),
                              .port = {.mode = port_mode::inherit, .port = port},
                              .ready = {.probes = {probe::http("/")}}});
  EXPECT_EQ(s.port(), port);
}

// --- probes ----------------------------------------------------------------------

TEST_F(SessionTest, HttpProbeWaitsForTheExpectedStatusAndBody) {
  // The fixture answers 503 for its first 300 ms, then 200 "ok".
  session s = session::start(
      {.command = fx({"--port={port}", "--serve=http", "--http-delay-ready=300"}),
       .ready = {.probes = {probe::http("/", 200, [](std::string_view body) { return body == "ok\n"; })}}});
  EXPECT_GE(s.ready_time(), 300ms);
}

TEST_F(SessionTest, HttpProbeOnAnotherPathAndStatus) {
  session s = session::start(
      {.command = fx({"--port={port}", "--serve=http", "--http-path=/health", "--http-status=204"}),
       .ready = {.probes = {probe::http("/health", 204)}}});
  EXPECT_TRUE(s.running());
}

TEST_F(SessionTest, HttpProbeTimesOutOnTheWrongStatus) {
  auto r = session::try_start({.command = fx({"--port={port}", "--serve=http", "--http-status=500"}),
                               .ready = {.probes = {probe::http("/", 200)}, .timeout = 500ms}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::ready_timeout);
  EXPECT_NE(r.error().message().find("answered 500"), std::string::npos) << r.error().message();
}

TEST_F(SessionTest, LogProbeAndTcpProbeTogether) {
  session s = session::start({.command = fx({"--print=Ready to accept connections", "--port={port}"}),
                              .ready = {.probes = {probe::log("Ready to accept"), probe::tcp()}}});
  EXPECT_EQ(ping(s), "pong: ping");
}

TEST_F(SessionTest, AnnounceAndNotifyProbesInLeaseMode) {
  session a = session::start({.command = fx({"--port={port}", "--announce=ready-fd"}),
                              .ready = {.probes = {probe::announce()}}});
  EXPECT_EQ(ping(a), "pong: ping");
  session n = session::start({.command = fx({"--port={port}", "--announce=notify"}),
                              .ready = {.probes = {probe::notify()}}});
  EXPECT_EQ(ping(n), "pong: ping");
}

TEST_F(SessionTest, NotifyFromAShortLivedHelperCounts) {
  // Like systemd-notify: a helper process sends READY=1 and is gone at once; the
  // server itself then runs on {port}.
  session s = session::start(
      {.command = {"/bin/sh", "-c",
                   "\"$0\" --port=0 --announce=notify --serve=none --exit-after=0; exec \"$0\" --port=\"$1\"",
                   fixture_server(), "{port}"},
       .ready = {.probes = {probe::notify(), probe::tcp()}, .timeout = 20s}});
  EXPECT_EQ(ping(s), "pong: ping");
}

TEST_F(SessionTest, NotifyFromAProcessOutsideTheTreeIsIgnored) {
  // A stranger of the same user sends READY=1 with its own port to the server's
  // NOTIFY_SOCKET before the server announces; the session must report the server's.
  const std::string go = (std::filesystem::temp_directory_path() /
                          ("harness-notify-go-" + std::to_string(::getpid()))).string();
  ::unlink(go.c_str());
  std::promise<std::string> address;
  auto seen = address.get_future();
  std::atomic<bool> told{false};
  auto started = session::start_async(
      {.command = fx({"--report-env=NOTIFY_SOCKET", "--wait-file=" + go, "--port=0", "--announce=notify"}),
       .port = {.mode = port_mode::announce},
       .ready = {.timeout = 20s},
       .output = {.on_line = [&](harness::stream, std::string_view line) {
         if (line.rfind("ENV NOTIFY_SOCKET=", 0) == 0 && !told.exchange(true)) {
           address.set_value(std::string(line.substr(18)));
         }
       }}});
  ASSERT_EQ(seen.wait_for(10s), std::future_status::ready);
  const std::string where = seen.get();
  ASSERT_FALSE(where.empty());
  harness::process stranger = harness::process::spawn(
      {.argv = {"python3", "-c",
                "import socket, sys, time\n"
                "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
                "s.sendto(b'READY=1\\nPORT=9\\n', '\\0' + sys.argv[1][1:])\n"
                "print('sent', flush=True)\n"
                "time.sleep(30)\n",
                where}});
  ASSERT_TRUE(stranger.output().wait_for_line("^sent$", 10s)) << stranger.output().tail(harness::stream::err);
  std::ofstream(go) << "go\n";
  auto r = started.get();
  ::unlink(go.c_str());
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_NE(r->port(), 9) << "the stranger's announcement was taken";
  EXPECT_EQ(ping(*r), "pong: ping");
}

TEST_F(SessionTest, EnormousReadyTimeoutDoesNotEndAtOnce) {
  session s = session::start({.command = fx({"--delay-ms=100", "--port={port}"}),
                              .ready = {.timeout = std::chrono::milliseconds::max()}});
  EXPECT_EQ(ping(s), "pong: ping");
}

TEST_F(SessionTest, AServerThatDaemonizesIsFollowed) {
  // The started process exits at once with status 0; the copy it left behind listens
  // on {port} a little later. The copy is the server from then on.
  auto r = session::try_start(
      {.command = {"/bin/sh", "-c", "\"$0\" --port=\"$1\" --delay-ms=200 & exit 0", fixture_server(),
                   "{port}"},
       .respawn = {.attempts = 3}});
  ASSERT_TRUE(r) << r.error().message();
  session s = std::move(*r);
  EXPECT_EQ(s.attempts().size(), 1u) << "it was respawned";
  EXPECT_TRUE(s.process().daemonized());  // the copy binds 200 ms after the exit
  auto pid_line = s.output().wait_for_line(R"(^PID (\d+)$)", 10s);
  ASSERT_TRUE(pid_line);
  EXPECT_EQ(s.pid(), std::stoi(pid_line->groups[1])) << "pid() names the daemon";
  EXPECT_TRUE(s.running());
  EXPECT_EQ(harness_test::tcp_request(s.port(), "hi"), "pong: hi");
  EXPECT_NE(s.summary().find("(daemonized)"), std::string::npos) << s.summary();
  const int fd = harness_test::open_pidfd(s.pid());
  ASSERT_GE(fd, 0);
  EXPECT_EQ(s.stop(), harness::exit_status::exited_with(0));  // the daemon's own status
  EXPECT_TRUE(harness_test::pidfd_exited(fd)) << "the daemon outlived stop()";
  ::close(fd);
}

TEST_F(SessionTest, ADaemonCanBeForbidden) {
  // allow_daemon = false: the exit is judged, in every mode, and nothing is left.
  const std::string never = (std::filesystem::temp_directory_path() / "harness-never-created").string();
  for (const auto mode : {port_mode::lease, port_mode::announce}) {
    SCOPED_TRACE(mode == port_mode::lease ? "lease" : "announce");
    auto r = session::try_start(
        {.command = {"/bin/sh", "-c", "\"$0\" --port=\"$1\" --wait-file=\"$2\" & exit 0", fixture_server(),
                     mode == port_mode::lease ? "{port}" : "0", never},
         .port = {.mode = mode},
         .allow_daemon = false});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::exited_before_ready);
    const std::string text = r.error().message();
    EXPECT_NE(text.find("exited with status 0; it left 1 process running (pid "), std::string::npos) << text;
    EXPECT_NE(text.find("it daemonized, which this spec forbids (allow_daemon = false)"), std::string::npos)
        << text;
    const auto at = text.find("running (pid ");
    ASSERT_NE(at, std::string::npos);
    const pid_t left = std::stoi(text.substr(at + 13));
    EXPECT_NE(::kill(left, 0), 0) << "the copy it left (pid " << left << ") outlived the failed start";
  }
}

TEST_F(SessionTest, ACrashThatLeavesProcessesIsNotFollowed) {
  // A non-zero exit is a failure even when processes of the tree live on.
  auto r = session::try_start(
      {.command = {"/bin/sh", "-c", "\"$0\" --port=0 --serve=none & exit 3", fixture_server()},
       .port = {.mode = port_mode::announce}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::exited_before_ready);
  EXPECT_NE(r.error().message().find("exited with status 3; it left 1 process running"), std::string::npos)
      << r.error().message();
}

TEST_F(SessionTest, AnInUseLineAboutAnotherPortIsNotACollision) {
  // memcached with a fixed UDP port (-U) that is taken says "failed to listen on UDP
  // port 11211: Address already in use" and exits: that is not our port being taken,
  // so no respawn on a fresh port would help.
  auto r = session::try_start(
      {.command = fx({"--port={port}", "--eprint=failed to listen on UDP port 11211: Address already in use",
                      "--exit-before-ready=71"}),
       .respawn = {.attempts = 3}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::exited_before_ready) << r.error().message();
  EXPECT_EQ(r.error().message().find("2. port "), std::string::npos) << "it was respawned: " << r.error().message();
}

TEST_F(SessionTest, AReportFifoWithoutAReaderDoesNotHangStop) {
  // HARNESS_REPORT names a FIFO nobody reads: the line is given up at once.
  const std::string fifo = path("report.fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ::setenv("HARNESS_REPORT", fifo.c_str(), 1);
  session s = session::start({.command = fx({"--port={port}"})});
  const auto started = std::chrono::steady_clock::now();
  s.stop();
  ::unsetenv("HARNESS_REPORT");
  EXPECT_LT(std::chrono::steady_clock::now() - started, harness::timeouts::scaled(10s)) << "stop() hung";
}

TEST_F(SessionTest, AFifoAsTheLogPruneStampDoesNotHangASpawn) {
  // <state dir>/logs/.pruned is a FIFO with an old time: the next spawn must not block
  // opening it.
  const auto state = dir_ / "state";
  std::filesystem::create_directories(state / "logs");
  ::chmod(state.c_str(), 0700);
  ::chmod((state / "logs").c_str(), 0700);
  const auto stamp = state / "logs" / ".pruned";
  ASSERT_EQ(::mkfifo(stamp.c_str(), 0600), 0);
  const timespec old[2] = {{1000, 0}, {1000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, stamp.c_str(), old, 0), 0);
  const char* log_dir = std::getenv("HARNESS_LOG_DIR");
  const std::string saved = log_dir != nullptr ? log_dir : "";
  ::unsetenv("HARNESS_LOG_DIR");  // the default, pruned log directory
  ::setenv("HARNESS_STATE_DIR", state.c_str(), 1);
  auto p = harness::process::try_spawn({.argv = {fixture_server(), "--exit-before-ready=0"}});
  ::unsetenv("HARNESS_STATE_DIR");
  if (!saved.empty()) ::setenv("HARNESS_LOG_DIR", saved.c_str(), 1);
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->wait_for(10s), harness::exit_status::exited_with(0));
}

TEST_F(SessionTest, AnInUseMessageAtTheEndOfALongLineIsACollision) {
  // 6 KB of context, then the message: it is still read, and the start respawns.
  auto r = session::try_start(
      {.command = fx({"--port={port}", "--eprint=" + std::string(6000, 'x') + " bind: Address already in use",
                      "--exit-before-ready=1"}),
       .respawn = {.attempts = 2}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("2. port "), std::string::npos) << "not respawned: " << r.error().message();
}

TEST_F(SessionTest, CallbackProbeIsPolledUntilReady) {
  std::atomic<int> calls{0};
  session s = session::start(
      {.command = fx({"--port={port}"}),
       .ready = {.probes = {probe::callback("third time", [&](const harness::probe_context& c) {
         EXPECT_NE(c.port, 0);
         EXPECT_GT(c.pid, 0);
         EXPECT_NE(c.output, nullptr);
         return ++calls >= 3 ? harness::probe_result::ready : harness::probe_result::not_yet;
       })}}});
  EXPECT_EQ(calls.load(), 3);
}

TEST_F(SessionTest, CallbackProbeFailureFailsAtOnce) {
  auto r = session::try_start(
      {.command = fx({"--port={port}"}),
       .ready = {.probes = {probe::callback("schema", [](const harness::probe_context&)
                                                -> harness::result<harness::probe_result> {
         return harness::make_failure(errc::invalid_argument, "schema v2 missing");
       })}}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::probe_failed);
  EXPECT_NE(r.error().message().find("schema v2 missing"), std::string::npos);
}

TEST_F(SessionTest, ExitFailsTheWaitAtOnceWithTheReason) {
  const auto t0 = std::chrono::steady_clock::now();
  auto r = session::try_start({.command = fx({"--eprint=cannot open config", "--exit-before-ready=3"}),
                               .port = {.mode = port_mode::announce},
                               .ready = {.timeout = 60s}});
  ASSERT_FALSE(r);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 30s) << "waited for the deadline";
  EXPECT_EQ(r.error().code, errc::exited_before_ready);
  const auto msg = r.error().message();
  EXPECT_NE(msg.find("exited with status 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot open config"), std::string::npos) << msg;
}

TEST_F(SessionTest, FailPatternFailsTheWait) {
  auto r = session::try_start({.command = fx({"--eprint=FATAL: bad config", "--delay-ms=60000",
                                              "--port={port}"}),
                               .ready = {.timeout = 60s, .fail_on = {"^FATAL"}}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::fail_pattern_matched);
  EXPECT_NE(r.error().message().find("FATAL: bad config"), std::string::npos);
}

TEST_F(SessionTest, TimeoutNamesWhatItWaitedFor) {
  auto r = session::try_start({.command = fx({"--delay-ms=60000", "--port={port}"}),
                               .ready = {.timeout = 300ms}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::ready_timeout);
  EXPECT_NE(r.error().message().find("still waiting for tcp"), std::string::npos) << r.error().message();
}

// --- collisions and respawn ----------------------------------------------------------

class CollisionStyles : public SessionTest, public testing::WithParamInterface<std::string> {};

TEST_P(CollisionStyles, TwoFailedBindsEndReadyOnTheThirdPort) {
  session s = session::start({.command = fx({"--port={port}", "--fail-binds=2",
                                             "--fail-state=" + path("count"), "--style=" + GetParam()}),
                              .respawn = {.backoff_base = 1ms, .backoff_cap = 5ms}});
  ASSERT_EQ(s.attempts().size(), 3u) << harness::format_attempts(s.attempts());
  EXPECT_EQ(s.attempts()[0].outcome, harness::attempt::result::collision);
  EXPECT_EQ(s.attempts()[1].outcome, harness::attempt::result::collision);
  EXPECT_EQ(s.attempts()[2].outcome, harness::attempt::result::ready);
  EXPECT_NE(s.attempts()[0].port, s.attempts()[1].port);
  EXPECT_NE(s.attempts()[1].port, s.attempts()[2].port);
  EXPECT_EQ(s.attempts()[2].port, s.port());
  EXPECT_EQ(ping(s), "pong: ping");
}

INSTANTIATE_TEST_SUITE_P(Ecosystems, CollisionStyles,
                         testing::Values("c", "python", "go", "node", "rust", "rust-panic", "nginx",
                                         "redis", "memcached", "postgres", "java", "ruby"));

TEST_F(SessionTest, ExhaustedAttemptsListEveryAttempt) {
  auto r = session::try_start({.command = fx({"--port={port}", "--fail-binds=100",
                                              "--fail-state=" + path("count"), "--style=go"}),
                               .respawn = {.attempts = 3, .backoff_base = 1ms, .backoff_cap = 2ms}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::attempts_exhausted);
  const auto msg = r.error().message();
  EXPECT_NE(msg.find("1. port "), std::string::npos) << msg;
  EXPECT_NE(msg.find("3. port "), std::string::npos) << msg;
  EXPECT_NE(msg.find("bind: address already in use"), std::string::npos) << msg;
}

// The test grabs the leased port the moment the server prints it (the server waits
// for the go file), so the server meets a real stranger on its port.
struct port_thief {
  std::string go_file;
  std::atomic<int> fd{-1};
  std::atomic<int> stolen_port{0};
  std::function<void(harness::stream, std::string_view)> callback() {
    return [this](harness::stream, std::string_view line) {
      if (line.rfind("PORT-IS ", 0) != 0) return;
      if (fd.load() < 0) {  // only the first start
        const int port = std::stoi(std::string(line.substr(8)));
        fd = harness_test::listen_on(static_cast<std::uint16_t>(port));
        stolen_port = port;
      }
      std::ofstream(go_file) << "go";
    };
  }
  ~port_thief() {
    if (fd.load() >= 0) ::close(fd.load());
  }
};

TEST_F(SessionTest, ExitWhileAStrangerHoldsThePortIsACollision) {
  port_thief thief{path("go")};
  // "silent": the server says nothing, so only the structural check can tell.
  session s = session::start({.command = fx({"--print=PORT-IS {port}", "--wait-file=" + thief.go_file,
                                             "--port={port}", "--style=silent"}),
                              .respawn = {.backoff_base = 1ms},
                              .output = {.on_line = thief.callback()}});
  ASSERT_EQ(s.attempts().size(), 2u) << harness::format_attempts(s.attempts());
  EXPECT_EQ(s.attempts()[0].port, thief.stolen_port.load());
  EXPECT_EQ(s.attempts()[0].outcome, harness::attempt::result::collision);
  EXPECT_NE(s.attempts()[0].reason.find("held by pid " + std::to_string(::getpid())), std::string::npos)
      << s.attempts()[0].reason;
  EXPECT_NE(s.port(), thief.stolen_port.load());
  EXPECT_EQ(ping(s), "pong: ping");
}

TEST_F(SessionTest, ExitWhileAStrangerHoldsThePortIsACollisionWhateverTheProbe) {
  // With a log probe the stranger cannot pass for the server: the port held by
  // someone else makes this start a collision — seen at the next poll, or at the
  // server's exit, whichever comes first.
  port_thief thief{path("go")};
  session s = session::start({.command = fx({"--print=PORT-IS {port}", "--wait-file=" + thief.go_file,
                                             "--port={port}", "--style=silent",
                                             "--announce-line=serving on {{port}}"}),
                              .ready = {.probes = {probe::log("^serving on")}},
                              .respawn = {.backoff_base = 1ms},
                              .output = {.on_line = thief.callback()}});
  ASSERT_EQ(s.attempts().size(), 2u) << harness::format_attempts(s.attempts());
  EXPECT_EQ(s.attempts()[0].outcome, harness::attempt::result::collision);
  EXPECT_NE(s.attempts()[0].reason.find("is held by pid " + std::to_string(::getpid())), std::string::npos)
      << s.attempts()[0].reason;
}

TEST_F(SessionTest, ACollisionMessageBeforeExitIsACollision) {
  // The first start only says "address already in use" and exits, holding no socket:
  // the text is all there is to go by.
  const std::string once = path("once");
  session s = session::start(
      {.command = {"/bin/sh", "-c",
                   "if [ ! -e \"$1\" ]; then : > \"$1\"; "
                   "echo 'listen tcp 127.0.0.1:'\"$2\"': bind: address already in use' >&2; exit 1; fi; "
                   "exec \"$0\" --port=\"$2\"",
                   fixture_server(), once, "{port}"},
       .respawn = {.backoff_base = 1ms}});
  ASSERT_EQ(s.attempts().size(), 2u) << harness::format_attempts(s.attempts());
  EXPECT_EQ(s.attempts()[0].outcome, harness::attempt::result::collision);
  EXPECT_NE(s.attempts()[0].reason.find("go: "), std::string::npos) << s.attempts()[0].reason;
  EXPECT_EQ(ping(s), "pong: ping");
}

TEST_F(SessionTest, AStrangerAnsweringTheProbeIsNotMistakenForOurServer) {
  port_thief thief{path("go")};
  // The server keeps retrying its bind; the stranger accepts the tcp probe's connect.
  session s = session::start({.command = fx({"--print=PORT-IS {port}", "--wait-file=" + thief.go_file,
                                             "--port={port}", "--bind-retry=1000"}),
                              .respawn = {.backoff_base = 1ms},
                              .output = {.on_line = thief.callback()}});
  ASSERT_EQ(s.attempts().size(), 2u) << harness::format_attempts(s.attempts());
  EXPECT_EQ(s.attempts()[0].outcome, harness::attempt::result::collision);
  EXPECT_NE(s.attempts()[0].reason.find("is not our server"), std::string::npos) << s.attempts()[0].reason;
  EXPECT_EQ(ping(s), "pong: ping");
}

TEST_F(SessionTest, AForeignServerOnAPoolPortIsSkippedAndNeverSignalled) {
  auto block = harness_test::reserve_block(2);
  const harness::port_range range{block[0].port(), block[1].port()};
  const auto foreign_port = block[0].port();
  block.clear();
  // A server started outside the pool, on the first port of the range.
  harness::process foreign = harness::process::spawn(
      {.argv = {fixture_server(), "--port=" + std::to_string(foreign_port), "--announce-line=up"}});
  ASSERT_TRUE(foreign.output().wait_for_line("^up$", 10s));
  for (int i = 0; i < 5; ++i) {
    session s = session::start({.command = fx({"--port={port}"}), .port = {.range = range}});
    EXPECT_EQ(s.port(), range.last);
    // Skipped when leasing, not discovered by a failed start.
    EXPECT_EQ(s.attempts().size(), 1u) << harness::format_attempts(s.attempts());
  }
  EXPECT_TRUE(foreign.running());
  EXPECT_EQ(foreign.output().tail(harness::stream::err).find("got SIGTERM"), std::string::npos);
  EXPECT_EQ(harness_test::tcp_request(foreign_port, "still there"), "pong: still there");
}

// --- lifecycle --------------------------------------------------------------------------

TEST_F(SessionTest, RestartKeepsThePortInLeaseMode) {
  session s = session::start({.command = fx({"--port={port}"})});
  const auto port = s.port();
  const auto pid = s.pid();
  ASSERT_TRUE(s.restart());
  EXPECT_EQ(s.port(), port);
  EXPECT_NE(s.pid(), pid);
  EXPECT_EQ(ping(s), "pong: ping");
  EXPECT_EQ(s.attempts().size(), 2u);
}

TEST_F(SessionTest, RestartKeepsThePortInInheritMode) {
  session s = session::start({.command = fx({"--listen-fds", "--announce=auto"}),
                              .port = {.mode = port_mode::inherit}});
  const auto port = s.port();
  ASSERT_TRUE(s.restart());
  EXPECT_EQ(s.port(), port);
  EXPECT_EQ(ping(s), "pong: ping");
}

TEST_F(SessionTest, RestartInAnnounceModeReportsTheNewPort) {
  session s = session::start({.command = fx({"--port=0", "--announce=ready-fd"}),
                              .port = {.mode = port_mode::announce}});
  ASSERT_TRUE(s.restart());
  EXPECT_NE(s.port(), 0);
  EXPECT_EQ(ping(s), "pong: ping");
}

TEST_F(SessionTest, StartSeveralInParallel) {
  std::vector<server_spec> specs;
  specs.push_back({.command = fx({"--port={port}", "--delay-ms=200"})});
  specs.push_back({.command = fx({"--port=0", "--announce=ready-fd", "--delay-ms=200"}),
                   .port = {.mode = port_mode::announce}});
  specs.push_back({.command = fx({"--listen-fds", "--announce=auto", "--delay-ms=200"}),
                   .port = {.mode = port_mode::inherit}});
  auto sessions = harness::start_all(std::move(specs));
  ASSERT_EQ(sessions.size(), 3u);
  std::set<std::uint16_t> ports;
  for (auto& s : sessions) {
    ASSERT_TRUE(s) << s.error().message();
    EXPECT_EQ(ping(*s), "pong: ping");
    ports.insert(s->port());
  }
  EXPECT_EQ(ports.size(), 3u);
}

TEST_F(SessionTest, StopAndSummary) {
  session s = session::start({.command = fx({"--port={port}"}), .name = "pinger"});
  const auto text = s.summary();
  EXPECT_NE(text.find("pinger"), std::string::npos) << text;
  EXPECT_NE(text.find("mode lease"), std::string::npos) << text;
  EXPECT_NE(text.find(s.endpoint()), std::string::npos) << text;
  EXPECT_EQ(s.stop(), harness::exit_status::exited_with(0));
  EXPECT_FALSE(s.running());
  EXPECT_EQ(s.url("/x"), "http://" + s.endpoint() + "/x");
}

TEST_F(SessionTest, LiveSessionsListsTheStartedServers) {
  auto mine = [](int pid) {
    for (const auto& info : harness::live_sessions()) {
      if (info.pid == pid) return std::optional<harness::session_info>(info);
    }
    return std::optional<harness::session_info>();
  };
  session a = session::start({.command = fx({"--eprint=warming up", "--port={port}"}), .name = "alpha"});
  int b_pid;
  {
    session b = session::start({.command = fx({"--port=0", "--announce=ready-fd"}),
                                .port = {.mode = port_mode::announce}});
    b_pid = b.pid();
    auto info = mine(b_pid);
    ASSERT_TRUE(info);
    EXPECT_EQ(info->mode, port_mode::announce);
    EXPECT_EQ(info->port, b.port());
  }
  EXPECT_FALSE(mine(b_pid)) << "a destroyed session is still listed";
  auto info = mine(a.pid());
  ASSERT_TRUE(info);
  EXPECT_EQ(info->name, "alpha");
  EXPECT_EQ(info->endpoint, a.endpoint());
  EXPECT_TRUE(info->running);
  EXPECT_EQ(info->attempts.size(), 1u);
  ASSERT_FALSE(info->output_tail.empty());
  EXPECT_EQ(info->output_tail.back(), (harness::output_line{harness::stream::err, "warming up"}));
  EXPECT_EQ(info->log, a.log_path());
  EXPECT_EQ(info->summary, a.summary());
}

TEST_F(SessionTest, ReportFileGetsOneLinePerStoppedServer) {
  const std::string report = path("report.jsonl");
  ::setenv("HARNESS_REPORT", report.c_str(), 1);
  {
    session s = session::start({.command = fx({"--port={port}"}), .name = "reported"});
    const auto port = s.port();
    ASSERT_TRUE(s.restart());
    s.stop();
    s.stop();  // idempotent: no second line for the same server
    const auto text = harness_test::read_text(report);
    ASSERT_EQ(std::count(text.begin(), text.end(), '\n'), 2) << text;
    std::istringstream lines(text);
    std::vector<nlohmann::json> records;
    for (std::string line; std::getline(lines, line);) {
      records.push_back(nlohmann::json::parse(line, nullptr, false));
      ASSERT_TRUE(records.back().is_object()) << "not a JSON object: " << line;
    }
    for (const auto& r : records) {
      EXPECT_EQ(r.value("name", ""), "reported") << r;
      EXPECT_EQ(r.value("mode", ""), "lease") << r;
      EXPECT_EQ(r.value("port", 0), port) << r;
      EXPECT_EQ(r.value("status", ""), "exited with status 0") << r;
      EXPECT_EQ(r.value("runner", ""), "session_test") << r;
      EXPECT_EQ(r.value("runner_pid", 0), ::getpid()) << r;
      EXPECT_FALSE(r.value("session", "").empty()) << r;
      // Each line holds the starts of its own server: the restarted one has one, not two.
      ASSERT_TRUE(r.contains("attempts") && r["attempts"].is_array()) << r;
      ASSERT_EQ(r["attempts"].size(), 1u) << r;
      EXPECT_EQ(r["attempts"][0].value("outcome", ""), "ready") << r;
      EXPECT_EQ(r["attempts"][0].value("port", 0), port) << r;
    }
    EXPECT_NE(records[0].value("pid", 0), records[1].value("pid", 0)) << "one line per server";
  }
  ::unsetenv("HARNESS_REPORT");
}

TEST_F(SessionTest, CollisionLineBuriedInTenMebibytesIsStillSeen) {
  // R12: 10 MiB of stderr before the bind, then the collision message.
  session s = session::start({.command = fx({"--stderr-bytes=10485760", "--port={port}",
                                             "--fail-binds=1", "--fail-state=" + path("count"),
                                             "--style=python"}),
                              .respawn = {.backoff_base = 1ms},
                              .output = {.tail_bytes = 16 * 1024, .log_max_bytes = 1 << 20}});
  ASSERT_EQ(s.attempts().size(), 2u) << harness::format_attempts(s.attempts());
  EXPECT_EQ(s.attempts()[0].outcome, harness::attempt::result::collision);
  EXPECT_NE(s.attempts()[0].reason.find("python"), std::string::npos) << s.attempts()[0].reason;
  EXPECT_LE(s.output().memory_bytes(), 16u * 1024 + 2 * 16 * 1024);
}

// --- bad input: typed errors, nothing left behind ---------------------------------------

class SessionBadInput : public SessionTest {
 protected:
  void SetUp() override {
    SessionTest::SetUp();
    // Exact fd counts: no supervisor kept ready (its fds come and go in the background).
    harness::detail::use_spare_supervisors_for_testing(false);
    session::start({.command = fx({"--port={port}"})}).stop();  // warm up
    fds_ = harness_test::open_fd_count();
  }
  void TearDown() override {
    EXPECT_EQ(harness_test::open_fd_count(), fds_) << "an fd was left behind";
    EXPECT_TRUE(harness_test::zombie_children().empty());
    harness::detail::use_spare_supervisors_for_testing(true);
    SessionTest::TearDown();
  }
  std::size_t fds_ = 0;
};

TEST_F(SessionBadInput, AThrowingProbeCallbackFailsTheStartTyped) {
  auto r = session::try_start(
      {.command = fx({"--port={port}"}),
       .ready = {.probes = {probe::callback("picky", [](const harness::probe_context&) -> harness::result<harness::probe_result> {
         throw std::runtime_error("no way");
       })}}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::callback_threw);
  EXPECT_NE(r.error().message().find("probe \"picky\" threw: no way"), std::string::npos) << r.error().message();
}

TEST_F(SessionBadInput, AThrowingBodyCheckFailsTheStartTyped) {
  auto r = session::try_start(
      {.command = fx({"--port={port}", "--serve=http"}),
       .ready = {.probes = {probe::http("/", 200, [](std::string_view) -> bool { throw std::logic_error("bad body"); })}}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::callback_threw);
  EXPECT_NE(r.error().message().find("threw: bad body"), std::string::npos) << r.error().message();
}

TEST_F(SessionBadInput, AThrowingOnLineFailsTheStartTyped) {
  auto r = session::try_start(
      {.command = fx({"--port={port}", "--delay-ms=2000", "--print=hello"}),
       .output = {.on_line = [](harness::stream, std::string_view line) {
         if (line == "hello") throw std::runtime_error("not hello");
       }}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::callback_threw);
  EXPECT_NE(r.error().message().find("on_line threw: not hello"), std::string::npos) << r.error().message();
}

TEST_F(SessionBadInput, AThrowingOnLineFailsAnAnnounceStartAtOnce) {
  // Nothing is polled while an announce-mode start waits: the throw itself must wake it.
  const auto started = std::chrono::steady_clock::now();
  auto r = session::try_start(
      {.command = fx({"--print=hello", "--delay-ms=60000", "--port=0", "--announce=ready-fd"}),
       .port = {.mode = port_mode::announce},
       .ready = {.timeout = 60s},
       .output = {.on_line = [](harness::stream, std::string_view line) {
         if (line == "hello") throw std::runtime_error("not hello");
       }}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::callback_threw) << r.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - started, harness::timeouts::scaled(30s))
      << "the start waited for its deadline";
}

TEST_F(SessionBadInput, UnknownProgramLeavesNoLease) {
  auto block = harness_test::reserve_block(1);
  const harness::port_range one{block[0].port(), block[0].port()};
  block.clear();
  auto r = session::try_start({.command = {"serve-harness-no-such-server", "--port={port}"},
                               .port = {.range = one}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::program_not_found);
  // Nothing ran, so there is no report and no attempt list: one clear line.
  EXPECT_EQ(r.error().message().find('\n'), std::string::npos) << r.error().message();
  auto again = harness::lease::try_acquire({.range = one});
  EXPECT_TRUE(again) << "the lease of the failed start was not released";
}

TEST_F(SessionBadInput, EmptyCommand) {
  auto r = session::try_start({});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::empty_argv);
}

TEST_F(SessionBadInput, EmptyOrInvertedRange) {
  auto inverted = session::try_start({.command = fx({"--port={port}"}),
                                      .port = {.range = harness::port_range{30010, 30000}}});
  ASSERT_FALSE(inverted);
  EXPECT_EQ(inverted.error().code, errc::bad_port_range);
  auto empty = session::try_start({.command = fx({"--port={port}"}),
                                   .port = {.range = harness::port_range{0, 0}}});
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, errc::bad_port_range);
}

TEST_F(SessionBadInput, ZeroDeadline) {
  auto r = session::try_start({.command = fx({"--port={port}"}), .ready = {.timeout = 0ms}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_argument);
}

TEST_F(SessionBadInput, MalformedAnnouncement) {
  auto r = session::try_start({.command = {"/bin/sh", "-c", "echo hello >&$HARNESS_READY_FD; exec sleep 60"},
                               .port = {.mode = port_mode::announce}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::bad_announcement);
  EXPECT_NE(r.error().message().find("\"hello\""), std::string::npos) << r.error().message();
}

TEST_F(SessionBadInput, AnnouncedPortOutOfRange) {
  auto r = session::try_start({.command = {"/bin/sh", "-c", "echo PORT=70000 >&$HARNESS_READY_FD; exec sleep 60"},
                               .port = {.mode = port_mode::announce}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::port_out_of_range);
}

TEST_F(SessionBadInput, PortPlaceholderInInheritOrAnnounceMode) {
  for (auto mode : {port_mode::inherit, port_mode::announce}) {
    auto r = session::try_start({.command = fx({"--port={port}"}), .port = {.mode = mode}});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::placeholder_not_allowed);
  }
}

TEST_F(SessionBadInput, NoModeAndNoPlaceholder) {
  auto r = session::try_start({.command = fx({"--port=0"})});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_argument);
}

TEST_F(SessionBadInput, BareTcpProbeInInheritMode) {
  auto r = session::try_start({.command = fx({"--listen-fds"}), .port = {.mode = port_mode::inherit},
                               .ready = {.probes = {probe::tcp()}}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_argument);
}

TEST_F(SessionBadInput, BadPatterns) {
  auto log = session::try_start({.command = fx({"--port={port}"}), .ready = {.probes = {probe::log("(")}}});
  ASSERT_FALSE(log);
  EXPECT_EQ(log.error().code, errc::bad_pattern);
  auto fail_on = session::try_start({.command = fx({"--port={port}"}), .ready = {.fail_on = {"[z-a]"}}});
  ASSERT_FALSE(fail_on);
  EXPECT_EQ(fail_on.error().code, errc::bad_pattern);
  auto no_group = session::try_start({.command = fx({"--port=0"}),
                                      .port = {.mode = port_mode::announce, .port_from = "port \\d+"}});
  ASSERT_FALSE(no_group);
  EXPECT_EQ(no_group.error().code, errc::bad_pattern);
}

TEST_F(SessionBadInput, HostMustBeAnAddress) {
  auto r = session::try_start({.command = fx({"--port={port}"}), .port = {.host = "example.com"}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_argument);
}

// --- what a failure says ---------------------------------------------------------------

// Python buffers stdout when it is a pipe: its port line never comes. The timeout
// says so when a Python command printed nothing on stdout.
TEST_F(SessionTest, APythonServerWithBufferedOutputGetsAHint) {
  auto r = session::try_start({.command = {"python3", "-c",
                                           "import sys, time\nprint('serving on port 4242')\ntime.sleep(60)"},
                               .port = {.mode = port_mode::announce, .port_from = R"(serving on port (\d+))"},
                               .ready = {.timeout = 1500ms},
                               .env = {.unset = {"PYTHONUNBUFFERED"}}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::ready_timeout);
  EXPECT_NE(r.error().message().find("hint: Python buffers stdout when it is not a terminal"), std::string::npos)
      << r.error().message();
  // Not for other programs, nor once Python's lines do come.
  auto quiet = session::try_start({.command = fx({"--port=0", "--serve=none"}),
                                   .port = {.mode = port_mode::announce, .port_from = R"(never (\d+))"},
                                   .ready = {.timeout = 300ms}});
  ASSERT_FALSE(quiet);
  EXPECT_EQ(quiet.error().message().find("hint: Python"), std::string::npos) << quiet.error().message();
  auto unbuffered = session::try_start({.command = {"python3", "-u", "-c",
                                                    "import time\nprint('serving on port 0')\ntime.sleep(60)"},
                                        .port = {.mode = port_mode::announce, .port_from = R"(never (\d+))"},
                                        .ready = {.timeout = 1500ms}});
  ASSERT_FALSE(unbuffered);
  EXPECT_EQ(unbuffered.error().message().find("hint: Python"), std::string::npos) << unbuffered.error().message();
}

TEST_F(SessionTest, FailureTextCarriesEverythingATestLogNeeds) {
  auto r = session::try_start({.command = fx({"--eprint=loading modules", "--print=warming up on {port}",
                                              "--eprint=giving up", "--exit-before-ready=7", "--port={port}"}),
                               .name = "my-server"});
  ASSERT_FALSE(r);
  const auto msg = r.error().message();
  // Both streams, tagged. (The order in which two pipes are read is the order the
  // harness saw the lines, not necessarily the order they were written.)
  for (const char* part : {"my-server", "command: ", "--port=", "exited with status 7", "mode: lease",
                           "nobody listens on port", "output (last 4 lines of stdout and stderr, in arrival order)",
                           "err| loading modules\n", "out| warming up on ", "err| giving up\n", "log: ",
                           "attempts:", "1. port "}) {
    EXPECT_NE(msg.find(part), std::string::npos) << "missing \"" << part << "\" in:\n" << msg;
  }
}

}  // namespace
