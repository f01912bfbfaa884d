// cli/run_options.hpp — the options of `harness run` and how they become a server_spec.
//
// CLI11 parses and validates each option (add_run_options); make_spec() then checks
// what only makes sense across options (the server command, --mode) and builds the
// harness::server_spec. Everything here fails with usage_error (exit status 2).
#pragma once

#include <CLI/CLI.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "harness/readiness.hpp"
#include "harness/session.hpp"

namespace harness_cli {

// A bad command line. what() is the reason, without the "--help" hint.
class usage_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The raw values of `harness run`, as CLI11 stores them.
struct run_args {
  std::string mode{};  // empty: from the placeholders
  std::string port_from{};
  std::vector<std::string> ready{};
  std::string host = "127.0.0.1";
  double timeout_seconds = 30;
  int attempts = 5;
  std::vector<std::string> env{};
  std::vector<std::string> fail_on{};
  std::vector<std::string> files{};  // NAME=TEMPLATE_PATH
  std::string cwd{};
  std::string stop_signal{};         // empty: SIGTERM
  double grace_seconds = -1;         // < 0: the default
  std::string keep_dir{};            // on-failure (default), always, never
  std::string name{};                // run: the server's name (<NAME>_PORT for --then)
  std::string then{};
  bool has_then = false;
  bool verbose = false;
  // Words CLI11 found before "--" (always a mistake: see make_spec).
  std::vector<std::string> stray{};
  // Everything after the first "--" of the command line (main() splits it off).
  bool separator = false;
  std::vector<std::string> server{};
  // `harness run`: the servers after each "--and" (split_servers()).
  std::vector<run_args> more{};
};

// Splits `--and [OPTIONS] --name NAME -- SERVER...` groups off args.server into
// args.more (each parsed with the server options). Throws usage_error.
void split_servers(run_args& args);

// A signal by name (QUIT, SIGQUIT) or number. Throws usage_error.
int parse_signal(const std::string& text);

// The environment variable prefix of a server name: upper case, other characters than
// A-Z and 0-9 as '_' ("my-db" -> "MY_DB").
std::string env_prefix(const std::string& name);

// The usage line of `harness run`, for messages and --help.
inline constexpr std::string_view run_usage = "harness run [OPTIONS] -- SERVER [ARGS...]";

// A --timeout value: seconds, fractions allowed, more than 0 and at most 1e7. Throws
// usage_error.
double parse_seconds(const std::string& value);

// Adds the `run` subcommand with its options (stored into `args`) to `app`.
// The options that describe a server (--mode, --ready, --env, ...), shared by `run`
// and `start`.
void add_server_options(CLI::App* command, run_args& args);

CLI::App* add_run_command(CLI::App& app, run_args& args);

// "tcp", "http", "http:PATH", "http:PATH:STATUS", "log:REGEX", "announce", "notify".
// Throws usage_error naming `spec` when it does not parse (the message does not name
// the option: CLI11 puts "--ready: " in front).
harness::probe parse_ready(std::string_view spec);

// Checks the cross-option rules and builds the spec. Throws usage_error.
harness::server_spec make_spec(const run_args& args, std::string_view usage_line = run_usage);

}  // namespace harness_cli
