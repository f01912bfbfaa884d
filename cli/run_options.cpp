#include "run_options.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <csignal>
#include <fstream>
#include <cmath>
#include <utility>

namespace harness_cli {
namespace {

using harness::probe;

constexpr std::string_view ready_forms =
    "tcp, http:PATH, http:PATH:STATUS, log:REGEX, cmd:COMMAND, redis, memcached, announce or notify";

// Strict decimal integer (the whole text).
bool parse_int(std::string_view text, int& out) {
  const auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), out);
  return !text.empty() && err == std::errc{} && end == text.data() + text.size();
}

// A CLI11 check from a function that throws usage_error.
CLI::Validator check_with(std::string name, void (*check)(const std::string&)) {
  return CLI::Validator(
      [check](std::string& value) -> std::string {
        try {
          check(value);
          return {};
        } catch (const usage_error& e) {
          return e.what();
        }
      },
      "", std::move(name));
}

void check_ready(const std::string& value) { (void)parse_ready(value); }

void check_env(const std::string& value) {
  const auto eq = value.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw usage_error("'" + value + "' is not of the form NAME=VALUE");
  }
}

void check_timeout(const std::string& value) { (void)parse_seconds(value); }

void check_signal(const std::string& value) { (void)parse_signal(value); }

void check_file(const std::string& value) {
  const auto eq = value.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == value.size()) {
    throw usage_error("'" + value + "' is not of the form NAME=TEMPLATE_PATH");
  }
}

// The text of a --file template (at most 16 MiB).
std::string read_template(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw usage_error("--file: cannot read the template " + path);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  if (in.bad() || text.size() > 16 * 1024 * 1024) throw usage_error("--file: cannot read the template " + path);
  return text;
}

void check_attempts(const std::string& value) {
  int n = 0;
  if (!parse_int(value, n) || n < 1 || n > 1000) {
    throw usage_error("needs a whole number of starts from 1 to 1000, not '" + value + "'");
  }
}

// "http:PATH[:STATUS]" without the "http:".
probe parse_http(std::string_view spec, std::string_view rest) {
  std::string_view path = rest;
  int status = 0;  // any 2xx
  if (const auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    const std::string_view tail = rest.substr(colon + 1);
    if (!tail.empty() && tail.find_first_not_of("0123456789") == std::string_view::npos) {
      if (!parse_int(tail, status) || status < 100 || status > 599) {
        throw usage_error("'" + std::string(spec) + "': the HTTP status must be 100..599");
      }
      path = rest.substr(0, colon);
    }
  }
  if (path.empty() || path.front() != '/') {
    throw usage_error("'" + std::string(spec) + "': the path must start with '/' (http:/health)");
  }
  return probe::http(std::string(path), status);
}

}  // namespace

double parse_seconds(const std::string& value) {
  double seconds = 0;
  const auto [end, err] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (value.empty() || err != std::errc{} || end != value.data() + value.size() ||
      !std::isfinite(seconds)) {
    throw usage_error("'" + value + "' is not a number of seconds");
  }
  if (seconds <= 0) throw usage_error("must be more than 0 seconds, not " + value);
  if (seconds > 1e7) throw usage_error(value + " seconds is too long");
  return seconds;
}

probe parse_ready(std::string_view spec) {
  const auto colon = spec.find(':');
  const std::string_view kind = spec.substr(0, colon);
  const std::string_view rest =
      colon == std::string_view::npos ? std::string_view{} : spec.substr(colon + 1);
  const bool has_arg = colon != std::string_view::npos;
  if (kind == "tcp" && !has_arg) return probe::tcp();
  if (kind == "announce" && !has_arg) return probe::announce();
  if (kind == "notify" && !has_arg) return probe::notify();
  if (kind == "http") return has_arg ? parse_http(spec, rest) : probe::http("/");
  if (kind == "redis" && !has_arg) return probe::redis();
  if (kind == "memcached" && !has_arg) return probe::memcached();
  if (kind == "cmd" && has_arg) {
    if (rest.find_first_not_of(" \t") == std::string_view::npos) {
      throw usage_error("'" + std::string(spec) + "': cmd: needs a command (run by /bin/sh -c)");
    }
    return probe::command({"/bin/sh", "-c", std::string(rest)});
  }
  if (kind == "log" && has_arg) {
    if (rest.empty())
      throw usage_error("'" + std::string(spec) + "': log: needs a regular expression");
    return probe::log(std::string(rest));
  }
  throw usage_error("'" + std::string(spec) + "' is not a readiness check; use " +
                    std::string(ready_forms));
}


