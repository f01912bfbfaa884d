#include "keeper.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness/detail/shared/json_number.hpp"

#include "harness/detail/lease_offer.hpp"
#include "harness/detail/os/pidfd.hpp"
#include "harness/detail/os/unique_fd.hpp"
#include "harness/detail/shared/failure_json.hpp"
#include "harness/detail/shared/named_common.hpp"
#include "harness/detail/shared/spec_json.hpp"
#include "harness/lease.hpp"
#include "harness/session.hpp"

namespace harness::detail {

namespace {

using clock = std::chrono::steady_clock;
using json = nlohmann::json;
namespace fs = std::filesystem;

void say(const std::string& text) {
  std::fprintf(stderr, "[%lld] keeper %d: %s\n", static_cast<long long>(named::unix_ms()), ::getpid(), text.c_str());
  std::fflush(stderr);
}

struct holder {
  pid_t pid = 0;
  std::uint64_t start = 0;
  int holds = 0;
  unique_fd pidfd;
};

struct connection {
  unique_fd fd;
  std::string buffer;
  bool waits_for_end = false;  // a stop or replace request: it sees EOF when we are gone
};

class keeper {
 public:
  keeper(std::string name, fs::path dir, server_spec spec, std::string fp, std::optional<std::int64_t> keep_warm,
         unique_fd listener, unique_fd lock)
      : name_(std::move(name)),
        dir_(std::move(dir)),
        spec_(std::move(spec)),
        listener_(std::move(listener)),
        lock_(std::move(lock)) {
    rec_.name = name_;
    rec_.phase = "reserved";
    rec_.keeper_pid = ::getpid();
    rec_.keeper_start = named::start_time(::getpid());
    rec_.host = spec_.port.host;
    rec_.fingerprint = std::move(fp);
    rec_.command = quote_command(spec_.command);
    rec_.keep_warm_ms = keep_warm;
    rec_.created_ms = named::unix_ms();
  }

  const named::record& rec() const { return rec_; }

  // Reserve: lease the port the server will get (lease mode only).
  result<void> reserve() {
    lease_options o;
    o.range = spec_.port.range;
    o.host = spec_.port.host;
    o.note = "reserved for the shared server " + name_ + ": " + rec_.command;
    auto l = lease::try_acquire(o);
    if (!l) return std::move(l).error();
    reserved_ = std::move(*l);
    rec_.port = reserved_.port();
    rec_.endpoint = spec_.port.host.find(':') != std::string::npos
                        ? "[" + spec_.port.host + "]:" + std::to_string(rec_.port)
                        : spec_.port.host + ":" + std::to_string(rec_.port);
    if (!save()) return unwritable();
    return {};
  }

  // A server nobody could find is worse than none.
  failure unwritable() const {
    return make_failure(errc::unsafe_state_dir,
                        "cannot write the record " + named::record_path(dir_, name_).string() +
                            " (it must be a regular file of ours, or absent)");
  }

  result<void> start() {
    rec_.phase = "starting";
    if (!save()) return unwritable();
    server_spec spec = spec_;
    if (reserved_) {
      // The reserved port, and no other: the tests were told it.
      spec.port.range = port_range{reserved_.port(), reserved_.port()};
      spec.port.mode = port_mode::lease;
      offer_lease(std::move(reserved_));
    }
    spec.on_exit = [this](const exit_status&) {
      const std::uint64_t one = 1;
      ssize_t ignored = ::write(exit_event_.get(), &one, sizeof one);
      (void)ignored;
    };
    auto s = session::try_start(std::move(spec));
    if (!s) {
      say("start failed: " + s.error().message());
      return std::move(s).error();
    }
    session_ = std::make_unique<session>(std::move(*s));
    rec_.phase = "ready";
    rec_.pid = session_->pid();
    rec_.port = session_->port();
    rec_.endpoint = session_->endpoint();
    rec_.ready_ms = named::unix_ms();
    rec_.log = session_->log_path().string();
    rec_.command = session_->command_line();
    save();
    say("ready: pid " + std::to_string(rec_.pid) + " on " + rec_.endpoint + " (" + rec_.command + ")");
    return {};
  }

