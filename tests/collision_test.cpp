// Unit tests for the "address already in use" classifier (harness/collision.hpp):
// real port-in-use lines as the common ecosystems print them (each must get the label
// the built-in table gives), the table's precedence where a line carries several
// ecosystems' markers, lines that must not classify (normal startup lines, other bind
// errors), extra patterns, copies/moves, the 4096-byte windows and the built-in table.
#include "harness/collision.hpp"
#include "harness/detail/text/regex.hpp"
#include "harness/error.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace {

using harness::collision_classifier;
using harness::collision_pattern;
using harness::errc;

const collision_classifier& builtin_classifier() {
  static const collision_classifier c = collision_classifier::make().value();
  return c;
}

// Every line must be classified as `label`.
void expect_label(const std::string& label, const std::vector<std::string>& lines) {
  for (const auto& line : lines) {
    EXPECT_EQ(builtin_classifier().classify(line), std::optional<std::string>(label)) << "line: " << line;
  }
}

// None of the lines may be classified.
void expect_none(const std::vector<std::string>& lines) {
  for (const auto& line : lines) {
    const auto got = builtin_classifier().classify(line);
    EXPECT_EQ(got, std::nullopt) << "line: " << line << "\nclassified as: " << got.value_or("");
  }
}

// --- each ecosystem's real messages ----------------------------------------------------

TEST(CollisionClassify, C) {
  expect_label("c", {
      "bind: Address already in use",  // perror("bind")
      // haproxy
      "[ALERT]    (1) : Starting frontend http-in: cannot bind socket (Address already in use) [0.0.0.0:8080]",
      // socat
      "2024/05/01 12:00:00 socat[4242] E bind(5, {AF=2 0.0.0.0:8080}, 16): Address already in use",
  });
}

TEST(CollisionClassify, Python) {
  expect_label("python", {
      "OSError: [Errno 98] Address already in use",
      // asyncio create_server (also what uvicorn prints, prefixed with "ERROR:    ")
      "OSError: [Errno 98] error while attempting to bind on address ('127.0.0.1', 8000): address already in use",
      "ERROR:    [Errno 98] error while attempting to bind on address ('127.0.0.1', 8000): address already in use",
      "socket.error: [Errno 98] Address already in use",  // Python 2
  });
}

TEST(CollisionClassify, Go) {
  expect_label("go", {
      "listen tcp :8080: bind: address already in use",
      "listen tcp 127.0.0.1:8080: bind: address already in use",
      "2024/05/01 12:00:00 listen tcp [::1]:8080: bind: address already in use",  // log.Fatal
      "panic: listen tcp4 0.0.0.0:8080: bind: address already in use",
      "Error starting userland proxy: listen tcp6 [::]:8080: bind: address already in use",  // docker
  });
}

TEST(CollisionClassify, Node) {
  expect_label("node", {
      "Error: listen EADDRINUSE: address already in use :::3000",
      "Error: listen EADDRINUSE: address already in use 127.0.0.1:3000",
      "  code: 'EADDRINUSE',",      // the error object's dump
      "Error: listen EADDRINUSE :::3000",  // Node <= 9
      "  errno: 'EADDRINUSE',",     // older dumps, before errno became numeric
  });
}

TEST(CollisionClassify, Rust) {
  expect_label("rust", {
      R"(Error: Os { code: 98, kind: AddrInUse, message: "Address already in use" })",
      "thread 'main' panicked at 'called `Result::unwrap()` on an `Err` value: Os { code: 98, kind: "
      "AddrInUse, message: \"Address already in use\" }', src/main.rs:8:55",
      "Address already in use (os error 98)",
      "Error: error creating server listener: Address already in use (os error 98)",  // hyper
  });
}

TEST(CollisionClassify, Nginx) {
  expect_label("nginx", {
      "nginx: [emerg] bind() to 0.0.0.0:80 failed (98: Address already in use)",
      "nginx: [emerg] bind() to [::]:80 failed (98: Address already in use)",
      // error.log format
      "2024/05/01 12:00:00 [emerg] 4242#4242: bind() to 127.0.0.1:8080 failed (98: Address already in use)",
      "nginx: [emerg] bind() to unix:/tmp/nginx.sock failed (98: Address already in use)",
  });
}

TEST(CollisionClassify, Redis) {
  expect_label("redis", {
      "Warning: Could not create server TCP listening socket *:6379: bind: Address already in use",
      "4242:M 01 May 2024 12:00:00.000 # Warning: Could not create server TCP listening socket "
      "127.0.0.1:6379: bind: Address already in use",
      // Redis 5 (no "Warning: ")
      "4242:M 01 May 2020 12:00:00.000 # Could not create server TCP listening socket ::1:6379: "
      "bind: Address already in use",
  });
}

