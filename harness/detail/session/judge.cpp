#include "harness/detail/session/judge.hpp"

#include "harness/error.hpp"

namespace harness::detail::start_judge {
namespace {

verdict failed(errc code, std::string reason, bool show_holder) {
  return {outcome::failed, make_error_code(code), std::move(reason), show_holder};
}

verdict collided(std::string reason) { return {outcome::collision, {}, std::move(reason), false}; }

// Why an exit that left processes behind was not followed as a daemon.
std::string left_behind_note(const observation& o) {
  if (*o.exited == exit_status::exited_with(0) && !o.allow_daemon) {
    return ": it daemonized, which this spec forbids (allow_daemon = false)";
  }
  return "";
}

verdict judge_exit(const observation& o) {
  const exit_status& status = *o.exited;
  if (o.lease) {
    // A process of its tree holding the port means it went on in the background.
    switch (o.on_port) {
      case listener::ours:
        return failed(errc::exited_before_ready,
                      status.str() + "; a process it started listens on port " + std::to_string(o.port) +
                          left_behind_note(o),
                      true);
      case listener::foreign:
      case listener::shared:
        return collided("exited (" + status.str() + ") while " + o.holders);
      case listener::nobody:
        break;
    }
    if (o.in_use_line) return collided(*o.in_use_line);
  }
  if (!o.left.empty()) {
    std::string pids;
    for (std::size_t i = 0; i < o.left.size(); ++i) pids += (i == 0 ? "" : ", ") + std::to_string(o.left[i]);
    return failed(errc::exited_before_ready,
                  status.str() + "; it left " + std::to_string(o.left.size()) +
                      (o.left.size() == 1 ? " process" : " processes") + " running (pid " + pids + ")" +
                      left_behind_note(o),
                  !o.announce);
  }
  return failed(errc::exited_before_ready, status.str(), !o.announce);
}

}  // namespace

verdict judge(const observation& o) {
  if (o.exited) return judge_exit(o);
  const bool stranger = o.on_port == listener::foreign || o.on_port == listener::shared;
  if (o.lease && stranger) {
    // The port was leased free on every address of both families; a stranger's
    // listener on it now dooms this attempt, whether or not the server said so (nginx
    // retries its bind for seconds, memcached skips an address it cannot bind
    // quietly): a fresh port at once, not the rest of the timeout.
    if (o.in_use_line) return collided(*o.in_use_line + "; " + o.holders);
    if (o.on_port == listener::shared) {
      return collided("the server listens on port " + std::to_string(o.port) +
                      " but not on all its addresses (a stranger holds one): " + o.holders);
    }
    return collided("the listener on port " + std::to_string(o.port) + " is not our server: " + o.holders);
  }
  // The announced port must be the server's: a stranger's "PORT=" (or a line about
  // some other program's port) would send the clients elsewhere.
  if (o.announce && o.port != 0 && o.on_port == listener::foreign) {
    return failed(errc::bad_announcement,
                  "the server announced port " + std::to_string(o.port) + ", but " + o.holders +
                      ", not a process of the server",
                  false);
  }
  if (o.probes_passed) {
    // In lease and announce mode, ready once the server's own listener is on the port
    // (not yet listening: wait; the deadline below still applies).
    const bool port_checked = o.lease || (o.announce && o.port != 0);
    if (!port_checked || o.on_port != listener::nobody) return {outcome::ready, {}, {}, false};
  }
  if (!o.deadline_passed) return {};
  if (o.lease && o.in_use_line) return collided("not ready in time after: " + *o.in_use_line);
  return failed(errc::ready_timeout,
                "not ready after " + std::to_string(o.timeout_ms) + " ms; still waiting for " + o.waiting_for,
                !o.announce);
}

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Whether the text before a ':' makes the number after it a port: "*" (redis "*:6379"),
// nothing after a space or at the start (Go "listen tcp :8080"), "[...]" (IPv6),
// "::" (Node ":::8080"), a dotted quad or "localhost". A time of day ("12:34"), a
// file:line ("server.cc:88"), a JSON field ("\"pid\":42") or a URL are not.
bool address_before_colon(std::string_view before) {
  std::size_t start = before.size();
  while (start > 0 && before[start - 1] != ' ' && before[start - 1] != '\t' && before[start - 1] != '(' &&
         before[start - 1] != '\'' && before[start - 1] != '"' && before[start - 1] != '=') {
    --start;
  }
  const std::string_view token = before.substr(start);
  if (token.empty()) return start == 0 || before[start - 1] == ' ' || before[start - 1] == '\t';
  if (token == "*" || token == "::" || token == "localhost" || token.back() == ']') return true;
  bool has_dot = false;
  for (char c : token) {
    if (c == '.') {
      has_dot = true;
    } else if (!is_digit(c)) {
      return false;
    }
  }
  return has_dot;  // 127.0.0.1, not 12 (of 12:34)
}

}  // namespace

// True unless the line names a port in a form that leaves no doubt and none of those
// is `port`: a line that may be about our port counts as one.
bool names_port(std::string_view line, std::uint16_t port) {
  bool named_any = false;
  for (std::size_t i = 0; i < line.size();) {
    if (!is_digit(line[i])) {
      ++i;
      continue;
    }
    std::size_t end = i;
    while (end < line.size() && is_digit(line[end])) ++end;
    const std::string_view digits = line.substr(i, end - i);
    const std::string_view before = line.substr(0, i);
    const bool after_word = before.size() >= 5 && (before.substr(before.size() - 5) == "port " ||
                                                   before.substr(before.size() - 5) == "Port " ||
                                                   before.substr(before.size() - 5) == "port=");
    const bool after_address =
        !before.empty() && before.back() == ':' && address_before_colon(before.substr(0, before.size() - 1));
    if (digits.size() <= 5 && (after_word || after_address)) {
      unsigned long value = 0;
      for (char c : digits) value = value * 10 + static_cast<unsigned long>(c - '0');
      if (value >= 1 && value <= 65535) {
        if (value == port) return true;
        named_any = true;
      }
    }
    i = end;
  }
  return !named_any;
}

}  // namespace harness::detail::start_judge
