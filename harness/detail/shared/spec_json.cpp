#include "harness/detail/shared/spec_json.hpp"

#include <cstdint>
#include <cstdio>
#include <exception>

#include <nlohmann/json.hpp>

#include "harness/detail/shared/json_number.hpp"

namespace harness::detail {

namespace {

using json = nlohmann::ordered_json;

const char* kind_name(probe::kind k) {
  switch (k) {
    case probe::kind::tcp: return "tcp";
    case probe::kind::http: return "http";
    case probe::kind::log: return "log";
    case probe::kind::announce: return "announce";
    case probe::kind::notify: return "notify";
    case probe::kind::callback: return "callback";
    case probe::kind::command: return "command";
    case probe::kind::redis: return "redis";
    case probe::kind::memcached: return "memcached";
  }
  return "?";
}

probe::kind kind_from(const std::string& s) {
  for (auto k : {probe::kind::tcp, probe::kind::http, probe::kind::log, probe::kind::announce, probe::kind::notify,
                 probe::kind::command, probe::kind::redis, probe::kind::memcached}) {
    if (s == kind_name(k)) return k;
  }
  throw std::invalid_argument("unknown probe kind \"" + s + "\"");
}

port_mode mode_from(const std::string& s) {
  for (auto m : {port_mode::automatic, port_mode::lease, port_mode::announce, port_mode::inherit}) {
    if (s == to_string(m)) return m;
  }
  throw std::invalid_argument("unknown port mode \"" + s + "\"");
}

json status_json(const exit_status& s) {
  return {{"kind", s.exited() ? "exited" : s.signaled() ? "signaled" : "unknown"},
          {"code", s.code()},
          {"signal", s.signal()}};
}

exit_status status_from(const json& j) {
  const std::string k = j.at("kind").get<std::string>();
  if (k == "exited") return exit_status::exited_with(json_integer<int>(j.at("code")));
  if (k == "signaled") return exit_status::killed_by(json_integer<int>(j.at("signal")));
  return exit_status();
}

}  // namespace

result<std::string> spec_to_json(const server_spec& spec) {
  const auto refuse = [](const char* field) {
    return make_failure(errc::invalid_argument,
                        std::string("a shared server's spec must be written down to travel to the process that "
                                    "keeps it: ") +
                            field + " is a callback; use a probe or option that names what to check");
  };
  if (spec.on_exit) return refuse("on_exit");
  if (spec.output.on_line) return refuse("output.on_line");
  if (spec.ready.on_progress) return refuse("ready.on_progress");
  json probes = json::array();
  for (const auto& p : spec.ready.probes) {
    if (p.what == probe::kind::callback) return refuse("a callback probe");
    if (p.body) return refuse("an http probe's body predicate");
    if (p.output) return refuse("a command probe's output check");
    probes.push_back({{"what", kind_name(p.what)},
                      {"path", p.path},
                      {"status", p.status},
                      {"pattern", p.pattern},
                      {"argv", p.argv}});
  }
  json patterns = json::array();
  for (const auto& c : spec.port.collision_patterns) patterns.push_back({{"ecosystem", c.ecosystem}, {"regex", c.regex}});
  json set = json::array();
  for (const auto& [k, v] : spec.env.set) set.push_back({k, v});
  json files = json::array();
  for (const auto& f : spec.files) files.push_back({f.name, f.text});
  json steps = json::array();
  for (const auto& st : spec.stop.steps) steps.push_back({st.signal, st.wait.count()});
  json exits = json::array();
  for (const auto& e : spec.verdict.expected_exits) exits.push_back(status_json(e));
  const json range = spec.port.range ? json{spec.port.range->first, spec.port.range->last} : json();
  const json j = {
      {"command", spec.command},
      {"port",
       {{"mode", to_string(spec.port.mode)},
        {"host", spec.port.host},
        {"range", range},
        {"port", spec.port.port},
        {"port_from", spec.port.port_from},
        {"collision_patterns", patterns}}},
      {"ready",
       {{"probes", probes},
        {"timeout_ms", spec.ready.timeout.count()},
        {"fail_on", spec.ready.fail_on},
        {"poll_initial_us", spec.ready.poll_initial.count()},
        {"poll_cap_ms", spec.ready.poll_cap.count()}}},
      {"respawn",
       {{"attempts", spec.respawn.attempts},
        {"backoff_base_ms", spec.respawn.backoff_base.count()},
        {"backoff_cap_ms", spec.respawn.backoff_cap.count()}}},
      {"env", {{"inherit", spec.env.inherit}, {"allow", spec.env.allow}, {"unset", spec.env.unset}, {"set", set}}},
      {"cwd", spec.cwd.string()},
      {"output",
       {{"tail_bytes", spec.output.tail_bytes},
        {"max_line", spec.output.max_line},
        {"log_file", spec.output.log_file},
        {"log_dir", spec.output.log_dir.string()},
        {"log_max_bytes", spec.output.log_max_bytes}}},
      {"stop",
       {{"signal", spec.stop.signal},
        {"grace_ms", spec.stop.grace.count()},
        {"kill_wait_ms", spec.stop.kill_wait.count()},
        {"steps", steps}}},
      {"files", files},
      {"scratch",
       {{"create", spec.scratch.create},
        {"keep", static_cast<int>(spec.scratch.keep)},
        {"parent", spec.scratch.parent.string()}}},
      {"name", spec.name},
      {"allow_daemon", spec.allow_daemon},
      {"verdict",
       {{"fail_on_unexpected_exit", spec.verdict.fail_on_unexpected_exit},
        {"fail_on_exit_status", spec.verdict.fail_on_exit_status},
        {"expected_exits", exits},
        {"fail_on_sanitizer_report", spec.verdict.fail_on_sanitizer_report},
        {"fail_on_left_processes", spec.verdict.fail_on_left_processes}}},
  };
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

result<server_spec> spec_from_json(std::string_view text) {
  try {
    const json j = json::parse(text);
    server_spec s;
    s.command = j.at("command").get<std::vector<std::string>>();
    const json& port = j.at("port");
    s.port.mode = mode_from(port.at("mode").get<std::string>());
    s.port.host = port.at("host").get<std::string>();
    if (const json& r = port.at("range"); !r.is_null()) {
      s.port.range = port_range{json_integer<std::uint16_t>(r.at(0)), json_integer<std::uint16_t>(r.at(1))};
    }
    s.port.port = json_integer<std::uint16_t>(port.at("port"));
    s.port.port_from = port.at("port_from").get<std::string>();
    for (const auto& c : port.at("collision_patterns")) {
      s.port.collision_patterns.push_back({c.at("ecosystem").get<std::string>(), c.at("regex").get<std::string>()});
    }
    const json& ready = j.at("ready");
    for (const auto& p : ready.at("probes")) {
      probe pr;
      pr.what = kind_from(p.at("what").get<std::string>());
      pr.path = p.at("path").get<std::string>();
      pr.status = json_integer<int>(p.at("status"));
      pr.pattern = p.at("pattern").get<std::string>();
      pr.argv = p.at("argv").get<std::vector<std::string>>();
      s.ready.probes.push_back(std::move(pr));
    }
    s.ready.timeout = std::chrono::milliseconds(json_integer<std::int64_t>(ready.at("timeout_ms")));
    s.ready.fail_on = ready.at("fail_on").get<std::vector<std::string>>();
    s.ready.poll_initial = std::chrono::microseconds(json_integer<std::int64_t>(ready.at("poll_initial_us")));
    s.ready.poll_cap = std::chrono::milliseconds(json_integer<std::int64_t>(ready.at("poll_cap_ms")));
    const json& respawn = j.at("respawn");
    s.respawn.attempts = json_integer<int>(respawn.at("attempts"));
    s.respawn.backoff_base = std::chrono::milliseconds(json_integer<std::int64_t>(respawn.at("backoff_base_ms")));
    s.respawn.backoff_cap = std::chrono::milliseconds(json_integer<std::int64_t>(respawn.at("backoff_cap_ms")));
    const json& env = j.at("env");
    s.env.inherit = env.at("inherit").get<bool>();
    s.env.allow = env.at("allow").get<std::vector<std::string>>();
    s.env.unset = env.at("unset").get<std::vector<std::string>>();
    for (const auto& kv : env.at("set")) s.env.set.emplace_back(kv.at(0).get<std::string>(), kv.at(1).get<std::string>());
    s.cwd = j.at("cwd").get<std::string>();
    const json& out = j.at("output");
    s.output.tail_bytes = json_integer<std::size_t>(out.at("tail_bytes"));
    s.output.max_line = json_integer<std::size_t>(out.at("max_line"));
    s.output.log_file = out.at("log_file").get<bool>();
    s.output.log_dir = out.at("log_dir").get<std::string>();
    s.output.log_max_bytes = json_integer<std::uint64_t>(out.at("log_max_bytes"));
    const json& stop = j.at("stop");
    s.stop.signal = json_integer<int>(stop.at("signal"));
    s.stop.grace = std::chrono::milliseconds(json_integer<std::int64_t>(stop.at("grace_ms")));
    s.stop.kill_wait = std::chrono::milliseconds(json_integer<std::int64_t>(stop.at("kill_wait_ms")));
    for (const auto& st : stop.at("steps")) {
      s.stop.steps.push_back({json_integer<int>(st.at(0)), std::chrono::milliseconds(json_integer<std::int64_t>(st.at(1)))});
    }
    for (const auto& f : j.at("files")) s.files.push_back({f.at(0).get<std::string>(), f.at(1).get<std::string>()});
    const json& scratch = j.at("scratch");
    s.scratch.create = scratch.at("create").get<bool>();
    const int keep = json_integer<int>(scratch.at("keep"));
    if (keep < 0 || keep > 2) throw std::invalid_argument("scratch.keep out of range");
    s.scratch.keep = static_cast<scratch_options::keep_policy>(keep);
    s.scratch.parent = scratch.at("parent").get<std::string>();
    s.name = j.at("name").get<std::string>();
    s.allow_daemon = j.at("allow_daemon").get<bool>();
    const json& v = j.at("verdict");
    s.verdict.fail_on_unexpected_exit = v.at("fail_on_unexpected_exit").get<bool>();
    s.verdict.fail_on_exit_status = v.at("fail_on_exit_status").get<bool>();
    s.verdict.expected_exits.clear();
    for (const auto& e : v.at("expected_exits")) s.verdict.expected_exits.push_back(status_from(e));
    s.verdict.fail_on_sanitizer_report = v.at("fail_on_sanitizer_report").get<bool>();
    s.verdict.fail_on_left_processes = v.at("fail_on_left_processes").get<bool>();
    return s;
  } catch (const std::exception& e) {
    return make_failure(errc::invalid_argument, std::string("not a server spec: ") + e.what());
  }
}

std::string fingerprint(std::string_view text) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace harness::detail