TEST(CollisionClassify, Memcached) {
  expect_label("memcached", {
      "failed to listen on TCP port 11211: Address already in use",
      "failed to listen on TCP port 20417: Address already in use",
  });
}

TEST(CollisionClassify, Postgres) {
  expect_label("postgres", {
      R"(LOG:  could not bind IPv4 address "127.0.0.1": Address already in use)",
      R"(2024-05-01 12:00:00.000 UTC [4242] LOG:  could not bind IPv6 address "::1": Address already in use)",
      "LOG:  could not bind IPv6 socket: Address already in use",  // PostgreSQL <= 9.x
      "LOG:  could not bind IPv4 socket: Address already in use",
  });
}

TEST(CollisionClassify, Java) {
  expect_label("java", {
      "java.net.BindException: Address already in use",
      "Caused by: java.net.BindException: Address already in use (Bind failed)",
      "Exception in thread \"main\" java.net.BindException: Address already in use: bind",
  });
}

TEST(CollisionClassify, Ruby) {
  expect_label("ruby", {
      R"(Errno::EADDRINUSE: Address already in use - bind(2) for "127.0.0.1" port 3000)",
      "/usr/lib/ruby/3.0.0/socket.rb:201:in `bind': Address already in use - bind(2) for "
      "127.0.0.1:3000 (Errno::EADDRINUSE)",
      R"(Address already in use - bind(2) for "0.0.0.0" port 9292 (Errno::EADDRINUSE))",  // puma
  });
}

// --- lines with several ecosystems' markers: the table order decides ----------------

TEST(CollisionClassify, MostSpecificMarkerWins) {
  const auto& c = builtin_classifier();
  // Nearly every line also contains strerror's "Address already in use" (the "c"
  // marker, last in the table); the ecosystem-specific marker must win.
  EXPECT_EQ(c.classify("nginx: [emerg] bind() to 0.0.0.0:80 failed (98: Address already in use)"), "nginx");
  EXPECT_EQ(c.classify("listen tcp :8080: bind: address already in use"), "go");
  EXPECT_EQ(c.classify("Error: listen EADDRINUSE: address already in use :::3000"), "node");
  // A Rust extension raising OSError into Python (PyO3 style): "[Errno 98]" (python)
  // and "(os error 98)" (rust) both appear; python comes before rust in the table.
  EXPECT_EQ(c.classify("OSError: [Errno 98] Address already in use (os error 98)"), "python");
  // A supervisor relaying a child's Python error: still python.
  EXPECT_EQ(c.classify("supervisord: app exited: OSError: [Errno 98] Address already in use"), "python");
  // Ruby's Errno::EADDRINUSE contains Node's EADDRINUSE token; node's pattern skips it
  // when it follows "::", so the line reaches the ruby entry.
  EXPECT_EQ(c.classify(R"(Errno::EADDRINUSE: Address already in use - bind(2) for "127.0.0.1" port 3000)"), "ruby");
  EXPECT_EQ(c.classify("(Errno::EADDRINUSE)"), "ruby");
}

// --- lines that must not classify ---------------------------------------------------

TEST(CollisionNegatives, NormalLines) {
  expect_none({
      "",
      "Listening on port 8080",
      "Ready to accept connections",
      "4242:M 01 May 2024 12:00:00.000 * Ready to accept connections tcp",
      "bind succeeded",
      "LOG:  listening on IPv4 address \"127.0.0.1\", port 5432",
      "nginx: [emerg] still could not bind()",  // nginx's summary; the lines before it carry the cause
      "Port 5173 is in use, trying another one...",  // vite moves on by itself
      "ADDRESS ALREADY IN USE",                 // patterns are case-sensitive
      "MY_EADDRINUSE_COUNT=0",                  // EADDRINUSE is not a word of its own here
      "EADDRINUSEX",
      "[Errno 9] Bad file descriptor",
  });
}

TEST(CollisionNegatives, AddressInUseForSomethingElse) {
  // Tricky: contains "address" and "in use", but no pattern matches it (the "c" entry
  // needs the literal "Address already in use"), so it is not a collision.
  EXPECT_EQ(builtin_classifier().classify("address 127.0.0.1 in use for metrics"), std::nullopt);
}

TEST(CollisionNegatives, OtherBindErrorsOfSpecificEcosystems) {
  // A bind that fails for another reason (here EADDRNOTAVAIL) is not a port collision:
  // a fresh port would not help.
  expect_none({
      "OSError: [Errno 99] Cannot assign requested address",
      "listen tcp 10.9.9.9:8080: bind: cannot assign requested address",
      "nginx: [emerg] bind() to 10.9.9.9:80 failed (99: Cannot assign requested address)",
      R"(Error: Os { code: 99, kind: AddrNotAvailable, message: "Cannot assign requested address" })",
      "Error: listen EADDRNOTAVAIL: address not available 10.9.9.9:3000",
      R"(Errno::EADDRNOTAVAIL: Cannot assign requested address - bind(2) for "10.9.9.9" port 3000)",
  });
}

