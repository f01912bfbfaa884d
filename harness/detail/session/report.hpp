// Private: the HARNESS_REPORT file — one JSON line per session, written when it stops.
#pragma once

#include <string>

namespace harness {
struct session_info;
class exit_status;
}  // namespace harness

namespace harness::detail {

// Appends a JSON line describing the session to the file named by HARNESS_REPORT (if
// set). One write() per line with O_APPEND, so concurrent test processes can share
// the file. Errors are reported once on stderr and otherwise ignored: a report must
// never fail a test.
void append_report(const session_info& info, const exit_status& final_status,
                   long long stop_ms);

}  // namespace harness::detail
