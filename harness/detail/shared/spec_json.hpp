// Private: a server_spec as JSON, for a named shared server, whose spec travels to the
// keeper process that runs it and whose fingerprint says whether two callers ask for
// the same server.
//
// Only what can be written down travels: a spec with a callback (a callback probe, an
// http body predicate, on_line, on_exit, on_progress) is refused with
// errc::invalid_argument naming the field, rather than run without it.
#pragma once

#include <string>
#include <string_view>

#include "harness/error.hpp"
#include "harness/session.hpp"

namespace harness::detail {

// The spec as one line of JSON (keys in a fixed order, so equal specs give equal text).
result<std::string> spec_to_json(const server_spec& spec);

// The spec back from spec_to_json()'s text; errc::invalid_argument for anything else.
result<server_spec> spec_from_json(std::string_view text);

// 16 hex digits (FNV-1a, 64 bits) of the text: the spec's fingerprint.
std::string fingerprint(std::string_view text);

}  // namespace harness::detail
