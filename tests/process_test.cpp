// The process layer against the real fixture server.
#include "harness/detail/os/proc_tree.hpp"
#include "harness/process.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <thread>

#include "harness/detail/os/log_prune.hpp"
#include "harness/detail/os/pidfd.hpp"
#include "harness/detail/os/proc_fs.hpp"
#include "harness/detail/proc/spawn_posix.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using harness::errc;
using harness::exit_status;
using harness::process;
using harness::process_options;
using harness::stream;
using harness_test::fixture_server;

process_options fixture(std::vector<std::string> args) {
  process_options o;
  o.argv = {fixture_server()};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  return o;
}

// Starts a serving fixture and returns it with its port.
std::pair<process, std::uint16_t> serving(std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--port=0", "--announce-line=listening on {port}"};
  args.insert(args.end(), extra.begin(), extra.end());
  process p = process::spawn(fixture(args));
  auto line = p.output().wait_for_line(R"(^listening on (\d+)$)", 10s);
  if (!line) throw harness::error(line.error());
  return {std::move(p), static_cast<std::uint16_t>(std::stoi(line->groups[1]))};
}

// The pid the fixture reports on a line "<tag> <pid>".
pid_t reported_pid(const process& p, const std::string& tag) {
  auto line = p.output().wait_for_line("^" + tag + R"( (\d+)$)", 10s);
  if (!line) throw harness::error(line.error());
  return std::stoi(line->groups[1]);
}

TEST(Process, ExitCodeIsReported) {
  process p = process::spawn(fixture({"--exit-before-ready=3"}));
  auto status = p.wait_for(10s);
  ASSERT_TRUE(status);
  EXPECT_EQ(*status, exit_status::exited_with(3));
  EXPECT_FALSE(p.running());
  EXPECT_EQ(p.stop(), exit_status::exited_with(3));
  EXPECT_EQ(p.stop().str(), "exited with status 3");
}

TEST(Process, SignalDeathIsReported) {
  auto [p, port] = serving();
  ASSERT_TRUE(p.running());
  ASSERT_TRUE(p.signal(SIGKILL));
  auto status = p.wait_for(10s);
  ASSERT_TRUE(status);
  EXPECT_EQ(*status, exit_status::killed_by(SIGKILL));
  EXPECT_EQ(p.stop().str(), "killed by signal 9 (SIGKILL)");
  auto again = p.signal(SIGTERM);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, errc::not_running);
}

TEST(Process, CooperativeStopUsesSigterm) {
  auto [p, port] = serving();
  EXPECT_EQ(harness_test::tcp_request(port, "ping"), "pong: ping");
  const exit_status s = p.stop();
  // The fixture exits 0 on SIGTERM.
  EXPECT_EQ(s, exit_status::exited_with(0));
  EXPECT_NE(p.output().tail(stream::err).find("got SIGTERM"), std::string::npos);
  EXPECT_EQ(p.status(), s);
}

TEST(Process, StopEscalatesToSigkillAfterTheGrace) {
  auto [p, port] = serving({"--ignore-sigterm"});
  ASSERT_TRUE(p.output().wait_for_line("ignoring SIGTERM", 10s));
  const auto grace = harness::timeouts::scaled(300ms);
  const auto t0 = std::chrono::steady_clock::now();
  const exit_status s = p.stop({.grace = 300ms, .kill_wait = 5s});
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(s, exit_status::killed_by(SIGKILL));
  EXPECT_GE(took, grace);                                  // it did wait for the grace
  EXPECT_LT(took, grace + harness::timeouts::scaled(5s));  // and did not hang
}

