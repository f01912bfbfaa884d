// R15: fork-style GoogleTest death tests ("fast": fork() without exec) run inside a
// fixture that owns servers (harness::gtest::server_test). In the child — a copy of
// the runner — the statement stops the copies of the parent's sessions, starts and
// leases of its own, reads the parent's output, and dies in one of several ways. The
// parent's servers are unaffected (alive, same pid, serving, still holding their
// ports), nothing is reaped twice (no zombie, the final statuses exact), the child's own
// server dies with it, and the HARNESS_REPORT file gets no line from the child for the
// parent's servers.
#include <signal.h>

#include <nlohmann/json.hpp>
#include <random>

#include "battery.hpp"
#include "harness/gtest/fixture.hpp"
#include "harness/lease.hpp"
#include "harness/session.hpp"

namespace {

using namespace std::chrono_literals;
using harness::exit_status;
using harness_test::fx;

class R15 : public harness::gtest::server_test {
 protected:
  void SetUp() override {
    GTEST_FLAG_SET(death_test_style, "fast");
    ::setenv("HARNESS_REPORT", report_.c_str(), 1);
    servers_ = start_servers({
        {.command = fx({"--print=" + token_, "--port={port}"}), .name = "plain"},
        {.command = fx({"--print=" + token_, "--port={port}", "--fork-setsid", "--fork-child"}), .name = "tree"},
        {.command = fx({"--print=" + token_, "--port=0", "--announce=auto"}),
         .port = {.mode = harness::port_mode::announce},
         .name = "announced"},
    });
  }
  void TearDown() override { ::unsetenv("HARNESS_REPORT"); }

  // What the child does before it dies.
  void child_work(int what) {
    switch (what) {
      case 0:  // stop the copies of the parent's servers (as a test of "server gone" would)
        for (auto* s : servers_) (void)s->stop();
        break;
      case 1: {  // a server of its own, left running: it must die with the child
        auto own = harness::session::try_start({.command = fx({"--print=" + child_token_, "--port={port}"})});
        if (!own) std::_Exit(99);
        // Never destroyed: the child dies holding it. Kept reachable (the child may end
        // by exit(), where LeakSanitizer looks for leaks).
        child_session_ = new harness::session(std::move(*own));
        break;
      }
      case 2: {  // a lease of its own, and a look at the parent's servers
        auto l = harness::lease::try_acquire();
        if (!l) std::_Exit(98);
        for (auto* s : servers_) (void)s->output().tail(harness::stream::out);
        (void)servers_[1]->process().tree();
        break;
      }
      default:
        break;
    }
  }

  const std::string token_ = harness_test::unique_token("r15");
  const std::string child_token_ = harness_test::unique_token("r15-child");
  const harness_test::temp_dir tmp_{"harness-r15"};
  const std::string report_ = (tmp_.path() / "report.jsonl").string();
  std::vector<harness::session*> servers_;
  harness::session* child_session_ = nullptr;  // a child's own server (child_work(1))
};

TEST_F(R15, DeathTestsInAFixtureThatOwnsServersLeaveThemAlone) {
  ASSERT_EQ(servers_.size(), 3u);
  const unsigned seed = harness_test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::vector<int> pids;
  std::vector<std::uint16_t> ports;
  for (auto* s : servers_) {
    pids.push_back(s->pid());
    ports.push_back(s->port());
  }

  harness_test::bounded_rounds(25, 12s, 4, [&](int round) {
    const int what = static_cast<int>(rng() % 4);
    const int death = static_cast<int>(rng() % 4);
    SCOPED_TRACE("round " + std::to_string(round) + ": child work " + std::to_string(what) + ", death " +
                 std::to_string(death));
    switch (death) {
      case 0:
        EXPECT_DEATH({ child_work(what); std::abort(); }, "");
        break;
      case 1:
        EXPECT_EXIT({ child_work(what); std::exit(3); }, testing::ExitedWithCode(3), "");
        break;
      case 2:
        EXPECT_EXIT({ child_work(what); ::raise(SIGKILL); }, testing::KilledBySignal(SIGKILL), "");
        break;
      default:
        EXPECT_EXIT({ child_work(what); std::_Exit(4); }, testing::ExitedWithCode(4), "");
        break;
    }
    // The parent's servers: the same processes, serving, their ports still leased.
    for (std::size_t i = 0; i < servers_.size(); ++i) {
      auto* s = servers_[i];
      EXPECT_TRUE(s->running()) << s->name() << " died with a death test";
      EXPECT_EQ(s->pid(), pids[i]) << s->name();
      EXPECT_EQ(harness_test::tcp_request(ports[i], "still?").value_or("(none)"), "pong: still?") << s->name();
      if (s->mode() == harness::port_mode::lease) {
        EXPECT_FALSE(harness::lease::try_acquire({.range = harness::port_range{ports[i], ports[i]}}))
            << s->name() << ": its port can be leased by others";
      }
    }
    const auto zombies = harness_test::zombie_children();
    EXPECT_TRUE(zombies.empty()) << zombies.size() << " zombie children";
    harness_test::expect_gone(child_token_, 2s, "the death test child's own server");
  });

  // Nothing was reaped behind the parent's back: each stop gets the server's own exit.
  for (auto* s : servers_) EXPECT_EQ(s->stop(), exit_status::exited_with(0)) << s->name();
  harness_test::expect_gone(token_, 2s, "after the stops");
  // One report line per server, all from this process.
  std::ifstream in(report_);
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    EXPECT_EQ(j.value("runner_pid", 0), ::getpid()) << "a line from a death test child: " << line;
  }
  EXPECT_EQ(lines, 3);
}

}  // namespace
