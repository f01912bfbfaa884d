// R14: system calls fail — bind() with a real EADDRINUSE on the first tries, pipe2() and
// every other fd-making call with EMFILE, fork()/clone() with EAGAIN (RLIMIT_NPROC of a
// non-root runner), pidfd_open() with ENOSYS (as on kernels before 5.3), write() with
// ENOSPC on the files the harness keeps (lock files and their records, logs, the
// HARNESS_REPORT file). Each start gives a typed error (or succeeds) within its
// timeout, never throws, and leaves no fd and no process behind; no half-written state
// is taken for a whole one.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <random>

#include "battery.hpp"
#include "harness/detail/os/pidfd.hpp"
#include "harness/detail/proc/spawn_posix.hpp"
#include "harness/lease.hpp"
#include "harness/process.hpp"
#include "harness/session.hpp"

namespace {

using namespace std::chrono_literals;
using harness::errc;
using harness::exit_status;
using harness_test::fx;
using harness_test::steady_clock;

// Exact fd counts need nothing in the background that opens fds: no spare supervisor,
// and no pruning of old logs (a log directory of our own is never pruned).
class R14 : public testing::Test {
 protected:
  void SetUp() override {
    // Off before the first spawn, so that none asks for a spare to be made.
    harness::detail::use_spare_supervisors_for_testing(false);
    harness::process::spawn({.argv = fx({"--exit-before-ready=0"})}).stop();  // harness thread, log dir
    fds_before_ = harness_test::open_fd_count();
  }
  void TearDown() override {
    harness::detail::pidfd::disable_for_testing(false);
    EXPECT_EQ(harness_test::open_fd_count(), fds_before_) << "an fd was left behind";
    const auto zombies = harness_test::zombie_children();
    EXPECT_TRUE(zombies.empty()) << zombies.size() << " zombie children:" << [&] {
      std::string out;
      for (pid_t z : zombies) out += " " + harness_test::read_text("/proc/" + std::to_string(z) + "/stat").substr(0, 40);
      return out;
    }();
    harness_test::expect_gone(token_, 2s, "at the end of the test");
    harness::detail::use_spare_supervisors_for_testing(true);
  }
  const harness_test::temp_dir scratch_{"harness-r14"};
  const harness_test::scoped_env logs_{"HARNESS_LOG_DIR", (scratch_.path() / "logs").string()};
  std::size_t fds_before_ = 0;
  const std::string token_ = harness_test::unique_token("r14");
};

TEST_F(R14, BindFailsWithEaddrinuseOnTheFirstTries) {
  const unsigned seed = harness_test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  const std::vector<std::string> styles = {"c", "python", "go", "node", "rust", "nginx", "redis",
                                           "memcached", "postgres", "java", "ruby", "silent"};
  harness_test::bounded_rounds(30, 12s, 6, [&](int round) {
    const int fails = static_cast<int>(rng() % 4);
    const int attempts = 1 + static_cast<int>(rng() % 4);
    const std::string style = styles[rng() % styles.size()];
    SCOPED_TRACE("round " + std::to_string(round) + ": " + std::to_string(fails) + " failed binds (" + style +
                 "), " + std::to_string(attempts) + " attempts");
    const std::string counter = (scratch_.path() / ("count-" + std::to_string(round))).string();
    const auto t0 = steady_clock::now();
    auto r = harness::session::try_start(
        {.command = fx({"--print=" + token_, "--port={port}", "--fail-binds=" + std::to_string(fails),
                        "--fail-state=" + counter, "--style=" + style}),
         .ready = {.timeout = 10s},
         .respawn = {.attempts = attempts, .backoff_base = 1ms, .backoff_cap = 5ms}});
    EXPECT_LT(steady_clock::now() - t0, harness::timeouts::scaled(10s) * attempts);
    if (style == "silent") {
      // Without a message and without a stranger on the port, nothing says "collision":
      // the first failed bind is a plain failure, reported as it is.
      if (fails == 0) {
        EXPECT_TRUE(r) << r.error().message();
      } else {
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().code, errc::exited_before_ready) << r.error().message();
      }
      return;
    }
    if (attempts > fails) {
      ASSERT_TRUE(r) << r.error().message();
      EXPECT_EQ(r->attempts().size(), static_cast<std::size_t>(fails + 1)) << harness::format_attempts(r->attempts());
      EXPECT_EQ(harness_test::tcp_request(r->port(), "x").value_or("(none)"), "pong: x");
    } else {
      ASSERT_FALSE(r);
      EXPECT_EQ(r.error().code, errc::attempts_exhausted) << r.error().message();
    }
  });
}

