// The readiness engine and the event intake, without processes: a fake world with a
// fake clock stands in for the server, its tree, the listener on the port and the
// probes; events are fed as the I/O thread would feed them.
#include "harness/detail/session/readiness_engine.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "harness/detail/session/start_events.hpp"
#include "harness/detail/text/regex.hpp"
#include "harness/timeouts.hpp"

namespace {

using namespace std::chrono_literals;
using harness::errc;
using harness::exit_status;
using harness::port_mode;
using harness::probe;
using harness::timeouts::scaled;
using harness::detail::readiness_engine;
using harness::detail::readiness_setup;
using harness::detail::readiness_world;
using harness::detail::start_events;
using harness::detail::start_judge::listener;
using attempt_result = harness::attempt::result;
using clock_type = std::chrono::steady_clock;

// A world whose clock moves only when the engine sleeps, and whose server, listener
// and probes are what the test says.
class fake_world final : public readiness_world {
 public:
  clock_type::time_point t = clock_type::time_point{} + 1h;
  std::vector<clock_type::duration> sleeps;  // how long each sleep was
  std::function<void(int round)> on_sleep;   // events arriving while the engine sleeps
  bool running = true;
  exit_status status = exit_status::exited_with(1);
  std::vector<int> tree_pids{100};
  listener on_port = listener::ours;
  std::function<probe_try(const probe&, std::uint16_t)> probe_fn = [](const probe&, std::uint16_t) {
    return probe_try{true, {}, {}};
  };
  std::vector<clock_type::time_point> probe_times;
  std::optional<harness::failure> thrown;

  clock_type::time_point now() override { return t; }
  // An event delivered by on_sleep wakes the engine 1 ms into its sleep, as the real
  // condition variable would; otherwise the sleep lasts until `until`.
  void sleep_until(start_events& ev, std::uint64_t seen, clock_type::time_point until) override {
    if (on_sleep) on_sleep(static_cast<int>(sleeps.size()) + 1);
    bool woken;
    {
      std::lock_guard lock(ev.m);
      woken = ev.version != seen;
    }
    const auto wake = woken ? std::min(until, t + 1ms) : until;
    sleeps.push_back(wake - t);
    t = wake;
  }
  bool server_running() override { return running; }
  exit_status settle_exit() override { return status; }
  std::vector<int> tree() override { return tree_pids; }
  listener who_listens(std::uint16_t, bool, std::string& holders) override {
    if (on_port == listener::foreign || on_port == listener::shared) holders = "port 21000 is held by pid 9 (nc)";
    return on_port;
  }
  int sender_in_tree(int pid) override { return pid == 100 ? 1 : 0; }
  std::optional<harness::failure> callback_failure() override { return thrown; }
  probe_try try_probe(const probe& p, std::uint16_t port, std::chrono::milliseconds, const std::string&) override {
    probe_times.push_back(t);
    return probe_fn(p, port);
  }
  harness::failure report(std::error_code code, const std::string& reason, bool) override {
    return harness::failure{code, reason};
  }
};

struct engine_case {
  harness::ready_options ready;
  port_mode mode = port_mode::lease;
  start_events ev;
  fake_world world;

