// A test runner stand-in for any servers: starts one session per command (lease mode,
// in parallel), reports their ports, then waits to be killed. Used by the tests that
// kill a runner (tests/real/, tests/ownership_test.cpp).
//
//   server-runner [--fork] [--grace=MS] [--stop-with-grace=MS] CMD [ARG]... [--- CMD [ARG]...]...
//
// prints "STARTING" first, then "PORT <i> <port> <pid>" as server i becomes ready (and
// "ATTEMPT <i> <port> <outcome> <reason>" for each start it took, in order), then
// "READY" once all are. With --fork it then forks a child that never execs and only
// waits (as a fork-style gtest death test does) and prints "FORKED <pid>" before
// "READY". --grace sets the servers' stop grace (the stop of a start that collided, too).
// With --stop-with-grace it then prints "STOPPING" and stops every server with
// that grace (a server that ignores SIGTERM keeps it stopping that long).
// A start that fails prints "FAILED <i>" (the error on stderr) and exits 1.
// SIGTERM ends it like any test program: at once, without running destructors.
#include <unistd.h>

#include <chrono>
#include <optional>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "harness/session.hpp"
#include "helpers/start_in_parallel.hpp"

int main(int argc, char** argv) {
  bool fork_child = false;
  std::optional<std::chrono::milliseconds> grace;
  bool stop_when_ready = false;
  std::vector<std::vector<std::string>> commands(1);
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const bool leading = commands.size() == 1 && commands[0].empty();
    if (arg == "--fork" && leading) {
      fork_child = true;
    } else if (arg.rfind("--stop-with-grace=", 0) == 0 && leading) {
      grace = std::chrono::milliseconds(std::stol(std::string(arg.substr(18))));
      stop_when_ready = true;
    } else if (arg.rfind("--grace=", 0) == 0 && leading) {
      grace = std::chrono::milliseconds(std::stol(std::string(arg.substr(8))));
    } else if (arg == "---") {
      commands.emplace_back();
    } else {
      commands.back().emplace_back(arg);
    }
  }
  for (const auto& c : commands) {
    if (c.empty()) {
      std::cerr << "usage: server-runner [--fork] [--grace=MS] [--stop-with-grace=MS] CMD [ARG]... "
                   "[--- CMD [ARG]...]...\n";
      return 64;
    }
  }

  std::cout << "STARTING" << std::endl;
  std::vector<harness::server_spec> specs;
  for (const auto& c : commands) {
    harness::server_spec spec{.command = c};
    if (grace) spec.stop.grace = *grace;
    specs.push_back(std::move(spec));
  }
  auto sessions = harness_test::start_in_parallel(specs, [](std::size_t i, const auto& s) {
    if (s) {
      std::cout << "PORT " << i << " " << s->port() << " " << s->pid() << std::endl;
      for (const auto& a : s->attempts()) {
        std::cout << "ATTEMPT " << i << " " << a.port << " " << harness::to_string(a.outcome) << " " << a.reason
                  << std::endl;
      }
    } else {
      std::cerr << "session " << i << ": " << s.error().message() << std::endl;
      std::cout << "FAILED " << i << std::endl;
    }
  });
  if (!sessions) return 1;
  if (fork_child) {
    const pid_t child = ::fork();
    if (child == 0) {
      for (;;) ::pause();  // holds copies of every fd of the runner, as a death test does
    }
    std::cout << "FORKED " << child << std::endl;
  }
  std::cout << "READY" << std::endl;
  if (stop_when_ready) {
    std::cout << "STOPPING" << std::endl;
    for (auto& s : *sessions) s.stop();
    std::cout << "STOPPED" << std::endl;
  }
  for (;;) ::pause();
}
