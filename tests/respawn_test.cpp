// Unit tests for the respawn loop (harness/detail/session/respawn_loop.hpp, harness/respawn.cpp):
// every branch of run_respawn_loop driven through GoogleMock mocks of its three seams
// (port_source, launcher, time_source) with a fake clock, the full-jitter backoff_delay,
// and the text forms of attempt (to_string, operator<<, format_attempts).
// No real time, no real processes: the whole program runs in milliseconds.
#include "harness/detail/session/respawn_loop.hpp"
#include "harness/error.hpp"
#include "harness/respawn.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace {

using harness::attempt;
using harness::errc;
using harness::failure;
using harness::make_failure;
using harness::respawn_policy;
using harness::detail::backoff_delay;
using harness::detail::run_respawn_loop;
using harness::detail::start_outcome;
using std::chrono::milliseconds;
using testing::InSequence;
using testing::Return;
using testing::StrictMock;
using namespace std::chrono_literals;

using port_result = harness::result<std::uint16_t>;
using time_point = std::chrono::steady_clock::time_point;

class mock_ports : public harness::detail::port_source {
 public:
  MOCK_METHOD(port_result, acquire, (), (override));
  MOCK_METHOD(void, release, (std::uint16_t port), (override));
};

class mock_launcher : public harness::detail::launcher {
 public:
  MOCK_METHOD(start_outcome, start, (std::uint16_t port), (override));
  MOCK_METHOD(void, discard, (), (override));
};

class mock_time : public harness::detail::time_source {
 public:
  MOCK_METHOD(time_point, now, (), (override));
  MOCK_METHOD(void, sleep_for, (milliseconds d), (override));
  MOCK_METHOD(double, uniform, (), (override));
};

start_outcome ready(std::uint16_t port = 0) {
  start_outcome o;
  o.kind = attempt::result::ready;
  o.port = port;
  return o;
}

start_outcome collision(std::string reason, std::uint16_t port = 0) {
  start_outcome o;
  o.kind = attempt::result::collision;
  o.port = port;
  o.reason = std::move(reason);
  return o;
}

start_outcome failed(std::string reason, failure error) {
  start_outcome o;
  o.kind = attempt::result::failed;
  o.reason = std::move(reason);
  o.error = std::move(error);
  return o;
}

// Strict mocks of all three seams plus a fake clock that only moves when a test
// moves it (typically inside a mocked start()).
class RespawnLoop : public testing::Test {
 protected:
  void SetUp() override {
    // now() is not part of any sequence: it reads the fake clock whenever asked.
    EXPECT_CALL(time, now()).WillRepeatedly([this] { return clock; });
  }

  // A start() action: the server takes `took` (fake time) and ends as `o`.
  auto takes(milliseconds took, start_outcome o) {
    return [this, took, o](std::uint16_t) {
      clock += took;
      return o;
    };
  }

  harness::result<std::uint16_t> run(const respawn_policy& p) {
    return run_respawn_loop(ports, launcher, time, p, log);
  }

  StrictMock<mock_ports> ports;
  StrictMock<mock_launcher> launcher;
  StrictMock<mock_time> time;
  time_point clock{std::chrono::seconds(1000)};
  std::vector<attempt> log;
};

// --- run_respawn_loop ------------------------------------------------------------------

TEST_F(RespawnLoop, ReadyOnFirstStart) {
  EXPECT_CALL(ports, acquire()).WillOnce(Return(port_result(20417)));
  EXPECT_CALL(launcher, start(20417)).WillOnce(takes(12ms, ready()));
  // StrictMock: any release(), discard(), sleep_for() or uniform() fails the test.

  auto r = run(respawn_policy{});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, 20417);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].port, 20417);
  EXPECT_EQ(log[0].outcome, attempt::result::ready);
  EXPECT_EQ(log[0].reason, "");
  EXPECT_EQ(log[0].duration, 12ms);
}

