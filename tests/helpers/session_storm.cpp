// One process of the session storm: runs N lease-mode sessions one after another and
// checks the pool's invariant on the way. Used by tests/reliability/session_storm_test.cpp.
//
//   session-storm <fixture-server> <sessions> <invariant dir>
//
// While a session is ready, this process owns <invariant dir>/<port>, created with
// O_EXCL: if two holders ever had the same port at once, the second create fails.
// Prints "DONE <sessions> <failures> <violations> <respawns>" and exits 0 only when
// failures and violations are both 0.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <string>

#include "harness/session.hpp"

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
    const std::string claim = dir + "/" + std::to_string(s->port());
    const int fd = ::open(claim.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      ++violations;
      std::cerr << "port " << s->port() << " is held twice: " << std::strerror(errno) << "\n";
      continue;
    }
    const std::string me = std::to_string(::getpid()) + "\n";
    if (::write(fd, me.data(), me.size()) < 0) ++failures;
    ::close(fd);
    ::unlink(claim.c_str());  // give up the claim before the lease
    s->stop();
  }
  std::cout << "DONE " << sessions << " " << failures << " " << violations << " " << respawns
            << std::endl;
  return failures == 0 && violations == 0 ? 0 : 1;
}
