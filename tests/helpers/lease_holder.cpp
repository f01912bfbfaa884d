// Holds one lease and waits to be killed. Used by tests/lease_test.cpp.
//   lease-holder <lock dir> <low-high> [network-wide]   prints "PORT <port>", then blocks.
// Without "network-wide" the lease is one of a private pool (lease_options::network_wide
// off): the test hands it ports of a block it leased itself.
#include <unistd.h>

#include <iostream>
#include <string>

#include "harness/lease.hpp"

int main(int argc, char** argv) {
  if (argc != 3 && !(argc == 4 && std::string(argv[3]) == "network-wide")) {
    std::cerr << "usage: lease-holder <lock dir> <low-high> [network-wide]\n";
    return 64;
  }
  auto range = harness::parse_port_range(argv[2]);
  if (!range) {
    std::cerr << range.error().message() << "\n";
    return 64;
  }
  auto l = harness::lease::try_acquire({.range = *range, .directory = argv[1], .note = "lease-holder", .network_wide = argc == 4});
  if (!l) {
    std::cerr << l.error().message() << "\n";
    return 1;
  }
  std::cout << "PORT " << l->port() << std::endl;
  for (;;) ::pause();
}
