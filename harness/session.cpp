#include "harness/session.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include <boost/asio/posix/stream_descriptor.hpp>

#include "harness/detail/session/http_probe.hpp"
#include "harness/detail/proc/io_thread.hpp"
#include "harness/detail/os/net.hpp"
#include "harness/detail/os/proc_fs.hpp"
#include "harness/detail/os/proc_net.hpp"
#include "harness/detail/os/proc_tree.hpp"
#include "harness/detail/session/judge.hpp"
#include "harness/detail/session/readiness_engine.hpp"
#include "harness/detail/session/start_events.hpp"
#include "harness/detail/stop_quietly.hpp"
#include "harness/detail/os/unique_fd.hpp"
#include "harness/detail/text/regex.hpp"
#include "harness/detail/session/report.hpp"
#include "harness/detail/session/respawn_loop.hpp"

namespace harness {

std::string substitute_placeholders(std::string_view text, std::string_view host,
                                    std::string_view port) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    auto at = [&](std::string_view what) { return text.substr(i, what.size()) == what; };
    if (at("{{port}}") || at("{{host}}")) {
      out.append(text.substr(i + 1, 6));
      i += 8;
    } else if (at("{port}")) {
      out.append(port);
      i += 6;
    } else if (at("{host}")) {
      out.append(host);
      i += 6;
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
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
namespace {

namespace asio = boost::asio;
using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// An fd the I/O thread watches for readability; `on_readable` reads it itself and
// returns false to stop watching. The watch is created, armed and closed by jobs
// posted to the I/O thread (which runs them in order), so the caller never waits for
// that thread and only that thread ever touches the asio object.
struct fd_watch : std::enable_shared_from_this<fd_watch> {
  std::unique_ptr<asio::posix::stream_descriptor> sd;
  std::function<bool(int)> on_readable;

  void arm() {
    sd->async_wait(asio::posix::stream_descriptor::wait_read,
                   [self = shared_from_this()](const boost::system::error_code& ec) {
                     if (ec || !self->sd->is_open()) return;
                     if (self->on_readable(self->sd->native_handle())) {
                       self->arm();
                     } else {
                       boost::system::error_code ignored;
                       self->sd->close(ignored);
                     }
                   });
  }
};

std::shared_ptr<fd_watch> watch_fd(int fd, std::function<bool(int)> on_readable) {
  auto w = std::make_shared<fd_watch>();
  w->on_readable = std::move(on_readable);
  auto& io = io_thread::get();
  io.post([w, fd, &io] {
    w->sd = std::make_unique<asio::posix::stream_descriptor>(io.context(), fd);
    w->arm();
  });
  return w;
}

void unwatch(std::shared_ptr<fd_watch> w) {
  if (!w) return;
  io_thread::get().post([w] {
    boost::system::error_code ignored;
    if (w->sd) w->sd->close(ignored);
  });
}

std::atomic<std::uint64_t> notify_counter{0};

}  // namespace

// --- the session state ---------------------------------------------------------

struct session_state {
  server_spec spec;
  port_mode mode = port_mode::lease;
  std::uint16_t port = 0;
  harness::lease lease;
  int listen_fd = -1;  // inherit mode
  harness::process proc;
  std::vector<attempt> attempts;
  milliseconds ready_time{0};
  std::shared_ptr<const matchers> match;
  bool need_ready_signal = false;  // inherit mode without probes
  bool reported = false;           // the HARNESS_REPORT line is written
  // Guards proc, port, attempts and ready_time against live_sessions() readers while
  // restart() changes them (never held across a stop or a start).
  mutable std::mutex info_m;
  std::size_t server_first_attempt = 0;  // attempts of the running server start here

  ~session_state() {
    try {
      proc.stop();
    } catch (...) {
      // Never let anything out of a destructor.
    }
    if (listen_fd >= 0) ::close(listen_fd);
  }

  result<void> validate_and_compile();
  result<void> choose_mode();
  result<void> compile_matchers();
  start_outcome start_once(std::uint16_t port);
  // Stops the server; the first stop of each started server appends its
  // HARNESS_REPORT line.
  exit_status stop_and_report();
  failure report(std::error_code code, const std::string& reason, const harness::process* p,
                 bool show_holder) const;
};

result<void> session_state::validate_and_compile() {
  if (spec.command.empty()) return make_failure(errc::empty_argv, "server_spec::command is empty");
  if (spec.ready.timeout <= milliseconds(0)) {
    return make_failure(errc::invalid_argument, "ready.timeout must be positive");
  }
  if (spec.respawn.attempts < 1) {
    return make_failure(errc::invalid_argument, "respawn.attempts must be at least 1");
  }
  if (auto a = net::parse_host(spec.port.host, 0); !a) return std::move(a).error();
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
    text += p->output().tail_report(stream::err, 20);
    auto log = p->output().log_path();
    if (!log.empty()) text += "  log: " + log.string() + "\n";
  }
  return failure{code, text};
}

// --- one start attempt -----------------------------------------------------------
//
// spawn with the announce channels and event taps in place -> wait: take the events,
// judge an exit, judge a port-in-use line, run the probes, judge readiness and the
// deadline, sleep until the next event or poll. The decisions are start_judge::judge()'s.

namespace {

// The readiness engine's view of a real server: the clock, the process and its tree,
// the listener on the port, and one try of each polling probe.
class process_world final : public readiness_world {
 public:
  process_world(session_state& s, std::uint16_t port) : s_(s), port_(port) {}

