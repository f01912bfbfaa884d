// One start attempt of a session: the channels the server announces on (inherited
// socket, HARNESS_READY_FD, NOTIFY_SOCKET), the taps on its output and exit, the spawn,
// and the wait, which the readiness engine does through process_world, its view of the
// real server.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>

#include <boost/asio/posix/stream_descriptor.hpp>

#include "harness/detail/os/net.hpp"
#include "harness/detail/os/proc_net.hpp"
#include "harness/detail/os/proc_tree.hpp"
#include "harness/detail/os/unique_fd.hpp"
#include "harness/detail/proc/io_thread.hpp"
#include "harness/detail/proc/run_command.hpp"
#include "harness/detail/session/http_probe.hpp"
#include "harness/detail/session/readiness_engine.hpp"
#include "harness/detail/session/session_state.hpp"

namespace harness::detail {
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

//
// spawn with the announce channels and event taps in place -> wait: take the events,
// judge an exit, judge a port-in-use line, run the probes, judge readiness and the
// deadline, sleep until the next event or poll. The decisions are start_judge::judge()'s.


// The readiness engine's view of a real server: the clock, the process and its tree,
// the listener on the port, and one try of each polling probe.
class process_world final : public readiness_world {
 public:
  explicit process_world(session_state& s) : s_(s) {}

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
  // that execs the real server). A stranger is confirmed by a second look with a fresh
  // tree: a listener handed to a worker forked between the two reads is not one.
  start_judge::listener who_listens(std::uint16_t port, bool whole_tree, std::string& holders) override {
    const auto& proc = s_.proc;
    using procnet::ownership;
    auto owner = procnet::listener_owner(port, whole_tree ? proc.tree() : std::vector<pid_t>{proc.pid()});
    if (owner == ownership::foreign || owner == ownership::shared) owner = procnet::listener_owner(port, proc.tree());
    if (owner == ownership::foreign || owner == ownership::shared) holders = procnet::describe_holders(port);
    switch (owner) {
      case ownership::ours: return start_judge::listener::ours;
      case ownership::foreign: return start_judge::listener::foreign;
      case ownership::shared: return start_judge::listener::shared;
      case ownership::nobody: break;
    }
    return start_judge::listener::nobody;
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
  probe_try try_command(const probe& p, std::uint16_t port, milliseconds limit, const std::string& last_error);
  probe_try text_probe(const probe& p, std::uint16_t port, milliseconds timeout, std::string_view request,
                       std::string_view expect);

  session_state& s_;
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
    case probe::kind::command:
      return try_command(p, port, timeout, last_error);
    case probe::kind::redis:
      return text_probe(p, port, timeout, "PING\r\n", "+PONG");
    case probe::kind::memcached:
      return text_probe(p, port, timeout, "version\r\n", "VERSION ");
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
  const bool status_ok = p.status == 0 ? answer->status >= 200 && answer->status <= 299 : answer->status == p.status;
  if (status_ok && p.body) {
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
  if (status_ok && body_ok) return {true, {}, {}};
  return {false, "answered " + std::to_string(answer->status) + (status_ok ? " but the body check failed" : ""), {}};
}

// One run of a command probe: ready on exit 0 (and its output check). A program that
// cannot be started at all fails the start; one that runs past `limit` is killed with
// its process group.
readiness_world::probe_try process_world::try_command(const probe& p, std::uint16_t port, milliseconds limit,
                                                       const std::string& last_error) {
  std::vector<std::string> argv;
  const std::string port_text = port != 0 ? std::to_string(port) : std::string();
  for (const auto& a : p.argv) argv.push_back(substitute_placeholders(a, s_.spec.port.host, port_text, s_.dir.string()));
  auto run = run_command(argv, limit);
  if (!run) {
    return {false, {}, std::pair{make_error_code(errc::probe_failed),
                                 "probe \"" + p.describe() + "\" cannot run: " + run.error().message()}};
  }
  if (!run->status) {
    // Cut short by the deadline: what an earlier run said explains more.
    if (!last_error.empty()) return {false, last_error, {}};
    return {false, "still running after " + std::to_string(limit.count()) + " ms (killed)", {}};
  }
  if (!run->status->success()) {
    return {false, run->status->str() + (run->last_line.empty() ? "" : ": " + run->last_line), {}};
  }
  if (p.output) {
    bool ok = false;
    try {
      ok = p.output(run->output);
    } catch (const std::exception& e) {
      return {false, {}, std::pair{make_error_code(errc::callback_threw),
                                   "the output check of probe \"" + p.describe() + "\" threw: " + e.what()}};
    } catch (...) {
      return {false, {}, std::pair{make_error_code(errc::callback_threw),
                                   "the output check of probe \"" + p.describe() + "\" threw"}};
    }
    if (!ok) return {false, "exited 0 but the output check failed" + (run->last_line.empty() ? "" : ": " + run->last_line), {}};
  }
  return {true, {}, {}};
}

// A request and the start of the answer's first line, on a connection of our own.
readiness_world::probe_try process_world::text_probe(const probe&, std::uint16_t port, milliseconds timeout,
                                                     std::string_view request, std::string_view expect) {
  auto at = net::parse_host(s_.spec.port.host, port);
  std::string why;
  auto line = net::exchange_line(*at, request, timeout, &why);
  if (!line) return {false, why, {}};
  if (line->rfind(expect, 0) == 0) return {true, {}, {}};
  return {false, "answered \"" + line->substr(0, 80) + "\"", {}};
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
  const std::string dir = s_.dir.string();
  for (const auto& a : spec.command) o.argv.push_back(substitute_placeholders(a, host, port_text, dir));
  o.env = spec.env;
  for (auto& [k, v] : o.env.set) v = substitute_placeholders(v, host, port_text, dir);
  o.cwd = substitute_placeholders(spec.cwd.string(), host, port_text, dir);
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
  notify_watch_ = watch_fd(fd.get(), [ev](int sock) {
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
  fd.release();  // the watch owns it now
  return {};
}

// The session's own look at every output line (fail patterns, log probes, port_from,
// port-in-use lines), then the user's on_line; and the exit.
void start_attempt::tap_events(process_options& o) {
  auto user_on_line = s_.spec.output.on_line;
  auto m = s_.match;
  auto ev = ev_;
  auto watch = s_.watch;
  const std::uint16_t use_port = use_port_;
  o.output.on_line = [ev, m, watch, user_on_line, use_port](stream s, std::string_view line) {
    ev->update([&] { return take_line(*ev, *m, line, use_port); });
    watch->line(line);
    if (!user_on_line) return;
    try {
      user_on_line(s, line);
    } catch (...) {
      // Wake the wait at once with the reason; the output layer records it as well.
      std::string what = "on_line threw an exception that is not a std::exception";
      try {
        throw;
      } catch (const std::exception& e) {
        what = std::string("on_line threw: ") + e.what();
      } catch (...) {
      }
      ev->update([&] {
        if (!ev->thrown) ev->thrown = failure{make_error_code(errc::callback_threw), what};
        return true;
      });
      throw;
    }
  };
  o.on_exit = [ev, watch](const exit_status& status) {
    ev->update([&] {
      ev->exited = true;
      return true;
    });
    watch->exited(status, true);
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
  process_world world(s_);
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
  if (auto rendered = render_files(use_port); !rendered) {
    start_outcome out;
    out.reason = rendered.error().message();
    out.error = std::move(rendered).error();
    return out;
  }
  start_attempt attempt(*this, use_port);
  return attempt.run();
}

}  // namespace harness::detail