TEST(Process, StopTakesDownTheWholeTree) {
  // A child in the group, one that left it with setsid(), an orphaned daemon: all
  // ignoring SIGTERM, so only the SIGKILL sweep can end them.
  auto [p, port] = serving({"--fork-child", "--fork-setsid", "--fork-daemon",
                            "--child-ignores-sigterm"});
  std::vector<int> pidfds;
  for (const char* tag : {"CHILD", "SETSID", "DAEMON"}) {
    const pid_t pid = reported_pid(p, tag);
    const int fd = harness_test::open_pidfd(pid);
    ASSERT_GE(fd, 0) << tag;
    ASSERT_FALSE(harness_test::pidfd_exited(fd)) << tag << " should be alive before stop";
    pidfds.push_back(fd);
  }
  const pid_t leader = p.pid();
  p.stop({.grace = 200ms, .kill_wait = 5s});
  for (int fd : pidfds) {
    // stop() returns only once the tree is gone.
    EXPECT_TRUE(harness_test::pidfd_exited(fd)) << "a descendant survived stop()";
    ::close(fd);
  }
  // The leader is reaped: no zombie left behind.
  EXPECT_EQ(::waitpid(leader, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
  EXPECT_TRUE(harness_test::zombie_children().empty());
}

TEST(Process, StopWaitsForGroupMembersWithoutTheMarker) {
  // A member of the process group that dropped the marker and ignores SIGTERM: only
  // the group SIGKILL ends it, and stop() must wait for it to be gone.
  process p = process::spawn(
      {.argv = {"/bin/sh", "-c", "env -u HARNESS_SESSION \"$0\" --ignore-sigterm --port=0 --serve=none & wait",
                fixture_server()}});
  const int fd = harness_test::open_pidfd(reported_pid(p, "PID"));
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(p.output().wait_for_line("ignoring SIGTERM", 10s));
  p.stop({.grace = 100ms});
  EXPECT_TRUE(harness_test::pidfd_exited(fd)) << "an unmarked group member outlived stop()";
  ::close(fd);
}

TEST(Process, StopSweepsUpProcessesStartedWhileStopping) {
  // The server's SIGTERM handler starts a new process that leaves the group and
  // ignores SIGTERM, then exits: only the sweep after the leader's exit finds it.
  char tmpl[] = "/tmp/harness-late-XXXXXX";
  const int tmp = ::mkstemp(tmpl);
  ASSERT_GE(tmp, 0);
  ::close(tmp);
  const std::string pidfile = tmpl;
  process p = process::spawn(
      {.argv = {"/bin/sh", "-c",
                "trap 'setsid sh -c \"trap \\\"\\\" TERM; echo \\$\\$ > $0; while :; do sleep 1; done\" & "
                "while [ ! -s $0 ]; do :; done; exit 0' TERM; echo ready; while :; do sleep 1; done",
                pidfile}});
  ASSERT_TRUE(p.output().wait_for_line("^ready$", 10s));
  const std::string marker = "HARNESS_SESSION=" + p.session_id();
  EXPECT_EQ(p.stop({.grace = 5s}), exit_status::exited_with(0));
  const std::string late = harness_test::read_text(pidfile);
  ASSERT_FALSE(late.empty()) << "the SIGTERM handler did not run";
  const int fd = harness_test::open_pidfd(std::stoi(late));
  EXPECT_TRUE(fd < 0 || harness_test::pidfd_exited(fd)) << "the late process survived stop()";
  if (fd >= 0) ::close(fd);
  EXPECT_TRUE(harness::detail::procfs::find_by_environ(marker).empty());
  ::unlink(pidfile.c_str());
}

TEST(Process, CooperativeTreeGetsSigtermFirst) {
  auto [p, port] = serving({"--fork-setsid"});
  const pid_t child = reported_pid(p, "SETSID");
  const int fd = harness_test::open_pidfd(child);
  ASSERT_GE(fd, 0);
  const exit_status s = p.stop({.grace = 10s});
  EXPECT_EQ(s, exit_status::exited_with(0));
  EXPECT_TRUE(harness_test::pidfd_exited(fd));
  ::close(fd);
}

TEST(Process, ChildSeesOnlyStdioAndPassedFds) {
  // Leak fds the way careless runners do: no CLOEXEC.
  std::vector<int> leaked;
  for (int i = 0; i < 20; ++i) leaked.push_back(::open("/dev/null", O_RDONLY));
  int pass_a = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  int pass_b = ::open("/dev/null", O_RDONLY | O_CLOEXEC);

  process plain = process::spawn(fixture({"--report-fds", "--exit-before-ready=0"}));
  auto line = plain.output().wait_for_line("^FDS ", 10s);
  ASSERT_TRUE(line) << line.error().message();
  EXPECT_EQ(line->line, "FDS 0 1 2");

  // A gap between passed fds (3 and 7) must not let anything else through.
  auto o = fixture({"--report-fds", "--exit-before-ready=0"});
  o.fds = {{pass_a, 3}, {pass_b, 7}};
  process passing = process::spawn(o);
  line = passing.output().wait_for_line("^FDS ", 10s);
  ASSERT_TRUE(line) << line.error().message();
  EXPECT_EQ(line->line, "FDS 0 1 2 3 7");

  for (int fd : leaked) ::close(fd);
  ::close(pass_a);
  ::close(pass_b);
}

TEST(Process, PassedFdsArriveWhateverTheirNumbers) {
  // Few fds open in the runner (no leaked ones), a target far above the others.
  int a = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  int b = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  auto o = fixture({"--report-fds", "--exit-before-ready=0"});
  o.fds = {{a, 3}, {b, 40}};
  process p = process::spawn(o);
  auto line = p.output().wait_for_line("^FDS ", 10s);
  ASSERT_TRUE(line) << line.error().message();
  EXPECT_EQ(line->line, "FDS 0 1 2 3 40");
  ::close(a);
  ::close(b);
}

TEST(Process, StartsUnderTheCommonOpenFileLimit) {
  // 1024 is the default soft limit of Debian and systemd sessions.
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  rlimit low = old;
  low.rlim_cur = std::min<rlim_t>(1024, old.rlim_max);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  auto o = fixture({"--report-fds", "--exit-before-ready=0"});
  int a = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  o.fds = {{a, 5}};
  auto r = process::try_spawn(o);
  ::setrlimit(RLIMIT_NOFILE, &old);
  ::close(a);
  ASSERT_TRUE(r) << r.error().message();
  auto line = r->output().wait_for_line("^FDS ", 10s);
  ASSERT_TRUE(line) << line.error().message();
  EXPECT_EQ(line->line, "FDS 0 1 2 5");
}

TEST(Process, RunningOutOfFdsAtAnyStepOfASpawnNeverThrows) {
  // Each step of a spawn that needs an fd (log file, pipes, the exec-report pipe, the
  // child's parking of fds, the pidfds) meets EMFILE in turn: with k free slots for
  // k = 0, 1, 2, ... The spawn fails with an error or starts a process that can be
  // stopped; it never throws and never leaks an fd.
  // The count must be exact: no supervisor kept ready meanwhile (its fds come and go).
  harness::detail::use_spare_supervisors_for_testing(false);
  struct reenable {
    ~reenable() { harness::detail::use_spare_supervisors_for_testing(true); }
  } reenable_spares;
  {
    process warm = process::spawn(fixture({"--exit-before-ready=0"}));  // io thread, state dir
    ASSERT_TRUE(warm.wait_for(10s));
  }
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  const std::size_t fds_before = harness_test::open_fd_count();
  int failed = 0, started = 0;
  for (int k = 0; k <= 24; ++k) {
    SCOPED_TRACE("free fd slots: " + std::to_string(k));
    rlimit low = old;
    low.rlim_cur = std::min<rlim_t>(fds_before + 256, old.rlim_max);
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
    std::vector<int> fillers;
    for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) fillers.push_back(fd);
    ASSERT_EQ(errno, EMFILE);
    ASSERT_GE(fillers.size(), static_cast<std::size_t>(k));
    for (int i = 0; i < k; ++i) {  // free the k highest slots
      ::close(fillers.back());
      fillers.pop_back();
    }
    std::optional<harness::result<process>> r;
    EXPECT_NO_THROW(r.emplace(process::try_spawn(fixture({"--port=0", "--announce-line=up"}))));
    for (int fd : fillers) ::close(fd);
    ::setrlimit(RLIMIT_NOFILE, &old);
    if (!r) continue;
    if (!*r) {
      ++failed;
      EXPECT_FALSE(r->error().message().empty());
    } else {
      ++started;
      process& p = **r;
      ASSERT_TRUE(p.output().wait_for_line("^up$", 10s)) << p.output().tail(stream::err);
      EXPECT_EQ(p.stop(), exit_status::exited_with(0));
    }
    r.reset();
    EXPECT_EQ(harness_test::open_fd_count(), fds_before) << "an fd was left behind: " << [] {
      std::string out;
      for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        out += e.path().filename().string() + "->" + std::filesystem::read_symlink(e.path(), ec).string() + " ";
      }
      return out;
    }();
  }
  EXPECT_GT(failed, 0) << "no step ran out of fds: the test does not test anything";
  EXPECT_GT(started, 0);
}

