// A test runner stand-in: starts server trees with serve-harness, reports every pid,
// then waits to be killed. Used by tests/reliability/runner_death_test.cpp.
//
//   tree-runner <fixture-server>
// prints "TOKEN <runner token>", then "PID <pid>" for each process of the trees,
// then "READY", and blocks until killed.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <vector>

#include "harness/detail/io_thread.hpp"
#include "harness/process.hpp"

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: tree-runner <fixture-server>\n";
    return 64;
  }
  const std::string fixture = argv[1];
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
