// Private: one HTTP/1.1 GET for the http readiness probe (Boost.Beast).
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "harness/detail/os/net.hpp"

namespace harness::detail {

struct http_answer {
  int status = 0;
  std::string body;
};

// GET `path` from `at` with "Host: <host_header>", giving up after `timeout` in all.
// nullopt when there is no complete answer (refused, timed out, not HTTP); `why`
// then says what happened. The body is read up to 1 MiB.
std::optional<http_answer> http_get(const net::address& at, const std::string& host_header,
                                    const std::string& path, std::chrono::milliseconds timeout,
                                    std::string* why = nullptr);

}  // namespace harness::detail
