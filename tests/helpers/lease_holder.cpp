// Holds one lease and waits to be killed. Used by tests/lease_test.cpp.
//   lease-holder <lock dir> <low-high>    prints "PORT <port>", then blocks.
#include <unistd.h>

#include <iostream>

#include "harness/lease.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: lease-holder <lock dir> <low-high>\n";
    return 64;
  }
  auto range = harness::parse_port_range(argv[2]);
  if (!range) {
    std::cerr << range.error().message() << "\n";
    return 64;
  }
  auto l = harness::lease::try_acquire({.range = *range, .directory = argv[1], .note = "lease-holder"});
  if (!l) {
    std::cerr << l.error().message() << "\n";
    return 1;
  }
  std::cout << "PORT " << l->port() << std::endl;
  for (;;) ::pause();
}