  harness::detail::start_outcome run() {
    ev.log_hit.assign(ready.probes.size(), false);
    readiness_engine engine({.ready = &ready, .mode = mode, .port = 21000}, ev, world);
    return engine.wait(world.t);
  }
};

TEST(ReadinessEngine, LeaseIsReadyWhenTheProbePassesAndTheListenerIsOurs) {
  engine_case c;
  c.ready.probes = {probe::tcp()};
  auto out = c.run();
  EXPECT_EQ(out.kind, attempt_result::ready);
  EXPECT_TRUE(c.world.sleeps.empty()) << "ready at once, no wait";
}

TEST(ReadinessEngine, TcpProbesBackOffFromPollInitialToTheCapUntilTheDeadline) {
  engine_case c;
  c.ready.probes = {probe::tcp()};
  c.ready.timeout = 200ms;
  c.ready.poll_initial = 1ms;
  c.ready.poll_cap = 16ms;
  c.world.probe_fn = [](const probe&, std::uint16_t) {
    return readiness_world::probe_try{false, "connection refused", {}};
  };
  auto out = c.run();
  ASSERT_EQ(out.kind, attempt_result::failed);
  EXPECT_EQ(out.error.code, errc::ready_timeout);
  EXPECT_NE(out.error.detail.find("still waiting for tcp"), std::string::npos) << out.error.detail;
  EXPECT_NE(out.error.detail.find("connection refused"), std::string::npos) << out.error.detail;
  ASSERT_GE(c.world.sleeps.size(), 6u);
  const std::vector<clock_type::duration> first{1ms, 2ms, 4ms, 8ms, 16ms, 16ms};
  for (std::size_t i = 0; i < first.size(); ++i) EXPECT_EQ(c.world.sleeps[i], first[i]) << "sleep " << i;
}

TEST(ReadinessEngine, AnAnnouncedPortMakesAnnounceModeReadyWithThatPort) {
  engine_case c;
  c.mode = port_mode::announce;
  c.ready.probes = {};
  // The server announces while the engine waits (the I/O thread feeds the ready fd).
  c.world.on_sleep = [&](int) {
    std::lock_guard lock(c.ev.m);
    harness::detail::take_ready_fd_bytes(c.ev, "PORT=4711\n");
    ++c.ev.version;
  };
  auto out = c.run();
  EXPECT_EQ(out.kind, attempt_result::ready);
  EXPECT_EQ(out.port, 4711);
  ASSERT_EQ(c.world.sleeps.size(), 1u);
  EXPECT_EQ(c.world.sleeps[0], 1ms) << "woken by the announcement, not by the deadline";
}

TEST(ReadinessEngine, AThrowFromOnLineWakesTheWaitAtOnce) {
  // Announce mode with nothing to poll: the wait sleeps on events only.
  engine_case c;
  c.mode = port_mode::announce;
  c.ready.timeout = 30s;
  c.world.on_sleep = [&](int) {
    std::lock_guard lock(c.ev.m);
    c.ev.thrown = harness::failure{harness::make_error_code(errc::callback_threw), "on_line threw: boom"};
    ++c.ev.version;
  };
  auto out = c.run();
  ASSERT_EQ(out.kind, attempt_result::failed);
  EXPECT_EQ(out.error.code, errc::callback_threw);
  EXPECT_EQ(out.error.detail, "on_line threw: boom");
  ASSERT_EQ(c.world.sleeps.size(), 1u);
  EXPECT_EQ(c.world.sleeps[0], 1ms) << "waited for the deadline instead";
}

TEST(ReadinessEngine, NotifyFromOutsideTheTreeIsIgnored) {
  engine_case c;
  c.mode = port_mode::announce;
  c.ready.timeout = 50ms;
  c.world.on_sleep = [&](int) {
    std::lock_guard lock(c.ev.m);
    // pid 100 is the server; pid 7 is not in the tree (the fake says so).
    c.ev.notify_pending.push_back({100, -2, true, "READY=1\nPORT=5150"});
    c.ev.notify_pending.push_back({7, -2, true, "READY=1\nPORT=9"});  // last: it would win
    ++c.ev.version;
  };
  auto out = c.run();
  EXPECT_EQ(out.kind, attempt_result::ready);
  EXPECT_EQ(out.port, 5150) << "the stranger's PORT=9 was taken";
}

TEST(ReadinessEngine, AnExitIsJudgedAtOnce) {
  engine_case c;
  c.ready.probes = {probe::tcp()};
  c.world.running = false;
  c.world.on_port = listener::nobody;
  c.world.status = exit_status::exited_with(2);
  c.world.tree_pids = {100, 101};
  auto out = c.run();
  ASSERT_EQ(out.kind, attempt_result::failed);
  EXPECT_EQ(out.error.code, errc::exited_before_ready);
  EXPECT_EQ(out.error.detail, "exited with status 2; it left 1 process running (pid 101)");
  EXPECT_TRUE(c.world.probe_times.empty()) << "probed a server that had exited";
}

TEST(ReadinessEngine, AStrangerOnTheLeasedPortIsACollision) {
  engine_case c;
  c.ready.probes = {probe::tcp()};
  c.world.on_port = listener::foreign;
  auto out = c.run();
  ASSERT_EQ(out.kind, attempt_result::collision);
  EXPECT_NE(out.reason.find("is not our server"), std::string::npos) << out.reason;
}

// memcached's quiet case: its 0.0.0.0 bind fails next to a stranger on 127.0.0.2 and its
// [::] bind succeeds, so the probe on 127.0.0.1 is refused and no line comes. The
// stranger is seen at the next poll, not at the deadline.
TEST(ReadinessEngine, AStrangerNextToOurListenerIsACollisionAtTheNextPoll) {
  engine_case c;
  c.ready.probes = {probe::tcp()};
  c.ready.timeout = 30s;
  c.world.on_port = listener::nobody;
  c.world.probe_fn = [](const probe&, std::uint16_t) {
    return readiness_world::probe_try{false, "connection refused", {}};
  };
  c.world.on_sleep = [&](int round) {
    if (round == 2) c.world.on_port = listener::shared;
  };
  auto out = c.run();
  ASSERT_EQ(out.kind, attempt_result::collision) << out.reason;
  EXPECT_NE(out.reason.find("not on all its addresses"), std::string::npos) << out.reason;
  EXPECT_EQ(c.world.sleeps.size(), 2u);
}

TEST(ReadinessEngine, AnnounceModeWaitsForTheServersListenerOnTheAnnouncedPort) {
  engine_case c;
  c.mode = port_mode::announce;
  c.ready.probes = {};
  c.world.on_port = listener::nobody;
  {
    std::lock_guard lock(c.ev.m);
    harness::detail::take_ready_fd_bytes(c.ev, "PORT=21500\n");
  }
  c.world.on_sleep = [&](int round) {
    if (round == 3) c.world.on_port = listener::ours;
  };
  auto out = c.run();
  ASSERT_EQ(out.kind, attempt_result::ready) << out.reason;
  EXPECT_EQ(out.port, 21500);
  EXPECT_EQ(c.world.sleeps.size(), 3u);
}

TEST(ReadinessEngine, AnnounceModeRefusesAPortAStrangerListensOn) {
  engine_case c;
  c.mode = port_mode::announce;
  c.ready.probes = {};
  c.world.on_port = listener::foreign;
  {
    std::lock_guard lock(c.ev.m);
    harness::detail::take_ready_fd_bytes(c.ev, "PORT=21500\n");
  }
  auto out = c.run();
  ASSERT_EQ(out.kind, attempt_result::failed);
  EXPECT_EQ(out.error.code, errc::bad_announcement);
  EXPECT_NE(out.error.detail.find("announced port 21500, but port 21000 is held by pid 9"), std::string::npos)
      << out.error.detail;
}

// A slow start says where it stands after progress_after, then every progress_every.
TEST(ReadinessEngine, ASlowStartReportsProgressWithWhatItWaitsFor) {
  engine_case c;
  c.ready.probes = {probe::tcp()};
  c.ready.timeout = 13s;
  c.ready.poll_cap = 1s;
  std::vector<harness::start_progress> seen;
  c.ready.on_progress = [&](const harness::start_progress& p) { seen.push_back(p); };
  c.world.probe_fn = [](const probe&, std::uint16_t) {
    return readiness_world::probe_try{false, "connection refused", {}};
  };
  auto out = c.run();
  ASSERT_EQ(out.kind, attempt_result::failed);
  // At 2, 7 and 12 s of 13, each scaled by HARNESS_TIMEOUT_SCALE like the deadline.
  const auto after = scaled(2s);
  const auto every = scaled(5s);
  const auto deadline = scaled(13s);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].elapsed, after);
  EXPECT_EQ(seen[0].left, deadline - after);
  EXPECT_EQ(seen[1].elapsed, after + every);
  EXPECT_EQ(seen[2].elapsed, after + 2 * every);
  EXPECT_EQ(seen[2].left, deadline - after - 2 * every);
  EXPECT_NE(seen[0].waiting_for.find("tcp"), std::string::npos) << seen[0].waiting_for;
  EXPECT_NE(seen[0].waiting_for.find("connection refused"), std::string::npos) << seen[0].waiting_for;
}

