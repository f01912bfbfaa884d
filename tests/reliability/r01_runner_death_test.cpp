// R1 (and R7): when the runner is SIGKILLed, every process it started dies with it,
// however far down the tree and whether or not it left the process group, and the
// ports it had leased can be leased again at once. Leftovers are counted three ways:
// the harness's marker, pidfds or a token in every command line of the tree (which
// the marker does not decide), and listeners on the ports.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "harness/detail/os/proc_fs.hpp"
#include "harness/lease.hpp"
#include "harness/process.hpp"
#include "harness/timeouts.hpp"
#include "battery.hpp"

namespace {

using namespace std::chrono_literals;
using std::chrono::steady_clock;

TEST(R01, SigkilledRunnerLeavesNothingBehind) {
  constexpr int rounds = 5;
  for (int round = 0; round < rounds; ++round) {
    harness::process runner = harness::process::spawn(
        {.argv = {HARNESS_TREE_RUNNER, harness_test::fixture_server()}});
    auto ready = runner.output().wait_for_line("^READY$", 30s);
    ASSERT_TRUE(ready) << ready.error().message() << "\n" << runner.output().tail(harness::stream::err);

    std::string token;
    std::vector<int> pidfds;
    for (const auto& line : runner.output().tail_lines(harness::stream::out)) {
      if (line.rfind("TOKEN ", 0) == 0) token = line.substr(6);
      if (line.rfind("PID ", 0) == 0) {
        const int fd = harness_test::open_pidfd(std::stoi(line.substr(4)));
        ASSERT_GE(fd, 0) << line;
        pidfds.push_back(fd);
      }
    }
    ASSERT_FALSE(token.empty());
    ASSERT_EQ(pidfds.size(), 11u);

    ASSERT_TRUE(runner.signal(SIGKILL));
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    for (int fd : pidfds) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      EXPECT_TRUE(harness_test::pidfd_exited(fd, std::max(left, 0ms)))
          << "round " << round << ": a process outlived its runner by 2 s";
      ::close(fd);
    }
    // A marked process may take a moment to leave /proc after the supervisors' SIGKILL
    // (the check is "gone within 2 s", not "gone at once").
    EXPECT_TRUE(harness_test::holds_within(deadline, [&] {
      return harness::detail::procfs::find_by_environ("HARNESS_SESSION=" + token + "-", true).empty();
    })) << "round " << round << ": a marked process outlived its runner by 2 s";
    EXPECT_EQ(runner.stop(), harness::exit_status::killed_by(SIGKILL));
  }
}

// --- killed at varied moments of start-up ----------------------------------------

// True when something accepts connections on 127.0.0.1:port (a refused connect is the
// only "no"; anything unclear counts as a listener, so that the check can fail).
bool listener_on(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return true;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool listening = true;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (errno == ECONNREFUSED) {
      listening = false;
    } else if (errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, 200) == 1) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        listening = err != ECONNREFUSED;
      }
    }
  }
  ::close(fd);
  return listening;
}

std::string describe(const std::vector<pid_t>& pids) {
  std::string out;
  for (pid_t pid : pids) {
    auto st = harness::detail::procfs::read_stat(pid);
    out += "\n  pid " + std::to_string(pid) + " (" + (st ? st->comm : std::string("gone")) +
           (st ? std::string(", state ") + st->state + ", ppid " + std::to_string(st->ppid) : "") +
           ")";
  }
  return out;
}


