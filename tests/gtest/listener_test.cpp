// The pure parts of the listener (harness/gtest/listener.hpp): the property names for
// one and several servers, and the report printed for a failed test. The listener's
// behaviour inside a real test run (what it prints, what lands in the XML report) is
// checked end to end by e2e_test.cpp.
#include "harness/gtest/listener.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace {

using harness::session_info;
using harness::gtest::format_report;
using harness::gtest::test_properties;
using testing::ElementsAre;
using testing::HasSubstr;
using testing::Pair;

session_info server(std::string name, std::uint16_t port, int attempts, int ready_ms) {
  session_info s;
  s.name = std::move(name);
  s.command = "/bin/" + s.name + " --port=" + std::to_string(port);
  s.mode = harness::port_mode::lease;
  s.endpoint = "127.0.0.1:" + std::to_string(port);
  s.port = port;
  s.pid = 4242;
  s.running = true;
  for (int i = 1; i <= attempts; ++i) {
    s.attempts.push_back({.port = static_cast<std::uint16_t>(port - attempts + i),
                          .outcome = i == attempts ? harness::attempt::result::ready
                                                   : harness::attempt::result::collision,
                          .reason = i == attempts ? "" : "Address already in use",
                          .duration = std::chrono::milliseconds(2)});
  }
  s.ready_time = std::chrono::milliseconds(ready_ms);
  s.log = "/tmp/logs/" + s.name + ".log";
  return s;
}

TEST(ListenerProperties, OneServerIsUnprefixed) {
  EXPECT_THAT(test_properties({server("redis", 20417, 2, 35)}),
              ElementsAre(Pair("harness.port", "20417"), Pair("harness.attempts", "2"),
                          Pair("harness.ready_ms", "35"), Pair("harness.log", "/tmp/logs/redis.log")));
}

TEST(ListenerProperties, SeveralServersArePrefixedByName) {
  auto props = test_properties({server("redis", 20417, 1, 3), server("api", 20500, 1, 9)});
  EXPECT_THAT(props, ElementsAre(Pair("harness.redis.port", "20417"), Pair("harness.redis.attempts", "1"),
                                 Pair("harness.redis.ready_ms", "3"), Pair("harness.redis.log", "/tmp/logs/redis.log"),
                                 Pair("harness.api.port", "20500"), Pair("harness.api.attempts", "1"),
                                 Pair("harness.api.ready_ms", "9"), Pair("harness.api.log", "/tmp/logs/api.log")));
}

TEST(ListenerProperties, RepeatedNamesAreNumberedAndEmptyNamesNamed) {
  auto props = test_properties({server("db", 1001, 1, 1), server("db", 1002, 1, 1), server("", 1003, 1, 1),
                                server("db", 1004, 1, 1)});
  ASSERT_EQ(props.size(), 16u);
  EXPECT_THAT(props[0], Pair("harness.db.port", "1001"));
  EXPECT_THAT(props[4], Pair("harness.db#2.port", "1002"));
  EXPECT_THAT(props[8], Pair("harness.server.port", "1003"));
  EXPECT_THAT(props[12], Pair("harness.db#3.port", "1004"));
}

TEST(ListenerProperties, NoServerNoProperty) { EXPECT_TRUE(test_properties({}).empty()); }

TEST(ListenerReport, NothingWithoutServers) { EXPECT_EQ(format_report("Suite.Test", {}), ""); }

TEST(ListenerReport, SaysEverythingAboutEachServer) {
  auto s = server("redis", 20419, 3, 35);
  s.output_tail = {{harness::stream::out, "starting"},
                   {harness::stream::err, "Address already in use"},
                   {harness::stream::err, "GET /health 404"},
                   {harness::stream::err, "GET /health 404"},
                   {harness::stream::err, "GET /health 404"},
                   {harness::stream::out, "ready"}};
  const auto text = format_report("Suite.Test", {s});
  EXPECT_EQ(text,
            "[ HARNESS  ] Suite.Test failed; 1 server was live during the test:\n"
            "[ HARNESS  ] 1. redis (running)\n"
            "      command:  /bin/redis --port=20419\n"
            "      endpoint: 127.0.0.1:20419 (lease mode), pid 4242\n"
            "      ready:    in 35 ms, 3 attempts\n" +
                harness::format_attempts(s.attempts, "        ") +
                "      output:   last 4 lines of stdout and stderr\n"
                "        out| starting\n"
                "        err| Address already in use\n"
                "        err| [x3] GET /health 404\n"
                "        out| ready\n"
                "      log:      /tmp/logs/redis.log\n");
}

TEST(ListenerReport, LimitsTheTailAndShowsExitedServers) {
  auto a = server("api", 20500, 1, 4);
  a.running = false;
  a.status = harness::exit_status::killed_by(9);
  a.output_tail = {{harness::stream::err, "one"}, {harness::stream::err, "two"}, {harness::stream::out, "three"}};
  auto b = server("quiet", 20501, 1, 1);
  b.log.clear();
  const auto text = format_report("S.T", {a, b}, 2);
  EXPECT_THAT(text, HasSubstr("S.T failed; 2 servers were live during the test:\n"));
  EXPECT_THAT(text, HasSubstr("[ HARNESS  ] 1. api (killed by signal 9 (SIGKILL))\n"));
  EXPECT_THAT(text, HasSubstr("output:   last 2 lines of stdout and stderr\n        err| two\n        out| three\n"));
  EXPECT_EQ(text.find("| one"), std::string::npos) << text;
  EXPECT_THAT(text, HasSubstr("[ HARNESS  ] 2. quiet (running)\n"));
  EXPECT_THAT(text, HasSubstr("output:   (nothing on stdout or stderr)\n      log:      (none)\n"));
}

TEST(Listener, InstallIsIdempotent) {
  auto& first = harness::gtest::install_listener({.print_on_failure = false});
  auto& second = harness::gtest::install_listener();
  EXPECT_EQ(&first, &second);
  EXPECT_FALSE(second.options().print_on_failure);
}

}  // namespace
