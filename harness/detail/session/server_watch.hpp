// Private: what becomes of a server once it is ready — an exit nobody asked for, a
// sanitizer report in its output, the status it ends with — for session::check().
//
// Fed on the I/O thread (every output line, the exit) and by the session (armed once
// ready, disarmed while the test stops or restarts it); read by the test's thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "harness/exit_status.hpp"

namespace harness::detail {

// True for the first line of a sanitizer report: "==123==ERROR: AddressSanitizer: ...",
// "==123==ERROR: LeakSanitizer: ...", MemorySanitizer likewise, "WARNING:
// ThreadSanitizer: ..." and UBSan's "file.cc:12:5: runtime error: ...".
bool is_sanitizer_report_line(std::string_view line);

struct server_watch {
  static constexpr std::size_t report_lines = 16;  // of a sanitizer report, kept for the failure text

  mutable std::mutex m;
  bool armed = false;          // ready, and not being stopped or restarted by the test
  bool exit_expected = false;  // session::expect_exit() since the last start
  std::vector<int> signalled;  // signals the test sent through session::signal() since then
  std::optional<exit_status> unexpected_exit;
  std::chrono::system_clock::time_point exited_at{};
  std::optional<exit_status> expected_end;  // the exit after expect_exit()
  std::vector<std::string> sanitizer;       // the first report's first lines
  std::size_t sanitizer_reports = 0;        // report headers seen
  bool collecting = false;
  std::function<void(const exit_status&)> on_unexpected_exit;  // server_spec::on_exit
  bool callback_pending = false;  // an unexpected exit seen first by the test's thread

  // I/O thread.
  void line(std::string_view text);
  // The server exited. From the I/O thread (its exit report) or from the test's thread
  // (which saw the status first); on_unexpected_exit runs once, on the I/O thread.
  void exited(const exit_status& status, bool on_io_thread);
};

}  // namespace harness::detail
