// Debian's real servers (scripts/setup installs them): they rewrite their title over
// the environment, daemonize, setsid and drop privileges, and each must still be
// followed, owned and left behind by nothing — after stop, after the runner is
// SIGKILLed at several moments, when runners nest, and when the runner has a fork()ed
// child that never execs.
//
// Leftovers are counted without the harness: processes by start time and executable
// (leftovers.hpp), listeners with `ss`. The tests share RESOURCE_LOCK real-servers, so
// no other test starts these programs meanwhile.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>
#include <fstream>
#include <string>
#include <vector>

#include "harness/lease.hpp"
#include "harness/process.hpp"
#include "harness/session.hpp"
#include "leftovers.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using harness::exit_status;
using harness::session;

const std::vector<std::string> real_programs = {"redis-server", "nginx", "memcached"};

bool in_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  for (std::size_t start = 0; start <= dirs.size();) {
    auto end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    if (::access((dirs.substr(start, end - start) + "/" + program).c_str(), X_OK) == 0) return true;
    start = end + 1;
  }
  // Debian puts nginx in /usr/sbin, which a non-root PATH may lack.
  return ::access(("/usr/sbin/" + program).c_str(), X_OK) == 0;
}

std::string scratch_dir() {
  char tmpl[] = "/tmp/harness-real-XXXXXX";
  const char* made = ::mkdtemp(tmpl);
  return made != nullptr ? made : "/tmp";
}

// redis that forks into the background (redis' own --daemonize yes).
std::vector<std::string> redis_daemon(const std::string& dir) {
  return {"redis-server", "--port", "{port}", "--bind", "127.0.0.1", "--save", "",
          "--daemonize", "yes", "--pidfile", dir + "/redis-{port}.pid", "--dir", dir};
}

// nginx with its default `daemon on`, two workers (as nobody when we are root). Its port
// comes only from its config file: a shell renders the template first (exec: the shell
// becomes nginx).
std::vector<std::string> nginx_daemon(const std::string& dir) {
  std::ofstream(dir + "/nginx.conf.in")
      << "pid " << dir << "/nginx-PORT.pid;\n"
      << "error_log stderr;\nworker_processes 2;\nevents {}\nhttp {\n  access_log off;\n"
      << "  client_body_temp_path " << dir << ";\n  proxy_temp_path " << dir << ";\n"
      << "  fastcgi_temp_path " << dir << ";\n  uwsgi_temp_path " << dir << ";\n"
      << "  scgi_temp_path " << dir << ";\n"
      << "  server { listen 127.0.0.1:PORT; location / { return 200 \"hello\\n\"; } }\n}\n";
  return {"/bin/sh", "-c",
          "sed \"s/PORT/$1/g\" \"$0/nginx.conf.in\" > \"$0/nginx-$1.conf\" && exec nginx -c \"$0/nginx-$1.conf\"",
          dir, "{port}"};
}

// memcached -d (as nobody when we are root: it refuses to run as root otherwise).
std::vector<std::string> memcached_daemon() {
  return {"memcached", "-d", "-u", "nobody", "-p", "{port}", "-l", "127.0.0.1", "-U", "0"};
}

class Real : public testing::Test {
 protected:
  void SetUp() override {
    for (const auto& p : real_programs) {
      if (!in_path(p)) GTEST_SKIP() << p << " is not installed (./scripts/setup installs it)";
    }
    since_ = harness_test::boot_ticks_now();
    dir_ = scratch_dir();
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Nothing of the real servers started by this test runs, and nobody listens on
  // `ports`, within 2 s.
  void expect_nothing_left(const std::vector<std::uint16_t>& ports, const std::string& when) {
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    std::vector<harness_test::seen_process> left;
    int listening = 0;
    const bool clean = harness_test::holds_within(deadline, [&] {
      left = harness_test::started_since(since_, real_programs);
      listening = harness_test::listeners_on(ports);
      return left.empty() && listening == 0;
    });
    EXPECT_TRUE(clean) << when << ": " << left.size() << " processes and " << listening
                       << " listeners left after 2 s" << harness_test::describe(left);
  }

  // The leftover check sees `program` while it runs: it could fail.
  void expect_seen_running(const std::string& program) {
    EXPECT_FALSE(harness_test::started_since(since_, {program}).empty())
        << "the leftover check does not see the running " << program;
  }

  unsigned long long since_ = 0;
  std::string dir_;
};

std::string ping_redis(std::uint16_t port) {
  return harness_test::tcp_request(port, "PING").value_or("(no answer)");
}

// A stranger that takes the leased port on some address after the lease (the lease
// itself checks every address of both families). It listens when the first attempt
// prints "PORT-IS <port>", then lets the server go on through a FIFO.
class late_stranger {
 public:
  late_stranger(std::string fifo, int family, const char* address)
      : fifo_(std::move(fifo)), family_(family), address_(address) {
    EXPECT_EQ(::mkfifo(fifo_.c_str(), 0600), 0) << fifo_;
  }
  late_stranger(const late_stranger&) = delete;
  late_stranger& operator=(const late_stranger&) = delete;
  ~late_stranger() {
    if (fd_ >= 0) ::close(fd_);
  }
  std::function<void(harness::stream, std::string_view)> callback() {
    return [this](harness::stream, std::string_view line) {
      if (line.rfind("PORT-IS ", 0) == 0) {
        if (fd_ < 0) {
          port_ = static_cast<std::uint16_t>(std::stoi(std::string(line.substr(8))));
          fd_ = harness_test::listen_on_address(family_, address_, port_);
        }
        std::ofstream(fifo_) << "go\n";  // every attempt's shell waits for this
      } else if (line.find("Address already in use") != std::string::npos && !message_at_) {
        message_at_ = std::chrono::steady_clock::now();
      }
    };
  }
  std::uint16_t port() const { return port_; }
  bool listening() const { return fd_ >= 0; }
  std::optional<std::chrono::steady_clock::time_point> message_at() const { return message_at_; }