  clock::time_point now() override { return clock::now(); }
  void sleep_until(start_events& ev, std::uint64_t seen, clock::time_point until) override {
    std::unique_lock lock(ev.m);
    ev.cv.wait_until(lock, until, [&] { return ev.version != seen; });
  }
  bool server_running() override { return s_.proc.running(); }
  exit_status settle_exit() override {
    // Let the last lines in: the "address already in use" usually comes right before
    // the exit.
    s_.proc.output().wait_closed(milliseconds(1000));
    return s_.proc.status().value_or(exit_status{});
  }
  std::vector<int> tree() override { return s_.proc.tree(); }
  // The server itself in the common case, else anyone in its tree (a worker, a child
  // that execs the real server).
  start_judge::listener who_listens(bool whole_tree, std::string& holders) override {
    const auto& proc = s_.proc;
    auto owner = procnet::listener_owner(port_, whole_tree ? proc.tree() : std::vector<pid_t>{proc.pid()});
    if (owner == procnet::ownership::foreign && !whole_tree) owner = procnet::listener_owner(port_, proc.tree());
    if (owner == procnet::ownership::foreign) holders = procnet::describe_holders(port_);
    return owner == procnet::ownership::ours      ? start_judge::listener::ours
           : owner == procnet::ownership::foreign ? start_judge::listener::foreign
                                                   : start_judge::listener::nobody;
  }
  int sender_in_tree(int pid) override { return proctree::is_below(pid, s_.proc.supervisor_pid()); }
  std::optional<failure> callback_failure() override { return s_.proc.output().callback_failure(); }
  probe_try try_probe(const probe& p, std::uint16_t port, milliseconds timeout,
                      const std::string& last_error) override;
  failure report(std::error_code code, const std::string& reason, bool show_holder) override {
    return s_.report(code, reason, &s_.proc, show_holder);
  }

 private:
  probe_try try_http(const probe& p, std::uint16_t port, milliseconds timeout, const std::string& last_error);
  probe_try try_callback(const probe& p, std::uint16_t port);

  session_state& s_;
  const std::uint16_t port_;
};

readiness_world::probe_try process_world::try_probe(const probe& p, std::uint16_t port, milliseconds timeout,
                                                    const std::string& last_error) {
  switch (p.what) {
    case probe::kind::tcp: {
      auto at = net::parse_host(s_.spec.port.host, port);
      const auto r = net::try_connect(*at, timeout);
      if (r == net::connect_result::connected) return {true, {}, {}};
      return {false, r == net::connect_result::refused ? "connection refused" : "no connection", {}};
    }
    case probe::kind::http:
      return try_http(p, port, timeout, last_error);
    case probe::kind::callback:
      return try_callback(p, port);
    default:
      return {false, last_error, {}};
  }
}

// One GET. A throwing body check ends the start.
readiness_world::probe_try process_world::try_http(const probe& p, std::uint16_t port, milliseconds timeout,
                                                   const std::string& last_error) {
  const std::string& host = s_.spec.port.host;
  auto at = net::parse_host(host, port);
  std::string why;
  auto answer = http_get(*at, net::format_endpoint(host, port), p.path, timeout, &why);
  // Keep a real answer over a later attempt cut short by the deadline.
  if (!answer) return {false, last_error.rfind("answered ", 0) == 0 ? last_error : why, {}};
  bool body_ok = true;
  if (answer->status == p.status && p.body) {
    try {
      body_ok = p.body(answer->body);
    } catch (const std::exception& e) {
      return {false, {}, std::pair{make_error_code(errc::callback_threw),
                                   "the body check of probe \"" + p.describe() + "\" threw: " + e.what()}};
    } catch (...) {
      return {false, {}, std::pair{make_error_code(errc::callback_threw),
                                   "the body check of probe \"" + p.describe() + "\" threw"}};
    }
  }
  if (answer->status == p.status && body_ok) return {true, {}, {}};
  return {false,
          "answered " + std::to_string(answer->status) + (answer->status == p.status ? " but the body check failed" : ""),
          {}};
}

// The user's callback; what it throws ends the start.
readiness_world::probe_try process_world::try_callback(const probe& p, std::uint16_t port) {
  probe_context ctx{s_.spec.port.host, port, s_.proc.pid(), nullptr};
  auto view = s_.proc.output();
  ctx.output = &view;
  result<probe_result> r = probe_result::not_yet;
  try {
    r = p.fn(ctx);
  } catch (const std::exception& e) {
    return {false, {}, std::pair{make_error_code(errc::callback_threw), "probe \"" + p.name + "\" threw: " + e.what()}};
  } catch (...) {
    return {false, {}, std::pair{make_error_code(errc::callback_threw), "probe \"" + p.name + "\" threw"}};
  }
  if (!r) {
    return {false, {},
            std::pair{make_error_code(errc::probe_failed), "probe \"" + p.name + "\" failed: " + r.error().message()}};
  }
  return {*r == probe_result::ready, {}, {}};
}

// One start of the server on one port: its channels, its events, its probes' state.
// The destructor ends the intake of events on every way out (returns and exceptions
// from a user's callback alike).
class start_attempt {
 public:
  start_attempt(session_state& s, std::uint16_t use_port)
      : s_(s), use_port_(use_port), ev_(std::make_shared<start_events>()) {
    ev_->log_hit.assign(s.spec.ready.probes.size(), false);
  }
  start_attempt(const start_attempt&) = delete;
  start_attempt& operator=(const start_attempt&) = delete;
  ~start_attempt() {
    {
      std::lock_guard lock(ev_->m);
      ev_->active = false;
    }
    unwatch(ready_watch_);
    unwatch(notify_watch_);
  }

