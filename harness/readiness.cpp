#include "harness/readiness.hpp"

#include <cstdio>

namespace harness {

probe probe::tcp() { return probe{}; }

probe probe::http(std::string path, int status, std::function<bool(std::string_view)> body) {
  probe p;
  p.what = kind::http;
  p.path = path.empty() ? "/" : std::move(path);
  p.status = status;
  p.body = std::move(body);
  return p;
}

probe probe::log(std::string pattern) {
  probe p;
  p.what = kind::log;
  p.pattern = std::move(pattern);
  return p;
}

probe probe::announce() {
  probe p;
  p.what = kind::announce;
  return p;
}

probe probe::notify() {
  probe p;
  p.what = kind::notify;
  return p;
}

probe probe::callback(std::string name, std::function<result<probe_result>(const probe_context&)> fn) {
  probe p;
  p.what = kind::callback;
  p.name = std::move(name);
  p.fn = std::move(fn);
  return p;
}

probe probe::command(std::vector<std::string> args, std::function<bool(std::string_view)> check) {
  probe p;
  p.what = kind::command;
  p.argv = std::move(args);
  p.output = std::move(check);
  return p;
}

probe probe::redis() {
  probe p;
  p.what = kind::redis;
  return p;
}

probe probe::memcached() {
  probe p;
  p.what = kind::memcached;
  return p;
}

bool probe::polled() const {
  switch (what) {
    case kind::log:
    case kind::announce:
    case kind::notify: return false;
    default: return true;
  }
}

bool probe::needs_port() const { return polled() && what != kind::callback; }

std::string probe::describe() const {
  switch (what) {
    case kind::tcp: return "tcp";
    case kind::http:
      return "http GET " + path + " -> " + (status == 0 ? std::string("2xx") : std::to_string(status)) +
             (body ? " with body check" : "");
    case kind::command: {
      std::string text = "command";
      for (const auto& a : argv) text += " " + a;
      return text + (output ? " with output check" : "");
    }
    case kind::redis: return "redis PING -> PONG";
    case kind::memcached: return "memcached version";
    case kind::log: return "log /" + pattern + "/";
    case kind::announce: return "announce (HARNESS_READY_FD)";
    case kind::notify: return "notify (NOTIFY_SOCKET READY=1)";
    case kind::callback: return "callback \"" + name + "\"";
  }
  return "?";
}

std::string to_string(const start_progress& p) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.1f s in, %.1f s left", static_cast<double>(p.elapsed.count()) / 1000.0,
                static_cast<double>(p.left.count()) / 1000.0);
  return std::string(buf) + (p.waiting_for.empty() ? std::string() : "; waiting for " + p.waiting_for);
}

}  // namespace harness