 private:
  std::string fifo_;
  int family_;
  const char* address_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::optional<std::chrono::steady_clock::time_point> message_at_;
};

// memcached binds 0.0.0.0 and [::] and skips, without a word, an address whose bind
// fails with EADDRINUSE: with a stranger on 127.0.0.2 it serves only IPv6, and a probe
// on 127.0.0.1 would be refused until the timeout. The stranger is seen on the port
// next to memcached's own listener, and the start moves to a fresh port at once.
TEST_F(Real, MemcachedThatQuietlyLosesAnAddressIsStartedAgainOnAFreshPort) {
  late_stranger stranger(dir_ + "/go", AF_INET, "127.0.0.2");
  auto r = session::try_start(
      {.command = {"/bin/sh", "-c", "echo \"PORT-IS $1\"; read go < \"$0\"; exec memcached -u nobody -p \"$1\" -U 0",
                   dir_ + "/go", "{port}"},
       .respawn = {.backoff_base = 1ms},
       .output = {.on_line = stranger.callback()}});
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_TRUE(stranger.listening());
  ASSERT_EQ(r->attempts().size(), 2u) << harness::format_attempts(r->attempts());
  const auto& first = r->attempts()[0];
  EXPECT_EQ(first.port, stranger.port());
  EXPECT_EQ(first.outcome, harness::attempt::result::collision);
  EXPECT_NE(first.reason.find("held by pid " + std::to_string(::getpid())), std::string::npos) << first.reason;
  EXPECT_EQ(first.reason.find("not ready in time"), std::string::npos) << "waited for the timeout: " << first.reason;
  EXPECT_EQ(harness_test::tcp_request(r->port(), "version").value_or("").rfind("VERSION ", 0), 0u);
  std::cout << "memcached: collision judged " << first.duration.count() << " ms after the spawn\n";
  const auto port = r->port();
  r->stop();
  expect_nothing_left({port}, "after stop");
}

// nginx retries a failed bind for about 2.5 s before it gives up and exits: the start
// acts on its message and the stranger holding the port, not on that exit.
TEST_F(Real, NginxRetryingItsBindIsStartedAgainWithoutWaitingForItsExit) {
  std::ofstream(dir_ + "/nginx.conf.in")
      << "daemon off;\npid " << dir_ << "/nginx-PORT.pid;\n"
      << "error_log stderr;\nworker_processes 1;\nevents {}\nhttp {\n  access_log off;\n"
      << "  client_body_temp_path " << dir_ << ";\n  proxy_temp_path " << dir_ << ";\n"
      << "  fastcgi_temp_path " << dir_ << ";\n  uwsgi_temp_path " << dir_ << ";\n"
      << "  scgi_temp_path " << dir_ << ";\n"
      << "  server { listen 127.0.0.1:PORT; location / { return 200 \"hello\\n\"; } }\n}\n";
  late_stranger stranger(dir_ + "/go", AF_INET, "127.0.0.1");
  auto r = session::try_start(
      {.command = {"/bin/sh", "-c",
                   "echo \"PORT-IS $1\"; read go < \"$0/go\"; sed \"s/PORT/$1/g\" \"$0/nginx.conf.in\" > "
                   "\"$0/nginx-$1.conf\" && exec nginx -c \"$0/nginx-$1.conf\"",
                   dir_, "{port}"},
       .respawn = {.backoff_base = 1ms},
       .output = {.on_line = stranger.callback()}});
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_EQ(r->attempts().size(), 2u) << harness::format_attempts(r->attempts());
  const auto& first = r->attempts()[0];
  EXPECT_EQ(first.outcome, harness::attempt::result::collision);
  EXPECT_NE(first.reason.find("held by pid " + std::to_string(::getpid())), std::string::npos) << first.reason;
  EXPECT_EQ(first.reason.find("exited ("), std::string::npos) << "waited for nginx to give up: " << first.reason;
  std::cout << "nginx: collision judged " << first.duration.count() << " ms after the spawn\n";
  const auto port = r->port();
  r->stop();
  expect_nothing_left({port}, "after stop");
}

TEST_F(Real, RedisThatDaemonizesIsFollowedAndStoppedCompletely) {
  auto r = session::try_start({.command = redis_daemon(dir_)});
  ASSERT_TRUE(r) << r.error().message();
  session s = std::move(*r);
  EXPECT_EQ(s.attempts().size(), 1u);
  // The daemon may listen (and so be ready) a moment before the process that started
  // it has exited.
  EXPECT_TRUE(harness_test::holds_within(std::chrono::steady_clock::now() + 5s,
                                         [&] { return s.process().daemonized(); }));
  EXPECT_EQ(ping_redis(s.port()), "+PONG\r");
  // pid() is the daemon, which redis renamed: "redis-server 127.0.0.1:<port>".
  const std::string title = harness_test::read_text("/proc/" + std::to_string(s.pid()) + "/cmdline");
  EXPECT_NE(title.find(std::to_string(s.port())), std::string::npos) << title;
  EXPECT_NE(s.summary().find("subreaper"), std::string::npos) << s.summary();
  expect_seen_running("redis-server");
  const auto port = s.port();
  EXPECT_EQ(s.stop(), exit_status::exited_with(0));
  expect_nothing_left({port}, "after stop");
}

TEST_F(Real, RedisStartedWithSetsidFromAShellIsOurs) {
  // Its own session and a title over its environment: still the tree's, so no false
  // collision and no respawn.
  auto r = session::try_start(
      {.command = {"/bin/sh", "-c", "setsid redis-server --port \"$0\" --bind 127.0.0.1 --save '' & wait",
                   "{port}"}});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->attempts().size(), 1u) << r->summary();
  EXPECT_EQ(ping_redis(r->port()), "+PONG\r");
  const auto port = r->port();
  r->stop();
  expect_nothing_left({port}, "after stop");
}