  start_outcome run();

 private:
  process_options build_options() const;
  result<void> open_channels(process_options& o);
  result<void> open_ready_fd(process_options& o, int child_fd);
  result<void> open_notify_socket(process_options& o);
  void tap_events(process_options& o);

  session_state& s_;
  const std::uint16_t use_port_;
  std::shared_ptr<start_events> ev_;
  std::shared_ptr<fd_watch> ready_watch_, notify_watch_;
  unique_fd ready_write_;  // the child's end of the ready pipe, until it has its copy
};

process_options start_attempt::build_options() const {
  const auto& spec = s_.spec;
  const std::string& host = spec.port.host;
  const std::string port_text = use_port_ != 0 ? std::to_string(use_port_) : std::string();
  process_options o;
  for (const auto& a : spec.command) o.argv.push_back(substitute_placeholders(a, host, port_text));
  o.env = spec.env;
  for (auto& [k, v] : o.env.set) v = substitute_placeholders(v, host, port_text);
  o.cwd = spec.cwd;
  o.output = spec.output;
  o.stop = spec.stop;
  o.name = spec.name;
  o.follow_daemon = spec.allow_daemon;
  return o;
}

// The socket to inherit (inherit mode), the ready fd and the notify socket, as the
// spec's mode and probes need them.
result<void> start_attempt::open_channels(process_options& o) {
  bool want_ready_fd = false, want_notify = false;
  for (const auto& p : s_.spec.ready.probes) {
    want_ready_fd = want_ready_fd || p.what == probe::kind::announce;
    want_notify = want_notify || p.what == probe::kind::notify;
  }
  if ((s_.mode == port_mode::announce && s_.spec.port.port_from.empty()) || s_.need_ready_signal) {
    want_ready_fd = want_notify = true;
  }
  int next_fd = 3;
  if (s_.mode == port_mode::inherit) {
    o.fds.push_back({s_.listen_fd, next_fd++});
    o.env.set.emplace_back("LISTEN_FDS", "1");
    o.set_listen_pid = true;
  }
  if (want_ready_fd) {
    if (auto ok = open_ready_fd(o, next_fd++); !ok) return ok;
  }
  if (want_notify) return open_notify_socket(o);
  return {};
}

// The ready fd: the child writes to its end, the I/O thread reads ours.
result<void> start_attempt::open_ready_fd(process_options& o, int child_fd) {
  int ready_pipe[2] = {-1, -1};
  if (::pipe2(ready_pipe, O_CLOEXEC) != 0) return make_system_failure(errno, "pipe2");
  ready_write_.reset(ready_pipe[1]);
  o.fds.push_back({ready_pipe[1], child_fd});
  o.env.set.emplace_back("HARNESS_READY_FD", std::to_string(child_fd));
  auto ev = ev_;
  ready_watch_ = watch_fd(ready_pipe[0], [ev](int fd) {
    char buf[512];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    if (n <= 0) return false;  // closed by the child: nothing more will come
    ev->update([&] { return take_ready_fd_bytes(*ev, std::string_view(buf, static_cast<std::size_t>(n))); });
    return true;
    });
  return {};
}

// The notify socket: abstract, the sender of each datagram judged by the kernel's
// credentials.
result<void> start_attempt::open_notify_socket(process_options& o) {
  unique_fd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return make_system_failure(errno, "socket(AF_UNIX)");
  const std::string name = "serve-harness/" + io_thread::get().runner_token() + "/" +
                           std::to_string(notify_counter.fetch_add(1));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path + 1, name.data(), name.size());
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    return make_system_failure(errno, "bind notify socket");
  }
  o.env.set.emplace_back("NOTIFY_SOCKET", "@" + name);
  auto ev = ev_;
  notify_watch_ = watch_fd(fd.release(), [ev](int sock) {
      char data[4096];
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
      iovec iov{data, sizeof data - 1};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      const ssize_t n = ::recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
      if (n < 0) return errno == EAGAIN || errno == EINTR;
      // Only the server's tree may announce. The sender (the kernel vouches for the
      // credentials) is checked against the tree as soon as it arrives, while it most
      // likely still exists. A datagram without credentials is dropped here.
      start_events::datagram d;
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
          ucred cred{};
          std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
          d.sender = cred.pid;
          d.same_user = cred.uid == ::getuid();
        }
      }
      if (d.sender <= 0) return true;
      if (const pid_t sup = ev->supervisor.load(); sup > 0) d.in_tree = proctree::is_below(d.sender, sup);
      else d.in_tree = -2;  // judged by the waiting thread
      d.text.assign(data, static_cast<std::size_t>(n));
      ev->update([&] {
        if (ev->notify_pending.size() >= 64) return false;  // a flood: keep the first ones
        ev->notify_pending.push_back(std::move(d));
        return true;
      });
      return true;
    });
  return {};
}

