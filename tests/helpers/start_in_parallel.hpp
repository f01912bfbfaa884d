// Test helpers' shared start loop: every spec started at once on its own thread, each
// result reported as it comes (a test may kill the helper between two of them).
#pragma once

#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <vector>

#include "harness/session.hpp"

namespace harness_test {

// Starts all `specs` at once; `on_result(i, result)` runs under a lock as start i ends.
// The sessions in spec order, or nullopt when any start failed.
inline std::optional<std::vector<harness::session>> start_in_parallel(
    const std::vector<harness::server_spec>& specs,
    const std::function<void(std::size_t, const harness::result<harness::session>&)>& on_result) {
  std::mutex m;
  std::vector<std::future<harness::result<harness::session>>> starts;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    starts.push_back(std::async(std::launch::async, [&, i] {
      auto s = harness::session::try_start(specs[i]);
      std::lock_guard lock(m);
      on_result(i, s);
      return s;
    }));
  }
  std::vector<harness::session> sessions;
  bool failed = false;
  for (auto& f : starts) {
    auto s = f.get();
    if (s) {
      sessions.push_back(std::move(*s));
    } else {
      failed = true;
    }
  }
  if (failed) return std::nullopt;
  return sessions;
}

}  // namespace harness_test