TEST_F(R14, RunningOutOfFdsAtAnyStepOfASessionStart) {
  // k free fd slots, k = 0, 1, ... (shuffled): each fd-making step of a lease-mode start
  // (lease file, log file, pipes, the supervisor's socket and pidfds, probe sockets)
  // meets EMFILE in turn. The start fails typed or succeeds; it never throws.
  const unsigned seed = harness_test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::vector<int> slots(40);
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(slots.begin(), slots.end(), rng);
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  int failed = 0, started = 0;
  std::map<std::string, int> codes;
  harness_test::bounded_rounds(static_cast<int>(slots.size()), 15s, 20, [&](int round) {
    const int k = slots[static_cast<std::size_t>(round)];
    SCOPED_TRACE("free fd slots: " + std::to_string(k));
    rlimit low = old;
    low.rlim_cur = std::min<rlim_t>(fds_before_ + 256, old.rlim_max);
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
    std::vector<int> fillers;
    for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) fillers.push_back(fd);
    for (int i = 0; i < k && !fillers.empty(); ++i) {
      ::close(fillers.back());
      fillers.pop_back();
    }
    std::optional<harness::result<harness::session>> r;
    const auto t0 = steady_clock::now();
    EXPECT_NO_THROW(r.emplace(harness::session::try_start(
        {.command = fx({"--print=" + token_, "--port={port}"}), .ready = {.timeout = 5s}})));
    const auto took = steady_clock::now() - t0;
    for (int fd : fillers) ::close(fd);
    ::setrlimit(RLIMIT_NOFILE, &old);
    EXPECT_LT(took, harness::timeouts::scaled(5s) * 5) << "not within its timeout";
    if (!r) return;
    if (*r) {
      ++started;
      EXPECT_EQ(harness_test::tcp_request((*r)->port(), "x").value_or("(none)"), "pong: x");
      EXPECT_EQ((*r)->stop(), exit_status::exited_with(0));
    } else {
      ++failed;
      ++codes[r->error().code.message()];
      EXPECT_FALSE(r->error().message().empty());
    }
    r.reset();
    EXPECT_EQ(harness_test::open_fd_count(), fds_before_) << "an fd was left behind";
    harness_test::expect_gone(token_, 2s, "after the start");
  });
  std::cout << started << " started, " << failed << " failed: " << testing::PrintToString(codes) << "\n";
  EXPECT_GT(failed, 0) << "no step ran out of fds: the test tests nothing";
  EXPECT_GT(started, 0);
}

TEST_F(R14, ForkFailsWithEagainUnderRlimitNproc) {
  // A runner of its own, as a uid nothing else uses (the limit counts that uid's tasks,
  // and root is exempt from it), allowed 0, 1, 2, ... more tasks than it has: its
  // threads, supervisors and servers meet EAGAIN in turn, cold or warmed up.
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a runner as another uid";
  const uid_t uid = 43000 + static_cast<uid_t>(::getpid() % 1000);
  const auto state = scratch_.path() / "state";
  std::filesystem::create_directories(state / "logs");
  for (const auto& d : {scratch_.path(), state, state / "logs"}) {
    ASSERT_EQ(::chown(d.c_str(), uid, uid), 0);
    ::chmod(d.c_str(), 0700);
  }
  int ok = 0, errors = 0;
  std::map<std::string, int> outcomes;
  harness_test::bounded_rounds(14, 20s, 14, [&](int round) {
    const int extra = round / 2;
    const bool warm = round % 2 == 1;
    SCOPED_TRACE("round " + std::to_string(round) + ": " + std::to_string(extra) + " more tasks allowed, " +
                 (warm ? "warm" : "cold"));
    harness::process runner = harness::process::spawn(
        {.argv = {HARNESS_LIMITED_RUNNER, std::to_string(uid), std::to_string(extra), warm ? "1" : "0",
                  harness_test::fixture_server(), token_},
         .env = {.set = {{"HARNESS_STATE_DIR", state.string()}, {"HARNESS_LOG_DIR", (state / "logs").string()}}}});
    const auto status = runner.wait_for(60s);
    ASSERT_TRUE(status) << "the limited runner hung:\n" << runner.output().tail(harness::stream::out)
                        << runner.output().tail(harness::stream::err);
    ASSERT_TRUE(runner.output().wait_closed(10s));
    const std::string out = runner.output().tail(harness::stream::out);
    EXPECT_EQ(*status, exit_status::exited_with(0)) << out << runner.output().tail(harness::stream::err);
    auto result = runner.output().wait_for_line("^RESULT (ok|error|threw)(.*)$", 0ms);
    ASSERT_TRUE(result) << out << runner.output().tail(harness::stream::err);
    EXPECT_NE(result->groups[1], "threw") << result->line;
    ++(result->groups[1] == "ok" ? ok : errors);
    ++outcomes[result->line.substr(0, 60)];
    EXPECT_NE(out.find("LEFT 0\n"), std::string::npos) << out;
    EXPECT_NE(out.find("ZOMBIES 0\n"), std::string::npos) << out;
    if (warm) {
      auto fds = runner.output().wait_for_line(R"(^FDS (\d+) (\d+)$)", 0ms);
      ASSERT_TRUE(fds) << out;
      EXPECT_EQ(fds->groups[1], fds->groups[2]) << "the limited start left an fd behind";
    }
  });
  for (const auto& [line, n] : outcomes) std::cout << n << " x " << line << "\n";
  EXPECT_GT(errors, 0) << "no start met EAGAIN: the test tests nothing";
  EXPECT_GT(ok, 0);
}

