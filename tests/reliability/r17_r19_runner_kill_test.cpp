// R17, R18, R19 with the fixture server's imitations of real servers (tests/real/ has
// redis, nginx and memcached themselves, label `real`): a runner (server-runner) owns
// servers that write their title over their environment after a setsid, daemonize,
// leave a detached child with an empty environment (R17), drop privileges to nobody
// (R18); runners nest, and a runner has a fork()ed child that never execs (R19). The
// runner is SIGKILLed at a random moment of the start (or stops its servers itself);
// within 2 s nothing of any server is left — counted by a token in every title and
// command line and by listeners on the ports, never by the harness's marker — and the
// ports can be leased again.
#include <random>
#include <sstream>
#include <thread>

#include "battery.hpp"
#include "harness/lease.hpp"
#include "harness/process.hpp"
#include "harness/timeouts.hpp"

namespace {

using namespace std::chrono_literals;
using harness_test::fx;
using harness_test::steady_clock;

// How a round ends for the runner.
enum class ending { killed_while_starting, killed_when_ready, stopped_by_itself };

const char* name_of(ending e) {
  switch (e) {
    case ending::killed_while_starting: return "runner SIGKILLed while starting";
    case ending::killed_when_ready: return "runner SIGKILLed once all were ready";
    case ending::stopped_by_itself: return "runner stopped its servers";
  }
  return "?";
}

// Starts server-runner over `commands` with `flags` first.
harness::process start_runner(const std::vector<std::string>& flags,
                              const std::vector<std::vector<std::string>>& commands) {
  std::vector<std::string> argv{HARNESS_SERVER_RUNNER};
  argv.insert(argv.end(), flags.begin(), flags.end());
  for (std::size_t i = 0; i < commands.size(); ++i) {
    if (i > 0) argv.emplace_back("---");
    argv.insert(argv.end(), commands[i].begin(), commands[i].end());
  }
  return harness::process::spawn({.argv = argv});
}

// Waits for the moment `e` (with a random extra delay while starting), then ends the
// runner that way.
void end_runner(harness::process& runner, ending e, std::size_t servers, std::mt19937& rng) {
  switch (e) {
    case ending::killed_while_starting: {
      ASSERT_TRUE(runner.output().wait_for_line("^STARTING$", 30s));
      const auto ready_first = rng() % servers;  // wait for none, or one of them
      if (ready_first > 0) {
        ASSERT_TRUE(runner.output().wait_for_line("^PORT " + std::to_string(ready_first - 1) + " ", 30s))
            << runner.output().tail(harness::stream::err);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 15));  // the kill moment
      break;
    }
    case ending::killed_when_ready:
      ASSERT_TRUE(runner.output().wait_for_line("^READY$", 30s)) << runner.output().tail(harness::stream::err);
      break;
    case ending::stopped_by_itself:
      ASSERT_TRUE(runner.output().wait_for_line("^STOPPED$", 30s)) << runner.output().tail(harness::stream::err);
      break;
  }
  ASSERT_TRUE(runner.signal(SIGKILL));
  ASSERT_EQ(runner.wait_for(10s), harness::exit_status::killed_by(SIGKILL));
}

// Within 2 s: no process with `token`, no listener on `ports`; then each port can be
// leased again.
void expect_nothing_left(const std::string& token, const std::vector<std::uint16_t>& ports, const std::string& when) {
  harness_test::expect_gone(token, 2s, when);
  int listening = -1;
  EXPECT_TRUE(harness_test::holds_within(steady_clock::now() + 2s, [&] {
    listening = harness_test::listeners_on(ports);
    return listening == 0;
  })) << when << ": " << listening << " listeners left on " << testing::PrintToString(ports);
  for (auto port : ports) {
    std::string why;
    EXPECT_TRUE(harness_test::holds_within(steady_clock::now() + harness::timeouts::scaled(1s), [&] {
      auto again = harness::lease::try_acquire({.range = harness::port_range{port, port}});
      if (!again) why = again.error().message();
      return static_cast<bool>(again);
    })) << when << ": port " << port << " is still leased: " << why;
  }
}

