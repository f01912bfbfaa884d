#include "harness/session.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <mutex>

#include "harness/detail/lease_offer.hpp"
#include "harness/detail/os/net.hpp"
#include "harness/detail/os/private_dir.hpp"
#include "harness/detail/os/unique_fd.hpp"
#include "harness/detail/os/proc_net.hpp"
#include "harness/detail/proc/io_thread.hpp"
#include "harness/detail/session/report.hpp"
#include "harness/detail/session/respawn_loop.hpp"
#include "harness/detail/session/session_state.hpp"
#include "harness/detail/stop_quietly.hpp"
#include "harness/detail/text/regex.hpp"

namespace harness {

namespace {

// {port}, {host} and (when `dir` is given) {dir}; {{name}} is a literal {name}.
std::string substitute(std::string_view text, std::string_view host, std::string_view port,
                       const std::string_view* dir) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    auto at = [&](std::string_view what) { return text.substr(i, what.size()) == what; };
    if (at("{{port}}") || at("{{host}}") || (dir != nullptr && at("{{dir}}"))) {
      const std::size_t n = at("{{dir}}") ? 7 : 8;
      out.append(text.substr(i + 1, n - 2));
      i += n;
    } else if (at("{port}")) {
      out.append(port);
      i += 6;
    } else if (at("{host}")) {
      out.append(host);
      i += 6;
    } else if (dir != nullptr && at("{dir}")) {
      out.append(*dir);
      i += 5;
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

bool uses_dir(std::string_view text) {
  const std::string_view a = "A", b = "B";
  return substitute(text, "", "", &a) != substitute(text, "", "", &b);
}

}  // namespace

std::string substitute_placeholders(std::string_view text, std::string_view host,
                                    std::string_view port) {
  return substitute(text, host, port, nullptr);
}

std::string substitute_placeholders(std::string_view text, std::string_view host, std::string_view port,
                                    std::string_view dir) {
  return substitute(text, host, port, &dir);
}

bool uses_dir_placeholder(const server_spec& spec) {
  for (const auto& a : spec.command) {
    if (uses_dir(a)) return true;
  }
  for (const auto& [k, v] : spec.env.set) {
    if (uses_dir(v)) return true;
  }
  if (uses_dir(spec.cwd.string())) return true;
  for (const auto& f : spec.files) {
    if (uses_dir(f.text)) return true;
  }
  for (const auto& p : spec.ready.probes) {
    for (const auto& a : p.argv) {
      if (uses_dir(a)) return true;
    }
  }
  return false;
}

std::string server_label(const server_spec& spec) {
  if (!spec.name.empty()) return spec.name;
  if (!spec.command.empty()) return default_name(spec.command);
  return "server";
}

bool uses_port_placeholder(std::string_view text) {
  // Substituting two different ports gives two different strings exactly when {port}
  // is used.
  return substitute_placeholders(text, "", "0") != substitute_placeholders(text, "", "1");
}

bool uses_port_placeholder(const server_spec& spec) {
  for (const auto& a : spec.command) {
    if (uses_port_placeholder(a)) return true;
  }
  for (const auto& [k, v] : spec.env.set) {
    if (uses_port_placeholder(v)) return true;
  }
  for (const auto& f : spec.files) {
    if (uses_port_placeholder(f.text)) return true;
  }
  return false;
}

const char* to_string(port_mode m) {
  switch (m) {
    case port_mode::automatic: return "automatic";
    case port_mode::lease: return "lease";
    case port_mode::announce: return "announce";
    case port_mode::inherit: return "inherit";
  }
  return "?";
}

namespace detail {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

result<void> session_state::validate_and_compile() {
  if (spec.command.empty()) return make_failure(errc::empty_argv, "server_spec::command is empty");
  if (spec.ready.timeout <= milliseconds(0)) {
    return make_failure(errc::invalid_argument, "ready.timeout must be positive");
  }
  if (spec.respawn.attempts < 1) {
    return make_failure(errc::invalid_argument, "respawn.attempts must be at least 1");
  }
  if (auto a = net::parse_host(spec.port.host, 0); !a) return std::move(a).error();
  for (const auto& f : spec.files) {
    const std::filesystem::path name(f.name);
    const bool climbs = std::any_of(name.begin(), name.end(), [](const auto& part) { return part == ".."; });
    if (f.name.empty() || name.is_absolute() || climbs || f.name.back() == '/' ||
        f.name.find('\0') != std::string::npos) {
      return make_failure(errc::invalid_argument, "files: \"" + f.name +
                                                      "\" must be a relative file path inside the scratch directory "
                                                      "(no \"..\", not absolute)");
    }
  }
  if (auto ok = choose_mode(); !ok) return ok;
  // The default probe of lease mode (announce and inherit wait for the announcement).
  if (mode == port_mode::lease && spec.ready.probes.empty()) spec.ready.probes.push_back(probe::tcp());
  return compile_matchers();
}

// The port mode, from the spec and its placeholders; the lease range checked.
result<void> session_state::choose_mode() {
  const bool placeholder = harness::uses_port_placeholder(spec);
  mode = spec.port.mode;
  if (mode == port_mode::automatic) {
    if (!placeholder) {
      return make_failure(errc::invalid_argument,
                          "no {port} in the command or env: choose port.mode (announce or inherit)");
    }
    mode = port_mode::lease;
  }
  if (placeholder && mode != port_mode::lease) {
    return make_failure(errc::placeholder_not_allowed,
                        std::string("{port} is only substituted in lease mode; in ") +
                            to_string(mode) + " mode the server gets its port otherwise");
  }
  if (spec.port.range && mode == port_mode::lease) {
    const auto& r = *spec.port.range;
    if (r.first == 0 || r.first > r.last) {
      return make_failure(errc::bad_port_range, std::to_string(r.first) + "-" +
                                                    std::to_string(r.last) +
                                                    " is empty or inverted");
    }
  }
  return {};
}

// The regular expressions of the fail patterns, log probes, port_from and the
// port-in-use classifier, compiled once; the probes checked.
result<void> session_state::compile_matchers() {
  auto m = std::make_shared<matchers>();
  for (const auto& p : spec.ready.fail_on) {
    auto re = regex::compile(p);
    if (!re) return std::move(re).error();
    m->fail_on.push_back(std::move(*re));
  }
  bool only_tcp = !spec.ready.probes.empty();
  for (std::size_t i = 0; i < spec.ready.probes.size(); ++i) {
    const auto& p = spec.ready.probes[i];
    if (p.what != probe::kind::tcp) only_tcp = false;
    if (p.what == probe::kind::log) {
      auto re = regex::compile(p.pattern);
      if (!re) return std::move(re).error();
      m->log_probes.emplace_back(i, std::move(*re));
    }
    if (p.what == probe::kind::callback && !p.fn) {
      return make_failure(errc::invalid_argument, "callback probe \"" + p.name + "\" has no function");
    }
    if (p.what == probe::kind::http && (p.path.empty() || p.path.front() != '/')) {
      return make_failure(errc::invalid_argument, "http probe path must start with '/': " + p.path);
    }
  }
  if (mode == port_mode::inherit && only_tcp) {
    return make_failure(errc::invalid_argument,
                        "in inherit mode a tcp probe proves nothing (the harness holds the "
                        "listening socket, so connects succeed before the server runs); use "
                        "http, log, announce or notify");
  }
  need_ready_signal = mode == port_mode::inherit && spec.ready.probes.empty();
  if (!spec.port.port_from.empty()) {
    if (mode != port_mode::announce) {
      return make_failure(errc::invalid_argument, "port_from is only used in announce mode");
    }
    auto re = regex::compile(spec.port.port_from);
    if (!re) return std::move(re).error();
    if (re->groups() < 1) {
      return make_failure(errc::bad_pattern,
                          "port_from \"" + spec.port.port_from + "\" needs a capture group for the port");
    }
    m->port_from = std::move(*re);
  }
  if (mode == port_mode::lease) {
    auto c = collision_classifier::make(spec.port.collision_patterns);
    if (!c) return std::move(c).error();
    m->classifier = std::move(*c);
  }
  match = std::move(m);
  return {};
}

namespace {

// Whether the command runs Python (python, python3, python3.11, /usr/bin/python3 -m ...).
bool runs_python(const std::vector<std::string>& command) {
  for (const auto& arg : command) {
    const auto slash = arg.rfind('/');
    const std::string_view base = std::string_view(arg).substr(slash == std::string::npos ? 0 : slash + 1);
    if (base.substr(0, 6) == "python") return true;
  }
  return false;
}

}  // namespace

failure session_state::report(std::error_code code, const std::string& reason,
                              const harness::process* p, bool show_holder) const {
  std::string text = server_label(spec) + ": " + reason + "\n";
  text += "  command: " + (p != nullptr && p->valid() ? p->command_line() : quote_command(spec.command)) + "\n";
  text += std::string("  mode: ") + to_string(mode) + ", host " + spec.port.host;
  if (port != 0) text += ", port " + std::to_string(port);
  text += "\n";
  if (p != nullptr && p->valid()) {
    auto st = p->status();
    text += "  pid " + std::to_string(p->pid()) + (p->daemonized() ? " (daemonized)" : "") + ": " +
            (st ? st->str() : std::string("still running")) + "\n";
    text += "  owned by: " + p->ownership() + "\n";
  }
  if (show_holder && port != 0) text += "  " + procnet::describe_holders(port) + "\n";
  if (p != nullptr && p->valid()) {
    text += p->output().merged_report(20);
    auto log = p->output().log_path();
    if (!log.empty()) text += "  log: " + log.string() + "\n";
    if (code == make_error_code(errc::ready_timeout) && p->output().line_count(stream::out) == 0 &&
        runs_python(spec.command)) {
      text += "  hint: Python buffers stdout when it is not a terminal, so its lines come only when the buffer "
              "fills or it exits: run it with `python3 -u` or set PYTHONUNBUFFERED=1 (env.set)\n";
    }
  }
  if (!dir.empty()) text += "  dir: " + dir.string() + "\n";
  return failure{code, text};
}

// The scratch directory: <parent>/<label>-XXXXXX, 0700, made before the first attempt.
result<void> session_state::make_dir() {
  if (!spec.scratch.create && spec.files.empty() && !uses_dir_placeholder(spec)) return {};
  std::filesystem::path parent = spec.scratch.parent;
  if (parent.empty()) {
    auto sub = state_subdir("scratch");
    if (!sub) return std::move(sub).error();
    parent = *sub;
  } else {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) return make_failure(errc::invalid_argument, "scratch.parent " + parent.string() + ": " + ec.message());
  }
  std::string label;
  for (char c : server_label(spec)) {
    if (label.size() >= 40) break;
    label += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ? c : '_';
  }
  std::string tmpl = (parent / (label + "-XXXXXX")).string();
  if (::mkdtemp(tmpl.data()) == nullptr) return make_system_failure(errno, "make a scratch directory in " + parent.string());
  dir = tmpl;
  return {};
}

// Every file template, rendered into the scratch directory for this attempt's port.
result<void> session_state::render_files(std::uint16_t use_port) const {
  const std::string port_text = use_port != 0 ? std::to_string(use_port) : std::string();
  for (const auto& f : spec.files) {
    const std::filesystem::path target = dir / f.name;
    std::error_code ec;
    std::filesystem::create_directories(target.parent_path(), ec);
    if (ec) return make_failure(errc::invalid_argument, "files: " + target.parent_path().string() + ": " + ec.message());
    const std::string text = substitute_placeholders(f.text, spec.port.host, port_text, dir.string());
    unique_fd fd(::open(target.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return make_system_failure(errno, "files: write " + target.string());
    std::size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return make_system_failure(errno, "files: write " + target.string());
      done += static_cast<std::size_t>(n);
    }
  }
  return {};
}

// At the session's end: the scratch directory goes unless the policy keeps it.
void session_state::remove_dir() noexcept {
  if (dir.empty() || ::getpid() != owner) return;
  try {
    using keep = scratch_options::keep_policy;
    bool kept = spec.scratch.keep == keep::always;
    if (spec.scratch.keep == keep::on_failure) kept = keep_dir || start_failed || verdict_of(*this).has_value();
    if (kept) return;
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  } catch (...) {
    // Never out of a destructor.
  }
}

namespace {

// Port sources for the respawn loop.
class lease_ports final : public port_source {
 public:
  explicit lease_ports(session_state& s) : s_(s) {}
  result<std::uint16_t> acquire() override {
    if (const auto& r = s_.spec.port.range; r && r->first == r->last) {
      // A port reserved earlier by this process (a named server's keeper).
      if (auto l = take_offered_lease(r->first)) {
        s_.lease = std::move(*l);
        s_.port = s_.lease.port();
        return s_.port;
      }
    }
    lease_options o;
    o.range = s_.spec.port.range;
    o.host = s_.spec.port.host;
    o.note = quote_command(s_.spec.command);
    auto l = lease::try_acquire(o);
    if (!l) return std::move(l).error();
    s_.lease = std::move(*l);
    s_.port = s_.lease.port();
    return s_.port;
  }
  // A port that collided stays leased until the start is over, so that the next
  // attempt cannot be handed the same port again.
  void release(std::uint16_t) override { spent_.push_back(std::move(s_.lease)); }

 private:
  session_state& s_;
  std::vector<lease> spent_;
};

class fixed_port final : public port_source {
 public:
  explicit fixed_port(std::uint16_t p) : port_(p) {}
  result<std::uint16_t> acquire() override { return port_; }
  void release(std::uint16_t) override {}

 private:
  std::uint16_t port_;
};

class session_launcher final : public launcher {
 public:
  explicit session_launcher(session_state& s) : s_(s) {}
  start_outcome start(std::uint16_t port) override { return s_.start_once(port); }
  void discard() override {
    s_.proc.stop();
    std::lock_guard lock(s_.info_m);
    s_.proc = harness::process();
  }

 private:
  session_state& s_;
};

}  // namespace
}  // namespace detail

using detail::session_state;

namespace {

std::string summary_of(const session_state& s) {
  const auto& p = s.proc;
  const std::string endpoint = detail::net::format_endpoint(s.spec.port.host, s.port);
  std::string out = p.name() + ": " + p.command_line() + "\n";
  out += std::string("  mode ") + to_string(s.mode) + ", endpoint " + endpoint + ", pid " +
         std::to_string(p.pid()) + (p.daemonized() ? " (daemonized)" : "");
  auto st = p.status();
  out += st ? ", " + st->str() : std::string(", running");
  out += "\n  ready in " + std::to_string(s.ready_time.count()) + " ms after " +
         std::to_string(s.attempts.size()) + (s.attempts.size() == 1 ? " start\n" : " starts\n");
  if (s.attempts.size() > 1) out += format_attempts(s.attempts, "    ");
  out += "  owned by: " + p.ownership() + "\n";
  out += p.output().merged_report(10);
  auto log = p.output().log_path();
  if (!log.empty()) out += "  log: " + log.string() + "\n";
  if (!s.dir.empty()) out += "  dir: " + s.dir.string() + "\n";
  return out;
}

session_info info_of(const session_state& s) {
  std::lock_guard lock(s.info_m);
  const auto& p = s.proc;
  session_info info;
  info.session = p.session_id();
  info.name = p.name();
  info.command = p.command_line();
  info.mode = s.mode;
  info.endpoint = detail::net::format_endpoint(s.spec.port.host, s.port);
  info.port = s.port;
  info.pid = p.pid();
  info.daemonized = p.daemonized();
  info.ownership = p.ownership();
  info.running = p.running();
  info.status = p.status();
  info.attempts = s.attempts;
  info.ready_time = s.ready_time;
  info.output_tail = p.output().merged_tail(200);
  info.problem = detail::verdict_of(s);
  info.warnings = detail::warnings_of(s);
  {
    std::lock_guard watch_lock(s.watch->m);
    if (s.watch->unexpected_exit) info.exited_unexpectedly_at = s.watch->exited_at;
    info.sanitizer_reports = s.watch->sanitizer_reports;
  }
  info.log = p.output().log_path();
  info.dir = s.dir;
  info.summary = summary_of(s);
  return info;
}

// Sessions that own a started server, for live_sessions().
std::mutex registry_mutex;
std::vector<std::weak_ptr<session_state>>& registry() {
  static auto* live = new std::vector<std::weak_ptr<session_state>>();  // outlives static destructors
  return *live;
}

void register_session(const std::shared_ptr<session_state>& s) {
  std::lock_guard lock(registry_mutex);
  auto& live = registry();
  std::erase_if(live, [](const auto& w) { return w.expired(); });
  live.push_back(s);
}

}  // namespace

void detail::session_state::arm() {
  {
    std::lock_guard lock(watch->m);
    watch->armed = true;
    watch->exit_expected = false;
    watch->signalled.clear();
    watch->expected_end.reset();
  }
  // An exit between ready and now was not seen armed: judge it as if it had been.
  if (auto st = proc.status()) watch->exited(*st, false);
}

exit_status detail::session_state::stop_and_report() {
  if (::getpid() != owner) return {};  // a fork()ed copy: the server and its line are the parent's
  const auto t0 = std::chrono::steady_clock::now();
  bool was_armed = false;
  {
    std::lock_guard lock(watch->m);
    was_armed = watch->armed;
  }
  // An exit the I/O thread has not reported yet happened before this stop.
  if (was_armed) {
    if (auto st = proc.status()) watch->exited(*st, false);
  }
  bool ended_before = false, ended = false;
  {
    std::lock_guard lock(watch->m);
    ended_before = was_armed && !watch->armed;
    ended = watch->unexpected_exit || watch->expected_end;
    watch->armed = false;
  }
  if (ended) left_at_exit = proc.left_at_exit();
  const exit_status status = proc.stop();
  if (was_armed && !ended_before) stop_status = status;
  if (!reported && !attempts.empty() && proc.valid()) {
    reported = true;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - t0)
                        .count();
    // The line describes this server: a restarted one reports its own start only.
    session_info info = info_of(*this);
    info.attempts.erase(info.attempts.begin(),
                        info.attempts.begin() + static_cast<std::ptrdiff_t>(
                                                    std::min(server_first_attempt, info.attempts.size())));
    detail::append_report(info, status, ms);
  }
  return status;
}

std::vector<session_info> live_sessions() {
  std::vector<std::shared_ptr<session_state>> states;
  {
    std::lock_guard lock(registry_mutex);
    for (const auto& w : registry()) {
      if (auto s = w.lock()) states.push_back(std::move(s));
    }
  }
  std::vector<session_info> out;
  for (const auto& st : states) out.push_back(info_of(*st));
  return out;
}

result<session> session::try_start(server_spec spec) {
  auto s = std::make_shared<session_state>();
  s->spec = std::move(spec);
  s->watch->on_unexpected_exit = s->spec.on_exit;
  if (auto ok = s->validate_and_compile(); !ok) return std::move(ok).error();
  if (auto ok = s->make_dir(); !ok) return std::move(ok).error();

  if (s->mode == port_mode::inherit) {
    auto at = detail::net::parse_host(s->spec.port.host, s->spec.port.port);
    auto fd = detail::net::listen_on(*at);
    if (!fd) {
      return make_failure(fd.error().code, "cannot listen on " +
                                               detail::net::format_endpoint(s->spec.port.host, s->spec.port.port) +
                                               " for inherit mode: " + fd.error().message());
    }
    s->listen_fd = *fd;
    auto port = detail::net::local_port(s->listen_fd);
    if (!port) return std::move(port).error();
    s->port = *port;
  }

  detail::session_launcher launcher(*s);
  detail::lease_ports leases(*s);
  detail::fixed_port fixed(s->port);
  detail::port_source& ports = s->mode == port_mode::lease ? static_cast<detail::port_source&>(leases)
                                                           : static_cast<detail::port_source&>(fixed);
  respawn_policy policy = s->spec.respawn;
  if (s->mode != port_mode::lease) policy.attempts = 1;  // only a leased port can be swapped

  auto ok = detail::run_respawn_loop(ports, launcher, detail::system_time(), policy, s->attempts);
  if (!ok) {
    failure f = std::move(ok).error();
    if (f.code == errc::attempts_exhausted) {
      f.detail = (s->spec.name.empty() ? quote_command(s->spec.command) : s->spec.name) + ": " + f.detail + "\n";
    }
    // A report (multi-line, ending in a newline) gets the attempts appended; an error
    // from before any server ran (program not found, pool exhausted) stays one line.
    const bool is_report = !f.detail.empty() && f.detail.back() == '\n';
    if (is_report && !s->attempts.empty()) f.detail += "  attempts:\n" + format_attempts(s->attempts, "    ");
    s->proc.stop();
    // Kept for a post-mortem only when something ran: not when the program is missing.
    s->start_failed = f.code != errc::program_not_found && f.code != errc::program_not_executable &&
                      f.code != errc::program_is_directory;
    if (!s->dir.empty() && !is_report && s->start_failed) f.detail += " (scratch directory: " + s->dir.string() + ")";
    return f;
  }
  s->port = *ok;
  s->ready_time = s->attempts.back().duration;
  if (s->lease) s->lease.set_note(s->proc.command_line());
  s->arm();
  register_session(s);
  return session(std::move(s));
}

session session::start(server_spec spec) { return try_start(std::move(spec)).value(); }

std::future<result<session>> session::start_async(server_spec spec) {
  return std::async(std::launch::async, [spec = std::move(spec)]() mutable {
    return try_start(std::move(spec));
  });
}

std::vector<result<session>> start_all(std::vector<server_spec> specs) {
  std::vector<std::future<result<session>>> pending;
  pending.reserve(specs.size());
  for (auto& s : specs) pending.push_back(session::start_async(std::move(s)));
  std::vector<result<session>> out;
  out.reserve(pending.size());
  for (auto& f : pending) out.push_back(f.get());
  return out;
}

session::session() noexcept = default;
session::session(std::shared_ptr<session_state> s) noexcept : state_(std::move(s)) {}
session::session(session&&) noexcept = default;
session& session::operator=(session&& other) noexcept {
  if (this != &other) {
    if (state_) detail::stop_quietly(*this);
    state_ = std::move(other.state_);
  }
  return *this;
}
session::~session() {
  if (state_) detail::stop_quietly(*this);
}

namespace {
const std::string& empty_string() {
  static const std::string s;
  return s;
}
}  // namespace

port_mode session::mode() const { return state_ ? state_->mode : port_mode::automatic; }
const std::string& session::host() const { return state_ ? state_->spec.port.host : empty_string(); }
std::uint16_t session::port() const { return state_ ? state_->port : 0; }
std::string session::endpoint() const { return detail::net::format_endpoint(host(), port()); }
std::string session::url(std::string_view path) const {
  std::string p(path.empty() ? "/" : path);
  if (p.front() != '/') p.insert(p.begin(), '/');
  return "http://" + endpoint() + p;
}
int session::pid() const { return state_ ? state_->proc.pid() : -1; }
const std::string& session::name() const {
  return state_ ? state_->proc.name() : empty_string();
}
std::string session::command_line() const { return state_ ? state_->proc.command_line() : std::string(); }
const std::vector<attempt>& session::attempts() const {
  static const std::vector<attempt> none;
  return state_ ? state_->attempts : none;
}
std::chrono::milliseconds session::ready_time() const {
  return state_ ? state_->ready_time : std::chrono::milliseconds(0);
}
harness::output session::output() const {
  return state_ ? state_->proc.output() : harness::process().output();
}
std::filesystem::path session::log_path() const { return output().log_path(); }
harness::process& session::process() {
  static harness::process empty;
  return state_ ? state_->proc : empty;
}
bool session::running() const { return state_ && state_->proc.running(); }
std::optional<exit_status> session::status() const {
  return state_ ? state_->proc.status() : std::nullopt;
}

const std::filesystem::path& session::dir() const {
  static const std::filesystem::path none;
  return state_ ? state_->dir : none;
}

void session::keep_dir() {
  if (state_) state_->keep_dir = true;
}

exit_status session::stop() {
  if (!state_) return {};
  return state_->stop_and_report();
}

result<void> session::restart() {
  if (!state_) return make_failure(errc::not_running, "empty session");
  auto& s = *state_;
  s.stop_and_report();
  std::uint16_t port;
  {
    std::lock_guard lock(s.info_m);
    s.server_first_attempt = s.attempts.size();
    port = s.mode == port_mode::announce ? 0 : s.port;
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto outcome = s.start_once(port);
  const std::uint16_t used = outcome.port != 0 ? outcome.port : port;
  {
    std::lock_guard lock(s.info_m);
    s.attempts.push_back(attempt{used, outcome.kind, outcome.reason,
                                 std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now() - t0)});
    if (outcome.kind == attempt::result::ready) {
      s.port = used;
      s.ready_time = s.attempts.back().duration;
      s.reported = false;  // the new server gets a line of its own when it stops
      s.stop_status.reset();
      s.arm();
      return {};
    }
  }
  // Not ready: stop what the start left running, and say why.
  s.proc.stop();
  if (outcome.kind == attempt::result::collision) {
    return s.report(errc::port_collision,
                    "lost port " + std::to_string(port) + " while restarting: " + outcome.reason,
                    &s.proc, true);
  }
  return std::move(outcome.error);
}

namespace {

bool stopped_as_expected(const server_spec& spec, const exit_status& st) {
  const auto& expected = spec.verdict.expected_exits;
  if (std::find(expected.begin(), expected.end(), st) != expected.end()) return true;
  // The stop's own doing: killed by its signal or SIGKILL, or the 128 + signal exit
  // code with which JVMs and shells report SIGTERM.
  return st == exit_status::killed_by(spec.stop.signal) || st == exit_status::killed_by(SIGKILL) ||
         st == exit_status::exited_with(128 + spec.stop.signal);
}

std::string expected_text(const server_spec& spec) {
  std::string text;
  for (const auto& e : spec.verdict.expected_exits) text += (text.empty() ? "" : ", ") + e.str();
  return (text.empty() ? "" : text + ", or ") + "ended by the stop's " + signal_name(spec.stop.signal);
}

}  // namespace

namespace detail {

std::optional<failure> verdict_of(const session_state& s) {
  const auto& v = s.spec.verdict;
  // An exit the I/O thread has not reported yet counts already.
  if (auto st = s.proc.status()) s.watch->exited(*st, false);
  std::optional<exit_status> unexpected, expected_end;
  std::vector<std::string> sanitizer;
  std::size_t reports = 0;
  {
    std::lock_guard lock(s.watch->m);
    unexpected = s.watch->unexpected_exit;
    expected_end = s.watch->expected_end;
    sanitizer = s.watch->sanitizer;
    reports = s.watch->sanitizer_reports;
  }
  std::optional<errc> code;
  std::string reason, extra;
  auto add = [&](errc c, const std::string& text) {
    if (!code) code = c;
    reason += (reason.empty() ? "" : "; ") + text;
  };
  const int left = (unexpected || expected_end) ? std::max(s.left_at_exit, s.proc.left_at_exit()) : 0;
  const std::string left_text =
      left > 0 ? ", leaving " + std::to_string(left) + (left == 1 ? " process" : " processes") + " of its tree running"
               : "";
  if (v.fail_on_unexpected_exit && unexpected) add(errc::server_exited, "exited on its own while the test ran: " + unexpected->str() + left_text);
  if (v.fail_on_exit_status && s.stop_status && !stopped_as_expected(s.spec, *s.stop_status)) {
    add(errc::bad_exit_status, "stopped with " + s.stop_status->str() + ", not as expected (" + expected_text(s.spec) + ")");
  }
  if (v.fail_on_sanitizer_report && !sanitizer.empty()) {
    add(errc::sanitizer_report, std::to_string(reports) + (reports == 1 ? " sanitizer report" : " sanitizer reports") +
                                    " in its output");
    extra += "  sanitizer report (first lines):\n";
    for (const auto& l : sanitizer) extra += "    | " + l + "\n";
  }
  if (v.fail_on_left_processes && left > 0) {
    add(errc::left_processes, "its main process exited (" + (unexpected ? *unexpected : *expected_end).str() + ")" + left_text);
  }
  if (!code) return std::nullopt;
  failure f = s.report(make_error_code(*code), reason, &s.proc, false);
  f.detail += extra;
  return f;
}

std::vector<std::string> warnings_of(const session_state& s) {
  std::vector<std::string> out;
  if (auto st = s.proc.status()) s.watch->exited(*st, false);
  bool ended = false;
  {
    std::lock_guard lock(s.watch->m);
    ended = s.watch->unexpected_exit || s.watch->expected_end;
  }
  const int left = ended ? std::max(s.left_at_exit, s.proc.left_at_exit()) : 0;
  if (left > 0 && !s.spec.verdict.fail_on_left_processes) {
    out.push_back(server_label(s.spec) + " exited and left " + std::to_string(left) +
                  (left == 1 ? " process" : " processes") +
                  " of its tree running (stopped with it; verdict.fail_on_left_processes makes this a failure)");
  }
  return out;
}

}  // namespace detail

std::optional<failure> session::check() const {
  return state_ ? detail::verdict_of(*state_) : std::nullopt;
}

std::vector<std::string> session::warnings() const {
  return state_ ? detail::warnings_of(*state_) : std::vector<std::string>{};
}

void session::expect_exit() {
  if (!state_) return;
  std::lock_guard lock(state_->watch->m);
  state_->watch->exit_expected = true;
}

result<void> session::signal(int sig) {
  if (!state_) return make_failure(errc::not_running, "empty session");
  {
    std::lock_guard lock(state_->watch->m);
    state_->watch->signalled.push_back(sig);
  }
  return state_->proc.signal(sig);
}

session_info session::info() const {
  if (!state_) return {};
  return info_of(*state_);
}

std::string session::summary() const {
  if (!state_) return "(empty session)\n";
  std::lock_guard lock(state_->info_m);
  return summary_of(*state_);
}

}  // namespace harness
