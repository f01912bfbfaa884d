// harness/timeouts.hpp — every default timeout in one place, scaled by one variable.
//
// Options store durations as written; the library multiplies each by scale() at the
// moment it uses it, so `HARNESS_TIMEOUT_SCALE=4 ctest` gives a sanitizer or valgrind
// build four times longer for everything: readiness deadlines, stop grace periods,
// connect timeouts — defaults and values you set yourself alike.
//
//   auto deadline = std::chrono::steady_clock::now() + harness::timeouts::scaled(30s);
//
// Gotchas: the variable is read once per process (the first time any timeout is used);
// an unparsable or non-positive value is reported once on stderr and treated as 1.
#pragma once

#include <chrono>
#include <optional>

namespace harness::timeouts {

using std::chrono::milliseconds;

// Defaults, before scaling.
inline constexpr milliseconds ready{30'000};       // spawn -> ready deadline
inline constexpr milliseconds stop_grace{3'000};   // SIGTERM -> SIGKILL
inline constexpr milliseconds kill_wait{5'000};    // SIGKILL -> give up waiting
inline constexpr milliseconds connect{1'000};      // one probe connection attempt
inline constexpr milliseconds poll_cap{50};        // upper bound of probe backoff
// The supervisor reports the server exec'ed (or failed) within this.
inline constexpr milliseconds spawn_handshake{10'000};

// HARNESS_TIMEOUT_SCALE as a factor (> 0), default 1.
double scale();

// d multiplied by scale(), rounded up to whole milliseconds; at most ten years (a
// "forever" such as milliseconds::max() becomes that), never negative.
milliseconds scaled(milliseconds d);

// Parses a HARNESS_TIMEOUT_SCALE value; nullopt when it is not a positive number.
std::optional<double> parse_scale(const char* text);

}  // namespace harness::timeouts
