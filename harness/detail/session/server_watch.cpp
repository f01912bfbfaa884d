#include "harness/detail/session/server_watch.hpp"

#include <csignal>

namespace harness::detail {

bool is_sanitizer_report_line(std::string_view line) {
  // "==<pid>==ERROR: <Name>Sanitizer" (ASan, LSan, MSan; also with a thread id).
  if (const auto at = line.find("==ERROR: "); at != std::string_view::npos && line.substr(0, 2) == "==") {
    const std::string_view rest = line.substr(at + 9);
    for (std::string_view tool : {"AddressSanitizer", "LeakSanitizer", "MemorySanitizer"}) {
      if (rest.substr(0, tool.size()) == tool) return true;
    }
  }
  if (line.find("WARNING: ThreadSanitizer:") != std::string_view::npos) return true;
  // UBSan: "<file>:<line>:<column>: runtime error: <what>".
  return line.find(": runtime error: ") != std::string_view::npos;
}

void server_watch::line(std::string_view text) {
  std::lock_guard lock(m);
  if (is_sanitizer_report_line(text)) {
    ++sanitizer_reports;
    if (sanitizer.empty()) {
      collecting = true;
      sanitizer.emplace_back(text);
      return;
    }
  }
  if (collecting) {
    if (sanitizer.size() < report_lines) sanitizer.emplace_back(text);
    collecting = sanitizer.size() < report_lines;
  }
}

void server_watch::exited(const exit_status& status, bool on_io_thread) {
  std::function<void(const exit_status&)> callback;
  {
    std::lock_guard lock(m);
    if (!armed) {
      if (on_io_thread && callback_pending) {
        callback_pending = false;
        callback = on_unexpected_exit;
      }
    } else {
      armed = false;
      // The test's own signal: an exit by it (killed by it, or 128 + it as shells and
      // JVMs report), or a clean exit after one that asks for a shutdown.
      for (const int sig : signalled) {
        const bool shutdown = sig == SIGTERM || sig == SIGINT || sig == SIGQUIT;
        if (status == exit_status::killed_by(sig) || status == exit_status::exited_with(128 + sig) ||
            (shutdown && status == exit_status::exited_with(0))) {
          exit_expected = true;
        }
      }
      if (exit_expected) {
        expected_end = status;
        return;
      }
      unexpected_exit = status;
      exited_at = std::chrono::system_clock::now();
      if (on_io_thread) {
        callback = on_unexpected_exit;
      } else {
        callback_pending = true;
      }
    }
  }
  // On the I/O thread: the process layer records what it throws (callback_failure()).
  if (callback) callback(status);
}

}  // namespace harness::detail