  // Adds a hold; false when the process is not (or no longer) the one named.
  bool add_hold(pid_t pid, std::uint64_t start) {
    if (named::holder_problem(pid) || !named::alive(pid, start)) return false;
    for (auto& h : holders_) {
      if (h.pid == pid && h.start == start) {
        ++h.holds;
        return refresh_users();
      }
    }
    holder h;
    h.pid = pid;
    h.start = start;
    h.holds = 1;
    h.pidfd = unique_fd(pidfd::open(pid));
    // The pidfd was opened after the check: make sure it is still the same process.
    if (!named::alive(pid, start)) return false;
    holders_.push_back(std::move(h));
    return refresh_users();
  }

  void drop_hold(pid_t pid, std::uint64_t start, bool all) {
    for (auto it = holders_.begin(); it != holders_.end(); ++it) {
      if (it->pid == pid && it->start == start) {
        if (--it->holds <= 0 || all) holders_.erase(it);
        break;
      }
    }
    refresh_users();
  }

  int run(unique_fd control, std::string first_reply) {
    sigset_t mask;
    sigemptyset(&mask);
    for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT}) sigaddset(&mask, sig);
    unique_fd sigfd(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
    named::write_line(control.get(), first_reply);
    control.reset();
    evaluate();
    std::vector<pollfd> fds;
    for (;;) {
      if (want_stop_ && try_lock()) return finish();
      fds.clear();
      fds.push_back({sigfd.get(), POLLIN, 0});
      fds.push_back({listener_.get(), POLLIN, 0});
      fds.push_back({exit_event_.get(), POLLIN, 0});
      for (const auto& h : holders_) fds.push_back({h.pidfd.get(), POLLIN, 0});
      for (const auto& c : conns_) fds.push_back({c.fd.get(), POLLIN, 0});
      int timeout = -1;
      const auto now = clock::now();
      if (idle_deadline_) {
        timeout = static_cast<int>(
            std::max<long long>(0, std::chrono::duration_cast<std::chrono::milliseconds>(*idle_deadline_ - now).count() + 1));
      }
      // Without pidfds (old kernels) holds are checked by their start times, every second.
      const bool blind = std::any_of(holders_.begin(), holders_.end(), [](const holder& h) { return !h.pidfd; });
      if (blind) timeout = timeout < 0 ? 1000 : std::min(timeout, 1000);
      if (want_stop_) timeout = timeout < 0 ? 20 : std::min(timeout, 20);  // the lock is busy: try again soon
      const int rc = ::poll(fds.data(), fds.size(), timeout);
      if (rc < 0 && errno != EINTR) {
        say(std::string("poll: ") + std::strerror(errno));
        force_stop();
        continue;
      }
      if (fds[0].revents != 0) {
        signalfd_siginfo si{};
        if (::read(sigfd.get(), &si, sizeof si) > 0) say("got signal " + std::to_string(si.ssi_signo) + ": stopping");
        force_stop();
      }
      if (fds[2].revents != 0) {
        std::uint64_t n;
        ssize_t ignored = ::read(exit_event_.get(), &n, sizeof n);
        (void)ignored;
        server_ended();
      }
      // Holds whose process ended.
      std::size_t i = 3;
      bool changed = false;
      for (auto it = holders_.begin(); it != holders_.end(); ++i) {
        const bool gone = it->pidfd ? fds[i].revents != 0 : !named::alive(it->pid, it->start);
        if (gone) {
          say("holder " + std::to_string(it->pid) + " ended");
          it = holders_.erase(it);
          changed = true;
        } else {
          ++it;
        }
      }
      if (changed) refresh_users();
      // Requests (before accepting: indices follow the holders).
      std::vector<std::size_t> closed;
      for (std::size_t c = 0; c < conns_.size(); ++c, ++i) {
        if (i < fds.size() && fds[i].revents != 0 && !serve(conns_[c])) closed.push_back(c);
      }
      for (auto it = closed.rbegin(); it != closed.rend(); ++it) conns_.erase(conns_.begin() + static_cast<long>(*it));
      if (fds[1].revents != 0) accept_all();
      evaluate();
      if (stopped_) return 0;
    }
  }

