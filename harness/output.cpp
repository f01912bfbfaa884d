#include "harness/output.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "harness/detail/proc/output_state.hpp"
#include "harness/timeouts.hpp"

namespace harness {

const char* stream_name(stream s) { return s == stream::out ? "stdout" : "stderr"; }

namespace detail {

namespace {
std::size_t index(stream s) { return s == stream::out ? 0 : 1; }

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}
}  // namespace

output_state::output_state(output_options options) : opts(std::move(options)) {
  if (opts.max_line == 0) opts.max_line = 1;
}

output_state::~output_state() {
  if (log_fd >= 0) ::close(log_fd);
}

result<void> output_state::open_log(const std::filesystem::path& path, std::string_view header) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW,
                  0600);
  if (fd < 0) return make_system_failure(errno, "cannot create log file " + path.string());
  std::lock_guard lock(m);
  log_fd = fd;
  log_path = path;
  log_pending.append(header);
  log_pending.push_back('\n');
  flush_log();
  return {};
}

void output_state::log_note(std::string_view text) {
  std::lock_guard lock(m);
  log_pending.append("# ");
  log_pending.append(text);
  log_pending.push_back('\n');
  flush_log();
}

void output_state::flush_log() {
  if (log_fd < 0 || log_pending.empty()) return;
  if (!log_capped) {
    std::string_view data = log_pending;
    const std::uint64_t room = opts.log_max_bytes > log_written ? opts.log_max_bytes - log_written : 0;
    if (data.size() > room) {
      data = data.substr(0, static_cast<std::size_t>(room));
      log_capped = true;
    }
    if (write_all(log_fd, data)) log_written += data.size();
    if (log_capped) {
      write_all(log_fd, "\n# serve-harness: log_max_bytes reached; the rest of the output is not logged\n");
    }
  }
  log_pending.clear();
}

void output_state::emit(stream s, std::string line, std::vector<std::string>& for_callback) {
  auto& st = streams[index(s)];
  ++st.lines_seen;
  if (log_fd >= 0 && !log_capped) {
    log_pending.append(line);
    log_pending.push_back('\n');
  }
  for (watcher* w : watchers) {
    if (!w->hit && w->want[index(s)]) {
      if (auto groups = w->re->search(line)) w->hit = line_match{s, line, std::move(*groups)};
    }
  }
  if (opts.on_line) for_callback.push_back(line);
  // The tail: newest lines, at most tail_bytes in all (a single line may exceed it
  // only when it is the sole line kept).
  st.tail_size += line.size() + 1;
  st.lines.push_back(std::move(line));
  st.seqs.push_back(next_seq++);
  while (st.tail_size > opts.tail_bytes && !st.lines.empty()) {
    st.tail_size -= st.lines.front().size() + 1;
    st.lines.pop_front();
    st.seqs.pop_front();
  }
}

void output_state::feed(stream s, std::string_view data) {
  std::vector<std::string> for_callback;
  {
    std::lock_guard lock(m);
    auto& st = streams[index(s)];
    st.bytes_seen += data.size();
    while (!data.empty()) {
      const auto nl = data.find('\n');
      const std::size_t take = nl == std::string_view::npos ? data.size() : nl;
      const std::size_t room = opts.max_line - st.partial.size();
      if (take >= room) {
        // The line would exceed max_line: cut a piece.
        st.partial.append(data.substr(0, room));
        data.remove_prefix(room);
        if (!data.empty() && data.front() == '\n') data.remove_prefix(1);
        emit(s, std::move(st.partial), for_callback);
        st.partial.clear();
        continue;
      }
      st.partial.append(data.substr(0, take));
      if (nl == std::string_view::npos) break;
      data.remove_prefix(nl + 1);
      if (!st.partial.empty() && st.partial.back() == '\r') st.partial.pop_back();
      emit(s, std::move(st.partial), for_callback);
      st.partial.clear();
    }
    flush_log();
  }
  cv.notify_all();
  for (const auto& line : for_callback) contain("on_line", [&] { opts.on_line(s, line); });
}

void output_state::note_callback_failure(std::string text) noexcept {
  try {
    {
      std::lock_guard lock(m);
      if (!callback_failure) callback_failure = failure{make_error_code(errc::callback_threw), std::move(text)};
    }
    cv.notify_all();
  } catch (...) {
    // Out of memory while recording: nothing better to do than to go on draining.
  }
}

void output_state::close(stream s) {
  std::vector<std::string> for_callback;
  {
    std::lock_guard lock(m);
    auto& st = streams[index(s)];
    if (st.closed) return;
    if (!st.partial.empty()) {
      emit(s, std::move(st.partial), for_callback);
      st.partial.clear();
    }
    st.closed = true;
    flush_log();
  }
  cv.notify_all();
  for (const auto& line : for_callback) contain("on_line", [&] { opts.on_line(s, line); });
}

}  // namespace detail

using detail::output_state;

namespace {
std::size_t index(stream s) { return s == stream::out ? 0 : 1; }
}  // namespace

std::string output::tail_report(stream s, std::size_t n) const {
  const auto lines = tail_lines(s, n);
  const std::string name = s == stream::out ? "stdout" : "stderr";
  if (lines.empty()) return "  " + name + ": (empty)\n";
  std::string text = "  " + name + " (last " + std::to_string(lines.size()) + " lines):\n";
  for (const auto& l : lines) text += "    | " + l + "\n";
  return text;
}