TEST(Process, TenMebibytesOnStderrDoNotBlockTheChild) {
  constexpr std::size_t ten_mib = 10u << 20;
  process_options o = fixture({"--stderr-bytes=" + std::to_string(ten_mib), "--port=0",
                               "--announce-line=listening on {port}"});
  o.output.tail_bytes = 32 * 1024;
  o.output.log_max_bytes = 1 << 20;
  process p = process::spawn(o);
  // The announcement comes after the 10 MiB: seeing it proves the child never blocked.
  auto line = p.output().wait_for_line("^listening on", 60s);
  ASSERT_TRUE(line) << line.error().message();
  // stdout and stderr are separate pipes: the stdout line may be read before the
  // last stderr bytes. After stop() both are drained to end-of-file.
  EXPECT_EQ(p.stop(), exit_status::exited_with(0));
  const std::string goodbye = "got SIGTERM\n";  // the fixture's last words on stderr
  EXPECT_EQ(p.output().byte_count(stream::err), ten_mib + goodbye.size());
  EXPECT_EQ(p.output().tail_lines(stream::err, 1), std::vector<std::string>{"got SIGTERM"});
  EXPECT_LE(p.output().memory_bytes(), o.output.tail_bytes + o.output.max_line * 2);
  EXPECT_LT(std::filesystem::file_size(p.output().log_path()), (1u << 20) + 4096);
}

TEST(Process, ChildCarriesTheSessionMarker) {
  process p = process::spawn(fixture({"--report-env=HARNESS_SESSION", "--exit-before-ready=0"}));
  auto line = p.output().wait_for_line("^ENV HARNESS_SESSION", 10s);
  ASSERT_TRUE(line);
  EXPECT_EQ(line->line, "ENV HARNESS_SESSION=" + p.session_id());
  EXPECT_FALSE(p.session_id().empty());
}