TEST(ReadinessEngine, AnEventDrivenWaitStillReportsProgress) {
  // Announce mode with nothing to poll: without progress lines the wait would sleep
  // until the deadline in one go.
  engine_case c;
  c.mode = port_mode::announce;
  c.ready.timeout = 30s;
  std::vector<harness::start_progress> seen;
  c.ready.on_progress = [&](const harness::start_progress& p) { seen.push_back(p); };
  auto out = c.run();
  ASSERT_EQ(out.kind, attempt_result::failed);
  ASSERT_EQ(seen.size(), 6u);  // 2, 7, 12, 17, 22, 27 s, scaled
  EXPECT_EQ(seen.back().elapsed, scaled(2s) + 5 * scaled(5s));
  EXPECT_NE(seen[0].waiting_for.find("the port announcement"), std::string::npos) << seen[0].waiting_for;
}

TEST(ReadinessEngine, LeaseWaitsForItsOwnListenerAfterTheProbePasses) {
  engine_case c;
  c.ready.probes = {probe::tcp()};
  c.world.on_port = listener::nobody;
  c.world.on_sleep = [&](int round) {
    if (round == 3) c.world.on_port = listener::ours;
  };
  auto out = c.run();
  EXPECT_EQ(out.kind, attempt_result::ready);
  EXPECT_EQ(c.world.sleeps.size(), 3u);
}