std::vector<output_line> output::merged_tail(std::size_t n) const {
  std::lock_guard lock(state_->m);
  const auto& out = state_->streams[0];
  const auto& err = state_->streams[1];
  // Walk both tails back from their ends, newest first, then reverse.
  std::vector<output_line> lines;
  std::size_t i = out.lines.size(), j = err.lines.size();
  while (lines.size() < n && (i > 0 || j > 0)) {
    const bool take_out = j == 0 || (i > 0 && out.seqs[i - 1] > err.seqs[j - 1]);
    if (take_out) {
      lines.push_back({stream::out, out.lines[--i]});
    } else {
      lines.push_back({stream::err, err.lines[--j]});
    }
  }
  std::reverse(lines.begin(), lines.end());
  return lines;
}

std::string format_output_tail(const std::vector<output_line>& lines, std::size_t n, std::string_view indent) {
  // Runs of identical lines (same stream, same text) become one "[xN] " line.
  struct run {
    const output_line* line;
    std::size_t count;
  };
  std::vector<run> runs;
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    if (!runs.empty() && runs.back().line->source == it->source && runs.back().line->text == it->text) {
      ++runs.back().count;
      continue;
    }
    if (runs.size() == n) break;
    runs.push_back({&*it, 1});
  }
  std::string text;
  for (auto it = runs.rbegin(); it != runs.rend(); ++it) {
    text += indent;
    text += it->line->source == stream::out ? "out| " : "err| ";
    if (it->count > 1) text += "[x" + std::to_string(it->count) + "] ";
    text += it->line->text;
    text += '\n';
  }
  return text;
}

std::string output::merged_report(std::size_t n) const {
  // Enough raw lines for n entries after runs are collapsed, within what the tails hold.
  const auto lines = merged_tail(SIZE_MAX);
  const std::string body = format_output_tail(lines, n, "    ");
  if (body.empty()) return "  output: (none on stdout or stderr)\n";
  const auto shown = static_cast<std::size_t>(std::count(body.begin(), body.end(), '\n'));
  return "  output (last " + std::to_string(shown) + (shown == 1 ? " line" : " lines") +
         " of stdout and stderr, in arrival order):\n" + body;
}

std::optional<failure> output::callback_failure() const {
  std::lock_guard lock(state_->m);
  return state_->callback_failure;
}

std::string output::tail(stream s) const {
  std::lock_guard lock(state_->m);
  std::string text;
  const auto& st = state_->streams[index(s)];
  text.reserve(st.tail_size);
  for (const auto& line : st.lines) {
    text += line;
    text += '\n';
  }
  return text;
}

std::vector<std::string> output::tail_lines(stream s, std::size_t n) const {
  std::lock_guard lock(state_->m);
  const auto& lines = state_->streams[index(s)].lines;
  const std::size_t take = std::min(n, lines.size());
  return {lines.end() - static_cast<std::ptrdiff_t>(take), lines.end()};
}

std::uint64_t output::line_count(stream s) const {
  std::lock_guard lock(state_->m);
  return state_->streams[index(s)].lines_seen;
}

std::uint64_t output::byte_count(stream s) const {
  std::lock_guard lock(state_->m);
  return state_->streams[index(s)].bytes_seen;
}

std::size_t output::memory_bytes() const {
  std::lock_guard lock(state_->m);
  std::size_t n = 0;
  for (const auto& st : state_->streams) n += st.tail_size + st.partial.capacity();
  return n;
}

std::filesystem::path output::log_path() const {
  std::lock_guard lock(state_->m);
  return state_->log_path;
}

bool output::closed() const {
  std::lock_guard lock(state_->m);
  return state_->streams[0].closed && state_->streams[1].closed;
}

result<line_match> output::wait_for_line(std::string_view pattern,
                                         std::chrono::milliseconds timeout,
                                         std::vector<stream> streams) const {
  auto re = detail::regex::compile(pattern);
  if (!re) return std::move(re).error();
  output_state::watcher w{&*re, {false, false}, std::nullopt};
  for (stream s : streams) w.want[index(s)] = true;

  const auto deadline = std::chrono::steady_clock::now() + timeouts::scaled(timeout);
  std::unique_lock lock(state_->m);
  // Lines still in the tail first, oldest first.
  for (stream s : {stream::out, stream::err}) {
    if (!w.want[index(s)]) continue;
    for (const auto& line : state_->streams[index(s)].lines) {
      if (auto groups = re->search(line)) return line_match{s, line, std::move(*groups)};
    }
  }
  state_->watchers.push_back(&w);
  auto all_closed = [&] {
    for (stream s : {stream::out, stream::err}) {
      if (w.want[index(s)] && !state_->streams[index(s)].closed) return false;
    }
    return true;
  };
  state_->cv.wait_until(lock, deadline, [&] { return w.hit.has_value() || all_closed(); });
  state_->watchers.remove(&w);
  if (w.hit) return std::move(*w.hit);
  if (all_closed()) {
    return make_failure(errc::output_closed, "no line matched \"" + std::string(pattern) + "\"");
  }
  return make_failure(errc::timeout, "no line matched \"" + std::string(pattern) + "\" within " +
                                         std::to_string(timeouts::scaled(timeout).count()) + " ms");
}

bool output::wait_closed(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(state_->m);
  return state_->cv.wait_for(lock, timeouts::scaled(timeout), [&] {
    return state_->streams[0].closed && state_->streams[1].closed;
  });
}

}  // namespace harness