// Every server of a runner must have been ready at its first attempt: no false
// collision with a process of its own tree.
void expect_no_false_collision(const harness::process& runner) {
  for (const auto& line : runner.output().tail_lines(harness::stream::out)) {
    if (line.rfind("ATTEMPT ", 0) == 0) {
      EXPECT_NE(line.find(" ready"), std::string::npos) << line;
    }
  }
}

TEST(R17, TitlesSetsidDaemonsAndCleanEnvironmentsLeaveNothingWhenTheRunnerDies) {
  const unsigned seed = harness_test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  harness_test::bounded_rounds(18, 15s, 3, [&](int round) {
    const std::string token = harness_test::unique_token("r17");
    const auto e = static_cast<ending>(round % 3);
    SCOPED_TRACE("round " + std::to_string(round) + ": " + name_of(e));
    std::vector<std::vector<std::string>> commands = {
        // A title over the environment, in a session of its own.
        {"/bin/sh", "-c", "setsid \"$0\" --title=\"$1\" --port=\"$2\" & wait", harness_test::fixture_server(),
         token + "-setsid", "{port}"},
        // The classic double fork, followed.
        fx({"--title=" + token + "-daemon", "--daemonize", "--port={port}"}),
        // A detached child with an empty environment.
        fx({"--title=" + token + "-clean", "--fork-clean-env", "--port={port}"}),
    };
    std::shuffle(commands.begin(), commands.end(), rng);
    std::vector<std::string> flags;
    if (e == ending::stopped_by_itself) flags.emplace_back("--stop-with-grace=2000");
    harness::process runner = start_runner(flags, commands);
    if (e == ending::killed_when_ready) {
      ASSERT_TRUE(runner.output().wait_for_line("^READY$", 30s)) << runner.output().tail(harness::stream::err);
      // Three servers, the daemon's and the detached child's the ones that outlive
      // their parents: the check sees them all.
      EXPECT_GE(harness_test::with_token(token).size(), 4u) << "the leftover check does not see the servers";
    }
    end_runner(runner, e, commands.size(), rng);
    if (HasFatalFailure()) return;
    if (e != ending::killed_while_starting) expect_no_false_collision(runner);
    expect_nothing_left(token, harness_test::runner_ports(runner), name_of(e));
  });
}

TEST(R18, ServersThatDropPrivilegesAreStillOursAndLeaveNothing) {
  if (::geteuid() != 0) GTEST_SKIP() << "dropping privileges needs a root runner";
  const unsigned seed = harness_test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  harness_test::bounded_rounds(18, 15s, 3, [&](int round) {
    const std::string token = harness_test::unique_token("r18");
    const auto e = static_cast<ending>(round % 3);
    SCOPED_TRACE("round " + std::to_string(round) + ": " + name_of(e));
    const std::vector<std::vector<std::string>> commands = {
        fx({"--title=" + token + "-nobody", "--drop-privileges", "--port={port}"}),
        fx({"--title=" + token + "-worker", "--fork-child", "--drop-privileges", "--port={port}"}),
        fx({"--title=" + token + "-daemon", "--daemonize", "--drop-privileges", "--port={port}"}),
    };
    std::vector<std::string> flags;
    if (e == ending::stopped_by_itself) flags.emplace_back("--stop-with-grace=2000");
    harness::process runner = start_runner(flags, commands);
    if (e != ending::killed_while_starting) {
      ASSERT_TRUE(runner.output().wait_for_line("^READY$", 30s)) << runner.output().tail(harness::stream::err);
      // Not a false collision with its own, now unprivileged, listener.
      expect_no_false_collision(runner);
      if (e == ending::killed_when_ready) {
        // A server is ready once it listens, a moment before it drops its privileges.
        int nobody = 0;
        EXPECT_TRUE(harness_test::holds_within(steady_clock::now() + 5s, [&] {
          nobody = 0;
          for (const auto& p : harness_test::with_token(token)) {
            nobody += harness_test::read_text("/proc/" + std::to_string(p.pid) + "/status").find("Uid:\t65534") !=
                      std::string::npos;
          }
          return nobody >= 3;
        })) << "the servers did not drop their privileges: " << nobody << " run as nobody";
      }
    }
    end_runner(runner, e, commands.size(), rng);
    if (HasFatalFailure()) return;
    expect_nothing_left(token, harness_test::runner_ports(runner), name_of(e));
  });
}