TEST(ReadinessEngine, AFailPatternFailsAtOnce) {
  engine_case c;
  c.ready.probes = {probe::tcp()};
  c.world.probe_fn = [](const probe&, std::uint16_t) { return readiness_world::probe_try{false, "x", {}}; };
  harness::detail::matchers m;
  m.fail_on.push_back(harness::detail::regex::compile("^FATAL").value());
  c.world.on_sleep = [&](int) {
    std::lock_guard lock(c.ev.m);
    if (harness::detail::take_line(c.ev, m, "FATAL: no config", 21000)) ++c.ev.version;
  };
  auto out = c.run();
  ASSERT_EQ(out.kind, attempt_result::failed);
  EXPECT_EQ(out.error.code, errc::fail_pattern_matched);
  EXPECT_EQ(out.error.detail, "FATAL: no config");
}

TEST(ReadinessEngine, ACallbackThatThrewFailsTheStartTyped) {
  engine_case c;
  c.ready.probes = {probe::tcp()};
  c.world.thrown = harness::failure{harness::make_error_code(errc::callback_threw), "on_line threw: boom"};
  auto out = c.run();
  ASSERT_EQ(out.kind, attempt_result::failed);
  EXPECT_EQ(out.error.code, errc::callback_threw);
}

TEST(ReadinessEngine, AFatalProbeResultEndsTheStart) {
  engine_case c;
  c.ready.probes = {probe::tcp()};
  c.world.probe_fn = [](const probe&, std::uint16_t) {
    return readiness_world::probe_try{false, {}, std::pair{harness::make_error_code(errc::probe_failed),
                                                           std::string("probe \"db\" failed: no schema")}};
  };
  auto out = c.run();
  ASSERT_EQ(out.kind, attempt_result::failed);
  EXPECT_EQ(out.error.code, errc::probe_failed);
  EXPECT_EQ(out.error.detail, "probe \"db\" failed: no schema");
}