TEST_F(Real, NginxDaemonOnWithWorkersIsOurs) {
  auto r = session::try_start({.command = nginx_daemon(dir_),
                               .ready = {.probes = {harness::probe::http("/", 200)}}});
  ASSERT_TRUE(r) << r.error().message();
  session s = std::move(*r);
  EXPECT_EQ(s.attempts().size(), 1u) << s.summary();
  EXPECT_TRUE(harness_test::holds_within(std::chrono::steady_clock::now() + 5s,
                                         [&] { return s.process().daemonized(); }));
  // The master and its workers (as nobody under a root runner) are all below the
  // supervisor.
  const auto tree = s.process().tree();
  EXPECT_GE(tree.size(), 3u) << "master and two workers";
  expect_seen_running("nginx");
  const auto port = s.port();
  s.stop();
  expect_nothing_left({port}, "after stop");
}

TEST_F(Real, MemcachedThatDaemonizesIsFollowed) {
  auto r = session::try_start({.command = memcached_daemon()});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE(harness_test::holds_within(std::chrono::steady_clock::now() + 5s,
                                         [&] { return r->process().daemonized(); }));
  EXPECT_EQ(harness_test::tcp_request(r->port(), "version").value_or("").rfind("VERSION ", 0), 0u);
  expect_seen_running("memcached");
  const auto port = r->port();
  r->stop();
  expect_nothing_left({port}, "after stop");
}

TEST_F(Real, ForbiddingADaemonLeavesNothing) {
  // redis' daemon may listen before the process that started it has exited: then the
  // start succeeds and the session sees its server exit right after (not followed);
  // otherwise the start fails saying why. Either way nothing is left.
  auto r = session::try_start({.command = redis_daemon(dir_), .allow_daemon = false});
  if (r) {
    EXPECT_TRUE(r->process().wait_for(5s)) << "the started process did not exit";
    EXPECT_FALSE(r->process().daemonized());
    EXPECT_EQ(r->stop(), exit_status::exited_with(0));
  } else {
    EXPECT_EQ(r.error().code, harness::errc::exited_before_ready);
    EXPECT_NE(r.error().message().find("it daemonized, which this spec forbids"), std::string::npos)
        << r.error().message();
  }
  expect_nothing_left({}, "after the start with allow_daemon = false");
}

