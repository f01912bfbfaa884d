// R7: a runner holding leases (its servers' ports) is SIGKILLed at a random moment — while
// it leases and starts, once some servers are ready, once all are, with or without a
// fork()ed child that never execs — and a new runner starts right after. Within 1 s of
// the death the new runner holds every port of the pool, from the same lock files (the
// inode of each is unchanged: nothing was deleted), and nothing was killed to get them
// (a bystander server of the new runner's own lives on; the old runner's servers were
// ended by their supervisors, not by anyone taking their ports).
//
// The old runner leases from a private pool (HARNESS_STATE_DIR, HARNESS_PORT_RANGE) over
// a block this test holds in the shared pool, so no other test can be handed its ports.
#include <sys/stat.h>

#include <map>
#include <random>
#include <thread>

#include "battery.hpp"
#include "harness/lease.hpp"
#include "harness/process.hpp"
#include "harness/timeouts.hpp"

namespace {

using namespace std::chrono_literals;
using harness_test::steady_clock;

std::map<std::uint16_t, ino_t> lock_inodes(const std::filesystem::path& dir) {
  std::map<std::uint16_t, ino_t> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    struct stat st {};
    if (::lstat(e.path().c_str(), &st) == 0) out[static_cast<std::uint16_t>(std::stoi(e.path().stem()))] = st.st_ino;
  }
  return out;
}

TEST(R07, ANewRunnerGetsAKilledRunnersPortsWithinOneSecond) {
  constexpr int servers = 3;
  const auto block = harness_test::reserve_block(servers + 2);
  ASSERT_EQ(block.size(), static_cast<std::size_t>(servers + 2));
  const std::uint16_t first = block.front().port();
  const std::uint16_t last = block.back().port();
  const harness_test::temp_dir state{"harness-r07"};
  const auto ports_dir = state.path() / "ports";
  const unsigned seed = harness_test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);

  // The new runner's own server: must not be touched by anything here.
  harness::process bystander = harness::process::spawn(
      {.argv = harness_test::fx({"--port=0", "--announce-line=up {port}"})});
  auto up = bystander.output().wait_for_line(R"(^up (\d+)$)", 10s);
  ASSERT_TRUE(up);

  harness_test::bounded_rounds(30, 15s, 4, [&](int round) {
    const std::string token = harness_test::unique_token("r07");
    const bool fork_child = rng() % 3 == 0;
    const int k = static_cast<int>(rng() % (servers + 1));  // PORT lines to see first
    const int delay_ms = static_cast<int>(rng() % 20);
    SCOPED_TRACE("round " + std::to_string(round) + ": killed " + std::to_string(delay_ms) + " ms after " +
                 std::to_string(k) + " servers were ready" + (fork_child ? ", with a forked child" : ""));
    std::vector<std::string> argv = {HARNESS_SERVER_RUNNER};
    if (fork_child) argv.emplace_back("--fork");
    const std::vector<std::vector<std::string>> commands = {
        harness_test::fx({"--print=" + token, "--port={port}"}),
        harness_test::fx({"--print=" + token, "--fork-setsid", "--port={port}", "--delay-ms=" + std::to_string(rng() % 30)}),
        {"/bin/sh", "-c", "\"$0\" --print=\"$1\" --port=\"$2\" & wait", harness_test::fixture_server(), token, "{port}"},
    };
    for (const auto& c : commands) {
      if (argv.size() > (fork_child ? 2u : 1u)) argv.emplace_back("---");
      argv.insert(argv.end(), c.begin(), c.end());
    }
    harness::process runner = harness::process::spawn(
        {.argv = argv,
         .env = {.set = {{"HARNESS_STATE_DIR", state.path().string()},
                         {"HARNESS_PORT_RANGE", std::to_string(first) + "-" + std::to_string(last)}}}});
    ASSERT_TRUE(runner.output().wait_for_line("^STARTING$", 30s));
    for (int i = 0; i < k; ++i) {
      ASSERT_TRUE(runner.output().wait_for_line("^PORT " + std::to_string(i) + " ", 30s))
          << runner.output().tail(harness::stream::err);
    }
    if (k == servers) {
      ASSERT_TRUE(runner.output().wait_for_line("^READY$", 30s)) << runner.output().tail(harness::stream::err);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));  // the kill moment
    ASSERT_TRUE(runner.signal(SIGKILL));
    ASSERT_EQ(runner.wait_for(5s), harness::exit_status::killed_by(SIGKILL));
    const auto died = steady_clock::now();

    // The new runner: every port of the pool, within 1 s.
    const auto before = std::filesystem::exists(ports_dir) ? lock_inodes(ports_dir) : std::map<std::uint16_t, ino_t>{};
    std::vector<harness::lease> taken;
    for (std::uint16_t p = first; p <= last; ++p) {
      std::string why;
      EXPECT_TRUE(harness_test::holds_within(died + harness::timeouts::scaled(1s), [&] {
        auto l = harness::lease::try_acquire(
            {.range = harness::port_range{p, p}, .directory = ports_dir, .note = "r07 new runner"});
        if (!l) {
          why = l.error().message();
          return false;
        }
        taken.push_back(std::move(*l));
        return true;
      })) << "port " << p << " not free 1 s after the runner died: " << why;
    }
    const auto took = steady_clock::now() - died;
    for (const auto& [port, inode] : before) {
      EXPECT_EQ(lock_inodes(ports_dir)[port], inode) << "the lock file of " << port << " was replaced";
    }
    std::cout << "round " << round << ": " << harness_test::runner_ports(runner).size()
              << " ready at the kill, pool taken after "
              << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms\n";
    harness_test::expect_gone(token, 2s, "the old runner's servers");
    // (The runner's forked child, if any, lives on below the runner's supervisor until
    // `runner` is destroyed.)
  });
  EXPECT_TRUE(bystander.running()) << "the bystander was killed";
  EXPECT_EQ(harness_test::tcp_request(static_cast<std::uint16_t>(std::stoi(up->groups[1])), "ok?"), "pong: ok?");
  EXPECT_EQ(bystander.stop(), harness::exit_status::exited_with(0));
}

}  // namespace