  void fail_cleanup() { remove_record(); }

  // Our record only: never one another keeper wrote meanwhile.
  void remove_record() {
    named::record r;
    const auto path = named::record_path(dir_, name_);
    const auto state = named::read_record(path, r);
    if (state == named::record_state::ok && (r.keeper_pid != rec_.keeper_pid || r.keeper_start != rec_.keeper_start)) {
      return;
    }
    ::unlink(path.c_str());
  }

 private:
  bool refresh_users() {
    rec_.users.clear();
    for (const auto& h : holders_) rec_.users.push_back({h.pid, h.start, h.holds});
    save();
    return true;
  }

  bool save() {
    if (named::write_record(named::record_path(dir_, name_), rec_)) return true;
    say("cannot write the record " + named::record_path(dir_, name_).string());
    return false;
  }

  void accept_all() {
    for (;;) {
      unique_fd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (!fd) return;
      ucred cred{};
      socklen_t len = sizeof cred;
      if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != ::getuid()) continue;
      conns_.push_back(connection{std::move(fd), {}, false});
    }
  }

  // Handles what arrived on a connection; false to close it.
  bool serve(connection& c) {
    char chunk[4096];
    for (;;) {
      const ssize_t n = ::read(c.fd.get(), chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      if (n <= 0) return false;  // EOF (a stop waiter that leaves stops nothing)
      c.buffer.append(chunk, static_cast<std::size_t>(n));
      if (c.buffer.size() > 64 * 1024) return false;
    }
    std::size_t nl;
    while ((nl = c.buffer.find('\n')) != std::string::npos) {
      const std::string line = c.buffer.substr(0, nl);
      c.buffer.erase(0, nl + 1);
      if (!request(c, line)) return false;
    }
    return true;
  }

  bool request(connection& c, const std::string& line) {
    char verb[16] = {};
    char fp[40] = {};
    long long pid = 0;
    unsigned long long since = 0;
    const auto reply = [&](const std::string& text) { return named::write_line(c.fd.get(), text); };
    if (line == "info") return reply("ok " + named::to_json(rec_));
    if (line == "stop" || line == "replace") {
      if (line == "replace") lock_held_for_us_ = true;
      say(line == "stop" ? "stop requested" : "replacement requested");
      force_stop();
      c.waits_for_end = true;
      return reply("stopping");
    }
    char all[8] = {};
    if (const int n = std::sscanf(line.c_str(), "detach %lld %llu %7s", &pid, &since, all); n >= 2) {
      drop_hold(static_cast<pid_t>(pid), since, n == 3 && std::strcmp(all, "all") == 0);
      return reply("ok " + named::to_json(rec_));
    }
    if (std::sscanf(line.c_str(), "%15s %39s %lld %llu", verb, fp, &pid, &since) == 4 &&
        (std::strcmp(verb, "attach") == 0 || std::strcmp(verb, "reserve") == 0)) {
      if (want_stop_ && forced_) return reply("stopping");
      if (rec_.fingerprint != fp) return reply("mismatch " + named::to_json(rec_));
      if (!add_hold(static_cast<pid_t>(pid), since)) {
        const auto problem = named::holder_problem(static_cast<pid_t>(pid));
        return reply("failed " + failure_to_json(make_failure(
                                     errc::invalid_argument,
                                     "hold_for: " + problem.value_or("process " + std::to_string(pid) + " is gone"))));
      }
      idle_deadline_.reset();
      want_stop_ = false;
      if (std::strcmp(verb, "attach") == 0 && rec_.phase == "reserved") {
        if (auto ok = start(); !ok) {
          reply("failed " + failure_to_json(ok.error()));
          force_stop();
          return false;
        }
      }
      return reply("ok " + named::to_json(rec_));
    }
    return reply("failed " + failure_to_json(make_failure(errc::invalid_argument, "unknown request")));
  }

  void server_ended() {
    if (!session_ || rec_.phase != "ready") return;
    if (auto f = session_->check(); f && !session_->running()) {
      rec_.phase = "exited";
      const auto st = session_->status();
      rec_.exit_status = st ? st->str() : "unknown";
      rec_.output_tail = session_->output().merged_report(20);
      keep_record_ = true;
      save();
      say("the server ended on its own: " + rec_.exit_status);
      force_stop();
    }
  }

  void force_stop() {
    want_stop_ = true;
    forced_ = true;
  }

  void evaluate() {
    if (forced_) return;
    if (!holders_.empty()) {
      idle_deadline_.reset();
      if (rec_.idle_since_ms != 0) {
        rec_.idle_since_ms = 0;
        save();
      }
      want_stop_ = false;
      return;
    }
    if (rec_.keep_warm_ms) {
      if (!idle_deadline_) {
        idle_deadline_ = clock::now() + std::chrono::milliseconds(*rec_.keep_warm_ms);
        rec_.idle_since_ms = named::unix_ms();
        save();
        say("no holds left: staying up " + std::to_string(*rec_.keep_warm_ms) + " ms");
      } else if (clock::now() >= *idle_deadline_) {
        say("idle for its keep-warm time: stopping");
        force_stop();
      }
      return;
    }
    if (!want_stop_) say("no holds left: stopping");
    want_stop_ = true;
  }

  bool try_lock() {
    if (lock_held_for_us_) return true;
    return ::flock(lock_.get(), LOCK_EX | LOCK_NB) == 0;
  }

  // Holding the lock: nobody starts or attaches until we are gone.
  int finish() {
    rec_.phase = keep_record_ ? "exited" : "stopping";
    save();
    if (session_) {
      const exit_status st = session_->stop();
      say("stopped: " + st.str());
    }
    session_.reset();
    reserved_.release();
    if (!keep_record_) remove_record();
    listener_.reset();  // the name is free from here
    conns_.clear();     // waiters see EOF: the stop is over
    stopped_ = true;
    return 0;
  }

  std::string name_;
  fs::path dir_;
  server_spec spec_;
  unique_fd listener_;
  unique_fd lock_;
  unique_fd exit_event_{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
  named::record rec_;
  lease reserved_;
  std::unique_ptr<session> session_;
  std::vector<holder> holders_;
  std::vector<connection> conns_;
  std::optional<clock::time_point> idle_deadline_;
  bool want_stop_ = false;
  bool forced_ = false;
  bool lock_held_for_us_ = false;
  bool keep_record_ = false;
  bool stopped_ = false;
};

// Closes every descriptor from `first` on (close_range, else what /proc/self/fd lists).
void close_from(int first) {
#ifdef SYS_close_range
  if (::syscall(SYS_close_range, static_cast<unsigned>(first), ~0U, 0U) == 0) return;
#endif
  std::vector<int> open;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (dirent* e = ::readdir(d)) {
      const int fd = std::atoi(e->d_name);
      if (fd >= first && fd != ::dirfd(d)) open.push_back(fd);
    }
    ::closedir(d);
  }
  for (int fd : open) ::close(fd);
}

}  // namespace