// The following are the same kind of non-collision, from ecosystems whose built-in
// pattern matches the message prefix whatever the error after it is. These servers
// print the line and KEEP RUNNING (postgres and redis skip an unavailable address,
// typically ::1 in a container without IPv6), and the session treats a classified line
// from a running child as a collision at once (harness/session.cpp, the
// `ev->collision && !ev->exited` check): a healthy server would be respawned until
// attempts_exhausted.

TEST(CollisionNegatives, PostgresUnavailableIPv6IsNotACollision) {
  // postgres then goes on listening on 127.0.0.1 and becomes ready.
  expect_none({
      R"(LOG:  could not bind IPv6 address "::1": Cannot assign requested address)",
      R"(2024-05-01 12:00:00.000 UTC [4242] LOG:  could not bind IPv6 address "::1": Cannot assign requested address)",
  });
}

TEST(CollisionNegatives, RedisOptionalAddressUnavailableIsNotACollision) {
  // Default redis.conf since 6.2: "bind 127.0.0.1 -::1"; redis logs this and carries on.
  expect_none({
      "4242:M 01 May 2024 12:00:00.000 # Warning: Could not create server TCP listening socket "
      "::1:6379: bind: Cannot assign requested address",
      "1:M 23 Nov 2021 11:39:56.785 # Warning: Could not create server TCP listening socket ::*:6379: "
      "unable to bind socket, errno: 97",
  });
}

TEST(CollisionNegatives, JavaBindExceptionForOtherCausesIsNotACollision) {
  expect_none({
      "java.net.BindException: Cannot assign requested address",
      "Caused by: java.net.BindException: Permission denied",
  });
}

TEST(CollisionNegatives, MemcachedOtherErrorIsNotACollision) {
  expect_none({"failed to listen on TCP port 80: Permission denied"});
}

// --- real wordings the table labels with the generic "c" ---------------------------
// Still recognised as collisions, but not with the ecosystem's label.

TEST(CollisionClassify, RedisBefore6Wording) {
  // Redis 2.8 - 4.x: "Creating Server TCP listening socket %s:%d: %s".
  expect_label("redis", {
      "4242:M 01 May 2019 12:00:00.000 # Creating Server TCP listening socket *:6379: bind: Address already in use",
  });
}

TEST(CollisionClassify, MemcachedWithListenAddressOrUdp) {
  // memcached -l 127.0.0.1 reports "failed to listen on one of interface(s) %s", and
  // the UDP listener "failed to listen on UDP port %d".
  expect_label("memcached", {
      "failed to listen on one of interface(s) 127.0.0.1: Address already in use",
      "failed to listen on UDP port 11211: Address already in use",
  });
}

// --- extra patterns -------------------------------------------------------------------

TEST(CollisionExtra, CheckedBeforeBuiltins) {
  auto c = collision_classifier::make({{"mine", R"(\[Errno 98\])"}});
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->classify("OSError: [Errno 98] Address already in use"), "mine");
  // Lines the extra does not match still get the built-in labels.
  EXPECT_EQ(c->classify("listen tcp :8080: bind: address already in use"), "go");
  EXPECT_EQ(c->classify("Listening on port 8080"), std::nullopt);
}

TEST(CollisionExtra, OwnMessagesAndOrderAmongExtras) {
  auto c = collision_classifier::make({{"myserver", R"(port \d+ is busy)"}, {"second", R"(is busy)"}});
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->classify("fatal: port 20417 is busy"), "myserver");
  EXPECT_EQ(c->classify("the socket is busy"), "second");
  // Without the extras these are unknown.
  EXPECT_EQ(builtin_classifier().classify("fatal: port 20417 is busy"), std::nullopt);
}

TEST(CollisionExtra, BadPatternNamesItsEcosystem) {
  auto c = collision_classifier::make({{"fine", "ok"}, {"broken-one", "(unclosed"}});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, errc::bad_pattern);
  EXPECT_NE(c.error().detail.find("broken-one"), std::string::npos) << c.error().detail;
  EXPECT_NE(c.error().detail.find("(unclosed"), std::string::npos) << c.error().detail;
  EXPECT_EQ(c.error().detail.find("\"fine\""), std::string::npos) << c.error().detail;

  auto bracket = collision_classifier::make({{"bracket", "[a-"}});
  ASSERT_FALSE(bracket);
  EXPECT_EQ(bracket.error().code, errc::bad_pattern);
  EXPECT_NE(bracket.error().detail.find("bracket"), std::string::npos) << bracket.error().detail;
}

