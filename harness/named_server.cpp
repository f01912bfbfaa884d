#include "harness/named_server.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <dirent.h>

#include <thread>

#include <nlohmann/json.hpp>

#include "harness/detail/os/private_dir.hpp"
#include "harness/detail/os/unique_fd.hpp"
#include "harness/detail/shared/failure_json.hpp"
#include "harness/detail/shared/named_common.hpp"
#include "harness/detail/shared/spec_json.hpp"

extern char** environ;

namespace harness {

namespace {

namespace named = detail::named;
using detail::unique_fd;
using clock = std::chrono::steady_clock;

named_info to_info(const named::record& r) {
  named_info i;
  i.name = r.name;
  i.phase = r.phase;
  i.pid = r.pid;
  i.keeper_pid = r.keeper_pid;
  i.host = r.host;
  i.port = r.port;
  i.endpoint = r.endpoint;
  i.command = r.command;
  for (const auto& u : r.users) i.users.push_back(u.pid);
  if (r.keep_warm_ms) i.keep_warm = std::chrono::milliseconds(*r.keep_warm_ms);
  i.created_ms = r.created_ms;
  i.ready_ms = r.ready_ms;
  i.idle_since_ms = r.idle_since_ms;
  i.log = r.log;
  i.fingerprint = r.fingerprint;
  i.exit_status = r.exit_status;
  return i;
}

bool exists(const char* path) {
  struct stat st {};
  return path != nullptr && *path != '\0' && ::stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

const std::string& keeper_path() {
  static const std::string path = [] {
    if (const char* env = std::getenv("HARNESS_KEEPER"); env != nullptr && *env != '\0') return std::string(env);
    for (const char* candidate : {HARNESS_KEEPER_BUILD_PATH, HARNESS_KEEPER_INSTALL_PATH}) {
      if (exists(candidate)) return std::string(candidate);
    }
    return std::string();
  }();
  return path;
}

// The reply's verb and the rest ("ok {...}" -> "ok", "{...}").
std::pair<std::string, std::string> split(const std::string& line) {
  const auto sp = line.find(' ');
  if (sp == std::string::npos) return {line, {}};
  return {line.substr(0, sp), line.substr(sp + 1)};
}

std::string describe_owner(const named::record& r) {
  std::string text = "'" + r.name + "' is " + r.phase + " (keeper pid " + std::to_string(r.keeper_pid);
  if (r.pid != 0) text += ", server pid " + std::to_string(r.pid);
  if (r.port != 0) text += ", " + r.endpoint;
  text += ") running `" + r.command + "`";
  if (!r.users.empty()) {
    text += ", held by pid";
    for (const auto& u : r.users) text += " " + std::to_string(u.pid);
  }
  return text;
}

// Starts a keeper; its answer, or nullopt when it ended without one.
result<std::string> spawn_keeper(const std::string& request, clock::time_point deadline, const std::filesystem::path& log) {
  const std::string& path = keeper_path();
  if (!exists(path.c_str())) {
    return make_failure(errc::spawn_failed, "harness-keeper not found (looked at $HARNESS_KEEPER, " +
                                                std::string(HARNESS_KEEPER_BUILD_PATH) + " and " +
                                                std::string(HARNESS_KEEPER_INSTALL_PATH) + ")");
  }
  int sp[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) return make_system_failure(errno, "socketpair");
  unique_fd ours(sp[0]);
  unique_fd theirs(sp[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, theirs.get(), 3);  // clears FD_CLOEXEC on 3
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  sigset_t all;
  sigfillset(&all);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::string arg0 = "harness-keeper";
  std::string arg1 = "3";
  char* argv[] = {arg0.data(), arg1.data(), nullptr};
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, path.c_str(), &fa, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return make_system_failure(rc, "start " + path);
  theirs.reset();
  // It forks at once and this first process exits: reap it.
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!named::write_line(ours.get(), request)) {
    return make_failure(errc::spawn_failed, "the keeper (" + path + ") did not take its request; see " + log.string());
  }
  std::string buffer;
  auto line = named::read_line(ours.get(), buffer, deadline);
  if (!line) {
    return make_failure(errc::spawn_failed,
                        "the keeper ended or timed out before it answered; its messages are in " + log.string());
  }
  return *line;
}

}  // namespace

result<named_server> named_server::try_attach(std::string name, server_spec spec, named_options options) {
  if (!named::valid_name(name)) {
    return make_failure(errc::invalid_argument, "bad shared server name \"" + name +
                                                    "\": use 1 to 64 of A-Z a-z 0-9 . _ - (not starting with . or -)");
  }
  if (options.keep_warm && options.keep_warm->count() < 0) {
    return make_failure(errc::invalid_argument, "keep_warm must not be negative");
  }
  if (options.reserve && !(spec.port.mode == port_mode::lease ||
                           (spec.port.mode == port_mode::automatic && uses_port_placeholder(spec)))) {
    return make_failure(errc::invalid_argument,
                        "reserve: only a server that takes its port from {port} (lease mode) can have its port "
                        "reserved before it starts");
  }
  if (spec.name.empty()) spec.name = name;
  auto text = detail::spec_to_json(spec);
  if (!text) return std::move(text).error();
  const std::string fp = detail::fingerprint(*text);
  auto dir = named::servers_dir();
  if (!dir) return std::move(dir).error();
  const pid_t holder = options.hold_for > 0 ? options.hold_for : ::getpid();
  if (auto problem = named::holder_problem(holder)) return make_failure(errc::invalid_argument, "hold_for: " + *problem);
  const std::uint64_t holder_start = named::start_time(holder);
  if (holder_start == 0) {
    return make_failure(errc::invalid_argument, "hold_for: process " + std::to_string(holder) + " is not running");
  }
  const auto lock_file = named::lock_path(*dir, name);
  unique_fd lock = named::open_lock(lock_file);
  if (!lock) {
    return make_failure(errc::unsafe_state_dir, "cannot open " + lock_file.string() + ": " +
                                                    std::error_code(errno, std::system_category()).message() +
                                                    " (it must be a regular file of ours with one link)");
  }
  const auto record_file = named::record_path(*dir, name);
  const auto log_file = named::keeper_log_path(*dir, name);
  const std::string socket = named::socket_name(*dir, name);
  const auto start_budget = spec.ready.timeout * std::max(1, spec.respawn.attempts) + spec.stop.grace +
                            spec.stop.kill_wait + std::chrono::seconds(10);
  const auto deadline = clock::now() + options.wait;
  const std::string verb = options.reserve ? "reserve" : "attach";
  const std::string hold = std::to_string(holder) + " " + std::to_string(holder_start);

  const auto done = [&](const std::string& record_text, bool started) -> result<named_server> {
    auto r = named::parse_record(record_text);
    ::flock(lock.get(), LOCK_UN);
    if (!r) return make_failure(errc::spawn_failed, "the keeper of '" + name + "' sent a bad record");
    named_server s;
    s.info_ = to_info(*r);
    s.holder_ = holder;
    s.holder_start_ = holder_start;
    s.started_here_ = started;
    s.held_ = true;
    return s;
  };

  // "taken" (another keeper holds the name) is answered at most this often in a row:
  // a name bound by something that does not answer is not ours to wait for.
  int taken = 0;
  const auto no_answer = [&](pid_t keeper) {
    ::flock(lock.get(), LOCK_UN);
    return make_failure(errc::timeout, "the keeper of '" + name + "'" +
                                           (keeper > 0 ? " (pid " + std::to_string(keeper) + ")" : std::string()) +
                                           " did not answer within " + std::to_string(options.wait.count()) +
                                           " ms (stopped or wedged?); `harness ps` shows it, its messages are in " +
                                           log_file.string());
  };
  for (bool first = true;; first = false) {
    if (!first && clock::now() >= deadline) return no_answer(0);
    if (!named::lock_until(lock.get(), deadline)) {
      named::record r;
      std::string who = named::read_record(record_file, r) == named::record_state::ok
                            ? describe_owner(r)
                            : "'" + name + "' is being started or stopped by another process";
      return make_failure(errc::timeout, "waited " + std::to_string(options.wait.count()) +
                                             " ms for the shared server's lock: " + who);
    }
    auto conn = named::connect_keeper(socket);
    if (!conn && conn.error().code == errc::timeout) {
      // Alive but not accepting: try again until the deadline.
      if (clock::now() >= deadline) return no_answer(0);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling a full backlog, bounded by the deadline
      continue;
    }
    if (!conn) {
      ::flock(lock.get(), LOCK_UN);
      return std::move(conn).error();
    }
    if (*conn) {
      // A live keeper (and we hold the lock: it is not starting or stopping).
      const int fd = conn->get();
      const pid_t keeper = named::peer_pid(fd);
      std::string buffer;
      if (!named::write_line(fd, verb + " " + fp + " " + hold)) continue;  // it just ended: look again
      // An attach that starts a reserved server (or waits for a start a caller that
      // died began) may take a whole start; one to a running server answers at once.
      named::record current;
      const bool may_start = !options.reserve &&
                             (named::read_record(record_file, current) != named::record_state::ok ||
                              current.phase == "reserved" || current.phase == "starting");
      auto reply = named::read_line(fd, buffer, may_start ? std::max(deadline, clock::now() + start_budget) : deadline);
      if (!reply) {
        if (clock::now() >= deadline) return no_answer(keeper);
        continue;  // the connection closed: it ended meanwhile; look again
      }
      auto [what, rest] = split(*reply);
      if (what == "ok") return done(rest, false);
      if (what == "failed") {
        ::flock(lock.get(), LOCK_UN);
        return detail::failure_from_json(rest);
      }
      if (what == "stopping") {
        // Stopping by its own decision: let it take the lock, and wait for its end.
        ::flock(lock.get(), LOCK_UN);
        std::string ignored;
        while (named::read_line(fd, ignored, deadline)) {
        }
        continue;
      }
      if (what == "mismatch") {
        auto r = named::parse_record(rest);
        if (r && r->users.empty() && r->keep_warm_ms) {
          // A warm server nobody holds, of another spec: replace it. We hold the lock for
          // its stop; its connection closes when the stop is over.
          named::write_line(fd, "replace");
          std::string ignored;
          while (named::read_line(fd, ignored, clock::now() + start_budget)) {
          }
          continue;
        }
        ::flock(lock.get(), LOCK_UN);
        return make_failure(errc::name_in_use,
                            (r ? describe_owner(*r) : "'" + name + "' runs") +
                                "; stop it first (`harness stop --name " + name + "`) or use another name");
      }
      ::flock(lock.get(), LOCK_UN);
      return make_failure(errc::spawn_failed, "the keeper of '" + name + "' answered \"" + *reply + "\"");
    }
    // Nobody keeps it: whatever record is left is stale (its keeper is gone).
    if (named::record r; named::read_record(record_file, r) != named::record_state::ok ||
                         !named::alive(r.keeper_pid, r.keeper_start)) {
      ::unlink(record_file.c_str());
    }
    const nlohmann::json request = {
        {"name", name},
        {"dir", dir->string()},
        {"spec", *text},
        {"fingerprint", fp},
        {"keep_warm_ms", options.keep_warm ? nlohmann::json(options.keep_warm->count()) : nlohmann::json()},
        {"holder_pid", holder},
        {"holder_start", holder_start},
        {"reserve", options.reserve},
    };
    auto reply = spawn_keeper(request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                              clock::now() + start_budget, log_file);
    if (!reply) {
      ::flock(lock.get(), LOCK_UN);
      return std::move(reply).error();
    }
    auto [what, rest] = split(*reply);
    if (what == "ok") return done(rest, !options.reserve);
    if (what == "taken" && ++taken < 10) continue;  // another keeper took the name meanwhile: attach to it
    if (what == "taken") {
      ::flock(lock.get(), LOCK_UN);
      return make_failure(errc::spawn_failed, "the socket of this name (@" + socket +
                                                  ") is bound by a process that does not answer; `ss -xlp | grep " +
                                                  socket + "` shows which");
    }
    ::flock(lock.get(), LOCK_UN);
    if (what == "failed") return detail::failure_from_json(rest);
    return make_failure(errc::spawn_failed, "the keeper of '" + name + "' answered \"" + *reply + "\"");
  }
}

named_server named_server::attach(std::string name, server_spec spec, named_options options) {
  auto r = try_attach(std::move(name), std::move(spec), options);
  if (!r) throw error(std::move(r).error());
  return std::move(*r);
}

result<bool> named_server::stop(std::string_view name, std::chrono::milliseconds wait) {
  if (!named::valid_name(name)) return make_failure(errc::invalid_argument, "bad shared server name \"" + std::string(name) + "\"");
  auto dir = named::servers_dir();
  if (!dir) return std::move(dir).error();
  auto conn = named::connect_keeper(named::socket_name(*dir, name));
  if (!conn) return std::move(conn).error();
  if (!*conn) {
    // Nobody keeps it; a record left behind is stale, unless a start holds the lock.
    if (!named::lock_is_held(named::lock_path(*dir, name))) ::unlink(named::record_path(*dir, name).c_str());
    return false;
  }
  const auto deadline = clock::now() + wait;
  const pid_t keeper = named::peer_pid(conn->get());
  std::string buffer;
  if (!named::write_line(conn->get(), "stop")) return false;
  auto reply = named::read_line(conn->get(), buffer, deadline);
  if (!reply && clock::now() >= deadline) {
    return make_failure(errc::timeout, "the keeper of '" + std::string(name) + "' (pid " + std::to_string(keeper) +
                                           ") did not answer within " + std::to_string(wait.count()) +
                                           " ms (stopped or wedged?)");
  }
  if (!reply) return false;  // it ended before it answered
  // The connection closes when the stop is over.
  while (named::read_line(conn->get(), buffer, deadline)) {
  }
  if (clock::now() >= deadline) {
    return make_failure(errc::timeout, "the shared server '" + std::string(name) + "' did not stop within " +
                                           std::to_string(wait.count()) + " ms");
  }
  return true;
}

result<std::vector<named_info>> named_server::list() {
  auto dir = named::servers_dir();
  if (!dir) return std::move(dir).error();
  std::vector<named_info> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(*dir, ec)) {
    const auto path = entry.path();
    if (path.extension() != ".json") continue;
    const std::string name = path.stem().string();
    if (!named::valid_name(name)) continue;
    named::record r;
    const auto state = named::read_record(path, r);
    if (state == named::record_state::missing) continue;
    named_info i;
    if (state == named::record_state::ok) {
      i = to_info(r);
      i.stale = !named::alive(r.keeper_pid, r.keeper_start);
    } else {
      i.name = name;
      // Unreadable: being written while its lock is held, a leftover otherwise.
      i.phase = named::lock_is_held(named::lock_path(*dir, name)) ? "busy" : "corrupt";
      i.stale = i.phase == "corrupt";
    }
    out.push_back(std::move(i));
  }
  std::sort(out.begin(), out.end(), [](const named_info& a, const named_info& b) { return a.name < b.name; });
  return out;
}

result<std::optional<named_info>> named_server::find(std::string_view name) {
  if (!named::valid_name(name)) return make_failure(errc::invalid_argument, "bad shared server name \"" + std::string(name) + "\"");
  auto dir = named::servers_dir();
  if (!dir) return std::move(dir).error();
  auto conn = named::connect_keeper(named::socket_name(*dir, name));
  if (!conn) return std::move(conn).error();
  if (!*conn) return std::optional<named_info>();
  std::string buffer;
  if (!named::write_line(conn->get(), "info")) return std::optional<named_info>();
  auto reply = named::read_line(conn->get(), buffer, clock::now() + std::chrono::seconds(30));
  if (!reply) return std::optional<named_info>();
  auto [what, rest] = split(*reply);
  auto r = named::parse_record(rest);
  if (what != "ok" || !r) return std::optional<named_info>();
  return std::optional<named_info>(to_info(*r));
}

named_server::named_server(named_server&& other) noexcept
    : info_(std::move(other.info_)),
      holder_(other.holder_),
      holder_start_(other.holder_start_),
      started_here_(other.started_here_),
      held_(std::exchange(other.held_, false)) {
  other.info_ = {};
}

named_server& named_server::operator=(named_server&& other) noexcept {
  if (this != &other) {
    release();
    info_ = std::move(other.info_);
    other.info_ = {};
    holder_ = other.holder_;
    holder_start_ = other.holder_start_;
    started_here_ = other.started_here_;
    held_ = std::exchange(other.held_, false);
  }
  return *this;
}

named_server::~named_server() { release(); }

void named_server::release() noexcept {
  if (!held_) return;
  held_ = false;
  try {
    auto dir = named::servers_dir();
    if (!dir) return;
    auto conn = named::connect_keeper(named::socket_name(*dir, info_.name));
    if (!conn || !*conn) return;
    std::string buffer;
    if (named::write_line(conn->get(), "detach " + std::to_string(holder_) + " " + std::to_string(holder_start_))) {
      (void)named::read_line(conn->get(), buffer, clock::now() + std::chrono::seconds(10));
    }
  } catch (...) {
    // Nothing to do: the keeper also drops the hold when this process ends.
  }
}

result<std::string> named_server::release_hold(std::string_view name, int hold_for) {
  if (!named::valid_name(name)) return make_failure(errc::invalid_argument, "bad shared server name \"" + std::string(name) + "\"");
  auto dir = named::servers_dir();
  if (!dir) return std::move(dir).error();
  auto conn = named::connect_keeper(named::socket_name(*dir, name));
  if (!conn) return std::move(conn).error();
  if (!*conn) return std::string("was not running");
  if (auto problem = named::holder_problem(hold_for)) return make_failure(errc::invalid_argument, "hold_for: " + *problem);
  const std::uint64_t start = named::start_time(hold_for);
  std::string buffer;
  if (!named::write_line(conn->get(), "detach " + std::to_string(hold_for) + " " + std::to_string(start) + " all")) {
    return std::string("was not running");
  }
  const auto deadline = clock::now() + std::chrono::seconds(30);
  auto reply = named::read_line(conn->get(), buffer, deadline);
  if (!reply && clock::now() >= deadline) {
    return make_failure(errc::timeout, "the keeper of '" + std::string(name) + "' (pid " +
                                           std::to_string(named::peer_pid(conn->get())) + ") did not answer in 30 s");
  }
  if (!reply) return std::string("was not running");
  auto [what, rest] = split(*reply);
  auto r = named::parse_record(rest);
  if (what != "ok" || !r) return std::string("the keeper answered \"" + *reply + "\"");
  if (!r->users.empty()) return "released; still held by " + std::to_string(r->users.size()) + " other process(es)";
  if (r->keep_warm_ms) return "released; kept warm for " + std::to_string(*r->keep_warm_ms / 1000) + " s";
  return std::string("released; nobody holds it now, so it stops");
}

std::string named_server::url(std::string_view path) const {
  std::string p(path);
  if (p.empty() || p[0] != '/') p.insert(p.begin(), '/');
  return "http://" + info_.endpoint + p;
}

std::optional<failure> named_server::check() const {
  if (!valid()) return std::nullopt;
  auto live = find(info_.name);
  if (live && *live && (*live)->keeper_pid == info_.keeper_pid && (*live)->phase != "exited") return std::nullopt;
  std::string text = "the shared server '" + info_.name + "' (pid " + std::to_string(info_.pid) + ", " + info_.endpoint +
                     ") is gone";
  auto dir = named::servers_dir();
  named::record r;
  if (dir && named::read_record(named::record_path(*dir, info_.name), r) == named::record_state::ok &&
      r.keeper_pid == info_.keeper_pid && r.phase == "exited") {
    text += ": it exited on its own (" + r.exit_status + ")\n" + r.output_tail;
  } else {
    text += ": it was stopped";
  }
  if (!info_.log.empty()) text += "\n  log: " + info_.log.string();
  return make_failure(errc::server_exited, text);
}

std::string named_server::summary() const {
  std::string text = "shared server " + info_.name + ": " + info_.command + "\n  pid " + std::to_string(info_.pid) +
                     " on " + info_.endpoint + (started_here_ ? " (started by this process)" : " (attached)") +
                     ", keeper pid " + std::to_string(info_.keeper_pid) + "\n";
  if (!info_.log.empty()) text += "  log: " + info_.log.string() + "\n";
  return text;
}

}  // namespace harness
