// A test runner stand-in: starts server trees with serve-harness, reports them, then
// waits to be killed. Used by tests/reliability/r01_runner_death_test.cpp.
//
//   tree-runner <fixture-server>
// prints "TOKEN <runner token>", then "PID <pid>" for each process of the trees,
// then "READY", and blocks until killed.
//
//   tree-runner <fixture-server> --sessions=<d0>,<d1>,<d2>,<d3> [--tag=<text>]
// prints "TOKEN <runner token>" first, then at once starts four lease-mode sessions in
// parallel, server i sleeping d_i ms before it binds (so that a kill can land before,
// during or after readiness):
//   0: a plain server;
//   1: a `sh -c 'srv & wait'` tree;
//   2: a server whose child calls setsid;
//   3: a server ignoring SIGTERM with a child and an orphaned setsid grandchild.
// As each becomes ready it prints "LEASE <port> <n>" (n = 1, 2, ...: how many are
// ready so far). Once all are, "READY"; then it blocks until killed. A start that
// fails prints "FAILED <i>" (and the error on stderr) and the runner exits 1. With
// --tag, every fixture-server of the trees has <text> in its command line (--print),
// for leftover checks that do not go by the harness's marker.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "harness/detail/proc/io_thread.hpp"
#include "harness/process.hpp"
#include "harness/session.hpp"
#include "helpers/start_in_parallel.hpp"

using namespace std::chrono_literals;

namespace {

int run_trees(const std::string& fixture) {
  std::vector<harness::process> trees;
  // A plain server, a server with children in and out of its group (and ignoring
  // SIGTERM), a `sh -c 'srv & wait'` tree, a group member without the marker, and a
  // child without the marker.
  trees.push_back(harness::process::spawn({.argv = {fixture, "--port=0"}}));
  trees.push_back(harness::process::spawn(
      {.argv = {fixture, "--port=0", "--fork-child", "--fork-setsid", "--fork-daemon",
                "--child-ignores-sigterm", "--ignore-sigterm"}}));
  trees.push_back(harness::process::spawn(
      {.argv = {"/bin/sh", "-c", "\"$0\" --port=0 --fork-setsid & wait", fixture}}));
  // A member of a server's process group that dropped the marker: only the reaper's
  // kill of the recorded group can take it down.
  trees.push_back(harness::process::spawn(
      {.argv = {"/bin/sh", "-c", "env -u HARNESS_SESSION \"$0\" --port=0 --serve=none & wait", fixture}}));
  auto unmarked = trees.back().output().wait_for_line(R"(^PID (\d+)$)", 10s);
  if (!unmarked) {
    std::cerr << "the unmarked group member did not start\n";
    return 1;
  }
  // A child that dropped the marker (env -i): only PDEATHSIG can take it down.
  trees.push_back(harness::process::spawn(
      {.argv = {"env", "-i", fixture, "--port=0", "--announce-line=up"}}));
  if (!trees.back().output().wait_for_line("^up$", 10s)) {
    std::cerr << "the unmarked child did not start\n";
    return 1;
  }

  std::cout << "TOKEN " << harness::detail::io_thread::get().runner_token() << "\n";
  std::cout << "PID " << unmarked->groups[1] << "\n";
  for (const auto& t : trees) std::cout << "PID " << t.pid() << "\n";
  for (const char* tag : {"CHILD", "SETSID", "DAEMON"}) {
    auto line = trees[1].output().wait_for_line(std::string("^") + tag + R"( (\d+)$)", 10s);
    if (!line) {
      std::cerr << line.error().message() << "\n";
      return 1;
    }
    std::cout << "PID " << line->groups[1] << "\n";
  }
  for (const char* tag : {"PID", "SETSID"}) {
    auto line = trees[2].output().wait_for_line(std::string("^") + tag + R"( (\d+)$)", 10s);
    if (!line) {
      std::cerr << line.error().message() << "\n";
      return 1;
    }
    std::cout << "PID " << line->groups[1] << "\n";
  }
  std::cout << "READY" << std::endl;
  for (;;) ::pause();
}

int run_sessions(const std::string& fixture, std::string_view delays_text, const std::string& tag) {
  std::vector<std::string> delays;
  std::istringstream in{std::string(delays_text)};
  for (std::string d; std::getline(in, d, ',');) delays.push_back(d);
  if (delays.size() != 4) {
    std::cerr << "--sessions needs four delays (ms), e.g. --sessions=0,10,40,80\n";
    return 64;
  }
  const std::string print = "--print=" + (tag.empty() ? std::string("tree-runner") : tag);
  std::vector<std::vector<std::string>> commands = {
      {fixture, print, "--port={port}", "--delay-ms=" + delays[0]},
      {"/bin/sh", "-c", "\"$0\" \"$3\" --port=\"$1\" --delay-ms=\"$2\" & wait", fixture, "{port}",
       delays[1], print},
      {fixture, print, "--port={port}", "--fork-setsid", "--delay-ms=" + delays[2]},
      {fixture, print, "--port={port}", "--fork-child", "--fork-daemon", "--child-ignores-sigterm",
       "--ignore-sigterm", "--delay-ms=" + delays[3]},
  };

  // The token first: the test may kill us the moment it has read it.
  std::cout << "TOKEN " << harness::detail::io_thread::get().runner_token() << std::endl;

  std::vector<harness::server_spec> specs;
  for (const auto& c : commands) specs.push_back({.command = c});
  int ready = 0;
  auto sessions = harness_test::start_in_parallel(specs, [&ready](std::size_t i, const auto& s) {
    if (s) {
      std::cout << "LEASE " << s->port() << " " << ++ready << std::endl;
    } else {
      std::cerr << "session " << i << ": " << s.error().message() << std::endl;
      std::cout << "FAILED " << i << std::endl;
    }
  });
  if (!sessions) return 1;
  std::cout << "READY" << std::endl;
  for (;;) ::pause();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string_view flag = "--sessions=";
  if (argc == 2) return run_trees(argv[1]);
  const std::string_view tag_flag = "--tag=";
  if ((argc == 3 || (argc == 4 && std::string_view(argv[3]).substr(0, tag_flag.size()) == tag_flag)) &&
      std::string_view(argv[2]).substr(0, flag.size()) == flag) {
    return run_sessions(argv[1], std::string_view(argv[2]).substr(flag.size()),
                        argc == 4 ? std::string(std::string_view(argv[3]).substr(tag_flag.size())) : "");
  }
  std::cerr << "usage: tree-runner <fixture-server> [--sessions=<d0>,<d1>,<d2>,<d3> [--tag=<text>]]\n";
  return 64;
}
