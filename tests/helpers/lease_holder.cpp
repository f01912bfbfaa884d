// Holds leases for the tests. Used by tests/lease_test.cpp and tests/reliability/.
//
//   lease-holder <lock dir> <low-high> [network-wide]
// holds one lease: prints "PORT <port>", then blocks until killed. Without
// "network-wide" the lease is one of a private pool (lease_options::network_wide off):
// the test hands it ports of a block it leased itself.
//
//   lease-holder --churn <lock dir> <low-high> <count> <claim dir>
// takes and gives back a lease (network-wide, as the library does by default) `count`
// times, as fast as it can (for at most 60 s: in a small pool shared with other
// churners, most tries find every port taken). While it holds port P it owns the claim
// <claim dir>/P:
// created with O_EXCL holding our pid, read back after a yield (it must still hold our
// pid), unlinked just before the lease is released. A second holder of P at the same
// time fails the create (EEXIST), finds another pid in the claim, or finds it gone
// (ENOENT): each counts as a violation. A pool with no free port at that instant is not
// an error (counted as busy). Prints "DONE <acquired> <busy> <violations>"; exits 0 only
// without violations.
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>

#include "harness/lease.hpp"

namespace {

int hold(const char* dir, const harness::port_range& range, bool network_wide) {
  auto l = harness::lease::try_acquire(
      {.range = range, .directory = dir, .note = "lease-holder", .network_wide = network_wide});
  if (!l) {
    std::cerr << l.error().message() << "\n";
    return 1;
  }
  std::cout << "PORT " << l->port() << std::endl;
  for (;;) ::pause();
}

int churn(const char* dir, const harness::port_range& range, long count, const std::string& claims) {
  const std::string me = std::to_string(::getpid());
  long acquired = 0, busy = 0, violations = 0;
  auto violation = [&](std::uint16_t port, const std::string& what) {
    ++violations;
    std::cerr << "port " << port << ": " << what << "\n";
  };
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (acquired < count && std::chrono::steady_clock::now() < give_up) {
    auto l = harness::lease::try_acquire({.range = range, .directory = dir, .note = "churn"});
    if (!l) {
      if (l.error().code != harness::errc::pool_exhausted) {
        std::cerr << l.error().message() << "\n";
        return 2;
      }
      ++busy;
      continue;
    }
    ++acquired;
    const std::string claim = claims + "/" + std::to_string(l->port());
    const int fd = ::open(claim.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      violation(l->port(), std::string("cannot claim it: ") + std::strerror(errno));
      continue;  // the claim is the other holder's: leave it
    }
    if (::write(fd, me.data(), me.size()) != static_cast<ssize_t>(me.size())) violation(l->port(), "short write");
    ::sched_yield();  // give a second holder, if there were one, the moment to show
    char buf[32] = {};
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    if (n < 0 || std::string_view(buf, static_cast<std::size_t>(n)) != me) {
      violation(l->port(), "the claim now says \"" + std::string(buf) + "\"");
    }
    if (::unlink(claim.c_str()) != 0) violation(l->port(), std::string("our claim went away: ") + std::strerror(errno));
  }
  std::cout << "DONE " << acquired << " " << busy << " " << violations << std::endl;
  return violations == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const bool churning = argc == 6 && std::string_view(argv[1]) == "--churn";
  const bool network_wide = argc == 4 && std::string_view(argv[3]) == "network-wide";
  if (argc != 3 && !network_wide && !churning) {
    std::cerr << "usage: lease-holder <lock dir> <low-high> [network-wide]\n"
                 "       lease-holder --churn <lock dir> <low-high> <count> <claim dir>\n";
    return 64;
  }
  const int first = churning ? 2 : 1;
  auto range = harness::parse_port_range(argv[first + 1]);
  if (!range) {
    std::cerr << range.error().message() << "\n";
    return 64;
  }
  if (!churning) return hold(argv[first], *range, network_wide);
  return churn(argv[first], *range, std::stol(argv[4]), argv[5]);
}
