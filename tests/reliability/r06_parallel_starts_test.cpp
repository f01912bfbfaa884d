// R6: 8 test processes start lease-mode servers one after another, all at once (as
// `ctest -j8` would), while a churner in this process binds port 0 and makes outgoing
// connections as fast as it can (each takes a port from the kernel's ephemeral range).
// No start fails, none needs a respawn (the pool lies outside the ephemeral range, so
// the churn never takes a pool port), every server answers, and no port is held by two
// sessions at once (session-storm's O_EXCL claims, see helpers/session_storm.cpp).
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <thread>

#include "battery.hpp"
#include "harness/lease.hpp"
#include "harness/process.hpp"

namespace {

using namespace std::chrono_literals;

// Until `done`: bind(0) + listen, an outgoing connect to it and an accept (three
// sockets, two ports from the kernel) per round; counts the rounds, and the ports the
// kernel handed out that lie in the pool.
void churn(const std::atomic<bool>& done, std::atomic<long>& rounds, std::atomic<long>& in_pool) {
  const auto pool = harness::default_port_range().value();
  while (!done) {
    const int server = harness_test::listen_on(0);
    if (server < 0) continue;
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ::getsockname(server, reinterpret_cast<sockaddr*>(&a), &len);
    const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (client >= 0 && ::connect(client, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      sockaddr_in local{};
      socklen_t local_len = sizeof local;
      ::getsockname(client, reinterpret_cast<sockaddr*>(&local), &local_len);
      for (std::uint16_t p : {ntohs(a.sin_port), ntohs(local.sin_port)}) {
        if (p >= pool.first && p <= pool.last) ++in_pool;
      }
      const int accepted = ::accept4(server, nullptr, nullptr, SOCK_CLOEXEC);
      if (accepted >= 0) ::close(accepted);
    }
    if (client >= 0) ::close(client);
    ::close(server);
    ++rounds;
  }
}

TEST(R06, EightProcessesStartingServersBesideAPortChurnerNeverCollide) {
  const harness_test::temp_dir claims{"harness-r06"};
  constexpr int processes = 8;
  constexpr int sessions = 60;

  std::atomic<bool> done{false};
  std::atomic<long> churned{0}, churned_in_pool{0};
  std::vector<std::thread> churners;
  for (int i = 0; i < 2; ++i) churners.emplace_back([&] { churn(done, churned, churned_in_pool); });

  std::vector<harness::process> storm;
  for (int i = 0; i < processes; ++i) {
    storm.push_back(harness::process::spawn({.argv = {HARNESS_SESSION_STORM, harness_test::fixture_server(),
                                                      std::to_string(sessions), claims.path().string()}}));
  }
  int total = 0, respawns = 0;
  for (auto& p : storm) {
    auto line = p.output().wait_for_line(R"(^DONE (\d+) (\d+) (\d+) (\d+)$)", 240s);
    ASSERT_TRUE(line) << line.error().message() << "\n" << p.output().tail(harness::stream::err);
    EXPECT_EQ(line->groups[2], "0") << "failed starts:\n" << p.output().tail(harness::stream::err);
    EXPECT_EQ(line->groups[3], "0") << "a port was held twice:\n" << p.output().tail(harness::stream::err);
    total += std::stoi(line->groups[1]);
    respawns += std::stoi(line->groups[4]);
    EXPECT_EQ(p.wait_for(30s), harness::exit_status::exited_with(0));
  }
  done = true;
  for (auto& t : churners) t.join();
  std::cout << total << " sessions, " << respawns << " respawns, " << churned.load() << " churn rounds\n";
  EXPECT_EQ(total, processes * sessions);
  EXPECT_EQ(respawns, 0) << "a start collided although nothing but the churner took ports";
  EXPECT_GT(churned.load(), 100) << "the churner hardly ran: the test tests little";
  EXPECT_EQ(churned_in_pool.load(), 0) << "the kernel handed out pool ports: the pool overlaps the ephemeral range";
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(claims.path())) left.push_back(e.path().filename());
  EXPECT_TRUE(left.empty()) << "claims left behind: " << testing::PrintToString(left);
}

}  // namespace