// --- the runner dies -------------------------------------------------------------------

// Starts server-runner with the three real servers (and `extra` flags first).
harness::process start_runner(const std::string& dir, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv{HARNESS_SERVER_RUNNER};
  argv.insert(argv.end(), extra.begin(), extra.end());
  for (const auto& cmd : {redis_daemon(dir), nginx_daemon(dir), memcached_daemon()}) {
    if (argv.size() > 1 + extra.size()) argv.emplace_back("---");
    argv.insert(argv.end(), cmd.begin(), cmd.end());
  }
  return harness::process::spawn({.argv = argv, .follow_daemon = false});
}


TEST_F(Real, RunnerSigkilledAtSeveralMomentsLeavesNoServer) {
  // Before any server is ready, when the first is, and when all are.
  for (const std::string moment : {"^STARTING$", "^PORT ", "^READY$"}) {
    SCOPED_TRACE("killed after " + moment);
    harness::process runner = start_runner(dir_);
    auto seen = runner.output().wait_for_line(moment, 30s);
    ASSERT_TRUE(seen) << seen.error().message() << runner.output().tail(harness::stream::err);
    if (moment == "^READY$") {
      for (const auto& p : real_programs) expect_seen_running(p);
    }
    ASSERT_TRUE(runner.signal(SIGKILL));
    ASSERT_TRUE(runner.wait_for(10s));
    const auto ports = harness_test::runner_ports(runner);
    expect_nothing_left(ports, "runner killed after " + moment);
    for (auto port : ports) {
      auto again = harness::lease::try_acquire({.range = harness::port_range{port, port}});
      EXPECT_TRUE(again) << "port " << port << " is still leased: " << again.error().message();
    }
    runner.stop();
  }
}

TEST_F(Real, RunnerWithAForkedChildStillLeavesNothingAndFreesItsPorts) {
  harness::process runner = start_runner(dir_, {"--fork"});
  auto forked = runner.output().wait_for_line(R"(^FORKED (\d+)$)", 30s);
  ASSERT_TRUE(forked) << forked.error().message() << runner.output().tail(harness::stream::err);
  ASSERT_TRUE(runner.output().wait_for_line("^READY$", 10s));
  const int child = harness_test::open_pidfd(std::stoi(forked->groups[1]));
  ASSERT_GE(child, 0);
  ASSERT_TRUE(runner.signal(SIGKILL));  // the runner only: its forked child lives on
  const auto ports = harness_test::runner_ports(runner);
  ASSERT_EQ(ports.size(), 3u);
  expect_nothing_left(ports, "runner killed, its forked child alive");
  EXPECT_FALSE(harness_test::pidfd_exited(child)) << "the forked child was meant to live on";
  for (auto port : ports) {
    auto again = harness::lease::try_acquire({.range = harness::port_range{port, port}});
    EXPECT_TRUE(again) << "port " << port << " is still leased (the forked child holds the lock?)";
  }
  ::close(child);
  runner.stop();  // and the forked child with it
}

TEST_F(Real, NestedRunnersLeaveNothing) {
  // A test program inside another runner's server tree: `harness run --then` runs a
  // runner that starts redis. Killing the outer runner takes everything down; so does
  // stopping it.
  for (const bool kill : {true, false}) {
    SCOPED_TRACE(kill ? "outer runner SIGKILLed" : "outer runner stopped");
    const std::string inner = std::string(HARNESS_SERVER_RUNNER) + " redis-server --port {{port}} --bind 127.0.0.1 --save ''" +
                              " --daemonize yes --pidfile " + dir_ + "/inner-{{port}}.pid";
    harness::process outer = harness::process::spawn(
        {.argv = {HARNESS_CLI, "run", "--then", inner, "--", harness_test::fixture_server(), "--port={port}"},
         .follow_daemon = false});
    auto ready = outer.output().wait_for_line("^READY$", 30s);
    ASSERT_TRUE(ready) << ready.error().message() << outer.output().tail(harness::stream::err);
    const auto ports = harness_test::runner_ports(outer);
    ASSERT_EQ(ports.size(), 1u);
    EXPECT_EQ(ping_redis(ports[0]), "+PONG\r");
    if (kill) {
      ASSERT_TRUE(outer.signal(SIGKILL));
    } else {
      outer.stop();
    }
    expect_nothing_left(ports, kill ? "outer killed" : "outer stopped");
    outer.stop();
  }
}

}  // namespace