TEST(Process, EnvironmentOptions) {
  ::setenv("HARNESS_TEST_INHERITED", "yes", 1);
  ::setenv("LISTEN_FDS", "3", 1);  // must never leak into a child
  process_options o = fixture({"--report-env=HARNESS_TEST_INHERITED", "--report-env=LISTEN_FDS",
                               "--report-env=EXTRA", "--report-env=PATH",
                               "--exit-before-ready=0"});
  o.env.set = {{"EXTRA", "a b=c"}};
  process p = process::spawn(o);
  ASSERT_TRUE(p.wait_for(10s));
  p.output().wait_closed(10s);
  auto out = p.output().tail(stream::out);
  EXPECT_NE(out.find("ENV HARNESS_TEST_INHERITED=yes\n"), std::string::npos) << out;
  EXPECT_NE(out.find("ENV LISTEN_FDS is unset\n"), std::string::npos) << out;
  EXPECT_NE(out.find("ENV EXTRA=a b=c\n"), std::string::npos) << out;

  // Allow-list: only PATH comes through.
  o.env = {.inherit = false, .allow = {"PATH"}, .unset = {}, .set = {}};
  process q = process::spawn(o);
  ASSERT_TRUE(q.wait_for(10s));
  q.output().wait_closed(10s);
  out = q.output().tail(stream::out);
  EXPECT_NE(out.find("ENV HARNESS_TEST_INHERITED is unset\n"), std::string::npos) << out;
  EXPECT_NE(out.find("ENV PATH=" + std::string(::getenv("PATH")) + "\n"), std::string::npos)
      << out;

  // unset removes an inherited variable.
  o.env = {.inherit = true, .allow = {}, .unset = {"HARNESS_TEST_INHERITED"}, .set = {}};
  process r = process::spawn(o);
  ASSERT_TRUE(r.wait_for(10s));
  r.output().wait_closed(10s);
  EXPECT_NE(r.output().tail(stream::out).find("ENV HARNESS_TEST_INHERITED is unset\n"),
            std::string::npos);
  ::unsetenv("HARNESS_TEST_INHERITED");
  ::unsetenv("LISTEN_FDS");
}

TEST(Process, ListenPidIsTheChildsOwnPid) {
  process_options o = fixture({"--report-env=LISTEN_PID", "--exit-before-ready=0"});
  o.set_listen_pid = true;
  process p = process::spawn(o);
  auto line = p.output().wait_for_line("^ENV LISTEN_PID", 10s);
  ASSERT_TRUE(line);
  EXPECT_EQ(line->line, "ENV LISTEN_PID=" + std::to_string(p.pid()));
}

TEST(Process, ChildGetsCleanSignalState) {
  // The runner blocks and ignores signals; the child must start clean.
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  auto old_usr2 = std::signal(SIGUSR2, SIG_IGN);
  process p = process::spawn(fixture({"--report-signals", "--exit-before-ready=0"}));
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  std::signal(SIGUSR2, old_usr2);
  auto mask = p.output().wait_for_line("^SIGMASK ", 10s);
  auto ign = p.output().wait_for_line("^SIGIGN ", 10s);
  ASSERT_TRUE(mask && ign);
  EXPECT_EQ(mask->line, "SIGMASK 0000000000000000");
  EXPECT_EQ(ign->line, "SIGIGN none");
}

TEST(Process, OwnProcessGroup) {
  auto [p, port] = serving();
  EXPECT_EQ(::getpgid(p.pid()), p.pid());
  ASSERT_TRUE(p.signal_group(SIGTERM));
  auto s = p.wait_for(10s);
  ASSERT_TRUE(s);
  EXPECT_EQ(*s, exit_status::exited_with(0));
}

TEST(Process, SurvivesTheThreadThatStartedIt) {
  process p;
  std::thread starter([&] { p = process::spawn(fixture({"--port=0", "--announce-line=on {port}"})); });
  starter.join();
  auto line = p.output().wait_for_line(R"(^on (\d+)$)", 10s);
  ASSERT_TRUE(line);
  // Had the starting thread forked it, PDEATHSIG would have killed it at thread exit.
  EXPECT_FALSE(p.wait_for(300ms)) << "the server died with the thread that started it";
  EXPECT_EQ(harness_test::tcp_request(static_cast<std::uint16_t>(std::stoi(line->groups[1])), "hi"),
            "pong: hi");
}

TEST(Process, DestructorStopsTheTree) {
  int fd;
  {
    auto [p, port] = serving({"--fork-setsid", "--child-ignores-sigterm"});
    fd = harness_test::open_pidfd(reported_pid(p, "SETSID"));
    ASSERT_GE(fd, 0);
  }
  EXPECT_TRUE(harness_test::pidfd_exited(fd));
  ::close(fd);
}

TEST(Process, MoveAssignmentStopsTheOldProcess) {
  auto [a, port_a] = serving();
  const int fd = harness_test::open_pidfd(a.pid());
  auto [b, port_b] = serving();
  const pid_t b_pid = b.pid();
  a = std::move(b);
  EXPECT_TRUE(harness_test::pidfd_exited(fd));
  EXPECT_EQ(a.pid(), b_pid);
  EXPECT_FALSE(b.valid());  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_EQ(b.stop(), exit_status{});
  ::close(fd);
}