void add_server_options(CLI::App* run, run_args& a) {
  run->add_option("--mode", a.mode,
                  "How the server gets its port:\n"
                  "  lease    the harness leases a free port and substitutes {port}\n"
                  "           (the default when {port} is in ARGS or an --env value)\n"
                  "  announce the server binds port 0 and reports the port\n"
                  "  inherit  the harness passes a listening socket as fd 3 (LISTEN_FDS=1)")
      ->type_name("MODE")
      ->check(CLI::IsMember({"lease", "announce", "inherit"}));
  run->add_option("--port-from", a.port_from,
                  "announce mode: the port is the first capture group of the first\n"
                  "stdout/stderr line matching REGEX (default: the server announces it\n"
                  "on HARNESS_READY_FD or over NOTIFY_SOCKET)")
      ->type_name("REGEX");
  run->add_option("--ready", a.ready,
                  "A readiness check; repeatable, all must pass: tcp, http:PATH (any 2xx),\n"
                  "http:PATH:STATUS, log:REGEX, cmd:COMMAND (exits 0; /bin/sh -c, {port}\n"
                  "{host} {dir} substituted), redis (PING), memcached (version), announce,\n"
                  "notify (default: tcp in lease mode, the announcement in the other modes)")
      ->type_name("SPEC")
      ->allow_extra_args(false)
      ->check(check_with("SPEC", check_ready));
  run->add_option("--host", a.host, "The address the server listens on; {host} (default 127.0.0.1)")
      ->type_name("HOST");
  run->add_option("--timeout", a.timeout_seconds,
                  "Readiness deadline of each start, in seconds (default 30; fractions\n"
                  "allowed; scaled by HARNESS_TIMEOUT_SCALE)")
      ->type_name("SECONDS")
      ->check(check_with("SECONDS", check_timeout));
  run->add_option("--attempts", a.attempts,
                  "lease mode: starts in all when the server loses its port to another\n"
                  "process (default 5)")
      ->type_name("N")
      ->check(check_with("N", check_attempts));
  run->add_option("--env", a.env,
                  "Set NAME=VALUE in the server's environment; VALUE may use {port}\nand {host} "
                  "(repeatable)")
      ->type_name("NAME=VALUE")
      ->allow_extra_args(false)
      ->check(check_with("NAME=VALUE", check_env));
  run->add_option("--fail-on", a.fail_on,
                  "A server output line matching REGEX fails the start (repeatable)")
      ->type_name("REGEX")
      ->allow_extra_args(false);
  run->add_option("--file", a.files,
                  "Render TEMPLATE_PATH into {dir}/NAME before each start ({port}, {host},\n"
                  "{dir} substituted; repeatable): the server's config file")
      ->type_name("NAME=TEMPLATE_PATH")
      ->allow_extra_args(false)
      ->check(check_with("NAME=TEMPLATE_PATH", check_file));
  run->add_option("--cwd", a.cwd, "The server's working directory (may be {dir})")->type_name("DIR");
  run->add_option("--stop-signal", a.stop_signal,
                  "The signal that asks the server to stop (default TERM; nginx: QUIT)")
      ->type_name("SIG")
      ->check(check_with("SIG", check_signal));
  run->add_option("--grace", a.grace_seconds,
                  "Seconds the server has after the stop signal before SIGKILL (default 3)")
      ->type_name("SECONDS")
      ->check(check_with("SECONDS", check_timeout));
  run->add_option("--keep-dir", a.keep_dir,
                  "Keep the scratch directory {dir} after the stop: on-failure (default),\n"
                  "always or never")
      ->type_name("WHEN")
      ->check(CLI::IsMember({"on-failure", "always", "never"}));
  // Catches words given before "--" so that make_spec() can say what went wrong.
  run->add_option("SERVER", a.stray, "")->group("");
}

