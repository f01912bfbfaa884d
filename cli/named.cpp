#include "named.hpp"

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "exit_codes.hpp"
#include "text.hpp"
#include "harness/detail/os/proc_fs.hpp"
#include "harness/detail/os/proc_net.hpp"
#include "harness/detail/os/proc_tree.hpp"
#include "harness/detail/proc/spawn_posix.hpp"
#include "harness/detail/shared/named_common.hpp"
#include "harness/lease.hpp"
#include "harness/named_server.hpp"

namespace harness_cli {
namespace {

namespace procfs = harness::detail::procfs;
namespace procnet = harness::detail::procnet;
namespace proctree = harness::detail::proctree;
using json = nlohmann::ordered_json;

std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(seconds * 1000.0)));
}

// Seconds >= 0 (0 allowed: "no keep-warm").
CLI::Validator seconds_check(bool allow_zero) {
  return CLI::Validator(
      [allow_zero](std::string& v) -> std::string {
        char* end = nullptr;
        const double d = std::strtod(v.c_str(), &end);
        if (v.empty() || end == nullptr || *end != '\0' || !std::isfinite(d) || d < 0 || d > 1e7 ||
            (!allow_zero && d == 0)) {
          return "'" + v + "' is not a number of seconds" + (allow_zero ? "" : " above 0");
        }
        return {};
      },
      "", "SECONDS");
}

CLI::Validator pid_check() {
  return CLI::Validator(
      [](std::string& v) -> std::string {
        char* end = nullptr;
        const long n = std::strtol(v.c_str(), &end, 10);
        if (v.empty() || *end != '\0' || n < 1 || n > 4194304) return "'" + v + "' is not a pid";
        return {};
      },
      "", "PID");
}

std::string slurp(const std::string& path) { return procfs::read_file(path); }