TEST(Process, LogFileRecordsTheRun) {
  auto [p, port] = serving({"--print=hello from stdout", "--eprint=hello from stderr"});
  auto log = p.output().log_path();
  p.stop();
  ASSERT_FALSE(log.empty());
  const auto text = harness_test::read_text(log.string());
  EXPECT_NE(text.find(p.command_line()), std::string::npos) << text;
  EXPECT_NE(text.find("hello from stdout"), std::string::npos) << text;
  EXPECT_NE(text.find("hello from stderr"), std::string::npos) << text;
  EXPECT_NE(text.find("stopped: exited with status 0"), std::string::npos) << text;
}

TEST(Process, OnExitAndOnLineCallbacks) {
  std::mutex m;
  std::vector<std::string> lines;
  std::optional<exit_status> seen;
  process_options o = fixture({"--print=one", "--eprint=two", "--exit-before-ready=5"});
  o.output.on_line = [&](stream, std::string_view l) {
    std::lock_guard lock(m);
    lines.emplace_back(l);
  };
  o.on_exit = [&](const exit_status& s) {
    std::lock_guard lock(m);
    seen = s;
  };
  process p = process::spawn(o);
  ASSERT_TRUE(p.wait_for(10s));
  EXPECT_EQ(p.stop(), exit_status::exited_with(5));
  p = process();  // releases the I/O objects, which reports the exit at the latest
  // The callbacks run on the harness thread; a spawn is a round trip through it, so
  // after one more spawn everything queued before has run.
  process::spawn(fixture({"--exit-before-ready=0"})).stop();
  std::lock_guard lock(m);
  EXPECT_EQ(seen, exit_status::exited_with(5));
  EXPECT_NE(std::find(lines.begin(), lines.end(), "one"), lines.end());
  EXPECT_NE(std::find(lines.begin(), lines.end(), "two"), lines.end());
}

TEST(LogPrune, OnlyOldFilesWithOurNamesGo) {
  using harness::detail::is_harness_log_name;
  EXPECT_TRUE(is_harness_log_name("fixture-server-4770-6490e342e045-1.log"));
  EXPECT_TRUE(is_harness_log_name("my-api-v2-12-0123456789ab-345.log"));
  EXPECT_FALSE(is_harness_log_name("fixture-server-4770-6490e342e04-1.log"));  // 11 hex digits
  EXPECT_FALSE(is_harness_log_name("server.log"));
  EXPECT_FALSE(is_harness_log_name("a-1-0123456789ab-1.txt"));
  EXPECT_FALSE(is_harness_log_name("-1-0123456789ab-1.log"));

  const harness_test::temp_dir tmp{"harness-prune"};
  const std::filesystem::path& dir = tmp.path();
  auto touch = [&](const std::string& name, std::chrono::hours age) {
    std::ofstream(dir / name) << "x";
    std::filesystem::last_write_time(dir / name, std::filesystem::file_time_type::clock::now() - age);
  };
  touch("old-1-0123456789ab-1.log", std::chrono::hours(48));
  touch("new-1-0123456789ab-2.log", std::chrono::hours(1));
  touch("users-own.log", std::chrono::hours(48));
  EXPECT_EQ(harness::detail::prune_logs(dir, std::chrono::hours(24)), 1u);
  EXPECT_FALSE(std::filesystem::exists(dir / "old-1-0123456789ab-1.log"));
  EXPECT_TRUE(std::filesystem::exists(dir / "new-1-0123456789ab-2.log"));
  EXPECT_TRUE(std::filesystem::exists(dir / "users-own.log"));
}

TEST(LogPrune, TheLogsWeWriteHaveNamesWeWouldPrune) {
  process p = process::spawn(fixture({"--exit-before-ready=0"}));
  p.stop();
  EXPECT_TRUE(harness::detail::is_harness_log_name(p.output().log_path().filename().string()))
      << p.output().log_path();
}

