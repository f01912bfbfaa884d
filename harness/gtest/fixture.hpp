// harness/gtest/fixture.hpp — servers owned by one test, one test suite or the whole program.
//
// Per test: derive from server_test and start servers in SetUp (or in the test body).
//
//   class EchoTest : public harness::gtest::server_test {
//    protected:
//     void SetUp() override {
//       echo_ = start_server({.command = {"echo-server", "--port={port}"}});
//       if (echo_ == nullptr) return;   // already failed (or skipped) with the full reason
//       client_.connect(echo_->port());
//     }
//     harness::session* echo_ = nullptr;
//     my_client client_;
//   };
//   TEST_F(EchoTest, Echoes) { EXPECT_EQ(client_.ask("hi"), "hi"); }
//
// Per suite: a shared_server started in SetUpTestSuite and stopped in TearDownTestSuite.
//
//   class DbTest : public testing::Test {
//    protected:
//     static void SetUpTestSuite() { db.start({.command = {"postgres", "-p", "{port}"}}); }
//     static void TearDownTestSuite() { db.stop(); }
//     static inline harness::gtest::shared_server db;
//   };
//   TEST_F(DbTest, Connects) { EXPECT_TRUE(connect(db->port())); }
//
// Per program: a server_environment, registered before RUN_ALL_TESTS.
//
//   harness::gtest::server_environment* const servers =
//       harness::gtest::add_server_environment({{.command = {"redis-server", "--port", "{port}"},
//                                                .name = "redis"}});
//   TEST(Cache, Works) { EXPECT_TRUE(ping(servers->server("redis").port())); }
//
// When a start fails, the test fails with the library's full error text (command line,
// exit status, who holds the port, stderr tail, log file, every attempt) — or is
// skipped with that text, when you pass if_unavailable::skip and the program is not
// installed here (is_unavailable()). Nothing throws out of a constructor or destructor:
//   * server_test::start_server records a fatal failure at the caller's line (or a
//     skip) and returns nullptr; return from SetUp when it does, gtest then skips the
//     test body (after a fatal failure or a skip in SetUp the body does not run);
//   * a shared_server or server_environment that cannot start makes *every* test of
//     its suite / of the program fail (or skip) at its start with the full text, before
//     the fixture's SetUp; no test body runs against a server that is not there.
//
// Blocking: starting blocks until the server is ready or the start failed — at most
// about respawn.attempts × ready.timeout, scaled by HARNESS_TIMEOUT_SCALE like every
// timeout of the library (timeouts.hpp). Stopping (destruction, stop(), TearDown)
// blocks at most stop.grace + stop.kill_wait, scaled too. This layer adds no timeout
// of its own.
//
// Gotchas:
//   * Check the pointer start_server returns: after a failure or skip it is nullptr
//     and SetUp must return (gtest's FAIL and GTEST_SKIP return only from the function
//     they are written in, here start_server).
//   * Call shared_server::stop() in TearDownTestSuite. A shared_server that is a static
//     is otherwise stopped by its destructor during static destruction, after main.
//   * Servers are stopped in reverse order of start when the fixture is destroyed,
//     after TearDown and after the members of your derived fixture (so clients close
//     before their servers stop).
//   * A suite-level server is scoped by the name of the suite whose SetUpTestSuite
//     started it; one started outside any suite (Environment::SetUp, main) applies to
//     every test of the program.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "harness/error.hpp"
#include "harness/exit_status.hpp"
#include "harness/named_server.hpp"
#include "harness/session.hpp"

namespace harness::gtest {

// What a start failure that means "not installed here" does to the tests.
enum class if_unavailable {
  fail,  // a fatal failure with the full error text (the default)
  skip,  // GTEST_SKIP() with the full error text
};

// Where a call was written, for failure messages. The default arguments below fill it
// in at the caller's line (std::source_location would do, but clang 14 with libstdc++ 12
// lacks it; __builtin_FILE/__builtin_LINE work with GCC, Clang and MSVC).
struct call_site {
  const char* file = "unknown file";
  int line = 0;
};

// True for the failures that mean the server's program is not available on this
// machine: errc::program_not_found, program_not_executable, program_is_directory.
[[nodiscard]] bool is_unavailable(const failure& f);

// A fixture base for tests that own their servers.
class server_test : public ::testing::Test {
 protected:
  server_test() = default;
  // Stops the servers, newest first; bounded, never throws.
  ~server_test() override;

  // Starts a server and waits until it is ready (see "Blocking"). On failure records a
  // fatal failure with the library's full error text at `where`, the caller's line (or
  // skips, see if_unavailable) and returns nullptr. The session lives until the fixture
  // is destroyed.
  harness::session* start_server(server_spec spec, if_unavailable unavailable = if_unavailable::fail,
                                 call_site where = {__builtin_FILE(), __builtin_LINE()});

  // Starts every spec at once and waits for all (session::start_all). All or nothing:
  // when any fails, each failure is reported as start_server does, the servers that
  // did start are stopped, and the result is empty.
  std::vector<harness::session*> start_servers(std::vector<server_spec> specs,
                                               if_unavailable unavailable = if_unavailable::fail,
                                               call_site where = {__builtin_FILE(), __builtin_LINE()});