TEST_F(R14, WithoutPidfdsEveryStatusAndStopStillHolds) {
  // pidfd_open fails with ENOSYS for the runner (the supervisor, a program of its own,
  // is unaffected): statuses, stops of stubborn trees and kills are as exact as with.
  harness::detail::pidfd::disable_for_testing(true);
  const unsigned seed = harness_test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  harness_test::bounded_rounds(50, 12s, 10, [&](int round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const int code = static_cast<int>(rng() % 100);
    switch (rng() % 4) {
      case 0: {
        harness::process p = harness::process::spawn(
            {.argv = fx({"--print=" + token_, "--exit-before-ready=" + std::to_string(code)})});
        EXPECT_EQ(p.wait_for(10s), exit_status::exited_with(code));
        EXPECT_EQ(p.stop(), exit_status::exited_with(code));
        break;
      }
      case 1: {
        harness::process p = harness::process::spawn({.argv = fx({"--print=" + token_, "--port=0", "--announce-line=up"})});
        ASSERT_TRUE(p.output().wait_for_line("^up$", 10s));
        ASSERT_TRUE(p.signal(SIGKILL));
        EXPECT_EQ(p.wait_for(10s), exit_status::killed_by(SIGKILL));
        EXPECT_FALSE(p.signal(SIGTERM));
        EXPECT_EQ(p.stop(), exit_status::killed_by(SIGKILL));
        break;
      }
      case 2: {
        harness::process p = harness::process::spawn(
            {.argv = fx({"--print=" + token_, "--ignore-sigterm", "--fork-setsid", "--fork-daemon",
                         "--child-ignores-sigterm", "--port=0", "--announce-line=up"}),
             .stop = {.grace = 100ms}});
        ASSERT_TRUE(p.output().wait_for_line("^up$", 10s));
        EXPECT_EQ(p.stop(), exit_status::killed_by(SIGKILL));
        EXPECT_TRUE(harness_test::with_token(token_).empty()) << "a process of the tree outlived stop()";
        break;
      }
      default: {
        auto s = harness::session::try_start({.command = fx({"--print=" + token_, "--port={port}", "--fork-child"})});
        ASSERT_TRUE(s) << s.error().message();
        EXPECT_EQ(harness_test::tcp_request(s->port(), "x").value_or("(none)"), "pong: x");
        EXPECT_EQ(s->stop(), exit_status::exited_with(0));
        break;
      }
    }
  });
}

// --- ENOSPC ------------------------------------------------------------------------

// A tmpfs of a few pages mounted for the test (root only), unmounted at the end.
class tiny_tmpfs {
 public:
  tiny_tmpfs(const std::filesystem::path& at, const std::string& options) : at_(at) {
    std::filesystem::create_directories(at);
    if (::mount("tmpfs", at.c_str(), "tmpfs", 0, options.c_str()) != 0) {
      error_ = std::string("mount tmpfs: ") + std::strerror(errno);
    }
  }
  ~tiny_tmpfs() {
    if (error_.empty()) ::umount2(at_.c_str(), MNT_DETACH);
  }
  tiny_tmpfs(const tiny_tmpfs&) = delete;
  tiny_tmpfs& operator=(const tiny_tmpfs&) = delete;
  [[nodiscard]] const std::string& error() const { return error_; }

 private:
  std::filesystem::path at_;
  std::string error_;
};