CLI::App* add_run_command(CLI::App& app, run_args& a) {
  CLI::App* run = app.add_subcommand(
      "run",
      "Start a server on a race-free port, wait until it is ready, then run a client\n"
      "against it (--then) or keep it running until SIGINT/SIGTERM/SIGHUP.");
  add_server_options(run, a);
  run->add_option("--name", a.name,
                  "The server's name: in messages, and with several servers (--and) the\n"
                  "prefix of <NAME>_PORT, <NAME>_HOST and <NAME>_PID for --then")
      ->type_name("NAME");
  run->add_option("--then", a.then,
                  "Once ready, run `/bin/sh -c CMD` ({port} and {host} substituted;\n"
                  "HARNESS_PORT, HARNESS_HOST and HARNESS_PID in its environment), pass\n"
                  "its output through, stop the server and exit with CMD's status")
      ->type_name("CMD")
      ->each([&a](const std::string&) { a.has_then = true; });
  run->add_flag("-v,--verbose", a.verbose,
                "Report readiness progress and the server's output on stderr");
  run->footer(
      "The server command goes after '--': " + std::string(run_usage) +
      "\n"
      "{port} and {host} are replaced in ARGS, --env values, --file templates and --then\n"
      "({{port}} is a literal {port}); {dir}, the server's private scratch directory, too.\n"
      "\n"
      "Several servers: ... -- SERVER1 ARGS --and [OPTIONS] --name NAME -- SERVER2 ARGS\n"
      "(each with --name; --then and -v go before the first '--'); the --then client gets\n"
      "<NAME>_PORT, <NAME>_HOST and <NAME>_PID of each.\n"
      "\n"
      "Without --then, once the server is ready the command prints\n"
      "  HARNESS_PORT=<port>\n"
      "  HARNESS_PID=<pid>\n"
      "on stdout and keeps the server until SIGINT, SIGTERM or SIGHUP, then stops it\n"
      "(the whole process tree) and exits 0.\n"
      "\n"
      "Exit status: 0 ready and stopped on request; with --then, CMD's status (128+N\n"
      "when CMD was killed by signal N); 2 usage error; 3 the server could not be\n"
      "started or did not become ready; 4 the server exited on its own (with --then:\n"
      "while CMD ran, whatever CMD's status); 5 CMD passed but the server, when stopped,\n"
      "ended with an unexpected status or had printed a sanitizer report; 128+N when\n"
      "interrupted by signal N.\n"
      "\n"
      "Examples:\n"
      "  harness run --then 'curl -fsS http://{host}:{port}/' -- python3 -m http.server {port}\n"
      "  harness run --ready http:/health:204 -- my-server --listen={host}:{port}\n"
      "  harness run --mode announce --port-from 'port (\\d+)' -- my-server --port=0\n"
      "  harness run --mode inherit --ready http:/ -- my-socket-activated-server\n"
      "  harness run --file nginx.conf=nginx.conf.in --ready http:/health --stop-signal QUIT \\\n"
      "      -- nginx -p {dir} -c {dir}/nginx.conf -e stderr\n"
      "  harness run --name web --then 'client $WEB_PORT $DB_PORT' -- my-server {port} \\\n"
      "      --and --name db --ready redis -- redis-server --port {port}");
  return run;
}