TEST_F(RespawnLoop, CollisionThenReadyInOrder) {
  const respawn_policy p{5, 100ms, 1000ms};
  const double u = 0.25;
  EXPECT_CALL(time, uniform()).WillOnce(Return(u));
  {
    InSequence order;
    EXPECT_CALL(ports, acquire()).WillOnce(Return(port_result(20417)));
    EXPECT_CALL(launcher, start(20417))
        .WillOnce(takes(3ms, collision("python: [Errno 98] Address already in use")));
    EXPECT_CALL(launcher, discard());
    EXPECT_CALL(ports, release(20417));
    // Retry 2 (next=2): ceiling = base = 100 ms, 0.25 of it.
    EXPECT_CALL(time, sleep_for(backoff_delay(p, 2, u)));
    EXPECT_CALL(ports, acquire()).WillOnce(Return(port_result(20418)));
    EXPECT_CALL(launcher, start(20418)).WillOnce(takes(40ms, ready()));
  }
  ASSERT_EQ(backoff_delay(p, 2, u), 25ms);  // the value the sequence expects, spelled out

  auto r = run(p);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, 20418);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].port, 20417);
  EXPECT_EQ(log[0].outcome, attempt::result::collision);
  EXPECT_EQ(log[0].reason, "python: [Errno 98] Address already in use");
  EXPECT_EQ(log[0].duration, 3ms);
  EXPECT_EQ(log[1].port, 20418);
  EXPECT_EQ(log[1].outcome, attempt::result::ready);
  EXPECT_EQ(log[1].reason, "");
  EXPECT_EQ(log[1].duration, 40ms);
}

TEST_F(RespawnLoop, FailedStartIsReturnedAsIs) {
  EXPECT_CALL(ports, acquire()).WillOnce(Return(port_result(20417)));
  EXPECT_CALL(launcher, start(20417))
      .WillOnce(takes(7ms, failed("exit code 1",
                                  make_failure(errc::exited_before_ready, "exit code 1\nstderr: boom"))));
  // No release, discard or sleep (StrictMock).

  auto r = run(respawn_policy{});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::exited_before_ready);
  EXPECT_EQ(r.error().detail, "exit code 1\nstderr: boom");
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].port, 20417);
  EXPECT_EQ(log[0].outcome, attempt::result::failed);
  EXPECT_EQ(log[0].reason, "exit code 1");
  EXPECT_EQ(log[0].duration, 7ms);
}

TEST_F(RespawnLoop, FailedStartKeepsSystemErrorCode) {
  EXPECT_CALL(ports, acquire()).WillOnce(Return(port_result(20417)));
  EXPECT_CALL(launcher, start(20417))
      .WillOnce(takes(0ms, failed("fork", harness::make_system_failure(EAGAIN, "fork"))));

  auto r = run(respawn_policy{});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, std::error_code(EAGAIN, std::system_category()));
  EXPECT_EQ(r.error().detail, "fork");
}

TEST_F(RespawnLoop, FailureAfterCollisionStopsTheLoop) {
  EXPECT_CALL(time, uniform()).WillOnce(Return(0.0));
  {
    InSequence order;
    EXPECT_CALL(ports, acquire()).WillOnce(Return(port_result(20417)));
    EXPECT_CALL(launcher, start(20417)).WillOnce(takes(1ms, collision("c: Address already in use")));
    EXPECT_CALL(launcher, discard());
    EXPECT_CALL(ports, release(20417));
    EXPECT_CALL(time, sleep_for(0ms));
    EXPECT_CALL(ports, acquire()).WillOnce(Return(port_result(20418)));
    EXPECT_CALL(launcher, start(20418))
        .WillOnce(takes(2ms, failed("timeout", make_failure(errc::ready_timeout, "after 2 ms"))));
  }
  auto r = run(respawn_policy{});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::ready_timeout);
  EXPECT_EQ(r.error().detail, "after 2 ms");
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[1].outcome, attempt::result::failed);
}

TEST_F(RespawnLoop, EveryStartCollides) {
  const respawn_policy p{5, 10ms, 500ms};
  std::vector<std::uint16_t> started, released;
  std::vector<milliseconds> slept;
  std::uint16_t next_port = 20417;
  EXPECT_CALL(ports, acquire()).Times(5).WillRepeatedly([&] { return port_result(next_port++); });
  EXPECT_CALL(launcher, start(testing::_)).Times(5).WillRepeatedly([&](std::uint16_t port) {
    started.push_back(port);
    clock += 2ms;
    return collision("go: listen tcp :" + std::to_string(port) + ": bind: address already in use");
  });
  EXPECT_CALL(launcher, discard()).Times(5);
  EXPECT_CALL(ports, release(testing::_)).Times(5).WillRepeatedly([&](std::uint16_t port) {
    released.push_back(port);
  });
  EXPECT_CALL(time, uniform()).Times(4).WillRepeatedly(Return(0.5));
  EXPECT_CALL(time, sleep_for(testing::_)).Times(4).WillRepeatedly([&](milliseconds d) {
    // The last start must not be followed by a sleep: every sleep comes before a start.
    EXPECT_LT(started.size(), 5u) << "slept after the last start";
    slept.push_back(d);
  });

  auto r = run(p);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::attempts_exhausted);
  EXPECT_NE(r.error().detail.find("5"), std::string::npos) << r.error().detail;
  EXPECT_EQ(started, (std::vector<std::uint16_t>{20417, 20418, 20419, 20420, 20421}));
  EXPECT_EQ(released, started);
  // Half of the ceilings 10, 20, 40, 80 ms (next = 2..5).
  EXPECT_EQ(slept, (std::vector<milliseconds>{5ms, 10ms, 20ms, 40ms}));
  ASSERT_EQ(log.size(), 5u);
  for (std::size_t i = 0; i < log.size(); ++i) {
    EXPECT_EQ(log[i].port, started[i]) << i;
    EXPECT_EQ(log[i].outcome, attempt::result::collision) << i;
    EXPECT_EQ(log[i].duration, 2ms) << i;
    EXPECT_NE(log[i].reason.find(std::to_string(started[i])), std::string::npos) << log[i].reason;
  }
}

