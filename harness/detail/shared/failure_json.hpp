// Private: a failure as one line of JSON, so that the keeper's start failure reaches
// the caller with its code (harness or system) and its full text.
#pragma once

#include <string>
#include <string_view>

#include "harness/error.hpp"

namespace harness::detail {

std::string failure_to_json(const failure& f);
// errc::spawn_failed with the text itself when it is not such JSON.
failure failure_from_json(std::string_view text);

}  // namespace harness::detail