// The session's own look at every output line (fail patterns, log probes, port_from,
// port-in-use lines), then the user's on_line; and the exit.
void start_attempt::tap_events(process_options& o) {
  auto user_on_line = s_.spec.output.on_line;
  auto m = s_.match;
  auto ev = ev_;
  const std::uint16_t use_port = use_port_;
  o.output.on_line = [ev, m, user_on_line, use_port](stream s, std::string_view line) {
    ev->update([&] { return take_line(*ev, *m, line, use_port); });
    if (user_on_line) user_on_line(s, line);
  };
  o.on_exit = [ev](const exit_status&) {
    ev->update([&] {
      ev->exited = true;
      return true;
    });
  };
}

start_outcome start_attempt::run() {
  start_outcome failed;
  process_options o = build_options();
  if (auto ok = open_channels(o); !ok) {
    failed.error = std::move(ok).error();
    return failed;
  }
  tap_events(o);
  const auto t0 = clock::now();
  auto spawned = harness::process::try_spawn(std::move(o));
  ready_write_.reset();  // the child has its copy
  if (!spawned) {
    failed.error = std::move(spawned).error();
    return failed;
  }
  {
    std::lock_guard lock(s_.info_m);  // live_sessions() may be reading
    s_.proc = std::move(*spawned);
  }
  ev_->supervisor = s_.proc.supervisor_pid();
  process_world world(s_, use_port_);
  readiness_engine engine({.ready = &s_.spec.ready,
                           .mode = s_.mode,
                           .port = use_port_,
                           .need_ready_signal = s_.need_ready_signal,
                           .allow_daemon = s_.spec.allow_daemon,
                           .port_from = s_.spec.port.port_from},
                          *ev_, world);
  return engine.wait(t0);
}

}  // namespace

start_outcome session_state::start_once(std::uint16_t use_port) {
  start_attempt attempt(*this, use_port);
  return attempt.run();
}

namespace {

// Port sources for the respawn loop.
class lease_ports final : public port_source {
 public:
  explicit lease_ports(session_state& s) : s_(s) {}
  result<std::uint16_t> acquire() override {
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
  auto log = p.output().log_path();
  if (!log.empty()) out += "  log: " + log.string() + "\n";
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
  info.stderr_tail = p.output().tail_lines(stream::err, 20);
  info.log = p.output().log_path();
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

exit_status detail::session_state::stop_and_report() {
  const auto t0 = std::chrono::steady_clock::now();
  const exit_status status = proc.stop();
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
  if (auto ok = s->validate_and_compile(); !ok) return std::move(ok).error();

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
    return f;
  }
  s->port = *ok;
  s->ready_time = s->attempts.back().duration;
  if (s->lease) s->lease.set_note(s->proc.command_line());
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
