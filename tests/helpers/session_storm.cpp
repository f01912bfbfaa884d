// One process of the session storm: runs N lease-mode sessions one after another and
// checks the pool's invariant on the way. Used by tests/reliability/session_storm_test.cpp.
//
//   session-storm <fixture-server> <sessions> <invariant dir>
//
// For the whole time a session is ready and in use, this process owns the claim file
// <invariant dir>/<port>, created with O_EXCL right after the session is ready and
// unlinked only immediately before stop() (the lease itself is held until the session
// object is destroyed, after that). If two holders ever had the same port at once,
// the second create fails (EEXIST), or the first one's unlink finds its claim gone
// (ENOENT): both count as violations. While the claim is held the server is used: a
// request "x" must be answered "pong: x"; a wrong or missing answer is a failure.
//
// Prints "DONE <sessions> <failures> <violations> <respawns>" and exits 0 only when
// failures and violations are both 0.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>

#include "harness/session.hpp"
#include "harness/timeouts.hpp"
#include "tcp_client.hpp"

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: session-storm <fixture-server> <sessions> <invariant dir>\n";
    return 64;
  }
  const std::string fixture = argv[1];
  const int sessions = std::stoi(argv[2]);
  const std::string dir = argv[3];
  int failures = 0, violations = 0, respawns = 0;
  for (int i = 0; i < sessions; ++i) {
    auto s = harness::session::try_start({.command = {fixture, "--port={port}"}});
    if (!s) {
      ++failures;
      std::cerr << "session " << i << ": " << s.error().message() << "\n";
      continue;
    }
    respawns += static_cast<int>(s->attempts().size()) - 1;
    const std::uint16_t port = s->port();

    // The claim: from ready until just before stop().
    const std::string claim = dir + "/" + std::to_string(port);
    const int fd = ::open(claim.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      const int err = errno;
      ++violations;
      std::cerr << "session " << i << ": port " << port << " is held twice: cannot claim "
                << claim << ": " << std::strerror(err) << "\n";
      continue;  // the claim is the other holder's: leave it; the destructor stops ours
    }
    const std::string me = std::to_string(::getpid()) + "\n";
    if (::write(fd, me.data(), me.size()) != static_cast<ssize_t>(me.size())) ++failures;
    ::close(fd);

    // Use the server while the claim is held.
    std::string why;
    const auto reply = harness_test::tcp_request(port, "x", harness::timeouts::scaled(10s), why);
    if (!reply || *reply != "pong: x") {
      ++failures;
      std::cerr << "session " << i << ": port " << port << ": "
                << (reply ? "answered \"" + *reply + "\", not \"pong: x\"" : why) << "\n";
    }

    // Give up the claim immediately before stop() (the lease outlives the claim).
    if (::unlink(claim.c_str()) != 0) {
      const int err = errno;
      ++violations;
      std::cerr << "session " << i << ": port " << port << ": our claim " << claim
                << " was taken away while we held the port: " << std::strerror(err) << "\n";
    }
    s->stop();
  }
  std::cout << "DONE " << sessions << " " << failures << " " << violations << " " << respawns
            << std::endl;
  return failures == 0 && violations == 0 ? 0 : 1;
}
