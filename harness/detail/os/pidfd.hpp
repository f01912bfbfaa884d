// Private: pidfd helpers (Linux >= 5.3), with a pid fallback for older kernels.
#pragma once

#include <sys/types.h>

namespace harness::detail::pidfd {

// A pidfd (O_CLOEXEC) for `pid`, or -1 (errno set; ENOSYS when the kernel has none).
int open(pid_t pid);

// Whether this kernel has pidfds (and they are not disabled for a test).
bool available();

// Sends `sig` through `fd` when fd >= 0, else with kill(pid). 0 or -1 with errno.
int send_signal(int fd, pid_t pid, int sig);

// Tests: behave as on a kernel without pidfd_open (ENOSYS).
void disable_for_testing(bool disabled);

}  // namespace harness::detail::pidfd
