// The server spec the unavailable-server programs and their checking test share.
#pragma once

#include "harness/session.hpp"

namespace e2e {

// An absolute path that does not exist: errc::program_not_found whatever PATH says.
inline constexpr const char* missing_program = "/nonexistent/serve-harness/no-such-server";

inline harness::server_spec missing_server(std::string name) {
  return {.command = {missing_program, "--port={port}"}, .name = std::move(name)};
}

}  // namespace e2e