TEST(Process, AForkedCopyOfTheRunnerLeavesTheServersAlone) {
  // Like a gtest death test: the child destroys (or stops) its copies of our objects.
  auto [p, port] = serving();
  const pid_t child = ::fork();
  if (child == 0) {
    p.stop();
    ::_exit(0);
  }
  ASSERT_GT(child, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(p.running()) << "the forked copy stopped the parent's server";
  EXPECT_EQ(harness_test::tcp_request(port, "still here"), "pong: still here");
}

TEST(Process, ASpawnUsesASupervisorStartedAheadOfTime) {
  process first = process::spawn(fixture({"--exit-before-ready=0"}));
  // After a spawn, a supervisor is started in the background and kept ready...
  pid_t spare = 0;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  auto delay = 1ms;
  while ((spare = harness::detail::spare_supervisor_for_testing()) == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(delay);  // re-checks a condition; bounded
    delay = std::min(delay * 2, 50ms);
  }
  ASSERT_NE(spare, 0) << "no supervisor kept ready";
  // ...idle: our child, running nothing yet...
  harness::detail::proctree::brief b;
  ASSERT_TRUE(harness::detail::proctree::read_brief(spare, b));
  EXPECT_EQ(b.ppid, ::getpid());
  std::vector<pid_t> below;
  harness::detail::proctree::children(spare, below);
  EXPECT_TRUE(below.empty());
  // ...and the next spawn hands it the server.
  process second = process::spawn(fixture({"--exit-before-ready=0"}));
  EXPECT_EQ(second.supervisor_pid(), spare);
  EXPECT_EQ(first.wait_for(10s), exit_status::exited_with(0));
  EXPECT_EQ(second.wait_for(10s), exit_status::exited_with(0));
}

TEST(Process, AForkedCopyOfTheRunnerStartsServersOfItsOwn) {
  // A fork-style death test that starts a server must not take its parent's spare
  // supervisor (that one watches the parent, and the parent will want it).
  process warm = process::spawn(fixture({"--exit-before-ready=0"}));
  ASSERT_TRUE(warm.wait_for(10s));
  const pid_t child = ::fork();
  if (child == 0) {
    process mine = process::spawn(fixture({"--exit-before-ready=7"}));
    auto s = mine.wait_for(10s);
    const bool ok = s && *s == exit_status::exited_with(7) && mine.supervisor_pid() > 0;
    harness::detail::proctree::brief b;
    const bool my_supervisor = harness::detail::proctree::read_brief(mine.supervisor_pid(), b) && b.ppid == ::getpid();
    ::_exit(ok && my_supervisor ? 0 : 1);
  }
  ASSERT_GT(child, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the forked copy could not start its own server";
  process after = process::spawn(fixture({"--exit-before-ready=3"}));
  EXPECT_EQ(after.wait_for(10s), exit_status::exited_with(3));
}

TEST(Process, TheServerGetsTheRunnersCurrentDirectoryUmaskAndLimits) {
  // A spare supervisor was started before these change; the server must see them as
  // they are at spawn time.
  process warm = process::spawn(fixture({"--exit-before-ready=0"}));
  ASSERT_TRUE(warm.wait_for(10s));
  const auto before = std::filesystem::current_path();
  char tmpl[] = "/tmp/harness-cwd-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = std::filesystem::canonical(tmpl).string();
  ASSERT_EQ(::chdir(dir.c_str()), 0);
  const mode_t old_mask = ::umask(027);
  rlimit old_files{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old_files), 0);
  rlimit fewer = old_files;
  fewer.rlim_cur = std::min<rlim_t>(old_files.rlim_cur, 200);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &fewer), 0);

  process p = process::spawn({.argv = {"/bin/sh", "-c", "pwd; umask; ulimit -n"}});
  auto status = p.wait_for(10s);
  ::setrlimit(RLIMIT_NOFILE, &old_files);
  ::umask(old_mask);
  std::filesystem::current_path(before);
  ASSERT_TRUE(status);
  p.output().wait_closed(10s);
  const auto lines = p.output().tail_lines(stream::out);
  ASSERT_EQ(lines.size(), 3u) << p.output().tail(stream::out) << p.output().tail(stream::err);
  EXPECT_EQ(lines[0], dir);
  EXPECT_EQ(lines[1], "0027");
  EXPECT_EQ(lines[2], std::to_string(fewer.rlim_cur));
  std::filesystem::remove(dir);
}

TEST(Process, AServerWhoseMainThreadExitedIsStillStopped) {
  // Its main thread is a zombie while another thread runs: it is alive, and the stop's
  // SIGTERM must reach it (not wait out the grace and lose its status).
  process p = process::spawn(fixture({"--leader-exits"}));
  ASSERT_TRUE(p.output().wait_for_line("^LEADER-EXITS$", 10s));
  const auto tree = p.tree();
  ASSERT_FALSE(tree.empty());
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(p.stop({.grace = 60s}), exit_status::killed_by(SIGTERM));
  EXPECT_LT(std::chrono::steady_clock::now() - started, harness::timeouts::scaled(30s))
      << "the SIGTERM did not reach it: the stop waited for the grace";
}

