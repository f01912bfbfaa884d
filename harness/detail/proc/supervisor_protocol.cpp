// The parsers of supervisor_protocol.hpp. std-only: harness-supervisor links it too.
#include "harness/detail/proc/supervisor_protocol.hpp"

#include <signal.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>

namespace harness::detail::supervisor_protocol {
namespace {

std::vector<std::string> split_fields(std::string_view text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    const auto nul = text.find('\0', start);
    const auto end = nul == std::string_view::npos ? text.size() : nul;
    out.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace

bool parse_long(const char* text, long& out) {
  char* end = nullptr;
  errno = 0;
  out = std::strtol(text, &end, 10);
  return errno == 0 && end != text && *end == '\0';
}

bool parse_stop_steps(std::string_view text, std::vector<stop_step>& out) {
  out.clear();
  std::size_t start = 0;
  while (start < text.size() && static_cast<int>(out.size()) < max_stop_steps) {
    auto comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    const std::string item(text.substr(start, comma - start));
    const auto colon = item.find(':');
    long sig = 0, ms = 0;
    if (colon == std::string::npos || !parse_long(item.substr(0, colon).c_str(), sig) ||
        !parse_long(item.substr(colon + 1).c_str(), ms) || sig <= 0 || sig >= NSIG || ms < 0) {
      return false;
    }
    out.push_back({static_cast<int>(sig), ms});
    start = comma + 1;
  }
  return true;
}

request_error parse_launch_request(std::string_view text, launch_request& out) {
  const auto fields = split_fields(text);
  long argc = 0;
  if (fields.size() < 8 || !parse_long(fields[6].c_str(), argc) || argc < 1 ||
      fields.size() < 7 + static_cast<std::size_t>(argc)) {
    return request_error::malformed;
  }
  for (char f : fields[0]) {
    if (f == 'l') out.listen_pid = true;
    if (f == 'f') out.follow = true;
    if (f == 'g') out.own_group = true;
  }
  if (fields[1] != "-") {
    std::size_t start = 0;
    while (start <= fields[1].size()) {
      auto comma = fields[1].find(',', start);
      if (comma == std::string::npos) comma = fields[1].size();
      long v = 0;
      if (!parse_long(fields[1].substr(start, comma - start).c_str(), v) || v < 3 || v > INT_MAX) {
        return request_error::bad_field;
      }
      out.keep_fds.push_back(static_cast<int>(v));
      start = comma + 1;
    }
  }
  if (!parse_stop_steps(fields[2], out.stop)) return request_error::bad_field;
  out.cwd = fields[3];
  if (fields[4] != "-") {
    mode_t mask = 0;
    for (char c : fields[4]) mask = static_cast<mode_t>(mask * 8 + static_cast<mode_t>(c - '0'));
    out.set_umask = true;
    out.umask = mask & 0777;
  }
  out.program = fields[5];
  out.argc = static_cast<std::size_t>(argc);
  out.args.assign(fields.begin() + 7, fields.end());
  return request_error::none;
}

std::vector<stop_step> parse_stop_message(const char* text) {
  std::vector<stop_step> steps;
  const char* p = text + 1;
  while (static_cast<int>(steps.size()) < max_stop_steps) {
    char* end = nullptr;
    const long sig = std::strtol(p, &end, 10);
    if (end == p) break;
    p = end;
    const long ms = std::strtol(p, &end, 10);
    if (end == p) break;
    p = end;
    if (sig <= 0 || sig >= NSIG || ms < 0) break;
    steps.push_back({static_cast<int>(sig), ms});
  }
  return steps;
}

int parse_group_signal(const char* text) {
  long sig = 0;
  // "G" alone: text + 2 would lie past the terminating NUL.
  if (text[0] == 'G' && text[1] != '\0' && parse_long(text + 2, sig) && sig > 0 && sig < NSIG) {
    return static_cast<int>(sig);
  }
  return 0;
}

namespace {

bool is_pid(long v) { return v > 0 && v <= INT_MAX; }
bool is_count(long v) { return v >= 0 && v <= INT_MAX; }

// What waitid() can report: an exit code, or the signal that killed the process.
bool is_status(char how, long v) {
  if (how == 'e') return v >= 0 && v <= 255;
  return (how == 'k' || how == 'c') && v > 0 && v < NSIG;
}

}  // namespace

message parse_message(const char* text) {
  message m;
  long a = 0, b = 0;
  char how = 0;
  char step[32] = {};
  // Numbers out of their range are a message of none of the kinds: a pid that does not
  // fit pid_t would have become a negative one, that is a process group.
  if (std::sscanf(text, "S %ld %ld", &a, &b) == 2 && is_pid(a)) {
    m.kind = 'S';
  } else if (std::sscanf(text, "E %ld %31s", &a, step) == 2) {
    m.kind = 'E';
    m.step = step;
  } else if (std::sscanf(text, "X %c %ld %ld", &how, &a, &b) == 3 && is_status(how, a) &&
             is_count(b)) {
    m.kind = 'X';
    m.how = how;
  } else if (std::sscanf(text, "F %ld %ld", &a, &b) == 2 && is_pid(a)) {
    m.kind = 'F';
  } else if (std::sscanf(text, "Z %ld", &a) == 1 && is_count(a)) {
    m.kind = 'Z';
  } else {
    return m;
  }
  m.a = a;
  m.b = b;
  return m;
}

}  // namespace harness::detail::supervisor_protocol
