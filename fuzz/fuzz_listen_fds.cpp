// LISTEN_PID / LISTEN_FDS as harness::child::listen_fds() reads them from the
// environment (socket activation): any text a parent process may have left there.
//
// Input: a flags byte, then LISTEN_PID's text, '\n', LISTEN_FDS's text (each cut at a
// NUL, as the environment cuts it). Flag 1 puts our own pid in front of LISTEN_PID's
// text; 2 and 4 leave LISTEN_PID or LISTEN_FDS unset; 8 keeps the variables.
//
// Properties: the fds are 3, 4, ... N+2 exactly when LISTEN_PID is our pid and
// LISTEN_FDS is N in 1..INT_MAX-3, both plain decimal, and fds 3..N+2 are all open;
// otherwise none. The variables are gone afterwards unless asked to keep them.
#include <fcntl.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <string>

#include "fuzz.hpp"
#include "harness/child/child.hpp"

namespace {

// Sets NAME=value from `entry`, storage of ours (putenv), or removes the variable.
// Not setenv(): glibc keeps every value ever given to it, and millions of runs then
// exhaust the memory limit. `entry` is out of the environment again (unsetenv) before
// the next run rewrites it.
bool set_or_unset(std::string& entry, const char* name, const std::string& value, bool unset) {
  if (unset) return ::unsetenv(name) == 0;
  entry = std::string(name) + "=" + value;
  return ::putenv(entry.data()) == 0;
}

std::string pid_entry, fds_entry;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  harness_fuzz::reader in(data, size);
  const auto flags = in.take<std::uint8_t>();
  std::string pid_text(in.take_until('\n'));
  std::string fds_text(in.rest());
  if ((flags & 1) != 0) pid_text = std::to_string(::getpid()) + pid_text;
  pid_text.resize(std::strlen(pid_text.c_str()));  // the environment ends a value at NUL
  fds_text.resize(std::strlen(fds_text.c_str()));
  const bool no_pid = (flags & 2) != 0;
  const bool no_fds = (flags & 4) != 0;
  const bool keep = (flags & 8) != 0;
  FUZZ_CHECK(set_or_unset(pid_entry, "LISTEN_PID", pid_text, no_pid));
  FUZZ_CHECK(set_or_unset(fds_entry, "LISTEN_FDS", fds_text, no_fds));

  unsigned long long pid = 0, count = 0;
  bool expected = !no_pid && !no_fds &&
                  harness_fuzz::decimal(pid_text, LLONG_MAX, pid) &&
                  pid == static_cast<unsigned long long>(::getpid()) &&
                  harness_fuzz::decimal(fds_text, INT_MAX - 3, count) && count >= 1;
  for (unsigned long long i = 0; expected && i < count; ++i) {
    expected = ::fcntl(static_cast<int>(3 + i), F_GETFD) >= 0;
  }

  const std::vector<int> fds = harness::child::listen_fds(!keep);
  FUZZ_CHECK(fds.empty() == !expected);
  if (expected) {
    FUZZ_CHECK(fds.size() == count);
    for (std::size_t i = 0; i < fds.size(); ++i) {
      FUZZ_CHECK(fds[i] == static_cast<int>(3 + i));
      FUZZ_CHECK((::fcntl(fds[i], F_GETFD) & FD_CLOEXEC) != 0);
    }
  }
  if (keep) {
    FUZZ_CHECK(no_pid ? std::getenv("LISTEN_PID") == nullptr : std::getenv("LISTEN_PID") == pid_text);
    FUZZ_CHECK(no_fds ? std::getenv("LISTEN_FDS") == nullptr : std::getenv("LISTEN_FDS") == fds_text);
  } else {
    FUZZ_CHECK(std::getenv("LISTEN_PID") == nullptr && std::getenv("LISTEN_FDS") == nullptr);
  }
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  return 0;
}
