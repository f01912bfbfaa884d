// harness/output.hpp — what a child process printed: bounded tails, a log file, waits.
//
// Every process the harness starts has its stdout and stderr drained at all times by
// the harness I/O thread, so a child never blocks on a full pipe however much it
// writes. Each stream is split into lines and kept three ways:
//   * an in-memory tail of the most recent lines (output_options::tail_bytes per stream);
//   * a log file on disk with both streams, in arrival order (output_options::log_dir);
//   * the on_line callback, if you set one, called once per line as it arrives.
//
//   harness::process p = harness::process::spawn({.argv = {"my-server"}});
//   auto line = p.output().wait_for_line(R"(listening on port (\d+))", 5s);
//   if (line) std::cout << "port " << line->groups[1] << "\n";
//   std::cout << p.output().tail(harness::stream::err);
//
// Gotchas:
//   * A line longer than output_options::max_line bytes is cut into pieces of that
//     size; each piece is matched and stored as a line of its own.
//   * wait_for_line() first looks at the lines still in the tail, then at new ones. A
//     line that has already fallen out of the tail cannot match; set on_line before
//     spawning if you must see every line.
//   * Patterns use Perl/ECMAScript syntax (Boost.Regex) and match anywhere in the line
//     (search semantics). A pattern that does not compile is errc::bad_pattern.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "harness/error.hpp"

namespace harness {

enum class stream { out, err };

// "stdout" / "stderr".
const char* stream_name(stream s);

struct output_options {
  // Bytes of the most recent lines kept in memory, per stream.
  std::size_t tail_bytes = 64 * 1024;
  // Longer lines are cut into pieces of this many bytes.
  std::size_t max_line = 16 * 1024;
  // Write a log file with both streams. The file is kept after the process ends; in
  // the default directory, files older than $HARNESS_LOG_KEEP_HOURS (default 24) are
  // deleted later, in the background. A directory you choose is never pruned.
  bool log_file = true;
  // Where log files go. Empty: $HARNESS_LOG_DIR, else <private state dir>/logs.
  std::filesystem::path log_dir{};
  // Stop writing the log file after this many bytes (a marker line says so).
  std::uint64_t log_max_bytes = 64ull * 1024 * 1024;
  // Called on the harness I/O thread for every line, without the line break.
  // It must return quickly and must not call back into the harness: while it runs,
  // no process's output is drained. If it throws, the exception is recorded
  // (output::callback_failure(); a session's start fails with errc::callback_threw)
  // and the output keeps draining.
  std::function<void(stream, std::string_view)> on_line{};
};

// A line that matched a pattern.
struct line_match {
  stream source = stream::out;
  std::string line{};
  // groups[0] is the whole match, groups[i] the i-th capture group ("" if unmatched).
  std::vector<std::string> groups{};
};

// One line of output and the stream it came from.
struct output_line {
  stream source = stream::out;
  std::string text{};
  friend bool operator==(const output_line&, const output_line&) = default;
};

// Lines as reports show them, the newest `n` entries: "<indent>out| text" or
// "<indent>err| text", with a run of identical lines shown once as "err| [x20] text".
std::string format_output_tail(const std::vector<output_line>& lines, std::size_t n,
                               std::string_view indent = "");

namespace detail {
struct output_state;
}

// A read-only view of one process's output. Obtained from process::output(); valid
// while the process object lives. All members are thread-safe.
class output {
 public:
  // The most recent lines of one stream, each followed by '\n'.
  [[nodiscard]] std::string tail(stream s) const;
  // The last `n` lines of one stream.
  [[nodiscard]] std::vector<std::string> tail_lines(stream s, std::size_t n = SIZE_MAX) const;
  // The last `n` lines of one stream as failure reports show them:
  // "  stderr (last 2 lines):\n    | ...\n    | ...\n", or "  stderr: (empty)\n".
  [[nodiscard]] std::string tail_report(stream s, std::size_t n) const;
  // The last `n` lines of both streams (what their tails hold), in arrival order.
  [[nodiscard]] std::vector<output_line> merged_tail(std::size_t n = SIZE_MAX) const;
  // The last `n` entries of both streams as failure reports show them, runs of
  // identical lines collapsed: "  output (last 3 lines of stdout and stderr, in arrival
  // order):\n    out| warming up\n    err| [x20] GET /health 404\n", or
  // "  output: (none on stdout or stderr)\n".
  [[nodiscard]] std::string merged_report(std::size_t n) const;
  // Lines seen so far on one stream (including those no longer in the tail).
  [[nodiscard]] std::uint64_t line_count(stream s) const;
  // Bytes read so far from one stream.
  [[nodiscard]] std::uint64_t byte_count(stream s) const;
  // Bytes the in-memory tails hold right now (both streams).
  [[nodiscard]] std::size_t memory_bytes() const;
  // The log file, or an empty path when there is none.
  [[nodiscard]] std::filesystem::path log_path() const;
  // True once both streams reached end-of-file (every writer closed its end).
  [[nodiscard]] bool closed() const;
  // The first exception thrown by on_line (or by the process's on_exit), as
  // errc::callback_threw with its text; the output kept draining all the same.
  [[nodiscard]] std::optional<failure> callback_failure() const;

  // Blocks until a line on `streams` matches `pattern`, the timeout passes
  // (errc::timeout, after timeouts::scaled(timeout)), or both streams close
  // (errc::output_closed). Bad patterns fail at once with errc::bad_pattern.
  [[nodiscard]] result<line_match> wait_for_line(std::string_view pattern,
                                                 std::chrono::milliseconds timeout,
                                                 std::vector<stream> streams = {stream::out,
                                                                                stream::err}) const;

  // Blocks until both streams are closed or the timeout passes; true when closed.
  bool wait_closed(std::chrono::milliseconds timeout) const;

  explicit output(std::shared_ptr<detail::output_state> state) : state_(std::move(state)) {}

 private:
  std::shared_ptr<detail::output_state> state_;
};

}  // namespace harness
