// process-demo — harness::process at work, step by step, with readable output.
//
//   1. start a server, wait for the line that carries its port, talk to it over TCP,
//      stop it and print how it ended;
//   2. a server that ignores SIGTERM and has forked a child: stop() with a short grace
//      escalates to SIGKILL, and the child is gone afterwards too;
//   3. a program that does not exist: a typed error, not a crash or a silent failure.
//
// Every step checks what it shows; the program exits 1 if anything did not behave as
// described. It runs the fixture server from fixtures/ (HARNESS_FIXTURE_SERVER is set
// by CMake to $<TARGET_FILE:fixture-server>).
#include <chrono>
#include <csignal>
#include <cstdint>
#include <exception>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "harness/error.hpp"
#include "harness/exit_status.hpp"
#include "harness/output.hpp"
#include "harness/process.hpp"
#include "line_client.hpp"

#ifndef HARNESS_FIXTURE_SERVER
#error "HARNESS_FIXTURE_SERVER must name the fixture-server executable"
#endif

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

long long ms_since(clock_type::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - t0).count();
}

// A failed expectation: the step stops and the demo exits 1.
struct step_failed : std::exception {
  explicit step_failed(std::string w) : what_(std::move(w)) {}
  const char* what() const noexcept override { return what_.c_str(); }
  std::string what_;
};

void expect(bool ok, const std::string& what) {
  if (!ok) throw step_failed(what);
}

// The fields of /proc/<pid>/stat we need: state and start time (to tell the process
// we saw from a later one that got the same pid).
struct proc_stat {
  char state = '?';
  int parent = 0;
  unsigned long long start_time = 0;
};

std::optional<proc_stat> read_proc_stat(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!in || !std::getline(in, text)) return std::nullopt;
  const auto paren = text.rfind(')');  // the command name may contain spaces and ')'
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream rest(text.substr(paren + 2));
  proc_stat st;
  rest >> st.state >> st.parent;                           // fields 3 and 4
  std::string skip;
  for (int field = 5; field < 22; ++field) rest >> skip;  // fields 5..21
  rest >> st.start_time;                                   // field 22
  if (!rest) return std::nullopt;
  return st;
}

harness::process_options fixture(std::vector<std::string> args) {
  harness::process_options options;
  options.argv = {HARNESS_FIXTURE_SERVER};
  options.argv.insert(options.argv.end(), args.begin(), args.end());
  return options;
}

// Waits for the "listening on <port>" line and returns the port.
std::uint16_t wait_for_port(const harness::process& server) {
  const auto t0 = clock_type::now();
  harness::result<harness::line_match> line =
      server.output().wait_for_line(R"(^listening on (\d+)$)", 10s);
  expect(static_cast<bool>(line),
         line ? "" : "no 'listening on <port>' line: " + line.error().message());
  const int port = std::stoi(line->groups[1]);
  expect(port > 0 && port < 65536, "announced port out of range: " + line->groups[1]);
  std::cout << "  ready:    \"" << line->line << "\" (" << ms_since(t0) << " ms)\n";
  return static_cast<std::uint16_t>(port);
}

void cooperative_server() {
  std::cout << "\n== 1. Start a server, wait until it listens, talk to it, stop it ==\n";
  const auto t0 = clock_type::now();
  harness::process server = harness::process::spawn(
      fixture({"--port=0", "--announce-line=listening on {port}", "--serve=line"}));
  std::cout << "  started:  " << server.command_line() << "\n"
            << "            pid " << server.pid() << ", in " << ms_since(t0) << " ms\n";

  const std::uint16_t port = wait_for_port(server);

  const std::optional<std::string> reply = example::ping(port);
  expect(reply.has_value(), "no reply from 127.0.0.1:" + std::to_string(port));
  std::cout << "  request:  \"ping\" -> \"" << *reply << "\"\n";
  expect(*reply == "pong: ping", "expected the reply \"pong: ping\"");

  const auto t1 = clock_type::now();
  const harness::exit_status status = server.stop();  // SIGTERM, grace, SIGKILL, reap
  std::cout << "  stop():   " << status << " (" << ms_since(t1) << " ms)\n";
  // The fixture exits 0 when it gets SIGTERM; dying of SIGTERM would be fine too.
  expect(status.success() || (status.signaled() && status.signal() == SIGTERM),
         "expected a clean exit after SIGTERM");
  std::cout << "  log file: " << server.output().log_path().string() << "\n";
}