std::vector<std::string> cmdline(pid_t pid) {
  const std::string raw = slurp("/proc/" + std::to_string(pid) + "/cmdline");
  std::vector<std::string> out;
  std::string cur;
  for (char c : raw) {
    if (c == '\0') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

std::string command_text(pid_t pid) {
  std::string text;
  for (const auto& a : cmdline(pid)) text += (text.empty() ? "" : " ") + a;
  return text.substr(0, 300);
}



// Seconds since a process started (-1 when gone).
std::int64_t process_age(pid_t pid) {
  auto st = procfs::read_stat(pid);
  if (!st) return -1;
  double uptime = 0;
  std::ifstream("/proc/uptime") >> uptime;
  const long hz = ::sysconf(_SC_CLK_TCK);
  return std::max<std::int64_t>(0, static_cast<std::int64_t>(uptime - static_cast<double>(st->start_time) / static_cast<double>(hz)));
}

std::vector<pid_t> all_pids() {
  std::vector<pid_t> out;
  if (DIR* d = ::opendir("/proc")) {
    while (dirent* e = ::readdir(d)) {
      char* end = nullptr;
      const long pid = std::strtol(e->d_name, &end, 10);
      if (pid > 0 && *end == '\0') out.push_back(static_cast<pid_t>(pid));
    }
    ::closedir(d);
  }
  return out;
}

std::string exe_of(pid_t pid) {
  char buf[4096];
  const ssize_t n = ::readlink(("/proc/" + std::to_string(pid) + "/exe").c_str(), buf, sizeof buf - 1);
  if (n <= 0) return {};
  std::string s(buf, static_cast<std::size_t>(n));
  const std::string deleted = " (deleted)";
  if (s.size() > deleted.size() && s.compare(s.size() - deleted.size(), deleted.size(), deleted) == 0) {
    s.resize(s.size() - deleted.size());
  }
  return s;
}

// A supervisor of ours: our uid, and (strict, for gc) exactly our supervisor program;
// otherwise any program called harness-supervisor with its command line.
struct supervisor_proc {
  pid_t pid = 0;
  pid_t runner = 0;
  bool runner_gone = false;
  pid_t server = 0;  // its oldest live descendant (0: an idle spare)
  std::vector<std::uint16_t> ports;
};

std::vector<supervisor_proc> our_supervisors(bool strict) {
  std::vector<supervisor_proc> out;
  std::string ours;
  if (strict) {
    char resolved[PATH_MAX];
    const std::string& p = harness::detail::supervisor_path();
    if (p.empty() || ::realpath(p.c_str(), resolved) == nullptr) return out;
    ours = resolved;
  }
  // Listening sockets by inode, for the ports of each tree.
  std::vector<procnet::tcp_socket> listening;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    for (const auto& s : procnet::parse_tcp_table(slurp(table))) {
      if (s.state == 0x0A) listening.push_back(s);
    }
  }
  for (pid_t pid : all_pids()) {
    if (pid == ::getpid()) continue;
    const auto uid = procfs::owner(pid);
    if (!uid || *uid != ::getuid()) continue;
    const std::string exe = exe_of(pid);
    const auto args = cmdline(pid);
    if (strict ? exe != ours
               : (args.size() != 3 || (exe.size() < 18 || exe.compare(exe.size() - 18, 18, "harness-supervisor") != 0))) {
      continue;
    }
    if (args.size() != 3) continue;
    supervisor_proc s;
    s.pid = pid;
    s.runner = static_cast<pid_t>(std::strtol(args[2].c_str(), nullptr, 10));
    proctree::brief me{};
    proctree::brief runner{};
    const bool runner_alive = s.runner > 0 && proctree::read_brief(s.runner, runner) && runner.alive();
    s.runner_gone = !proctree::read_brief(pid, me) || !runner_alive || me.ppid != s.runner;
    std::vector<pid_t> tree;
    proctree::descendants(pid, tree);
    for (pid_t t : tree) {
      proctree::brief b{};
      if (s.server == 0 && proctree::read_brief(t, b) && b.state != 'Z') s.server = t;
      for (std::uint64_t inode : procnet::socket_inodes(t)) {
        for (const auto& l : listening) {
          if (l.inode == inode && std::find(s.ports.begin(), s.ports.end(), l.local_port) == s.ports.end()) {
            s.ports.push_back(l.local_port);
          }
        }
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::string program_name(pid_t pid) {
  auto args = cmdline(pid);
  if (args.empty()) return "?";
  const auto slash = args[0].rfind('/');
  return slash == std::string::npos ? args[0] : args[0].substr(slash + 1);
}

// The process a hold belongs to by default: the one that ran us, or, when that is a
// forked copy of its own parent (the subshell of `$(harness start ...)`, of a pipeline
// or of `( ... ) &`, which ends at once), the first ancestor that is not. Throws
// usage_error when it is gone (we were orphaned) or cannot hold a server.
int default_holder() {
  pid_t pid = ::getppid();
  for (int depth = 0; depth < 32 && pid > 1; ++depth) {
    auto st = procfs::read_stat(pid);
    if (!st || st->ppid <= 1) break;
    if (exe_of(pid).empty() || exe_of(pid) != exe_of(st->ppid) || cmdline(pid) != cmdline(st->ppid)) break;
    pid = st->ppid;
  }
  if (pid <= 1) {
    throw usage_error("the process that ran `harness start` is gone (our parent is now pid " + std::to_string(pid) +
                      "), so nothing would hold the server: pass --hold-for PID");
  }
  return static_cast<int>(pid);
}

}  // namespace

CLI::App* add_start_command(CLI::App& app, run_args& server, start_args& a) {
  CLI::App* start = app.add_subcommand(
      "start",
      "Start a named shared server, or attach to the live one of that name; return once\n"
      "it is ready. It stays up while its holders live (by default the process that ran\n"
      "this command: the ctest run or the shell), and stops with the last of them.");
  start->add_option("--name", a.name, "The server's name: 1-64 of A-Z a-z 0-9 . _ -")->required()->type_name("NAME");
  add_server_options(start, server);
  start->add_option("--keep-warm", a.keep_warm_seconds,
                    "Stay up SECONDS after the last hold ends (for dev loops); replaced when\n"
                    "a start asks for a different command or options")
      ->type_name("SECONDS")
      ->check(seconds_check(true));
  start->add_option("--wait", a.wait_seconds,
                    "Wait up to SECONDS for another process's start or stop of this name (default 120)")
      ->type_name("SECONDS")
      ->check(seconds_check(false));
  start->add_option("--hold-for", a.hold_for,
                    "The process whose life holds the server (default: the process that ran\n"
                    "this command, or the shell of a $(...) or pipeline subshell; in scripts,\n"
                    "--hold-for $$ says it exactly)")
      ->type_name("PID")
      ->check(pid_check());
  start->add_flag("--reserve", a.reserve,
                  "Only take the port (printed as HARNESS_PORT) and hold it; the server starts at\n"
                  "the first `start` without --reserve (harness_add_server_fixture uses this)");
  start->footer(
      "The server command goes after '--': " + std::string(start_usage) +
      "\n"
      "Once ready it prints HARNESS_PORT=, HARNESS_HOST= and HARNESS_PID= on stdout, and\n"
      "on stderr whether it started the server or attached to a running one.\n"
      "Exit status: 0 ready; 2 usage error; 3 it could not be started, another spec runs\n"
      "under this name, or another process's start or stop took longer than --wait.\n"
      "\n"
      "Examples:\n"
      "  harness start --name db -- redis-server --port {port} --save ''\n"
      "  harness start --name db --keep-warm 600 -- redis-server --port {port}\n"
      "  harness stop --name db");
  return start;
}

CLI::App* add_stop_command(CLI::App& app, stop_args& a) {
  CLI::App* stop = app.add_subcommand("stop", "Stop a named shared server (the whole process tree), or end one hold on it.");
  stop->add_option("--name", a.name, "The server's name")->required()->type_name("NAME");
  stop->add_flag("--release", a.release,
                 "Only end the hold of our parent (or --hold-for): the server stops when\n"
                 "nobody else holds it and it is not kept warm");
  stop->add_option("--hold-for", a.hold_for, "With --release: the process whose hold ends")->type_name("PID")->check(pid_check());
  stop->add_option("--wait", a.wait_seconds, "Wait up to SECONDS for the stop (default 60)")
      ->type_name("SECONDS")
      ->check(seconds_check(false));
  stop->footer("Exit status: 0 stopped, released, or nothing was running; 2 usage error; 3 the stop timed out.");
  return stop;
}

CLI::App* add_ps_command(CLI::App& app, ps_args& a) {
  CLI::App* ps = app.add_subcommand(
      "ps", "List the live servers of this user: named shared servers and the servers of running test programs.");
  ps->add_flag("--json", a.json, "Print a JSON array instead of a table");
  return ps;
}

CLI::App* add_who_command(CLI::App& app, who_args& a) {
  CLI::App* who = app.add_subcommand("who", "Which process holds a port (listens on it, or leases it), ours or not.");
  who->add_option("PORT", a.port, "The TCP port")->required()->check(CLI::Range(1, 65535));
  who->add_flag("--json", a.json, "Print JSON instead of text");
  who->footer("Exit status: 0 somebody holds it; 1 nobody listens on it or leases it; 2 usage error.");
  return who;
}

CLI::App* add_gc_command(CLI::App& app, gc_args& a) {
  CLI::App* gc = app.add_subcommand(
      "gc",
      "Stop leftovers of ours whose owner is gone, and remove stale records; never\n"
      "anything else (another user's processes, or processes the harness did not start).");
  gc->add_flag("-n,--dry-run", a.dry_run, "Only say what would be done");
  return gc;
}

int start_command(const run_args& server, const start_args& a) {
  harness::server_spec spec = make_spec(server, start_usage);
  harness::named_options o;
  o.wait = to_ms(a.wait_seconds);
  if (a.keep_warm_seconds > 0) o.keep_warm = to_ms(a.keep_warm_seconds);
  o.hold_for = a.hold_for > 0 ? a.hold_for : default_holder();
  o.reserve = a.reserve;
  auto s = harness::named_server::try_attach(a.name, std::move(spec), o);
  if (!s) {
    std::cerr << "harness: " << a.name << ": " << s.error().message() << "\n";
    if (s.error().code == harness::errc::invalid_argument) return exit_code::usage;
    return exit_code::start_failed;
  }
  const auto& info = s->info();
  std::cout << "HARNESS_PORT=" << s->port() << "\nHARNESS_HOST=" << s->host() << "\n";
  if (s->pid() != 0) std::cout << "HARNESS_PID=" << s->pid() << "\n";
  std::cout.flush();
  std::cerr << "harness: " << a.name << ": "
            << (a.reserve ? (info.phase == "reserved" ? "reserved port " : "already running on port ")
                          : (s->started_here() ? "started on port " : "attached on port "))
            << s->port() << " (keeper pid " << info.keeper_pid << ", held by pid " << o.hold_for << ")\n";
  // The hold stays: it belongs to o.hold_for, and ends with it or with `stop --release`.
  s->keep_hold();
  return exit_code::ok;
}

int stop_command(const stop_args& a) {
  if (a.release) {
    const int holder = a.hold_for > 0 ? a.hold_for : default_holder();
    auto r = harness::named_server::release_hold(a.name, holder);
    if (!r) {
      std::cerr << "harness: " << a.name << ": " << r.error().message() << "\n";
      return r.error().code == harness::errc::invalid_argument ? exit_code::usage : exit_code::start_failed;
    }
    std::cerr << "harness: " << a.name << ": " << *r << "\n";
    return exit_code::ok;
  }
  auto r = harness::named_server::stop(a.name, to_ms(a.wait_seconds));
  if (!r) {
    std::cerr << "harness: " << a.name << ": " << r.error().message() << "\n";
    return r.error().code == harness::errc::invalid_argument ? exit_code::usage : exit_code::start_failed;
  }
  std::cerr << "harness: " << a.name << ": " << (*r ? "stopped" : "was not running") << "\n";
  return exit_code::ok;
}

int ps_command(const ps_args& a) {
  auto named = harness::named_server::list();
  if (!named) {
    std::cerr << "harness: " << named.error().message() << "\n";
    return exit_code::start_failed;
  }
  const std::int64_t now_ms = static_cast<std::int64_t>(std::time(nullptr)) * 1000;
  json rows = json::array();
  std::set<pid_t> keepers;
  for (const auto& n : *named) {
    if (n.stale) continue;  // `harness gc` removes those
    keepers.insert(n.keeper_pid);
    json users = json::array();
    for (int u : n.users) users.push_back(u);
    rows.push_back({{"kind", "shared"},
                    {"name", n.name},
                    {"pid", n.pid},
                    {"port", n.port},
                    {"phase", n.phase},
                    {"users", users},
                    {"age_seconds", n.created_ms > 0 ? (now_ms - n.created_ms) / 1000 : -1},
                    {"owner_pid", n.keeper_pid},
                    {"owner", "harness-keeper"},
                    {"keep_warm_seconds", n.keep_warm ? json(n.keep_warm->count() / 1000.0) : json()},
                    {"command", n.command},
                    {"log", n.log.string()}});
  }
  for (const auto& s : our_supervisors(false)) {
    if (s.server == 0 || keepers.count(s.runner) != 0) continue;  // a spare, or a named server's
    json ports = json::array();
    for (auto p : s.ports) ports.push_back(p);
    rows.push_back({{"kind", "session"},
                    {"name", ""},
                    {"pid", s.server},
                    {"port", s.ports.empty() ? 0 : s.ports.front()},
                    {"phase", s.runner_gone ? "orphaned" : "running"},
                    {"users", json::array({s.runner})},
                    {"age_seconds", process_age(s.server)},
                    {"owner_pid", s.runner},
                    {"owner", program_name(s.runner)},
                    {"keep_warm_seconds", json()},
                    {"command", command_text(s.server)},
                    {"log", ""}});
  }
  if (a.json) {
    std::cout << rows.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
    return exit_code::ok;
  }
  char line[160];
  std::snprintf(line, sizeof line, "%-8s %-16s %-8s %-6s %-9s %-6s %-7s %-24s ", "KIND", "NAME", "PID", "PORT",
                "PHASE", "USERS", "AGE", "OWNER");
  std::cout << line << "COMMAND\n";
  for (const auto& r : rows) {
    const std::string owner = r["owner"].get<std::string>() + " " + std::to_string(r["owner_pid"].get<int>());
    const std::string pid = r["pid"].get<int>() != 0 ? std::to_string(r["pid"].get<int>()) : "-";
    const std::string port = r["port"].get<int>() != 0 ? std::to_string(r["port"].get<int>()) : "-";
    std::snprintf(line, sizeof line, "%-8s %-16s %-8s %-6s %-9s %-6zu %-7s %-24s ", r["kind"].get<std::string>().c_str(),
                  r["name"].get<std::string>().empty() ? "-" : r["name"].get<std::string>().c_str(), pid.c_str(),
                  port.c_str(), r["phase"].get<std::string>().c_str(), r["users"].size(),
                  age_text(r["age_seconds"].get<std::int64_t>()).c_str(), printable(owner).c_str());
    std::cout << line << printable(r["command"].get<std::string>()) << "\n";
  }
  return exit_code::ok;
}

int who_command(const who_args& a) {
  const auto port = static_cast<std::uint16_t>(a.port);
  std::vector<unsigned> uids;
  const auto holders = procnet::listening_holders(port, &uids);
  const auto sups = our_supervisors(false);
  json out = {{"port", port}, {"listeners", json::array()}, {"lease", json()}};
  std::vector<harness::named_info> named;
  if (auto list = harness::named_server::list()) named = std::move(*list);
  for (const auto& h : holders) {
    // Ours when it is below a supervisor of ours; a named server's when that
    // supervisor's runner is its keeper.
    json owner;
    for (const auto& s : sups) {
      if (proctree::is_below(h.pid, s.pid) == 1) {
        owner = {{"supervisor", s.pid}, {"runner", s.runner}, {"runner_name", program_name(s.runner)}};
        for (const auto& n : named) {
          if (!n.stale && n.keeper_pid == s.runner) {
            owner["shared_server"] = n.name;
            owner["holders"] = n.users;
          }
        }
        break;
      }
    }
    out["listeners"].push_back({{"pid", h.pid},
                                {"name", h.name},
                                {"user", h.user},
                                {"command", h.command},
                                {"ours", !owner.is_null()},
                                {"owner", owner}});
  }
  const bool hidden = holders.empty() && !uids.empty();
  if (hidden) out["hidden_listener_uid"] = uids.front();
  if (auto leases = harness::list_leases()) {
    for (const auto& l : *leases) {
      if (l.port == port && l.held) out["lease"] = {{"pid", l.pid}, {"since", l.since}, {"note", l.note}};
    }
  }
  const bool anybody = !holders.empty() || hidden || !out["lease"].is_null();
  if (a.json) {
    std::cout << out.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
    return anybody ? exit_code::ok : 1;
  }
  if (!anybody) {
    std::cout << "nobody listens on port " << port << " or leases it\n";
    return 1;
  }
  for (const auto& l : out["listeners"]) {
    std::cout << "port " << port << ": pid " << l["pid"].get<int>() << " (" << printable(l["name"].get<std::string>())
              << ", user " << l["user"].get<std::string>() << ")";
    if (l["ours"].get<bool>() && l["owner"].contains("shared_server")) {
      std::cout << ", ours: the shared server '" << l["owner"]["shared_server"].get<std::string>() << "' (keeper pid "
                << l["owner"]["runner"].get<int>() << ", held by";
      for (const auto& u : l["owner"]["holders"]) std::cout << " " << u.get<int>();
      if (l["owner"]["holders"].empty()) std::cout << " nobody: kept warm";
      std::cout << ")";
    } else if (l["ours"].get<bool>()) {
      std::cout << ", ours: started by pid " << l["owner"]["runner"].get<int>() << " ("
                << printable(l["owner"]["runner_name"].get<std::string>()) << ")";
    } else {
      std::cout << ", not started by the harness";
    }
    std::cout << "\n  " << printable(l["command"].get<std::string>()) << "\n";
  }
  if (hidden) std::cout << "port " << port << ": a process of uid " << uids.front() << " listens (its pid is not visible to us)\n";
  if (!out["lease"].is_null()) {
    std::cout << "port " << port << ": leased by pid " << out["lease"]["pid"].get<int>() << ": "
              << printable(out["lease"]["note"].get<std::string>()) << "\n";
  }
  return exit_code::ok;
}

int gc_command(const gc_args& a) {
  int actions = 0;
  const char* verb = a.dry_run ? "would " : "";
  // Stale records: their keeper is gone.
  if (auto named = harness::named_server::list()) {
    for (const auto& n : *named) {
      if (!n.stale) continue;
      ++actions;
      std::cout << verb << "remove the stale record of the shared server '" << n.name << "' (its keeper, pid "
                << n.keeper_pid << ", is gone)\n";
      if (!a.dry_run) (void)harness::named_server::stop(n.name, std::chrono::seconds(5));  // removes it
    }
  } else {
    std::cerr << "harness: " << named.error().message() << "\n";
    return exit_code::start_failed;
  }
  // Keeper logs of names that have no server and no record any more, older than a day
  // (a fresh one may explain a start that just failed).
  if (auto dir = harness::detail::named::servers_dir()) {
    std::error_code ec;
    const auto now = std::filesystem::file_time_type::clock::now();
    for (const auto& entry : std::filesystem::directory_iterator(*dir, ec)) {
      const auto path = entry.path();
      if (path.extension() != ".log" || !entry.is_regular_file(ec)) continue;
      const std::string name = path.stem().string();
      if (!harness::detail::named::valid_name(name) || std::filesystem::exists(*dir / (name + ".json"), ec)) continue;
      const auto age = now - std::filesystem::last_write_time(path, ec);
      if (ec || age < std::chrono::hours(24)) continue;
      if (auto live = harness::named_server::find(name); !live || live->has_value()) continue;
      ++actions;
      std::cout << verb << "remove the old log of the shared server '" << name << "' (" << path.string() << ")\n";
      if (!a.dry_run) std::filesystem::remove(path, ec);
    }
  }
  // Supervisors of ours (exactly our program, our uid) whose runner is gone: stop them
  // and their trees. SIGTERM makes a supervisor stop its tree with its stop steps.
  std::vector<supervisor_proc> stopped;
  for (const auto& s : our_supervisors(true)) {
    if (!s.runner_gone) continue;
    ++actions;
    std::cout << verb << "stop supervisor pid " << s.pid << " (its test program, pid " << s.runner << ", is gone)";
    if (s.server != 0) std::cout << " and its server pid " << s.server << ": " << printable(command_text(s.server));
    std::cout << "\n";
    if (!a.dry_run) {
      ::kill(s.pid, SIGTERM);
      stopped.push_back(s);
    }
  }
  if (actions == 0) std::cout << "nothing to clean up\n";
  return exit_code::ok;
}

}  // namespace harness_cli
