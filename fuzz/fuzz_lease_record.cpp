// The record in a lease lock file, as `harness ports` reads it (list_leases): any
// bytes, since a holder may be halfway through rewriting it, or anything else may have
// written the file.
//
// Properties: the note is the rest of the last "note=" line, never holding a newline;
// whatever was read, written back by a holder it reads back the same; a record written
// by a holder with any note reads back with that note (newlines as spaces).
#include <string>

#include "fuzz.hpp"
#include "harness/detail/lease_record.hpp"

namespace {

// The last "note=" line's rest, or "" without one.
std::string last_note(std::string_view text) {
  std::string note;
  while (!text.empty()) {
    const auto eol = text.find('\n');
    const auto line = text.substr(0, eol);
    if (line.substr(0, 5) == "note=") note = std::string(line.substr(5));
    if (eol == std::string_view::npos) break;
    text.remove_prefix(eol + 1);
  }
  return note;
}

void check_round_trip(int pid, std::int64_t since, std::string_view note) {
  harness::lease_record back;
  harness::detail::parse_lease_record(harness::detail::lease_record_text(pid, since, note), back);
  FUZZ_CHECK(back.pid == pid);
  FUZZ_CHECK(back.since == since);
  std::string one_line(note);
  for (char& c : one_line) c = c == '\n' ? ' ' : c;
  FUZZ_CHECK(back.note == one_line);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  harness::lease_record rec;
  harness::detail::parse_lease_record(text, rec);
  FUZZ_CHECK(rec.note.find('\n') == std::string::npos);
  FUZZ_CHECK(rec.note == last_note(text));
  check_round_trip(rec.pid, rec.since, rec.note);

  // The input as the note of a record, under a pid and time taken from its front.
  harness_fuzz::reader in(data, size);
  const auto pid = in.take<int>();
  const auto since = in.take<std::int64_t>();
  check_round_trip(pid, since, in.rest());
  return 0;
}