void stubborn_tree() {
  std::cout << "\n== 2. A server that ignores SIGTERM and forked a child ==\n";
  harness::process server = harness::process::spawn(fixture(
      {"--port=0", "--announce-line=listening on {port}", "--ignore-sigterm", "--fork-child"}));
  std::cout << "  started:  " << server.command_line() << "\n"
            << "            pid " << server.pid() << "\n";
  wait_for_port(server);

  auto ignoring = server.output().wait_for_line("ignoring SIGTERM", 10s);
  expect(static_cast<bool>(ignoring),
         ignoring ? "" : "the server did not say it ignores SIGTERM: " + ignoring.error().message());
  auto child_line = server.output().wait_for_line(R"(^CHILD (\d+)$)", 10s);
  expect(static_cast<bool>(child_line),
         child_line ? "" : "no 'CHILD <pid>' line: " + child_line.error().message());
  const int child = std::stoi(child_line->groups[1]);
  const std::optional<proc_stat> before = read_proc_stat(child);
  expect(before.has_value(), "the child " + std::to_string(child) + " is not running");
  std::cout << "  child:    pid " << child << " (alive: /proc/" << child << " exists)\n";

  const harness::stop_policy policy{.grace = 300ms, .kill_wait = 5s};
  std::cout << "  stop():   SIGTERM to the tree, grace " << policy.grace.count()
            << " ms, then SIGKILL\n";
  const auto t0 = clock_type::now();
  const harness::exit_status status = server.stop(policy);
  std::cout << "            " << status << " after " << ms_since(t0) << " ms\n";
  expect(status == harness::exit_status::killed_by(SIGKILL),
         "expected \"killed by signal 9 (SIGKILL)\"");

  // Gone, or (when whoever adopted it has not reaped it yet) a zombie; a live process
  // with the same pid but another start time is somebody else.
  const std::optional<proc_stat> after = read_proc_stat(child);
  const bool gone = !after || after->start_time != before->start_time;
  const bool zombie = after && !gone && after->state == 'Z';
  if (gone) {
    std::cout << "  child:    gone (/proc/" << child << " no longer exists)\n";
  } else if (zombie) {
    std::cout << "  child:    dead (a zombie until its new parent, pid " << after->parent
              << ", reaps it)\n";
  }
  expect(gone || zombie, "the child " + std::to_string(child) + " survived stop() (state " +
                             std::string(1, after ? after->state : '?') + ")");
}

void missing_program() {
  std::cout << "\n== 3. Starting a program that does not exist ==\n";
  harness::process_options options;
  options.argv = {"/nonexistent/serve-harness-demo-server"};
  const harness::result<harness::process> r = harness::process::try_spawn(options);
  expect(!r, "try_spawn succeeded for a program that does not exist");
  std::cout << "  try_spawn() failed, as it should:\n"
            << "    code:    " << r.error().code.category().name() << ":"
            << r.error().code.value() << " (" << r.error().code.message() << ")\n"
            << "    message: " << r.error().message() << "\n";
  expect(r.error().code == harness::errc::program_not_found,
         "expected harness::errc::program_not_found");
}

}  // namespace

int main() {
  const auto t0 = clock_type::now();
  int failed = 0;
  for (void (*step)() : {cooperative_server, stubborn_tree, missing_program}) {
    try {
      step();
    } catch (const step_failed& e) {
      std::cout << "  FAILED:   " << e.what() << "\n";
      ++failed;
    } catch (const std::exception& e) {
      std::cout << "  FAILED:   unexpected error: " << e.what() << "\n";
      ++failed;
    }
  }
  std::cout << "\nprocess-demo: " << (failed == 0 ? "all 3 steps behaved as expected"
                                                  : std::to_string(failed) + " of 3 steps failed")
            << " (" << ms_since(t0) << " ms)\n";
  return failed == 0 ? 0 : 1;
}
