// Uses serve-harness built as a subproject: start a process, wait for it, check the
// status. Exits 0 when everything behaved.
#include <harness/process.hpp>

#include <chrono>
#include <iostream>
#include <optional>

int main() {
  using namespace std::chrono_literals;
  harness::result<harness::process> r = harness::process::try_spawn({.argv = {"true"}});
  if (!r) {
    std::cerr << "consumer: spawn failed: " << r.error().message() << "\n";
    return 1;
  }
  std::optional<harness::exit_status> status = r->wait_for(10s);
  if (!status || *status != harness::exit_status::exited_with(0)) {
    std::cerr << "consumer: unexpected end: " << (status ? status->str() : "still running") << "\n";
    return 1;
  }
  std::cout << "consumer (add_subdirectory): " << r->command_line() << " -> " << *status << "\n";
  return 0;
}