  // The servers started so far, in start order. Throws std::out_of_range.
  [[nodiscard]] harness::session& server(std::size_t index = 0);
  [[nodiscard]] std::size_t server_count() const noexcept { return servers_.size(); }

 private:
  std::vector<std::unique_ptr<harness::session>> servers_;
  std::vector<call_site> sites_;  // where each was started
};

// One server shared by the tests of a suite (or of the program): start() it in
// SetUpTestSuite (or Environment::SetUp), stop() it in TearDownTestSuite.
class shared_server {
 public:
  shared_server() noexcept;
  shared_server(const shared_server&) = delete;
  shared_server& operator=(const shared_server&) = delete;
  // Stops the server; bounded, never throws.
  ~shared_server();

  // Starts the server and waits until it is ready; a running one is stopped first.
  // Never fails the calling function: when the start fails, every test of the scope
  // (the suite being set up; the program when no suite is) fails — or skips — at its
  // start with the full error text; a test that is running when start() is called
  // fails (or skips) right away too. Returns true when the server is ready.
  bool start(server_spec spec, if_unavailable unavailable = if_unavailable::fail);

  // Stops the server (and withdraws a start failure). Idempotent; nullopt when nothing
  // was running.
  std::optional<exit_status> stop();

  [[nodiscard]] bool started() const noexcept { return session_ != nullptr; }
  // The failure of the last start, or nullptr.
  [[nodiscard]] const failure* error() const noexcept { return failure_ ? &*failure_ : nullptr; }

  // The running server. Throws harness::error (the start failure, or errc::not_running)
  // when there is none — which a test body does not see, since a failed start fails
  // the test before its SetUp.
  [[nodiscard]] harness::session& get();
  harness::session* operator->() { return &get(); }
  harness::session& operator*() { return get(); }

 private:
  friend class server_environment;
  void adopt(result<harness::session> r, if_unavailable unavailable, bool program_wide, std::string name);
  void withdraw() noexcept;

  std::unique_ptr<harness::session> session_;
  std::optional<failure> failure_;
};

// Servers for the whole test program, started once before the first test (all at
// once) and stopped after the last. gtest owns the environment once it is added.
class server_environment : public ::testing::Environment {
 public:
  explicit server_environment(std::vector<server_spec> specs,
                              if_unavailable unavailable = if_unavailable::fail);
  ~server_environment() override;

  // Starts every server at once and waits for all. A server that fails makes every
  // test of the program fail (or skip) at its start with the full error text.
  void SetUp() override;
  // Stops the servers, newest first.
  void TearDown() override;

  // A server by position or by server_spec::name. Throws harness::error when it is not
  // running (errc::not_running, with the start failure) or the name is unknown
  // (errc::invalid_argument).
  [[nodiscard]] harness::session& server(std::size_t index = 0);
  [[nodiscard]] harness::session& server(std::string_view name);
  [[nodiscard]] std::size_t size() const noexcept { return specs_.size(); }

 private:
  std::vector<server_spec> specs_;
  if_unavailable unavailable_;
  std::vector<std::unique_ptr<shared_server>> servers_;
};

// testing::AddGlobalTestEnvironment(new server_environment(...)), typed. Call it before
// RUN_ALL_TESTS (from main, or from a namespace-scope initializer).
server_environment* add_server_environment(std::vector<server_spec> specs,
                                           if_unavailable unavailable = if_unavailable::fail);

// A named shared server for this test program, shared with every other process of the
// run that asks for the same name (harness/named_server.hpp): the first caller starts it,
// the others attach; it stops when the last of them ends (or after options.keep_warm).
// Under gtest_discover_tests, where each TEST is a process, the processes share one
// server instead of starting one each:
//
//   TEST(Orders, AreStored) {
//     harness::named_server* db = harness::gtest::attach_named("db", redis_spec());
//     ASSERT_NE(db, nullptr);   // the failure (or skip) is already reported at this line
//     Client c(db->host(), db->port());
//     ...
//   }
//
// The hold is this process's: under gtest_discover_tests, a server outlives one TEST
// process only while another holds it. For one server per run whatever the order of the
// tests, register it as a CTest fixture instead (harness_add_server_fixture: the ctest
// run holds it, the tests read <NAME>_PORT), or give it options.keep_warm.
// One hold per name per process, taken on first use and kept until the program exits;
// later calls return the same server (the first call's spec counts). The listener
// records harness.<name>.port/pid/log for each test after that, prints the server and
// the end of its log when a test fails, and fails the test during which it died.
// Returns nullptr after reporting a failure (or a skip, with if_unavailable::skip).
harness::named_server* attach_named(std::string name, server_spec spec,
                                    if_unavailable unavailable = if_unavailable::fail,
                                    named_options options = {},
                                    call_site where = {__builtin_FILE(), __builtin_LINE()});

}  // namespace harness::gtest
