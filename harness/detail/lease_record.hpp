// Private: the record a lease holder writes into its lock file, and how `harness
// ports` (list_leases) reads it back.
//
//   pid=4242
//   since=1700000000
//   note=redis-server --port 20417
//
// The reader takes what parses and leaves the rest of the record as it was (a writer
// may be halfway through rewriting the file): a field that does not parse stays 0 or
// empty. Exposed for tests and fuzzing.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "harness/lease.hpp"

namespace harness::detail {

// The text of a record; newlines in `note` become spaces (a note is one line).
std::string lease_record_text(int pid, std::int64_t since, std::string_view note);

// Fills pid, since and note of `rec` from the lines of `text` that carry them.
void parse_lease_record(std::string_view text, lease_record& rec);

}  // namespace harness::detail