// Fills the file system holding `dir` with one file until write() says ENOSPC.
void fill(const std::filesystem::path& dir) {
  const int fd = ::open((dir / "filler").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  const std::string block(4096, 'f');
  while (::write(fd, block.data(), block.size()) > 0) {
  }
  EXPECT_EQ(errno, ENOSPC);
  ::close(fd);
}

TEST_F(R14, NoSpaceLeftForLockFilesLogsAndReports) {
  tiny_tmpfs fs(scratch_.path() / "full", "size=64k,nr_inodes=64,mode=0700");
  if (!fs.error().empty()) GTEST_SKIP() << fs.error() << " (mounting needs root outside a locked-down container)";
  const auto full = scratch_.path() / "full";
  const auto block = harness_test::reserve_block(3);
  ASSERT_EQ(block.size(), 3u);
  const harness::port_range range{block.front().port(), block.back().port()};
  std::filesystem::create_directory(full / "ports");
  ::chmod((full / "ports").c_str(), 0700);
  std::filesystem::create_directory(full / "logs");

  // A report file on the tmpfs whose next line crosses into a page that cannot be had:
  // the write is cut short.
  const auto report = full / "report.jsonl";
  std::ofstream(report) << "{\"note\":\"" << std::string(4096 - 40, 'r') << "\"}\n";
  fill(full);

  // Lock files can still be created (inodes are left), but their records cannot be
  // written: the lease holds all the same (the flock is what counts), and what
  // `harness ports` reads is "unknown", never a torn record.
  {
    auto l = harness::lease::try_acquire({.range = range, .directory = full / "ports", .note = "r14 enospc"});
    ASSERT_TRUE(l) << l.error().message();
    auto listed = harness::list_leases(full / "ports");
    ASSERT_TRUE(listed) << listed.error().message();
    for (const auto& rec : *listed) {
      if (rec.port != l->port()) continue;
      EXPECT_TRUE(rec.held);
      EXPECT_TRUE(rec.pid == 0 || rec.pid == ::getpid()) << "a torn record: pid " << rec.pid;
    }
  }

  // A session logging to the full file system: the log cannot grow, the server works.
  ::setenv("HARNESS_REPORT", report.c_str(), 1);
  {
    auto s = harness::session::try_start({.command = fx({"--print=" + token_, "--port={port}", "--print=hello"}),
                                          .output = {.log_dir = full / "logs"}});
    if (s) {
      EXPECT_TRUE(s->output().wait_for_line("^hello$", 10s));
      EXPECT_EQ(harness_test::tcp_request(s->port(), "x").value_or("(none)"), "pong: x");
      EXPECT_EQ(s->stop(), exit_status::exited_with(0));  // its report line meets ENOSPC
    } else {
      EXPECT_NE(s.error().message().find("No space left"), std::string::npos) << s.error().message();
    }
  }
  // Room again: the next report line is whole, and so is every line before it.
  std::filesystem::remove(full / "filler");
  EXPECT_EQ(harness::session::start({.command = fx({"--print=" + token_, "--port={port}"})}).stop(),
            exit_status::exited_with(0));
  ::unsetenv("HARNESS_REPORT");
  std::ifstream in(report);
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    EXPECT_TRUE(nlohmann::json::accept(line)) << "line " << lines + 1 << " of the report is torn: "
                                              << line.substr(0, 80) << "..." << line.substr(line.size() > 80 ? line.size() - 80 : 0);
  }
  EXPECT_GE(lines, 2);

  // No inode left: a lock file (or the pool directory) cannot even be created. A typed
  // error naming why.
  for (int i = 0;; ++i) {
    const int fd = ::open((full / ("inode-" + std::to_string(i))).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
      ASSERT_EQ(errno, ENOSPC) << std::strerror(errno);
      break;
    }
    ::close(fd);
  }
  for (std::uint16_t p = range.first; p <= range.last; ++p) {
    if (std::filesystem::exists(full / "ports" / (std::to_string(p) + ".lock"))) continue;
    auto none = harness::lease::try_acquire({.range = harness::port_range{p, p}, .directory = full / "ports"});
    ASSERT_FALSE(none) << "leased " << p << " without a lock file";
    EXPECT_EQ(none.error().code, errc::pool_exhausted) << none.error().message();
    EXPECT_NE(none.error().message().find("No space left"), std::string::npos) << none.error().message();
  }
  auto fresh = harness::lease::try_acquire({.range = range, .directory = full / "fresh-ports"});
  ASSERT_FALSE(fresh);
  EXPECT_EQ(fresh.error().code, errc::unsafe_state_dir) << fresh.error().message();
  EXPECT_NE(fresh.error().message().find("No space left"), std::string::npos) << fresh.error().message();

  // HARNESS_REPORT on /dev/full: stop() does not hang or throw.
  ::setenv("HARNESS_REPORT", "/dev/full", 1);
  EXPECT_EQ(harness::session::start({.command = fx({"--print=" + token_, "--port={port}"})}).stop(),
            exit_status::exited_with(0));
  ::unsetenv("HARNESS_REPORT");
}

}  // namespace