TEST(Process, AForkedCopyOfTheRunnerDoesNotTakeTheParentsExitReport) {
  // The copy asks about the server (as a death test printing a session would) while
  // the server exits: the parent must still get the exit status.
  char tmpl[] = "/tmp/harness-go-XXXXXX";
  const int tmp = ::mkstemp(tmpl);
  ASSERT_GE(tmp, 0);
  ::close(tmp);
  ::unlink(tmpl);
  const std::string go = tmpl;
  process p = process::spawn(
      {.argv = {"/bin/sh", "-c", "while [ ! -e \"$0\" ]; do sleep 0.01; done; exit 5", go}});
  const pid_t child = ::fork();
  if (child == 0) {
    std::ofstream(go) << "go\n";
    const auto until = std::chrono::steady_clock::now() + 2s;
    while (std::chrono::steady_clock::now() < until) {
      (void)p.running();  // would read the supervisor's messages, as fast as it can
    }
    ::_exit(0);
  }
  ASSERT_GT(child, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_EQ(p.wait_for(10s), exit_status::exited_with(5));
  ::unlink(go.c_str());
}

TEST(Process, AThrowingOnLineIsRecordedAndTheOutputKeepsDraining) {
  // 256 KiB of output, four times what a pipe holds: if the throw stopped the reads,
  // the server would block on write and never exit.
  auto o = fixture({"--stdout-bytes=262144", "--exit-before-ready=0"});
  std::atomic<int> calls{0};
  o.output.on_line = [&](stream, std::string_view) {
    ++calls;
    throw std::runtime_error("boom");
  };
  process p = process::spawn(o);
  EXPECT_EQ(p.wait_for(20s), exit_status::exited_with(0)) << "the pipe was not drained";
  ASSERT_TRUE(p.output().wait_closed(10s));
  EXPECT_GT(calls.load(), 2000);
  const auto thrown = p.output().callback_failure();
  ASSERT_TRUE(thrown);
  EXPECT_EQ(thrown->code, errc::callback_threw);
  EXPECT_EQ(thrown->detail, "on_line threw: boom");
}

TEST(Process, AThrowingOnExitDoesNotDisturbStop) {
  auto o = fixture({"--exit-before-ready=3"});
  o.on_exit = [](const exit_status&) { throw 42; };
  process p = process::spawn(o);
  EXPECT_EQ(p.wait_for(10s), exit_status::exited_with(3));
  EXPECT_EQ(p.stop(), exit_status::exited_with(3));
  const auto thrown = p.output().callback_failure();
  ASSERT_TRUE(thrown);
  EXPECT_EQ(thrown->detail, "on_exit threw an exception that is not a std::exception");
  // The harness thread is still serving: another process works as before.
  process next = process::spawn(fixture({"--exit-before-ready=4"}));
  EXPECT_EQ(next.wait_for(10s), exit_status::exited_with(4));
}

TEST(Process, ARunnerThatReapsEverythingStillGetsExactStatuses) {
  // SIGCHLD set to SIG_IGN: the kernel reaps the runner's children itself. The runner's
  // only child is the supervisor, which relays the server's status, and keeps the
  // server unreaped (its pid and group reserved) until the stop.
  auto old = std::signal(SIGCHLD, SIG_IGN);
  process p = process::spawn(fixture({"--exit-before-ready=5"}));
  auto s = p.wait_for(10s);
  ASSERT_TRUE(s);
  EXPECT_EQ(*s, exit_status::exited_with(5));
  harness::detail::proctree::brief b;
  ASSERT_TRUE(harness::detail::proctree::read_brief(p.pid(), b));
  EXPECT_EQ(b.state, 'Z') << "the server's pid must stay reserved until stop()";
  EXPECT_EQ(b.ppid, p.supervisor_pid());
  EXPECT_EQ(p.stop(), exit_status::exited_with(5));
  std::signal(SIGCHLD, old);
  EXPECT_FALSE(p.signal_group(SIGTERM));  // stopped: its pid may be somebody else's now
}

TEST(Process, OnExitMayStopItsOwnProcess) {
  process p;
  std::atomic<int> calls{0};
  auto o = fixture({"--port=0", "--announce-line=up"});
  o.on_exit = [&](const exit_status&) {
    ++calls;
    p.stop();  // already stopping: must return, not deadlock
  };
  p = process::spawn(o);
  ASSERT_TRUE(p.output().wait_for_line("^up$", 10s));
  EXPECT_EQ(p.stop(), exit_status::exited_with(0));
  EXPECT_EQ(calls.load(), 1);
}

TEST(Process, EnormousTimeoutsDoNotOverflow) {
  EXPECT_GT(harness::timeouts::scaled(std::chrono::milliseconds::max()), std::chrono::hours(24 * 365));
  process p = process::spawn(fixture({"--exit-before-ready=4"}));
  auto s = p.wait_for(std::chrono::milliseconds::max());
  ASSERT_TRUE(s);
  EXPECT_EQ(*s, exit_status::exited_with(4));
  auto line = p.output().wait_for_line("never", std::chrono::milliseconds::max());
  ASSERT_FALSE(line);  // ends when the output closes, not at once
  EXPECT_EQ(line.error().code, errc::output_closed);
}

// --- bad input: typed errors, no hang, no leaked fd or process ---------------

class BadInput : public testing::Test {
 protected:
  void SetUp() override {
    // Exact fd counts: no supervisor kept ready (its fds come and go in the background).
    harness::detail::use_spare_supervisors_for_testing(false);
    // Warm up (harness thread, log dir) so the fd baseline is stable.
    process::spawn(fixture({"--exit-before-ready=0"})).stop();
    fds_before_ = harness_test::open_fd_count();
  }
  void TearDown() override {
    EXPECT_EQ(harness_test::open_fd_count(), fds_before_) << "a failed spawn leaked an fd";
    EXPECT_TRUE(harness_test::zombie_children().empty());
    harness::detail::use_spare_supervisors_for_testing(true);
  }
  std::size_t fds_before_ = 0;
};

TEST_F(BadInput, EmptyArgv) {
  auto r = process::try_spawn({});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::empty_argv);
}