harness::server_spec make_spec(const run_args& a, std::string_view usage_line) {
  const std::string usage(usage_line);
  if (!a.stray.empty()) {
    const std::string first = "'" + a.stray.front() + "'";
    if (a.separator)
      throw usage_error("unexpected argument " + first + " before '--'; write " + usage);
    throw usage_error("missing '--' before the server command " + first + "; write " + usage);
  }
  if (!a.separator) throw usage_error("no server command; write " + usage);
  if (a.server.empty()) throw usage_error("the server command after '--' is empty; write " + usage);

  harness::server_spec spec;
  spec.command = a.server;
  for (const auto& kv : a.env) {
    const auto eq = kv.find('=');
    spec.env.set.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }

  // Before the mode is chosen: a config file may be where {port} is (nginx).
  for (const auto& f : a.files) {
    const auto eq = f.find('=');
    spec.files.push_back({f.substr(0, eq), read_template(f.substr(eq + 1))});
  }
  const bool placeholder = harness::uses_port_placeholder(spec);
  if (a.mode.empty()) {
    if (!placeholder) {
      throw usage_error(
          "no {port} in the server command, an --env value or a --file template, so --mode is needed: --mode "
          "announce (the server reports the port it bound) or --mode inherit (it takes a "
          "listening socket); or put {port} where the server takes its port");
    }
    spec.port.mode = harness::port_mode::lease;
  } else if (a.mode == "lease") {
    spec.port.mode = harness::port_mode::lease;
  } else if (a.mode == "announce") {
    spec.port.mode = harness::port_mode::announce;
  } else {
    spec.port.mode = harness::port_mode::inherit;
  }

  if (!a.port_from.empty() && spec.port.mode != harness::port_mode::announce) {
    throw usage_error("--port-from needs --mode announce (the server binds port 0 and prints it)");
  }
  spec.port.host = a.host;
  spec.port.port_from = a.port_from;
  for (const auto& r : a.ready) spec.ready.probes.push_back(parse_ready(r));
  spec.ready.timeout =
      std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(a.timeout_seconds * 1000.0)));
  spec.ready.fail_on = a.fail_on;
  spec.respawn.attempts = a.attempts;
  spec.cwd = a.cwd;
  if (!a.stop_signal.empty()) spec.stop.signal = parse_signal(a.stop_signal);
  if (a.grace_seconds >= 0) {
    spec.stop.grace = std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(a.grace_seconds * 1000.0)));
  }
  if (a.keep_dir == "always") spec.scratch.keep = harness::scratch_options::keep_policy::always;
  if (a.keep_dir == "never") spec.scratch.keep = harness::scratch_options::keep_policy::never;
  if (!a.name.empty()) spec.name = a.name;
  return spec;
}

int parse_signal(const std::string& text) {
  int n = 0;
  if (parse_int(text, n)) {
    if (n < 1 || n >= NSIG) throw usage_error("'" + text + "' is not a signal number (1.." + std::to_string(NSIG - 1) + ")");
    return n;
  }
  std::string name = text;
  for (auto& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (name.rfind("SIG", 0) != 0) name = "SIG" + name;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (harness::signal_name(sig) == name) return sig;
  }
  throw usage_error("'" + text + "' is not a signal (TERM, QUIT, INT, HUP, USR1, ... or a number)");
}

std::string env_prefix(const std::string& name) {
  std::string out;
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    out += std::isalnum(u) ? static_cast<char>(std::toupper(u)) : '_';
  }
  if (!out.empty() && std::isdigit(static_cast<unsigned char>(out[0]))) out.insert(out.begin(), '_');
  return out;
}

void split_servers(run_args& a) {
  auto at = std::find(a.server.begin(), a.server.end(), "--and");
  if (at == a.server.end()) return;
  std::vector<std::string> rest(at + 1, a.server.end());
  a.server.erase(at, a.server.end());
  int index = 1;
  for (;;) {
    ++index;
    const auto next = std::find(rest.begin(), rest.end(), "--and");
    std::vector<std::string> group(rest.begin(), next);
    const std::string where = "server " + std::to_string(index) + " (after --and)";
    run_args b;
    const auto dash = std::find(group.begin(), group.end(), "--");
    b.separator = dash != group.end();
    if (b.separator) b.server.assign(dash + 1, group.end());
    CLI::App app{"", "--and"};
    add_server_options(&app, b);
    app.add_option("--name", b.name)->required();
    std::vector<std::string> words(group.begin(), dash);
    std::reverse(words.begin(), words.end());  // CLI11 takes them last first
    try {
      app.parse(words);
    } catch (const CLI::ParseError& e) {
      throw usage_error(where + ": " + e.what());
    }
    if (!b.separator || b.server.empty()) {
      throw usage_error(where + ": no server command; write --and [OPTIONS] --name NAME -- SERVER [ARGS...]");
    }
    a.more.push_back(std::move(b));
    if (next == rest.end()) break;
    rest.erase(rest.begin(), next + 1);
  }
}

}  // namespace harness_cli