// --- value semantics --------------------------------------------------------------------

TEST(CollisionClassifier, CopiesAndMovesClassifyTheSame) {
  const std::vector<std::string> lines = {
      "OSError: [Errno 98] Address already in use",
      "fatal: port 20417 is busy",
      "listen tcp :8080: bind: address already in use",
      "Listening on port 8080",
      "",
  };
  auto original = collision_classifier::make({{"myserver", R"(port \d+ is busy)"}}).value();
  auto expected = [&] {
    std::vector<std::optional<std::string>> out;
    for (const auto& l : lines) out.push_back(original.classify(l));
    return out;
  }();
  ASSERT_EQ(expected[1], "myserver");
  ASSERT_EQ(expected[0], "python");
  ASSERT_EQ(expected[3], std::nullopt);

  auto same = [&](const collision_classifier& c) {
    for (std::size_t i = 0; i < lines.size(); ++i) {
      EXPECT_EQ(c.classify(lines[i]), expected[i]) << lines[i];
    }
  };
  collision_classifier copy(original);
  same(copy);
  collision_classifier assigned = collision_classifier::make().value();
  EXPECT_EQ(assigned.classify("fatal: port 20417 is busy"), std::nullopt);
  assigned = copy;
  same(assigned);
  collision_classifier moved(std::move(copy));
  same(moved);
  collision_classifier move_assigned = collision_classifier::make().value();
  move_assigned = std::move(assigned);
  same(move_assigned);
  same(original);  // untouched by the copies
}

// --- the 4096-byte window -----------------------------------------------------------

TEST(CollisionLongLines, MessageInTheFirst4096BytesClassifies) {
  std::string line(100 * 1024, 'x');
  const std::string msg = "OSError: [Errno 98] Address already in use";
  line.replace(100, msg.size(), msg);
  EXPECT_EQ(builtin_classifier().classify(line), "python");
}

TEST(CollisionLongLines, MessageInTheLast4096BytesClassifies) {
  // A long record with the message at its end (a JSON log line, a context prefix).
  const std::string msg = "OSError: [Errno 98] Address already in use";
  std::string line = std::string(100 * 1024, 'x') + " " + msg;
  EXPECT_EQ(builtin_classifier().classify(line), "python");
}

TEST(CollisionLongLines, MessageInTheMiddleOfAHugeLineIsIgnored) {
  // Documented: the first and the last 4096 bytes of a line are looked at.
  std::string line(100 * 1024, 'x');
  const std::string msg = "OSError: [Errno 98] Address already in use";
  line.replace(4096, msg.size(), msg);
  EXPECT_EQ(builtin_classifier().classify(line), std::nullopt);
  line.replace(50 * 1024, msg.size(), msg);
  EXPECT_EQ(builtin_classifier().classify(line), std::nullopt);
}

TEST(CollisionLongLines, WindowBoundariesAreExactly4096Bytes) {
  const std::string msg = "bind: Address already in use";
  const std::string tail(10000, 'x');  // keeps the message out of the last window
  EXPECT_EQ(builtin_classifier().classify(std::string(4096 - msg.size(), 'x') + msg + tail), "c");
  EXPECT_EQ(builtin_classifier().classify(std::string(4097 - msg.size(), 'x') + msg + tail), std::nullopt);
  const std::string head(10000, 'x');  // keeps it out of the first window
  // Wholly inside the last 4096 bytes, and wholly before them.
  EXPECT_EQ(builtin_classifier().classify(head + msg + std::string(4096 - msg.size(), 'x')), "c");
  EXPECT_EQ(builtin_classifier().classify(head + msg + std::string(4096, 'x')), std::nullopt);
}

// --- the built-in table -----------------------------------------------------------------

TEST(CollisionBuiltin, NonEmptyKnownLabelsAndEveryRegexCompiles) {
  const auto& table = collision_classifier::builtin();
  ASSERT_FALSE(table.empty());
  const std::set<std::string> known = {"c",        "python",    "go",       "node", "rust", "nginx",
                                       "redis",    "memcached", "postgres", "java", "ruby"};
  std::set<std::string> labels;
  for (const auto& p : table) {
    EXPECT_TRUE(known.count(p.ecosystem)) << "unexpected label " << p.ecosystem;
    EXPECT_FALSE(p.regex.empty()) << p.ecosystem;
    auto re = harness::detail::regex::compile(p.regex);
    EXPECT_TRUE(re) << p.ecosystem << ": " << (re ? "" : re.error().message());
    labels.insert(p.ecosystem);
  }
  EXPECT_EQ(labels, known);
  // The generic strerror() text comes last, so that specific labels win.
  EXPECT_EQ(table.back().ecosystem, "c");
  EXPECT_TRUE(collision_classifier::make());
}

}  // namespace
