// Private: the per-runner reaper (Linux).
//
// PR_SET_PDEATHSIG reaches only a runner's direct children. To take the rest of each
// tree down when the runner dies (SIGKILL, CTest timeout), the first spawn starts a
// small reaper process holding the read end of a "lifeline" pipe whose only writer is
// the runner. The runner also tells it, over that lifeline, the process group of every
// server it starts and stops. When the runner dies, the kernel closes the lifeline, the
// reaper wakes up, SIGKILLs the recorded process groups (members that dropped the
// marker) and then every process of our uid whose environment carries a marker of
// this runner (HARNESS_SESSION=<runner token>-...), rescanning until none is left.
//
// The reaper is forked (not exec'ed) from the harness thread, then double-forked and
// moved to a session of its own so that neither the runner's process group nor a
// tree-kill of the runner (CTest kills the runner's children) takes it down first. It
// runs async-signal-safe code only: raw system calls on static buffers.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace harness::detail {

// Starts the reaper for this runner once; later calls do nothing. Call it on the
// harness thread before a child is forked. Returns the reaper's pid (0 if it could
// not be started: children then still die through PDEATHSIG, grandchildren do not).
pid_t ensure_reaper(const std::string& runner_token);

// Tells the reaper about a server's process group (its leader's pid and start time),
// and that it has been stopped. Never blocks; safe from any thread.
void reaper_note_group(pid_t pgid, std::uint64_t leader_start_time);
void reaper_forget_group(pid_t pgid);

}  // namespace harness::detail
