// Uses an installed serve-harness: harness::core starts a process, harness::child is
// linked and callable. Exits 0 when everything behaved.
#include <harness/child/child.hpp>
#include <harness/process.hpp>

#include <chrono>
#include <iostream>
#include <optional>

int main() {
  using namespace std::chrono_literals;
  harness::result<harness::process> r =
      harness::process::try_spawn({.argv = {"/bin/sh", "-c", "echo hello"}});
  if (!r) {
    std::cerr << "consumer: spawn failed: " << r.error().message() << "\n";
    return 1;
  }
  harness::process& p = *r;
  auto line = p.output().wait_for_line("^hello$", 10s);
  if (!line) {
    std::cerr << "consumer: no 'hello' line: " << line.error().message() << "\n";
    return 1;
  }
  std::optional<harness::exit_status> status = p.wait_for(10s);
  if (!status || !status->success()) {
    std::cerr << "consumer: unexpected end: " << (status ? status->str() : "still running") << "\n";
    return 1;
  }
  // Not started by socket activation, so no inherited sockets.
  if (!harness::child::listen_fds().empty()) {
    std::cerr << "consumer: harness::child found sockets that were never passed\n";
    return 1;
  }
  std::cout << "consumer (find_package): " << p.command_line() << " -> " << *status << "\n";
  return 0;
}