int keeper_main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "harness-keeper: started by the harness library only (usage: harness-keeper CONTROL_FD)\n");
    return 2;
  }
  char* end = nullptr;
  const long cfd = std::strtol(argv[1], &end, 10);
  if (end == argv[1] || *end != '\0' || cfd < 3 || cfd > 1 << 20) {
    std::fprintf(stderr, "harness-keeper: bad control fd '%s'\n", argv[1]);
    return 2;
  }
  // Nothing of the caller's but the control socket: an inherited pipe kept open for the
  // server's whole life would hang whoever reads it (a `| cat`, a CI log, make's jobserver).
  if (cfd != 3 && ::dup2(static_cast<int>(cfd), 3) < 0) return 1;
  close_from(4);
  unique_fd control(3);
  ::fcntl(control.get(), F_SETFD, FD_CLOEXEC);
  // Detach: the caller reaps this process at once; the child lives on in a session of
  // its own.
  const pid_t child = ::fork();
  if (child < 0) {
    named::write_line(control.get(), "failed " + failure_to_json(make_system_failure(errno, "fork the keeper")));
    return 1;
  }
  if (child > 0) _exit(0);
  ::setsid();
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT}) sigaddset(&mask, sig);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);

  std::string buffer;
  const auto line = named::read_line(control.get(), buffer, clock::now() + std::chrono::seconds(30));
  if (!line) return 1;
  std::string name;
  fs::path dir;
  std::string fp;
  std::optional<std::int64_t> keep_warm;
  pid_t holder_pid = 0;
  std::uint64_t holder_start = 0;
  bool reserve = false;
  result<server_spec> spec = make_failure(errc::invalid_argument, "no spec");
  try {
    const json j = json::parse(*line);
    name = j.at("name").get<std::string>();
    dir = j.at("dir").get<std::string>();
    fp = j.at("fingerprint").get<std::string>();
    if (!j.at("keep_warm_ms").is_null()) keep_warm = json_integer<std::int64_t>(j.at("keep_warm_ms"));
    holder_pid = json_integer<pid_t>(j.at("holder_pid"));
    holder_start = json_integer<std::uint64_t>(j.at("holder_start"));
    reserve = j.at("reserve").get<bool>();
    spec = spec_from_json(j.at("spec").get<std::string>());
  } catch (const std::exception& e) {
    spec = make_failure(errc::invalid_argument, std::string("bad keeper request: ") + e.what());
  }
  if (!spec || !named::valid_name(name)) {
    named::write_line(control.get(), "failed " + failure_to_json(spec ? make_failure(errc::invalid_argument, "bad name")
                                                                      : spec.error()));
    return 1;
  }
  // Our messages go to <name>.log; the server's output has its own log file.
  {
    unique_fd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    unique_fd log(::open(named::keeper_log_path(dir, name).c_str(),
                         O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600));
    struct stat st {};
    if (log && (::fstat(log.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1)) log.reset();
    if (null) {
      ::dup2(null.get(), 0);
      ::dup2(null.get(), 1);
    }
    // Never the caller's stderr: a log we cannot use means no messages.
    ::dup2(log ? log.get() : null.get(), 2);
  }
  unique_fd lock = named::open_lock(named::lock_path(dir, name));
  unique_fd listener = named::listen_keeper(named::socket_name(dir, name));
  if (!listener) {
    if (errno == EADDRINUSE) {
      named::write_line(control.get(), "taken");
      return 0;
    }
    named::write_line(control.get(), "failed " + failure_to_json(make_system_failure(errno, "listen on the keeper socket")));
    return 1;
  }
  if (!lock) {
    named::write_line(control.get(), "failed " + failure_to_json(make_system_failure(errno, "open the name's lock")));
    return 1;
  }
  keeper k(name, dir, std::move(*spec), fp, keep_warm, std::move(listener), std::move(lock));
  say("keeping " + name + " (" + k.rec().command + ")");
  if (!k.add_hold(holder_pid, holder_start)) {
    k.fail_cleanup();
    named::write_line(control.get(), "failed " + failure_to_json(make_failure(errc::invalid_argument,
                                                                               "the holding process " +
                                                                                   std::to_string(holder_pid) +
                                                                                   " is gone")));
    return 1;
  }
  result<void> ok = reserve ? k.reserve() : k.start();
  if (!ok) {
    k.fail_cleanup();
    named::write_line(control.get(), "failed " + failure_to_json(ok.error()));
    return 1;
  }
  return k.run(std::move(control), "ok " + named::to_json(k.rec()));
}

}  // namespace harness::detail