// --- the event intake ------------------------------------------------------------------

TEST(StartEvents, AnnouncementLinesAndTheirMistakes) {
  start_events ev;
  std::lock_guard lock(ev.m);
  EXPECT_FALSE(harness::detail::take_ready_fd_bytes(ev, "PORT=80"));  // no newline yet
  EXPECT_FALSE(ev.announced);
  EXPECT_TRUE(harness::detail::take_ready_fd_bytes(ev, "80\n"));
  EXPECT_EQ(ev.announced, 8080);
  EXPECT_TRUE(ev.ready_fd_signal);

  start_events bad;
  std::lock_guard lock2(bad.m);
  harness::detail::take_ready_fd_bytes(bad, "PORT=70000\n");
  ASSERT_TRUE(bad.bad);
  EXPECT_EQ(bad.bad->code, errc::port_out_of_range);

  start_events junk;
  std::lock_guard lock3(junk.m);
  harness::detail::take_ready_fd_bytes(junk, "hello\n");
  ASSERT_TRUE(junk.bad);
  EXPECT_EQ(junk.bad->code, errc::bad_announcement);

  start_events longline;
  std::lock_guard lock4(longline.m);
  harness::detail::take_ready_fd_bytes(longline, std::string(300, 'x'));
  ASSERT_TRUE(longline.bad);
  EXPECT_NE(longline.bad->detail.find("longer than 256 bytes"), std::string::npos);

  // The same when the long line arrives whole, newline included, in one read: a port
  // padded with 300 zeros is not taken.
  start_events whole;
  std::lock_guard lock6(whole.m);
  harness::detail::take_ready_fd_bytes(whole, "PORT=" + std::string(300, '0') + "80\n");
  ASSERT_TRUE(whole.bad);
  EXPECT_NE(whole.bad->detail.find("longer than 256 bytes"), std::string::npos);
  EXPECT_FALSE(whole.announced);

  start_events notify;
  std::lock_guard lock5(notify.m);
  EXPECT_FALSE(harness::detail::take_announcement_line(notify, "STATUS=warming up", true));
  EXPECT_FALSE(notify.bad) << "other sd_notify fields are not mistakes";
  EXPECT_TRUE(harness::detail::take_announcement_line(notify, "READY=1", true));
  EXPECT_TRUE(notify.notify_signal);
}

TEST(StartEvents, OutputLinesFeedLogProbesPortFromAndTheCollisionLine) {
  start_events ev;
  ev.log_hit.assign(1, false);
  harness::detail::matchers m;
  m.log_probes.emplace_back(0, harness::detail::regex::compile("Ready to accept").value());
  m.port_from = harness::detail::regex::compile(R"(port (\d+))").value();
  m.classifier = harness::collision_classifier::make().value();
  std::lock_guard lock(ev.m);
  EXPECT_FALSE(harness::detail::take_line(ev, m, "starting", 21000));
  EXPECT_TRUE(harness::detail::take_line(ev, m, "* Ready to accept connections", 21000));
  EXPECT_TRUE(ev.log_hit[0]);
  EXPECT_TRUE(harness::detail::take_line(ev, m, "Serving on port 9001", 21000));
  EXPECT_EQ(ev.announced, 9001);
  // A port-in-use line about another port is not ours; about ours it is.
  harness::detail::take_line(ev, m, "failed to listen on UDP port 11211: Address already in use", 21000);
  EXPECT_FALSE(ev.collision);
  harness::detail::take_line(ev, m, "bind() to 127.0.0.1:21000 failed (98: Address already in use)", 21000);
  ASSERT_TRUE(ev.collision);
  EXPECT_NE(ev.collision->find("21000"), std::string::npos);
}

}  // namespace
