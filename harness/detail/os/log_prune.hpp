// Private: keeping the default log directory (<state dir>/logs) from growing without
// bound. Directories the user chooses (output_options::log_dir, HARNESS_LOG_DIR) are
// never pruned.
//
// Every process the harness starts gets a log file, and a developer's test loop starts
// thousands a day. Files whose names the harness made
// (<name>-<runner pid>-<12 hex digits>-<n>.log) and that were last written more than
// HARNESS_LOG_KEEP_HOURS hours ago (default 24; 0 keeps everything) are deleted, at
// most once an hour per directory (a ".pruned" stamp file records the last run), on a
// background thread so that no start waits for it. Other files are never touched.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <string_view>

namespace harness::detail {

// True for the names of the log files the harness writes.
bool is_harness_log_name(std::string_view name);

// Deletes harness log files in `dir` older than `max_age`; returns how many.
std::size_t prune_logs(const std::filesystem::path& dir, std::chrono::hours max_age);

// Starts prune_logs on a background thread when the directory's stamp is older than
// an hour (or missing); returns at once.
void prune_logs_in_background(const std::filesystem::path& dir);

}  // namespace harness::detail
