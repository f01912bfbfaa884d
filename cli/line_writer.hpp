// cli/line_writer.hpp — passes lines through to our stdout/stderr as they arrive.
//
// The library hands each output line of a child to output_options::on_line on its
// I/O thread, which must return quickly (no other child's pipes are drained while it
// runs). Writing to our own stdout can block (a slow reader on a pipe), so on_line
// only queues the line here, and a writer thread of ours does the blocking write(2).
// Lines keep their order of arrival across both streams.
//
//   auto out = std::make_shared<line_writer>();
//   opts.output.on_line = forward_lines(out, "");  // child stdout -> our stdout, stderr -> stderr
//   ...
//   out->drain();                                  // everything queued so far is written
//
// The callback holds the writer (shared_ptr): the I/O thread may deliver a last line
// after the process object is gone.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "harness/output.hpp"

namespace harness_cli {

class line_writer {
 public:
  line_writer();
  line_writer(const line_writer&) = delete;
  line_writer& operator=(const line_writer&) = delete;
  // Writes what is still queued, then stops the thread.
  ~line_writer();

  // Queues prefix + line + '\n' for `fd`. Never blocks on the fd; any thread.
  void put(int fd, std::string_view prefix, std::string_view line);
  // Blocks until everything queued before the call has been written.
  void drain();

 private:
  void loop();

  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::pair<int, std::string>> queue_;
  bool writing_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

// An on_line callback: a child's stdout to `out_fd`, its stderr to `err_fd`, each line
// after `prefix`.
std::function<void(harness::stream, std::string_view)> forward_lines(
    std::shared_ptr<line_writer> writer, std::string prefix, int out_fd = 1, int err_fd = 2);

}  // namespace harness_cli
