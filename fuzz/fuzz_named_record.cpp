// What a named shared server's files and messages hold, read back from any bytes: the
// record (<state dir>/servers/<name>.json, which anything may have written or cut
// short), the spec the keeper receives, and a start failure sent back to the caller.
//
// Properties: a record that parses has a valid name and a keeper pid, and writes back
// to text that parses to the same record; a spec that parses writes back to JSON
// that parses to the same JSON (a fixed point: the fingerprint of a spec is stable);
// a failure's JSON always reads back as a failure, and one it wrote reads back equal.
#include <string>

#include "fuzz.hpp"
#include "harness/detail/shared/failure_json.hpp"
#include "harness/detail/shared/named_common.hpp"
#include "harness/detail/shared/spec_json.hpp"

namespace named = harness::detail::named;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  if (auto r = named::parse_record(text)) {
    FUZZ_CHECK(named::valid_name(r->name));
    FUZZ_CHECK(r->keeper_pid > 0);
    const std::string once = named::to_json(*r);
    auto back = named::parse_record(once);
    FUZZ_CHECK(back.has_value());
    FUZZ_CHECK(named::to_json(*back) == once);
  }

  if (auto spec = harness::detail::spec_from_json(text)) {
    auto once = harness::detail::spec_to_json(*spec);
    FUZZ_CHECK(once.has_value());
    auto again = harness::detail::spec_from_json(*once);
    FUZZ_CHECK(again.has_value());
    auto twice = harness::detail::spec_to_json(*again);
    FUZZ_CHECK(twice.has_value() && *twice == *once);
    FUZZ_CHECK(harness::detail::fingerprint(*twice) == harness::detail::fingerprint(*once));
  }

  const harness::failure f = harness::detail::failure_from_json(text);
  const harness::failure g = harness::detail::failure_from_json(harness::detail::failure_to_json(f));
  FUZZ_CHECK(g.code == f.code);
  bool ascii = true;
  for (unsigned char c : f.detail) ascii = ascii && c < 0x80;
  FUZZ_CHECK(!ascii || g.detail == f.detail);  // other text may be repaired as UTF-8
  return 0;
}
