// Private: the state behind harness::output. Fed by the I/O thread, read by anyone.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "harness/detail/text/regex.hpp"
#include "harness/error.hpp"
#include "harness/output.hpp"

namespace harness::detail {

struct output_state {
  explicit output_state(output_options options);
  ~output_state();
  output_state(const output_state&) = delete;
  output_state& operator=(const output_state&) = delete;

  // Opens the log file `path` (0600, O_EXCL); writes `header` as its first line.
  result<void> open_log(const std::filesystem::path& path, std::string_view header);
  // Appends a line of the harness's own (e.g. the exit status) to the log file.
  void log_note(std::string_view text);

  // Called with raw bytes read from one stream (I/O thread only).
  void feed(stream s, std::string_view data);
  // Called when a stream reaches end-of-file (I/O thread only).
  void close(stream s);

  // Runs a callback of the user's: an exception from it is caught and recorded (the
  // first one is kept), never let out into the I/O thread.
  template <class F>
  void contain(std::string_view what, F&& callback) noexcept {
    try {
      callback();
    } catch (const std::exception& e) {
      note_callback_failure(std::string(what) + " threw: " + e.what());
    } catch (...) {
      note_callback_failure(std::string(what) + " threw an exception that is not a std::exception");
    }
  }
  void note_callback_failure(std::string text) noexcept;
  std::optional<failure> callback_failure;  // guarded by m

  // A registered line watcher; `hit` is set under `m` by the I/O thread.
  struct watcher {
    const regex* re;
    bool want[2];
    std::optional<line_match> hit;
  };

  output_options opts;
  mutable std::mutex m;
  mutable std::condition_variable cv;

  struct stream_state {
    std::string partial;              // bytes after the last line break
    std::deque<std::string> lines;    // the tail
    std::deque<std::uint64_t> seqs;   // each tail line's place in the arrival order of both streams
    std::size_t tail_size = 0;        // bytes in `lines`
    std::uint64_t lines_seen = 0;
    std::uint64_t bytes_seen = 0;
    bool closed = false;
  };
  stream_state streams[2];
  std::uint64_t next_seq = 0;  // arrival order across both streams
  std::list<watcher*> watchers;

  int log_fd = -1;
  std::filesystem::path log_path;
  std::uint64_t log_written = 0;
  bool log_capped = false;
  std::string log_pending;  // lines of one feed() call, written with one write()

 private:
  void emit(stream s, std::string line, std::vector<std::string>& for_callback);
  void flush_log();
};

}  // namespace harness::detail