TEST(R19, NestedRunnersAndARunnerWithAForkedChildLeaveNothing) {
  const unsigned seed = harness_test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  const harness_test::temp_dir scratch{"harness-r19"};
  harness_test::bounded_rounds(16, 15s, 4, [&](int round) {
    const std::string token = harness_test::unique_token("r19");
    const bool fork_child = rng() % 2 == 0;
    const bool inner_ready = rng() % 2 == 0;  // kill once the inner runner is ready, or while it starts
    SCOPED_TRACE("round " + std::to_string(round) + (fork_child ? ": outer runner with a forked child" : "") +
                 (inner_ready ? ", killed with the inner runner ready" : ", killed while the inner one starts"));
    const auto inner_out = scratch.path() / ("inner-" + std::to_string(round));
    // The outer runner's first server is an inner runner (a test program inside the
    // outer's server tree, its PORT lines in a file) next to a server on the outer's port.
    const std::vector<std::vector<std::string>> commands = {
        {"/bin/sh", "-c",
         "\"$0\" \"$1\" --print=\"$2\" --fork-setsid --port=\"$3\" --- \"$1\" --print=\"$2\" --daemonize --port=\"$3\" "
         "> \"$4\" & exec \"$1\" --print=\"$2\" --port=\"$5\"",
         HARNESS_SERVER_RUNNER, harness_test::fixture_server(), token, "{{port}}", inner_out.string(), "{port}"},
        fx({"--print=" + token, "--fork-child", "--port={port}"}),
    };
    std::vector<std::string> flags;
    if (fork_child) flags.emplace_back("--fork");
    harness::process runner = start_runner(flags, commands);
    ASSERT_TRUE(runner.output().wait_for_line("^READY$", 30s)) << runner.output().tail(harness::stream::err);
    std::string inner;
    if (inner_ready) {
      ASSERT_TRUE(harness_test::holds_within(steady_clock::now() + 30s, [&] {
        inner = harness_test::read_text(inner_out.string());
        return inner.find("READY\n") != std::string::npos;
      })) << "the inner runner did not start: " << inner;
    }
    if (inner_ready) {
      // Outer: its server and that one's child; inner: its two servers and their
      // setsid child and daemon (at least).
      EXPECT_GE(harness_test::with_token(token).size(), 5u) << "the leftover check does not see the servers";
    }
    int forked = -1;
    if (fork_child) {
      auto line = runner.output().wait_for_line(R"(^FORKED (\d+)$)", 10s);
      ASSERT_TRUE(line);
      forked = harness_test::open_pidfd(std::stoi(line->groups[1]));
      ASSERT_GE(forked, 0);
    }
    ASSERT_TRUE(runner.signal(SIGKILL));
    ASSERT_EQ(runner.wait_for(10s), harness::exit_status::killed_by(SIGKILL));

    auto ports = harness_test::runner_ports(runner);
    inner = harness_test::read_text(inner_out.string());
    std::istringstream lines(inner);
    for (std::string line; std::getline(lines, line);) {
      std::istringstream in(line);
      std::string tag;
      int index = 0, port = 0;
      if (in >> tag >> index >> port && tag == "PORT") ports.push_back(static_cast<std::uint16_t>(port));
    }
    if (inner_ready) {
      EXPECT_EQ(ports.size(), 4u) << "outer and inner ports: " << inner;
    }
    expect_nothing_left(token, ports, "outer runner killed");
    if (fork_child) {
      EXPECT_FALSE(harness_test::pidfd_exited(forked)) << "the forked child was meant to live on";
      ::close(forked);
    }
  });
}

}  // namespace
