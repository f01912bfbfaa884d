// R2: the thread that started a server exits; the server lives on until its owner
// stops it. A supervisor started from a thread must not take the thread's exit for the
// runner's death (PDEATHSIG is per thread), whether the thread started it itself or
// took a spare started ahead of time on another thread.
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <variant>

#include "battery.hpp"
#include "harness/detail/proc/spawn_posix.hpp"
#include "harness/process.hpp"
#include "harness/session.hpp"

namespace {

using namespace std::chrono_literals;
using harness::exit_status;
using harness_test::fx;

// What one thread started: a bare process or a session (its port for the pings).
struct started {
  std::variant<harness::process, harness::session> owner;
  std::uint16_t port = 0;
  pid_t thread_id = 0;
  std::string error;
};

started start_one(int kind, const std::string& token) {
  started s{harness::process{}, 0, static_cast<pid_t>(::syscall(SYS_gettid)), {}};
  if (kind == 0) {
    auto p = harness::process::try_spawn(
        {.argv = fx({"--print=" + token, "--port=0", "--announce-line=up {port}"})});
    if (!p) {
      s.error = p.error().message();
      return s;
    }
    auto line = p->output().wait_for_line(R"(^up (\d+)$)", 10s);
    if (!line) {
      s.error = line.error().message();
      return s;
    }
    s.port = static_cast<std::uint16_t>(std::stoi(line->groups[1]));
    s.owner = std::move(*p);
    return s;
  }
  harness::server_spec spec{.command = fx({"--print=" + token, "--port={port}"})};
  if (kind == 2) {
    spec.command = fx({"--print=" + token, "--port=0", "--announce=auto"});
    spec.port.mode = harness::port_mode::announce;
  }
  auto r = harness::session::try_start(std::move(spec));
  if (!r) {
    s.error = r.error().message();
    return s;
  }
  s.port = r->port();
  s.owner = std::move(*r);
  return s;
}

bool running(const started& s) {
  return std::visit([](const auto& o) { return o.running(); }, s.owner);
}

exit_status stop(started& s) {
  return std::visit([](auto& o) { return o.stop(); }, s.owner);
}

TEST(R02, ServersOutliveTheThreadsThatStartedThem) {
  const unsigned seed = harness_test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  const std::string token = harness_test::unique_token("r02");
  struct spares_back_on {
    ~spares_back_on() { harness::detail::use_spare_supervisors_for_testing(true); }
  } restore;

  harness_test::bounded_rounds(40, 10s, 3, [&](int round) {
    // With spares, a thread takes a supervisor started on the spare thread; without,
    // it starts its own (posix_spawn from the thread that then exits).
    const bool spares = rng() % 2 == 0;
    harness::detail::use_spare_supervisors_for_testing(spares);
    const int threads = 2 + static_cast<int>(rng() % 4);
    SCOPED_TRACE("round " + std::to_string(round) + ": " + std::to_string(threads) + " threads, spares " +
                 (spares ? "on" : "off"));
    std::vector<int> kinds;
    for (int i = 0; i < threads; ++i) kinds.push_back(static_cast<int>(rng() % 3));

    std::mutex m;
    std::vector<started> servers;
    std::vector<std::thread> starters;
    for (int kind : kinds) {
      starters.emplace_back([&, kind] {
        started s = start_one(kind, token);
        std::lock_guard lock(m);
        servers.push_back(std::move(s));
      });
    }
    for (auto& t : starters) t.join();
    ASSERT_EQ(servers.size(), kinds.size());
    for (const auto& s : servers) ASSERT_TRUE(s.error.empty()) << s.error;

    // join() returns when a thread has cleared its tid, a moment before the kernel
    // reparents its children (where a PDEATHSIG would fire): wait until each thread
    // has left /proc, so that whatever its exit does has been done.
    for (const auto& s : servers) {
      const auto task = "/proc/self/task/" + std::to_string(s.thread_id);
      EXPECT_TRUE(harness_test::holds_within(harness_test::steady_clock::now() + 5s,
                                             [&] { return !std::filesystem::exists(task); }))
          << "thread " << s.thread_id << " did not go away";
    }

    // Alive and serving; stopped from another thread than the one that started them
    // (here: this one), each with the status of a SIGTERM it handled, not a kill.
    for (auto& s : servers) {
      EXPECT_TRUE(running(s)) << "a server died with the thread that started it";
      EXPECT_EQ(harness_test::tcp_request(s.port, "alive?").value_or("(no answer)"), "pong: alive?");
    }
    std::shuffle(servers.begin(), servers.end(), rng);
    for (auto& s : servers) EXPECT_EQ(stop(s), exit_status::exited_with(0));
  });
  harness_test::expect_gone(token, 2s, "after the last stop");
}

}  // namespace