TEST_F(BadInput, MissingProgram) {
  auto r = process::try_spawn({.argv = {"/nonexistent/serve-harness-missing"}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::program_not_found);
  EXPECT_NE(r.error().message().find("/nonexistent/serve-harness-missing"), std::string::npos);
  auto by_name = process::try_spawn({.argv = {"serve-harness-no-such-program"}});
  ASSERT_FALSE(by_name);
  EXPECT_EQ(by_name.error().code, errc::program_not_found);
  EXPECT_NE(by_name.error().message().find("PATH="), std::string::npos);
  EXPECT_THROW((void)process::spawn({.argv = {"/nonexistent/x"}}), harness::error);
}

TEST_F(BadInput, DirectoryAsProgram) {
  auto r = process::try_spawn({.argv = {"/tmp"}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::program_is_directory);
}

TEST_F(BadInput, NotExecutable) {
  char path[] = "/tmp/harness-noexec-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  auto r = process::try_spawn({.argv = {path}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::program_not_executable);
  ::unlink(path);
}

TEST_F(BadInput, ExecFailureAfterForkIsReportedAndReaped) {
  // Executable but not a valid program: only execve() can tell.
  char path[] = "/tmp/harness-badexec-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "\x7f" "ELF garbage", 12), 12);
  ::close(fd);
  ::chmod(path, 0700);
  auto r = process::try_spawn({.argv = {path}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::spawn_failed);
  EXPECT_NE(r.error().message().find("Exec format error"), std::string::npos)
      << r.error().message();
  ::unlink(path);
}

TEST_F(BadInput, BadOptions) {
  auto cwd = process::try_spawn({.argv = {fixture_server()}, .cwd = "/nonexistent-dir"});
  ASSERT_FALSE(cwd);
  EXPECT_EQ(cwd.error().code, errc::invalid_argument);
  auto low = process::try_spawn({.argv = {fixture_server()}, .fds = {{0, 2}}});
  ASSERT_FALSE(low);
  EXPECT_EQ(low.error().code, errc::invalid_argument);
  auto closed_fd = process::try_spawn({.argv = {fixture_server()}, .fds = {{987, 3}}});
  ASSERT_FALSE(closed_fd);
  EXPECT_EQ(closed_fd.error().code, errc::invalid_argument);
  process_options env = fixture({});
  env.env.set = {{"A=B", "x"}};
  auto bad_env = process::try_spawn(env);
  ASSERT_FALSE(bad_env);
  EXPECT_EQ(bad_env.error().code, errc::invalid_argument);
}

TEST_F(BadInput, NulInAnEnvironmentValue) {
  auto o = fixture({"--exit-before-ready=0"});
  o.env.set = {{"X", std::string("a\0LD_PRELOAD=/x.so", 18)}};
  auto r = process::try_spawn(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_argument);
  EXPECT_NE(r.error().message().find("NUL"), std::string::npos) << r.error().message();
}

TEST_F(BadInput, SpawnFailureIsTyped) {
  harness::detail::inject_fork_failures_for_testing(1);
  auto r = process::try_spawn(fixture({"--exit-before-ready=0"}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::spawn_failed);
  EXPECT_NE(r.error().message().find("posix_spawn"), std::string::npos) << r.error().message();
}

// --- kernels without pidfd ------------------------------------------------------

class NoPidfd : public testing::Test {
 protected:
  void SetUp() override { harness::detail::pidfd::disable_for_testing(true); }
  void TearDown() override { harness::detail::pidfd::disable_for_testing(false); }
};

TEST_F(NoPidfd, ExitIsStillSeen) {
  process p = process::spawn(fixture({"--exit-before-ready=7"}));
  auto s = p.wait_for(10s);
  ASSERT_TRUE(s);
  EXPECT_EQ(*s, exit_status::exited_with(7));
}

TEST_F(NoPidfd, StopStillTakesDownTheTree) {
  auto [p, port] = serving({"--fork-setsid", "--child-ignores-sigterm"});
  const pid_t child = reported_pid(p, "SETSID");
  harness::detail::pidfd::disable_for_testing(false);
  const int fd = harness_test::open_pidfd(child);
  harness::detail::pidfd::disable_for_testing(true);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(p.stop({.grace = 100ms}), exit_status::exited_with(0));
  EXPECT_TRUE(harness_test::pidfd_exited(fd));
  ::close(fd);
}

}  // namespace
