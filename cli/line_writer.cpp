#include "line_writer.hpp"

#include <unistd.h>

#include <cerrno>

namespace harness_cli {
namespace {

// Writes all of `data`; gives up silently on errors (e.g. EPIPE: nobody reads).
void write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace

line_writer::line_writer() : thread_([this] { loop(); }) {}

line_writer::~line_writer() {
  {
    std::lock_guard lock(m_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void line_writer::put(int fd, std::string_view prefix, std::string_view line) {
  std::string text;
  text.reserve(prefix.size() + line.size() + 1);
  text.append(prefix).append(line).push_back('\n');
  {
    std::lock_guard lock(m_);
    queue_.emplace_back(fd, std::move(text));
  }
  cv_.notify_all();
}

void line_writer::drain() {
  std::unique_lock lock(m_);
  cv_.wait(lock, [this] { return queue_.empty() && !writing_; });
}

void line_writer::loop() {
  std::unique_lock lock(m_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and everything is written
    auto [fd, text] = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    lock.unlock();
    write_all(fd, text);
    lock.lock();
    writing_ = false;
    cv_.notify_all();
  }
}

std::function<void(harness::stream, std::string_view)> forward_lines(
    std::shared_ptr<line_writer> writer, std::string prefix, int out_fd, int err_fd) {
  return [writer = std::move(writer), prefix = std::move(prefix), out_fd, err_fd](
             harness::stream s, std::string_view line) {
    writer->put(s == harness::stream::out ? out_fd : err_fd, prefix, line);
  };
}

}  // namespace harness_cli
