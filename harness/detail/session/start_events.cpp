#include "harness/detail/session/start_events.hpp"

#include <charconv>

#include "harness/detail/session/judge.hpp"

namespace harness::detail {

std::optional<std::uint16_t> parse_port(std::string_view text) {
  unsigned v = 0;
  auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (r.ec != std::errc() || r.ptr != text.data() + text.size()) return std::nullopt;
  if (v < 1 || v > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(v);
}

bool take_announcement_line(start_events& ev, std::string_view line, bool from_notify) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty()) return false;
  if (line == "READY=1") {
    ev.ready_signal = true;
    (from_notify ? ev.notify_signal : ev.ready_fd_signal) = true;
    return true;
  }
  if (line.rfind("PORT=", 0) == 0) {
    auto port = parse_port(line.substr(5));
    if (!port) {
      ev.bad = make_failure(errc::port_out_of_range,
                            "announced \"" + std::string(line) + "\"; a port is 1-65535");
      return true;
    }
    ev.announced = *port;
    if (!from_notify) {
      ev.ready_signal = true;
      ev.ready_fd_signal = true;
    }
    return true;
  }
  if (from_notify) return false;  // sd_notify carries other fields (STATUS=, ...)
  ev.bad = make_failure(errc::bad_announcement,
                        "HARNESS_READY_FD got \"" + std::string(line.substr(0, 200)) +
                            "\"; expected \"PORT=<port>\" or \"READY=1\"");
  return true;
}

void take_notify_datagram(start_events& ev, std::string_view text) {
  while (!text.empty()) {
    auto nl = text.find('\n');
    take_announcement_line(ev, text.substr(0, nl), true);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

bool take_ready_fd_bytes(start_events& ev, std::string_view bytes) {
  bool changed = false;
  ev.ready_fd_buffer.append(bytes);
  // A line longer than 256 bytes is an error whether it came in one read or several.
  const auto too_long = [&ev] {
    ev.bad = make_failure(errc::bad_announcement, "HARNESS_READY_FD line longer than 256 bytes");
    return true;
  };
  for (auto nl = ev.ready_fd_buffer.find('\n'); nl != std::string::npos; nl = ev.ready_fd_buffer.find('\n')) {
    if (nl > 256) {
      changed = too_long();
    } else {
      changed = take_announcement_line(ev, std::string_view(ev.ready_fd_buffer).substr(0, nl), false) || changed;
    }
    ev.ready_fd_buffer.erase(0, nl + 1);
  }
  if (ev.ready_fd_buffer.size() > 256) changed = too_long();
  return changed;
}

bool take_line(start_events& ev, const matchers& m, std::string_view line, std::uint16_t port) {
  bool changed = false;
  if (!ev.fail_line) {
    for (const auto& re : m.fail_on) {
      if (re.matches(line)) {
        ev.fail_line = std::string(line.substr(0, 400));
        changed = true;
        break;
      }
    }
  }
  for (const auto& [i, re] : m.log_probes) {
    if (!ev.log_hit[i] && re.matches(line)) {
      ev.log_hit[i] = true;
      changed = true;
    }
  }
  if (m.port_from && !ev.announced && !ev.bad) {
    if (auto g = m.port_from->search(line)) {
      if (auto p = parse_port((*g)[1])) {
        ev.announced = *p;
      } else {
        ev.bad = make_failure(errc::port_out_of_range,
                              "port_from matched \"" + (*g)[1] + "\" in: " + std::string(line.substr(0, 200)));
      }
      changed = true;
    }
  }
  if (m.classifier && !ev.collision) {
    // Only a line about our port: a server may fail on another port it was given
    // (memcached's UDP -U) and that is not our port being taken.
    if (auto eco = m.classifier->classify(line); eco && start_judge::names_port(line, port)) {
      ev.collision = *eco + ": " + std::string(line.substr(0, 300));
      changed = true;
    }
  }
  return changed;
}

}  // namespace harness::detail