TEST_F(RespawnLoop, SingleAttemptCollisionIsExhaustedWithoutSleeping) {
  EXPECT_CALL(ports, acquire()).WillOnce(Return(port_result(20417)));
  EXPECT_CALL(launcher, start(20417)).WillOnce(takes(1ms, collision("c: Address already in use")));
  EXPECT_CALL(launcher, discard());
  EXPECT_CALL(ports, release(20417));
  // No uniform(), no sleep_for() (StrictMock).

  auto r = run(respawn_policy{1, 10ms, 500ms});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::attempts_exhausted);
  EXPECT_EQ(log.size(), 1u);
}

TEST_F(RespawnLoop, AcquireFailsFirst) {
  EXPECT_CALL(ports, acquire())
      .WillOnce(Return(port_result(make_failure(errc::pool_exhausted, "20000-20009 all taken"))));
  // Nothing is started, released, discarded or slept (StrictMock).

  auto r = run(respawn_policy{});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::pool_exhausted);
  EXPECT_EQ(r.error().detail, "20000-20009 all taken");
  EXPECT_TRUE(log.empty());
}

TEST_F(RespawnLoop, AcquireFailsOnALaterAttempt) {
  EXPECT_CALL(time, uniform()).WillOnce(Return(0.0));
  {
    InSequence order;
    EXPECT_CALL(ports, acquire()).WillOnce(Return(port_result(20417)));
    EXPECT_CALL(launcher, start(20417)).WillOnce(takes(1ms, collision("node: EADDRINUSE")));
    EXPECT_CALL(launcher, discard());
    EXPECT_CALL(ports, release(20417));
    EXPECT_CALL(time, sleep_for(0ms));
    EXPECT_CALL(ports, acquire())
        .WillOnce(Return(port_result(make_failure(errc::pool_exhausted, "no port left"))));
    // No second start (StrictMock + the sequence).
  }
  auto r = run(respawn_policy{});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::pool_exhausted);
  EXPECT_EQ(r.error().detail, "no port left");
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].outcome, attempt::result::collision);
}

TEST_F(RespawnLoop, AttemptsBelowOneIsInvalidAndCallsNothing) {
  // A time mock without the fixture's now() expectation: like the strict port source
  // and launcher (which expect nothing here), any call on it fails the test.
  StrictMock<mock_time> untouched;
  for (int attempts : {0, -1, INT_MIN}) {
    auto r = run_respawn_loop(ports, launcher, untouched, respawn_policy{attempts, 10ms, 500ms}, log);
    ASSERT_FALSE(r) << attempts;
    EXPECT_EQ(r.error().code, errc::invalid_argument) << attempts;
  }
  EXPECT_TRUE(log.empty());
}

TEST_F(RespawnLoop, AnnouncedPortIsLoggedAndReturned) {
  EXPECT_CALL(ports, acquire()).WillOnce(Return(port_result(20417)));
  EXPECT_CALL(launcher, start(20417)).WillOnce(takes(5ms, ready(31000)));

  auto r = run(respawn_policy{});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, 31000);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].port, 31000);
}

TEST_F(RespawnLoop, AnnouncedPortOnCollisionIsLoggedButTheAcquiredOneReleased) {
  EXPECT_CALL(time, uniform()).WillOnce(Return(0.0));
  {
    InSequence order;
    EXPECT_CALL(ports, acquire()).WillOnce(Return(port_result(20417)));
    EXPECT_CALL(launcher, start(20417)).WillOnce(takes(1ms, collision("rust: AddrInUse", 31000)));
    EXPECT_CALL(launcher, discard());
    EXPECT_CALL(ports, release(20417));  // what the port source handed out, not 31000
    EXPECT_CALL(time, sleep_for(0ms));
    EXPECT_CALL(ports, acquire()).WillOnce(Return(port_result(20418)));
    EXPECT_CALL(launcher, start(20418)).WillOnce(takes(1ms, ready(31001)));
  }
  auto r = run(respawn_policy{});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, 31001);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].port, 31000);
  EXPECT_EQ(log[1].port, 31001);
}

