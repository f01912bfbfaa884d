#include "run.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "exit_codes.hpp"
#include "harness/session.hpp"
#include "line_writer.hpp"

namespace harness_cli {
namespace {

using namespace std::chrono_literals;
using harness::errc;
using harness::session;

// Everything `harness run` prints on stderr goes through the writer, so that our
// messages and the passed-through lines of the children stay whole and in order.
class reporter {
 public:
  explicit reporter(bool verbose) : verbose_(verbose) {}
  const std::shared_ptr<line_writer>& writer() const { return out_; }
  // A message on stderr ("harness: ..."); a trailing newline is dropped.
  void say(std::string text) const {
    while (!text.empty() && text.back() == '\n') text.pop_back();
    out_->put(2, "harness: ", text);
  }
  // Progress, only with --verbose.
  void progress(std::string text) const {
    if (verbose_) say(std::move(text));
  }
  void print(std::string_view line) const { out_->put(1, "", line); }
  void drain() const { out_->drain(); }
  bool verbose() const { return verbose_; }

 private:
  bool verbose_;
  std::shared_ptr<line_writer> out_ = std::make_shared<line_writer>();
};

// Library failures that mean a bad command line (detected before anything started).
bool is_usage_failure(const harness::failure& f) {
  // HARNESS_PORT_RANGE is part of how the command was invoked: a bad one is a usage error.
  return f.code == errc::invalid_argument || f.code == errc::bad_pattern ||
         f.code == errc::placeholder_not_allowed || f.code == errc::empty_argv ||
         f.code == errc::bad_port_range;
}

std::string describe_readiness(const harness::server_spec& spec) {
  std::string text;
  for (const auto& p : spec.ready.probes) text += (text.empty() ? "" : " and ") + p.describe();
  if (!text.empty()) return text;
  switch (spec.port.mode) {
    case harness::port_mode::announce:
      return spec.port.port_from.empty()
                 ? "the port announcement (HARNESS_READY_FD or NOTIFY_SOCKET)"
                 : "a line matching /" + spec.port.port_from + "/";
    case harness::port_mode::inherit:
      return "the ready announcement (HARNESS_READY_FD or NOTIFY_SOCKET)";
    default:
      return "tcp";
  }
}

// Starts the server on a thread of ours, so that a signal can interrupt the wait.
harness::result<session> start(harness::server_spec spec, signal_watch& signals,
                               const reporter& report) {
  event done;
  std::optional<harness::result<session>> started;
  std::thread starter([&] {
    started.emplace(session::try_start(std::move(spec)));
    done.raise();
  });
  if (wait_any({signals.fd(), done.fd()}) == 0) {
    const int sig = signals.take();
    report.say("interrupted by " + harness::signal_name(sig) + " before the server was ready");
    report.drain();
    // A start cannot be cancelled. Our death is enough: the server's supervisor sees it
    // and kills the whole tree, and the kernel drops the port lease.
    std::_Exit(128 + sig);
  }
  starter.join();
  return std::move(*started);
}

std::string server_exit_report(session& s, const harness::exit_status& status, const std::string& who = "the server") {
  std::string text = who + " exited on its own: " + status.str() + "\n";
  text += "  command: " + s.command_line() + "\n";
  text += "  pid " + std::to_string(s.pid()) + ", port " + std::to_string(s.port()) + "\n";
  text += s.output().merged_report(20);
  if (const auto log = s.log_path(); !log.empty()) text += "  log: " + log.string() + "\n";
  return text;
}

// Stops the server; with --verbose, lets its last lines through and says how it ended.
harness::exit_status stop_server(session& s, const reporter& report) {
  report.progress("stopping the server (pid " + std::to_string(s.pid()) + ")");
  const auto status = s.stop();
  if (report.verbose()) (void)s.output().wait_closed(1s);
  report.progress("server " + status.str());
  return status;
}

// The servers of one `harness run`, first to last.
struct server {
  std::string name;  // empty for a single unnamed server
  session s;
};

// HARNESS_PORT/HOST/PID (the first server), and <NAME>_PORT/HOST/PID of each named one.
std::vector<std::pair<std::string, std::string>> exported(const std::vector<server>& servers) {
  std::vector<std::pair<std::string, std::string>> vars;
  const auto& first = servers.front().s;
  vars.emplace_back("HARNESS_PORT", std::to_string(first.port()));
  vars.emplace_back("HARNESS_HOST", first.host());
  vars.emplace_back("HARNESS_PID", std::to_string(first.pid()));
  for (const auto& sv : servers) {
    if (sv.name.empty()) continue;
    const std::string prefix = env_prefix(sv.name);
    vars.emplace_back(prefix + "_PORT", std::to_string(sv.s.port()));
    vars.emplace_back(prefix + "_HOST", sv.s.host());
    vars.emplace_back(prefix + "_PID", std::to_string(sv.s.pid()));
  }
  return vars;
}

// The first server that is not running any more, or nullptr.
server* gone(std::vector<server>& servers) {
  for (auto& sv : servers) {
    if (!sv.s.running()) return &sv;
  }
  return nullptr;
}

void stop_all(std::vector<server>& servers, const reporter& report) {
  for (auto it = servers.rbegin(); it != servers.rend(); ++it) stop_server(it->s, report);
}

// A server that exited on its own: its report, after the others are stopped.
int report_exit(std::vector<server>& servers, server& dead, const reporter& report, const std::string& before) {
  const auto status = dead.s.stop();
  for (auto& sv : servers) {
    if (&sv != &dead) stop_server(sv.s, report);
  }
  report.say(before + server_exit_report(dead.s, status, servers.size() > 1 ? "the server " + dead.name : "the server"));
  report.drain();
  return exit_code::server_exited;
}

// Without --then: print the ports and pids, hold the servers until a signal.
int hold(std::vector<server>& servers, signal_watch& signals, const reporter& report) {
  std::vector<std::unique_ptr<exit_watch>> exits;
  std::vector<int> fds{signals.fd()};
  for (auto& sv : servers) {
    exits.push_back(std::make_unique<exit_watch>(sv.s.process()));
    fds.push_back(exits.back()->fd());
  }
  for (const auto& [k, v] : exported(servers)) {
    if (k != "HARNESS_HOST") report.print(k + "=" + v);
  }
  report.drain();
  if (wait_any(std::span<const int>(fds)) == 0) {
    report.progress("got " + harness::signal_name(signals.take()));
    stop_all(servers, report);
    report.drain();
    return exit_code::ok;
  }
  server* dead = gone(servers);
  return report_exit(servers, dead != nullptr ? *dead : servers.front(), report, "");
}

// With --then: run the client, pass its output through, exit with its status.
int run_then(std::vector<server>& servers, const std::string& command, signal_watch& signals,
             const reporter& report) {
  session& s = servers.front().s;
  const std::string port = std::to_string(s.port());
  harness::process_options o;
  o.argv = {"/bin/sh", "-c", harness::substitute_placeholders(command, s.host(), port, s.dir().string())};
  o.env.set = exported(servers);
  o.output.tail_bytes = 4096;   // the lines go to our stdout/stderr, not to a tail
  o.output.max_line = 1 << 20;  // longer lines are cut (and passed on in pieces)
  o.output.log_file = false;
  o.output.on_line = forward_lines(report.writer(), "");
  o.name = "then";
  // The client's own exit decides: what it leaves in the background is not followed
  // as a daemon (it is stopped with the client's tree).
  o.follow_daemon = false;
  report.progress("running " + harness::quote_command(o.argv));
  auto client = harness::process::try_spawn(std::move(o));
  if (!client) {
    report.say("could not start the --then command: " + client.error().message());
    stop_all(servers, report);
    report.drain();
    return exit_code::start_failed;
  }

  exit_watch client_exit(*client);
  if (wait_any({signals.fd(), client_exit.fd()}) == 0) {
    const int sig = signals.take();
    report.progress("got " + harness::signal_name(sig) + ": stopping the client");
    report.progress("client " + client->stop().str());
    stop_all(servers, report);
    report.drain();
    return 128 + sig;
  }
  // The client has exited: stop() reaps it and ends whatever it left running, so
  // that its pipes close and every line it printed has been passed on.
  const auto status = client->stop();
  (void)client->output().wait_closed(2s);
  report.progress("client " + status.str());
  if (server* dead = gone(servers)) {
    // A green client against a server that died is not a pass.
    return report_exit(servers, *dead, report, "the client " + status.str() + ", but ");
  }
  stop_all(servers, report);
  for (auto& sv : servers) {
    if (auto verdict = sv.s.check()) {
      report.say("the server" + (sv.name.empty() ? std::string() : " " + sv.name) +
                 " did not end as expected: " + verdict->message());
      report.drain();
      return status.shell_code() != 0 ? status.shell_code() : exit_code::bad_end;
    }
  }
  report.drain();
  return status.shell_code();
}

}  // namespace

namespace {

// Starts one server of the command line; a failure is reported (and usage failures
// thrown) by the caller.
harness::result<session> start_one(const run_args& a, signal_watch& signals, const reporter& report) {
  harness::server_spec spec = make_spec(a);
  const std::string label = a.name.empty() ? "" : "[" + a.name + "] ";
  if (report.verbose()) spec.output.on_line = forward_lines(report.writer(), label.empty() ? "[server] " : label, 2, 2);
  report.progress("starting " + harness::quote_command(spec.command) + " (" + harness::to_string(spec.port.mode) +
                  " mode, host " + spec.port.host + "; ready when " + describe_readiness(spec) + ")");
  // A slow start says where it stands (stderr), so that it does not look like a hang.
  if (!spec.ready.on_progress) {
    spec.ready.on_progress = [&report, name = harness::server_label(spec)](const harness::start_progress& p) {
      report.say("still starting " + name + ": " + harness::to_string(p));
    };
  }
  auto started = start(std::move(spec), signals, report);
  if (!started) return started;
  session& s = *started;
  report.progress("ready on " + s.endpoint() + " (pid " + std::to_string(s.pid()) + ") after " +
                  std::to_string(s.ready_time().count()) + " ms");
  if (s.attempts().size() > 1) report.progress("attempts:\n" + harness::format_attempts(s.attempts()));
  if (const auto log = s.log_path(); !log.empty()) report.progress("server log: " + log.string());
  if (!s.dir().empty()) report.progress("scratch directory: " + s.dir().string());
  return started;
}

}  // namespace

int run_command(run_args& args, signal_watch& signals) {
  split_servers(args);
  std::vector<const run_args*> wanted{&args};
  for (const auto& m : args.more) wanted.push_back(&m);
  if (wanted.size() > 1) {
    std::vector<std::string> seen;
    for (const auto* a : wanted) {
      if (a->name.empty()) throw usage_error("with several servers (--and), each needs --name NAME");
      const std::string prefix = env_prefix(a->name);
      if (std::find(seen.begin(), seen.end(), prefix) != seen.end()) {
        throw usage_error("two servers are called " + a->name + " (or export the same " + prefix + "_PORT)");
      }
      seen.push_back(prefix);
    }
  }
  for (const auto* a : wanted) (void)make_spec(*a);  // every usage error before anything starts
  const reporter report(args.verbose);
  std::vector<server> servers;
  for (const auto* a : wanted) {
    auto started = start_one(*a, signals, report);
    if (!started) {
      const auto& f = started.error();
      stop_all(servers, report);
      report.drain();
      if (is_usage_failure(f)) throw usage_error(f.message());
      report.say((wanted.size() > 1 ? a->name + ": " : std::string()) + f.message());
      report.drain();
      return exit_code::start_failed;
    }
    servers.push_back({a->name, std::move(*started)});
  }
  return args.has_then ? run_then(servers, args.then, signals, report) : hold(servers, signals, report);
}

}  // namespace harness_cli
