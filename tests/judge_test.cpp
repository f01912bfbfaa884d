// The start judgement (harness/detail/session/judge.hpp), row by row: what an
// observation of a start attempt means — wait, ready, a port collision or a failure
// with its reason.
#include "harness/detail/session/judge.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "harness/error.hpp"

namespace {

using harness::errc;
using harness::exit_status;
namespace j = harness::detail::start_judge;
using j::listener;
using j::observation;
using j::outcome;

observation lease_obs() {
  observation o;
  o.lease = true;
  o.port = 21000;
  o.holders = "port 21000 is held by pid 77 (nc, user root): nc -l 21000";
  o.timeout_ms = 30000;
  o.waiting_for = "tcp connect";
  return o;
}

observation announce_obs() {
  observation o;
  o.lease = false;
  o.announce = true;
  o.timeout_ms = 30000;
  o.waiting_for = "the port announcement";
  return o;
}

struct row {
  const char* name;
  observation obs;
  outcome what;
  errc code;            // for failed rows
  const char* reason;   // a part of the reason, "" for none
  bool show_holder;     // for failed rows
};

std::vector<row> rows() {
  std::vector<row> r;
  auto add = [&](const char* name, observation o, outcome what, errc code = errc{}, const char* reason = "",
                 bool show_holder = false) { r.push_back({name, std::move(o), what, code, reason, show_holder}); };

  // --- the server is running -----------------------------------------------------
  add("running, nothing yet", lease_obs(), outcome::wait);
  {
    auto o = lease_obs();
    o.in_use_line = "python: OSError: [Errno 98] Address already in use";
    o.on_port = listener::foreign;
    add("in-use line and a stranger on the port: collision", o, outcome::collision, errc{},
        "OSError: [Errno 98] Address already in use; port 21000 is held by pid 77");
  }
  {
    auto o = lease_obs();
    o.in_use_line = "python: OSError: [Errno 98] Address already in use";
    o.on_port = listener::ours;
    add("in-use line but the port is the server's (another family failed): wait", o, outcome::wait);
  }
  {
    auto o = lease_obs();
    o.in_use_line = "nginx: bind() to 127.0.0.1:21000 failed (98: Address already in use)";
    add("in-use line, nobody listens yet (nginx retries): wait", o, outcome::wait);
  }
  {
    auto o = lease_obs();
    o.probes_passed = true;
    o.on_port = listener::ours;
    add("probes passed, our listener: ready", o, outcome::ready);
  }
  {
    auto o = lease_obs();
    o.on_port = listener::foreign;
    add("a stranger on the leased port, no message, probes failing: collision at once", o, outcome::collision,
        errc{}, "the listener on port 21000 is not our server: port 21000 is held by pid 77");
  }
  {
    auto o = lease_obs();
    o.on_port = listener::shared;
    add("the server holds some addresses, a stranger another: collision", o, outcome::collision, errc{},
        "listens on port 21000 but not on all its addresses");
  }
  {
    auto o = lease_obs();
    o.probes_passed = true;
    o.on_port = listener::shared;
    add("probes passed but a stranger holds one of the addresses: collision", o, outcome::collision, errc{},
        "not on all its addresses");
  }
  {
    auto o = lease_obs();
    o.in_use_line = "memcached: failed to listen on TCP port 21000: Address already in use";
    o.on_port = listener::shared;
    add("in-use line with our listener and a stranger's: collision", o, outcome::collision, errc{},
        "Address already in use; port 21000 is held by pid 77");
  }
  {
    auto o = announce_obs();
    o.port = 21500;
    o.probes_passed = true;
    o.on_port = listener::ours;
    add("announce: the announced port is the server's: ready", o, outcome::ready);
  }
  {
    auto o = announce_obs();
    o.port = 21500;
    o.probes_passed = true;
    add("announce: announced before listening: wait", o, outcome::wait);
  }
  {
    auto o = announce_obs();
    o.port = 21500;
    o.probes_passed = true;
    o.on_port = listener::foreign;
    o.holders = "port 21500 is held by pid 77 (nc, user root): nc -l 21500";
    add("announce: a stranger listens on the announced port: failed", o, outcome::failed, errc::bad_announcement,
        "the server announced port 21500, but port 21500 is held by pid 77", false);
  }
  {
    auto o = announce_obs();
    o.port = 21500;
    o.probes_passed = true;
    o.on_port = listener::shared;
    add("announce: the server and a stranger on other addresses: ready", o, outcome::ready);
  }
  {
    auto o = announce_obs();
    o.port = 21500;
    o.probes_passed = true;
    o.deadline_passed = true;
    o.waiting_for = "a listener of the server on the announced port 21500";
    add("announce: deadline with nobody on the announced port: timeout", o, outcome::failed, errc::ready_timeout,
        "still waiting for a listener of the server on the announced port 21500", false);
  }
  {
    auto o = lease_obs();
    o.probes_passed = true;
    o.on_port = listener::foreign;
    add("probes passed, a stranger answered: collision", o, outcome::collision, errc{},
        "the listener on port 21000 is not our server: port 21000 is held by pid 77");
  }
  {
    auto o = lease_obs();
    o.probes_passed = true;
    add("probes passed, nobody listens on the port: wait", o, outcome::wait);
  }
  {
    auto o = announce_obs();
    o.probes_passed = true;
    add("announce: probes passed: ready (no port check)", o, outcome::ready);
  }
  {
    auto o = lease_obs();
    o.deadline_passed = true;
    add("deadline: timeout, with the holder", o, outcome::failed, errc::ready_timeout,
        "not ready after 30000 ms; still waiting for tcp connect", true);
  }
  {
    auto o = lease_obs();
    o.deadline_passed = true;
    o.in_use_line = "c: bind: Address already in use";
    add("deadline after an in-use line: collision", o, outcome::collision, errc{},
        "not ready in time after: c: bind: Address already in use");
  }
  {
    auto o = lease_obs();
    o.deadline_passed = true;
    o.on_port = listener::foreign;
    add("deadline with a stranger on the port: collision", o, outcome::collision, errc{},
        "the listener on port 21000 is not our server: port 21000 is held by pid 77");
  }
  {
    auto o = announce_obs();
    o.deadline_passed = true;
    add("announce: deadline: timeout, no holder", o, outcome::failed, errc::ready_timeout,
        "still waiting for the port announcement", false);
  }

  // --- the server exited before it was ready ---------------------------------------
  {
    auto o = lease_obs();
    o.exited = exit_status::exited_with(1);
    add("exited, nothing else: failed with the holder", o, outcome::failed, errc::exited_before_ready,
        "exited with status 1", true);
  }
  {
    auto o = lease_obs();
    o.exited = exit_status::exited_with(1);
    o.on_port = listener::foreign;
    add("exited while a stranger holds the port: collision", o, outcome::collision, errc{},
        "exited (exited with status 1) while port 21000 is held by pid 77");
  }
  {
    auto o = lease_obs();
    o.exited = exit_status::exited_with(1);
    o.in_use_line = "redis: Could not create server TCP listening socket *:21000: bind: Address already in use";
    add("exited after an in-use line, nobody listens now: collision", o, outcome::collision, errc{},
        "redis: Could not create server TCP listening socket");
  }
  {
    auto o = lease_obs();
    o.exited = exit_status::exited_with(2);
    o.on_port = listener::ours;
    add("exited, a process of its tree listens: failed", o, outcome::failed, errc::exited_before_ready,
        "exited with status 2; a process it started listens on port 21000", true);
  }
  {
    auto o = lease_obs();
    o.exited = exit_status::exited_with(3);
    o.left = {101, 102};
    add("exited leaving processes: failed, naming them", o, outcome::failed, errc::exited_before_ready,
        "exited with status 3; it left 2 processes running (pid 101, 102)", true);
  }
  {
    auto o = announce_obs();
    o.exited = exit_status::exited_with(0);
    o.left = {101};
    o.allow_daemon = false;
    add("announce: a forbidden daemon", o, outcome::failed, errc::exited_before_ready,
        "exited with status 0; it left 1 process running (pid 101): it daemonized, which this spec forbids "
        "(allow_daemon = false)",
        false);
  }
  {
    auto o = lease_obs();
    o.exited = exit_status::exited_with(0);
    o.on_port = listener::ours;
    o.allow_daemon = false;
    add("lease: a forbidden daemon already listening", o, outcome::failed, errc::exited_before_ready,
        "a process it started listens on port 21000: it daemonized, which this spec forbids", true);
  }
  {
    auto o = lease_obs();
    o.deadline_passed = true;
    o.in_use_line = "c: bind: Address already in use";
    o.on_port = listener::foreign;
    add("running in-use line with a stranger wins over the deadline", o, outcome::collision, errc{},
        "c: bind: Address already in use; port 21000 is held by pid 77");
  }
  {
    auto o = lease_obs();
    o.exited = exit_status::exited_with(1);
    o.in_use_line = "c: bind: Address already in use";
    o.on_port = listener::ours;
    add("exited with an in-use line but our tree listens: failed, not a collision", o, outcome::failed,
        errc::exited_before_ready, "a process it started listens on port 21000", true);
  }
  {
    auto o = lease_obs();
    o.probes_passed = true;
    o.deadline_passed = true;
    o.waiting_for = "a listener on port 21000";
    add("probes passed but nobody listens, deadline: timeout", o, outcome::failed, errc::ready_timeout,
        "still waiting for a listener on port 21000", true);
  }
  {
    auto o = announce_obs();
    o.exited = exit_status::killed_by(9);
    add("announce: killed: failed, no holder", o, outcome::failed, errc::exited_before_ready,
        "killed by signal 9 (SIGKILL)", false);
  }
  return r;
}

TEST(Judge, EveryRowOfTheDecision) {
  for (const auto& r : rows()) {
    SCOPED_TRACE(r.name);
    const auto v = j::judge(r.obs);
    EXPECT_EQ(static_cast<int>(v.what), static_cast<int>(r.what)) << v.reason;
    if (r.what == outcome::failed) {
      EXPECT_EQ(v.code, harness::make_error_code(r.code));
      EXPECT_EQ(v.show_holder, r.show_holder);
    }
    EXPECT_NE(v.reason.find(r.reason), std::string::npos) << "reason: " << v.reason;
  }
}

struct port_row {
  const char* line;
  bool about_21000;
};

TEST(Judge, WhichPortAnInUseLineIsAbout) {
  const port_row cases[] = {
      {"OSError: [Errno 98] Address already in use", true},                      // names no port
      {"bind() to 127.0.0.1:21000 failed (98: Address already in use)", true},   // nginx
      {"bind() to [::]:21000 failed (98: Address already in use)", true},
      {"Could not create server TCP listening socket *:21000: bind: Address already in use", true},
      {"listen tcp :21000: bind: address already in use", true},                 // Go
      {"failed to listen on TCP port 21000: Address already in use", true},      // memcached
      {"failed to listen on UDP port 11211: Address already in use", false},     // its fixed UDP port
      {"bind() to 127.0.0.1:8080 failed (98: Address already in use)", false},   // another fixed port
      {"listen tcp localhost:9090: bind: address already in use", false},
      {"12:34:56.789 OSError: [Errno 98] Address already in use", true},         // a time, not a port
      {"2026/11/28 12:34:56 listen tcp :21000: bind: address already in use", true},
      {"Error: listen EADDRINUSE: address already in use :::21000", true},       // Node
      {"java.net.BindException: Address already in use", true},
      {"Error: listen EADDRINUSE: address already in use :::8080", false},
      // Numbers after a colon that are not ports: a time, a file:line, a JSON field.
      {"2026-11-28T12:34:56.789Z error: listen EADDRINUSE: address already in use :::21000", true},
      {"2026-11-28T12:34:56.789Z [ERROR] Bind on TCP/IP port: Address already in use", true},
      {"E1128 12:34:56.789 42 server.cc:88] bind: Address already in use", true},
      {"app.server:57 [Errno 98] Address already in use", true},
      {"{\"level\":50,\"pid\":4242,\"msg\":\"listen EADDRINUSE: address already in use :::21000\"}", true},
      {"{\"level\":50,\"pid\":4242,\"msg\":\"bind: Address already in use\"}", true},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(j::names_port(c.line, 21000), c.about_21000) << c.line;
  }
}

}  // namespace