// R1 with lease-mode sessions: tree-runner starts a plain server, a `sh -c 'srv &
// wait'` tree, a server whose child calls setsid and one with a daemonised grandchild
// (each sleeping a different time before it binds), and is SIGKILLed a random 0-15 ms
// after it has reported k of them ready: k = 0 (right after it printed its token,
// while it leases and spawns), 1, 2, 3 (while the others are still starting) or all.
// Within 2 s no process carries its marker or its tag (in every command line of the
// trees) and nothing listens on its ports; then every one of those ports can be leased
// again at once.
//
// The runner leases from a pool of its own (HARNESS_STATE_DIR, HARNESS_PORT_RANGE) over
// a block of ports this test holds in the shared pool: no other test can be handed
// them meanwhile, so "leased again at once" is not disturbed by other tests running
// in parallel, and the check covers every port the runner may have leased, also those
// it had not reported yet when it died.
TEST(R01, SigkilledAtRandomMomentsOfStartLeavesNothingAndFreesItsPorts) {
  constexpr int rounds = 30;
  constexpr int servers = 4;
  constexpr int block_size = 8;
  const auto block = harness_test::reserve_block(block_size);
  ASSERT_EQ(block.size(), static_cast<std::size_t>(block_size));
  const std::uint16_t first = block.front().port();
  const std::uint16_t last = block.back().port();

  const harness_test::temp_dir tmp{"harness-runner-death"};
  const std::filesystem::path& state_dir = tmp.path();

  const unsigned seed = harness_test::test_seed();
  std::mt19937 rng(seed);
  SCOPED_TRACE("seed " + std::to_string(seed));
  harness_test::bounded_rounds(rounds, std::chrono::seconds(25), servers + 1, [&](int round) {
    const int k = round % (servers + 1);  // LEASE lines to wait for before the kill
    std::vector<int> delays = {0, 15, 50, 120};
    std::shuffle(delays.begin(), delays.end(), rng);
    std::string delay_text;
    for (int d : delays) delay_text += (delay_text.empty() ? "" : ",") + std::to_string(d);
    SCOPED_TRACE("round " + std::to_string(round) + ": kill after " + std::to_string(k) +
                 " ready, delays " + delay_text);

    const std::string tag = harness_test::unique_token("r01");
    const auto kill_delay = std::chrono::milliseconds(rng() % 16);
    SCOPED_TRACE("killed " + std::to_string(kill_delay.count()) + " ms after that");
    harness::process runner = harness::process::spawn(
        {.argv = {HARNESS_TREE_RUNNER, harness_test::fixture_server(), "--sessions=" + delay_text, "--tag=" + tag},
         .env = {.set = {{"HARNESS_STATE_DIR", state_dir.string()},
                         {"HARNESS_PORT_RANGE", std::to_string(first) + "-" + std::to_string(last)}}}});
    auto token_line = runner.output().wait_for_line(R"(^TOKEN (\S+)$)", 30s);
    ASSERT_TRUE(token_line) << token_line.error().message() << "\n"
                            << runner.output().tail(harness::stream::err);
    const std::string token = token_line->groups[1];
    if (k > 0) {
      const std::string pattern = k == servers ? "^READY$" : "^LEASE \\d+ " + std::to_string(k) + "$";
      auto line = runner.output().wait_for_line(pattern, 30s);
      ASSERT_TRUE(line) << line.error().message() << "\n" << runner.output().tail(harness::stream::out)
                        << runner.output().tail(harness::stream::err);
    }

    std::this_thread::sleep_for(kill_delay);  // the kill moment
    ASSERT_TRUE(runner.signal(SIGKILL));
    // The runner has died when it is reaped (a queued SIGKILL is not yet a death: until
    // it exits, the runner itself still holds its leases).
    auto st = runner.wait_for(5s);
    ASSERT_TRUE(st) << "the runner was not reaped";
    EXPECT_EQ(*st, harness::exit_status::killed_by(SIGKILL));
    const auto died_at = steady_clock::now();
    const auto deadline = died_at + harness::timeouts::scaled(2s);

    std::vector<std::uint16_t> reported;
    for (const auto& line : runner.output().tail_lines(harness::stream::out)) {
      if (line.rfind("LEASE ", 0) == 0) {
        reported.push_back(static_cast<std::uint16_t>(std::stoi(line.substr(6))));
      }
    }
    EXPECT_GE(reported.size(), static_cast<std::size_t>(k));
    for (std::uint16_t p : reported) {
      EXPECT_TRUE(p >= first && p <= last) << "port " << p << " is not from the runner's pool";
    }

    // Within 2 s: no process with the runner's marker...
    const std::string marker = "HARNESS_SESSION=" + token + "-";
    std::vector<pid_t> left;
    EXPECT_TRUE(harness_test::holds_within(deadline, [&] {
      left = harness::detail::procfs::find_by_environ(marker, true);
      return left.empty();
    })) << "processes still carry " << marker << " 2 s after the runner died:" << describe(left);
    // ... and none with its tag, whatever it did with its environment.
    std::vector<harness_test::seen_process> tagged;
    EXPECT_TRUE(harness_test::holds_within(deadline, [&] {
      tagged = harness_test::with_token(tag);
      return tagged.empty();
    })) << "processes with the runner's tag 2 s after it died:" << harness_test::describe(tagged);
    // ... and no listener on any port it may have leased.
    for (std::uint16_t p = first; p <= last; ++p) {
      EXPECT_TRUE(harness_test::holds_within(deadline, [&] { return !listener_on(p); }))
          << "port " << p << " still has a listener 2 s after the runner died";
    }
    const auto clean_after = steady_clock::now() - died_at;

    // R7: a new runner gets every one of those ports within 1 s, from the same lock
    // files: nothing was deleted or killed to get them. (A child forked by the runner
    // but not yet exec'd holds copies of the lock fds until its PDEATHSIG lands, so the
    // first try may be a few milliseconds early.)
    const auto lease_deadline = died_at + harness::timeouts::scaled(1s);
    std::vector<harness::lease> again;
    for (std::uint16_t p = first; p <= last; ++p) {
      const auto lock_file = state_dir / "ports" / (std::to_string(p) + ".lock");
      const bool had_lock_file = std::filesystem::exists(lock_file);
      std::string why;
      EXPECT_TRUE(harness_test::holds_within(lease_deadline, [&] {
        auto l = harness::lease::try_acquire({.range = harness::port_range{p, p},
                                              .directory = state_dir / "ports",
                                              .note = "r01_runner_death_test"});
        if (!l) {
          why = l.error().message();
          return false;
        }
        again.push_back(std::move(*l));
        return true;
      })) << "port " << p << " cannot be leased again 1 s after the runner died: " << why;
      if (std::find(reported.begin(), reported.end(), p) != reported.end()) {
        EXPECT_TRUE(had_lock_file) << lock_file << " of a reported lease is gone";
      }
    }
    const auto leased_after = steady_clock::now() - died_at;
    again.clear();

    std::cout << "round " << round << ": killed after " << reported.size()
              << " ready (delays " << delay_text << "), clean after "
              << std::chrono::duration_cast<std::chrono::milliseconds>(clean_after).count()
              << " ms, ports leased again after "
              << std::chrono::duration_cast<std::chrono::milliseconds>(leased_after).count()
              << " ms\n";
  });
}

}  // namespace
