// R10: an unrelated process — no marker, not in the runner's tree — listens on a pool
// port: from before the lease (the port is skipped), or taken between the lease and
// the server's bind (the start collides, and the attempt names the holder's pid), or
// while the server keeps retrying its bind, so that the stranger answers the readiness
// probe (the start must see it is not our server). The stranger is never signalled:
// alive and serving at the end, no "got SIGTERM" in its output.
//
// The runner (server-runner) leases from a private pool (HARNESS_STATE_DIR,
// HARNESS_PORT_RANGE) over a block this test holds in the shared pool.
#include <random>

#include "battery.hpp"
#include "harness/process.hpp"

namespace {

using namespace std::chrono_literals;
using harness_test::steady_clock;
namespace fs = std::filesystem;

enum class moment { before_lease, before_bind, during_probe, count };

const char* name_of(moment m) {
  switch (m) {
    case moment::before_lease: return "listening before the lease";
    case moment::before_bind: return "taking the port between lease and bind";
    case moment::during_probe: return "answering the probe while the server retries its bind";
    case moment::count: break;
  }
  return "?";
}

// A stranger on `port`: fixture-server without the marker (env -u), started in this
// test's own tree so that it cannot outlive the test.
harness::process stranger(std::uint16_t port, const std::string& token) {
  return harness::process::spawn({.argv = {"env", "-u", "HARNESS_SESSION", harness_test::fixture_server(),
                                           "--print=" + token, "--port=" + std::to_string(port),
                                           "--announce-line=up"}});
}

TEST(R10, AStrangerOnAPoolPortIsNeverKilledAndIsSkippedOrNamed) {
  const auto block = harness_test::reserve_block(3);
  ASSERT_EQ(block.size(), 3u);
  const std::string range = std::to_string(block.front().port()) + "-" + std::to_string(block.back().port());
  const unsigned seed = harness_test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  const harness_test::temp_dir scratch{"harness-r10"};
  const std::string token = harness_test::unique_token("r10");

  harness_test::bounded_rounds(24, 12s, 6, [&](int round) {
    const auto m = static_cast<moment>(rng() % static_cast<unsigned>(moment::count));
    SCOPED_TRACE("round " + std::to_string(round) + ": a stranger " + name_of(m));
    const auto dir = scratch.path() / std::to_string(round);
    fs::create_directory(dir);
    const auto state = dir / "state";
    const auto port_file = dir / "port";
    const auto go_file = dir / "go";
    const std::string server_token = harness_test::unique_token("r10-server");

    harness::process foreign;
    std::uint16_t foreign_port = 0;
    if (m == moment::before_lease) {
      foreign_port = block[rng() % block.size()].port();
      foreign = stranger(foreign_port, token);
      ASSERT_TRUE(foreign.output().wait_for_line("^up$", 10s));
    }
    // The server writes its port to a file, then waits for the go file before it binds
    // (retrying its bind for a while in the probe case: deaf to SIGTERM meanwhile, so it
    // is stopped with a short grace).
    const std::string retry = m == moment::during_probe ? "--bind-retry=1000" : "--bind-retry=1";
    harness::process runner = harness::process::spawn(
        {.argv = {HARNESS_SERVER_RUNNER, "--grace=200", "/bin/sh", "-c",
                  "echo \"$1\" > \"$2\"; exec \"$0\" --print=\"$4\" --wait-file=\"$3\" --port=\"$1\" " + retry,
                  harness_test::fixture_server(), "{port}", port_file.string(), go_file.string(), server_token},
         .env = {.set = {{"HARNESS_STATE_DIR", state.string()}, {"HARNESS_PORT_RANGE", range}}}});
    if (m != moment::before_lease) {
      std::string text;
      ASSERT_TRUE(harness_test::holds_within(steady_clock::now() + 10s, [&] {
        text = harness_test::read_text(port_file.string());
        return !text.empty() && text.back() == '\n';
      })) << "the server never wrote its port";
      foreign_port = static_cast<std::uint16_t>(std::stoi(text));
      foreign = stranger(foreign_port, token);
      ASSERT_TRUE(foreign.output().wait_for_line("^up$", 10s));
    }
    std::ofstream(go_file) << "go\n";

    auto ready = runner.output().wait_for_line("^(READY|FAILED 0)$", 30s);
    ASSERT_TRUE(ready) << ready.error().message() << "\n" << runner.output().tail(harness::stream::err);
    ASSERT_EQ(ready->groups[1], "READY") << runner.output().tail(harness::stream::err);
    const auto ports = harness_test::runner_ports(runner);
    ASSERT_EQ(ports.size(), 1u);
    EXPECT_NE(ports[0], foreign_port) << "the server was handed the stranger's port";
    std::vector<std::string> attempts;
    for (const auto& line : runner.output().tail_lines(harness::stream::out)) {
      if (line.rfind("ATTEMPT 0 ", 0) == 0) attempts.push_back(line);
    }
    if (m == moment::before_lease) {
      EXPECT_EQ(attempts.size(), 1u) << "the stranger's port was not skipped: " << testing::PrintToString(attempts);
    } else {
      ASSERT_EQ(attempts.size(), 2u) << testing::PrintToString(attempts);
      const std::string named = "pid " + std::to_string(foreign.pid());
      EXPECT_NE(attempts[0].find(" collision "), std::string::npos) << attempts[0];
      EXPECT_NE(attempts[0].find(named), std::string::npos) << "the holder is not named: " << attempts[0];
    }
    EXPECT_EQ(harness_test::tcp_request(ports[0], "ours?").value_or("(none)"), "pong: ours?");
    std::cout << "round " << round << " (" << name_of(m) << "): " << testing::PrintToString(attempts) << "\n";
    runner.stop();
    harness_test::expect_gone(server_token, 2s, "the runner's server after its stop");

    // The stranger went through all that untouched.
    EXPECT_TRUE(foreign.running()) << "the stranger was killed: " << foreign.status()->str();
    EXPECT_EQ(harness_test::tcp_request(foreign_port, "still?").value_or("(none)"), "pong: still?");
    EXPECT_EQ(foreign.output().tail(harness::stream::err).find("got SIGTERM"), std::string::npos);
  });
}

}  // namespace