TEST_F(RespawnLoop, DurationsComeFromTheClockAndExcludeTheBackoff) {
  EXPECT_CALL(time, uniform()).WillOnce(Return(0.5));
  EXPECT_CALL(ports, acquire())
      .WillOnce(Return(port_result(20417)))
      .WillOnce(Return(port_result(20418)));
  EXPECT_CALL(launcher, start(20417)).WillOnce([this](std::uint16_t) {
    clock += 1500us;  // truncated to whole milliseconds in the log
    return collision("c: Address already in use");
  });
  EXPECT_CALL(launcher, discard());
  EXPECT_CALL(ports, release(20417));
  EXPECT_CALL(time, sleep_for(5ms)).WillOnce([this](milliseconds d) { clock += d + 1h; });
  EXPECT_CALL(launcher, start(20418)).WillOnce(takes(250ms, ready()));

  auto r = run(respawn_policy{5, 10ms, 500ms});
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].duration, 1ms);
  EXPECT_EQ(log[1].duration, 250ms);  // the hour spent "sleeping" is not part of the start
}

TEST(SystemTime, UniformIsInUnitIntervalAndClockIsMonotonic) {
  auto& t = harness::detail::system_time();
  EXPECT_EQ(&t, &harness::detail::system_time());
  auto before = t.now();
  for (int i = 0; i < 1000; ++i) {
    const double u = t.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
  EXPECT_GE(t.now(), before);
}

// --- backoff_delay -------------------------------------------------------------------

TEST(BackoffDelay, FullJitterBetweenZeroAndTheCeiling) {
  const respawn_policy p{5, 100ms, 10'000ms};
  EXPECT_EQ(backoff_delay(p, 2, 0.0), 0ms);
  EXPECT_EQ(backoff_delay(p, 2, 0.5), 50ms);
  EXPECT_EQ(backoff_delay(p, 2, std::nextafter(1.0, 0.0)), 99ms);  // just below the ceiling
  EXPECT_EQ(backoff_delay(p, 2, 0.999), 99ms);
  EXPECT_EQ(backoff_delay(p, 3, std::nextafter(1.0, 0.0)), 199ms);
}

TEST(BackoffDelay, CeilingDoublesPerRetryFromBase) {
  const respawn_policy p{10, 10ms, 100'000ms};
  const double top = std::nextafter(1.0, 0.0);
  EXPECT_EQ(backoff_delay(p, 2, 0.5), 5ms);    // base
  EXPECT_EQ(backoff_delay(p, 3, 0.5), 10ms);   // 2 * base
  EXPECT_EQ(backoff_delay(p, 4, 0.5), 20ms);   // 4 * base
  EXPECT_EQ(backoff_delay(p, 5, 0.5), 40ms);   // 8 * base
  EXPECT_EQ(backoff_delay(p, 2, top), 9ms);
  EXPECT_EQ(backoff_delay(p, 3, top), 19ms);
  EXPECT_EQ(backoff_delay(p, 4, top), 39ms);
}

TEST(BackoffDelay, CappedAtBackoffCap) {
  const respawn_policy p{10, 10ms, 50ms};
  EXPECT_EQ(backoff_delay(p, 4, 0.5), 20ms);  // ceiling 40 < cap
  EXPECT_EQ(backoff_delay(p, 5, 0.5), 25ms);  // ceiling 80 -> 50
  EXPECT_EQ(backoff_delay(p, 9, 0.5), 25ms);
  EXPECT_EQ(backoff_delay(p, 9, 1.0), 50ms);
  EXPECT_EQ(backoff_delay(p, 9, std::nextafter(1.0, 0.0)), 49ms);
}

TEST(BackoffDelay, NeverNegativeForAnyNext) {
  const respawn_policy p{};
  for (int next : {INT_MIN + 2, -100, -1, 0, 1, 2, 3, 10, 31, 32, 33, 64, 1000, INT_MAX}) {
    for (double u : {0.0, 0.3, 0.999999}) {
      const auto d = backoff_delay(p, next, u);
      EXPECT_GE(d, 0ms) << "next=" << next << " u=" << u;
      EXPECT_LE(d, p.backoff_cap) << "next=" << next << " u=" << u;
    }
  }
  // Before the first retry (next <= 2) the ceiling is the base.
  EXPECT_EQ(backoff_delay(p, 1, 0.5), 5ms);
  EXPECT_EQ(backoff_delay(p, 0, 0.5), 5ms);
}

TEST(BackoffDelay, HugeNextNeitherOverflowsNorExceedsTheCap) {
  const double top = std::nextafter(1.0, 0.0);
  const respawn_policy p{5, 10ms, 500ms};
  for (int next : {31, 32, 33, 62, 63, 64, 65, 1'000'000, INT_MAX}) {
    EXPECT_EQ(backoff_delay(p, next, 1.0), 500ms) << next;
    EXPECT_EQ(backoff_delay(p, next, top), 499ms) << next;
    EXPECT_EQ(backoff_delay(p, next, 0.5), 250ms) << next;
  }
  // A long cap: base * 2^k must still not overflow on the way to it.
  const respawn_policy big{5, 1000ms, std::chrono::hours(24)};
  EXPECT_EQ(backoff_delay(big, INT_MAX, 1.0), std::chrono::hours(24));
  EXPECT_EQ(backoff_delay(big, 60, 0.5), std::chrono::hours(12));
}

TEST(BackoffDelay, OutOfRangeUniformIsClamped) {
  const respawn_policy p{5, 100ms, 1000ms};
  EXPECT_EQ(backoff_delay(p, 2, -0.5), 0ms);
  EXPECT_EQ(backoff_delay(p, 2, -1e300), 0ms);
  EXPECT_EQ(backoff_delay(p, 2, 1.0), 100ms);
  EXPECT_EQ(backoff_delay(p, 2, 1.5), 100ms);
  EXPECT_EQ(backoff_delay(p, 2, 1e300), 100ms);
  EXPECT_EQ(backoff_delay(p, 9, 7.0), 1000ms);
}

// --- text forms ----------------------------------------------------------------------

TEST(AttemptText, ResultNames) {
  EXPECT_STREQ(harness::to_string(attempt::result::ready), "ready");
  EXPECT_STREQ(harness::to_string(attempt::result::collision), "collision");
  EXPECT_STREQ(harness::to_string(attempt::result::failed), "failed");
}

TEST(AttemptText, ToStringAsDocumented) {
  EXPECT_EQ(harness::to_string(attempt{20417, attempt::result::ready, "", 12ms}),
            "port 20417: ready after 12 ms");
  EXPECT_EQ(harness::to_string(attempt{20418, attempt::result::collision,
                                       "python: [Errno 98] Address already in use", 3ms}),
            "port 20418: collision (python: [Errno 98] Address already in use) after 3 ms");
  EXPECT_EQ(harness::to_string(attempt{20419, attempt::result::failed, "exit code 2", 0ms}),
            "port 20419: failed (exit code 2) after 0 ms");
  EXPECT_EQ(harness::to_string(attempt{}), "port 0: failed after 0 ms");
}

TEST(AttemptText, StreamOperatorMatchesToString) {
  const attempt a{20418, attempt::result::collision, "go: bind: address already in use", 3ms};
  std::ostringstream os;
  os << a << "|" << attempt{1, attempt::result::ready, "", 1234ms};
  EXPECT_EQ(os.str(),
            "port 20418: collision (go: bind: address already in use) after 3 ms|"
            "port 1: ready after 1234 ms");
}

TEST(AttemptText, FormatAttemptsNumbersOneLineEach) {
  const std::vector<attempt> attempts{
      {20417, attempt::result::collision, "node: EADDRINUSE", 3ms},
      {20418, attempt::result::ready, "", 12ms},
  };
  EXPECT_EQ(harness::format_attempts(attempts),
            "  1. port 20417: collision (node: EADDRINUSE) after 3 ms\n"
            "  2. port 20418: ready after 12 ms\n");
  EXPECT_EQ(harness::format_attempts(attempts, "    "),
            "    1. port 20417: collision (node: EADDRINUSE) after 3 ms\n"
            "    2. port 20418: ready after 12 ms\n");
  EXPECT_EQ(harness::format_attempts({}), "");
}

TEST(AttemptText, FormatAttemptsCountsPastNine) {
  std::vector<attempt> attempts(11, attempt{20000, attempt::result::collision, "c", 1ms});
  const std::string text = harness::format_attempts(attempts);
  EXPECT_NE(text.find("\n  10. port 20000"), std::string::npos) << text;
  EXPECT_NE(text.find("\n  11. port 20000"), std::string::npos) << text;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 11);
}

}  // namespace
