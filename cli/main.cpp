// harness — the serve-harness command line.
//
//   harness run [OPTIONS] -- SERVER [ARGS...]     start a server, wait until ready, ...
//   harness start --name N [OPTIONS] -- SERVER    start or attach to a named shared server
//   harness stop --name N [--release]             stop it, or end one hold on it
//   harness ps [--json]                           the live servers of this user
//   harness ports [--json]                        the leases of the shared port pool
//   harness who PORT                              which process holds a port
//   harness gc [--dry-run]                        stop leftovers whose owner is gone
//   harness wait SPEC... [--timeout S]            wait until running things are ready
//
// CLI11 parses everything before the first "--"; the words after it are the server
// command, handed over untouched (so a server option never meets our parser).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <exception>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "events_posix.hpp"
#include "exit_codes.hpp"
#include "named.hpp"
#include "ports.hpp"
#include "run.hpp"
#include "run_options.hpp"
#include "wait.hpp"

namespace {

using namespace harness_cli;

// CLI11's help, with the usage line of `run` showing where the server command goes.
class formatter : public CLI::Formatter {
 public:
  std::string make_usage(const CLI::App* app, std::string name) const override {
    if (app->get_name() == "run")
      return get_label("Usage") + ": " + name + " [OPTIONS] -- SERVER [ARGS...]\n";
    if (app->get_name() == "start")
      return get_label("Usage") + ": " + name + " --name NAME [OPTIONS] -- SERVER [ARGS...]\n";
    return CLI::Formatter::make_usage(app, std::move(name));
  }
};

int usage(const std::string& reason, const std::string& command) {
  std::cerr << "harness: " << reason << "\nRun '" << command << " --help' for more information.\n";
  return exit_code::usage;
}

}  // namespace

int main(int argc, char** argv) {
  // Before any thread exists (the library starts its I/O thread on the first spawn).
  signal_watch signals = signal_watch::install();

  // Everything after the first "--" is the server command.
  const auto dash =
      std::find_if(argv + 1, argv + argc, [](const char* a) { return std::string(a) == "--"; });
  run_args run_a;
  run_a.separator = dash != argv + argc;
  if (run_a.separator) run_a.server.assign(dash + 1, argv + argc);

  CLI::App app{
      "Start real servers for integration tests: race-free ports, readiness, no leftovers.",
      "harness"};
  app.formatter(std::make_shared<formatter>());
  app.set_version_flag("--version", "harness " HARNESS_VERSION, "Print the version and exit");
  app.require_subcommand(1);
  app.footer("Run 'harness COMMAND --help' for the options of a command.");
  CLI::App* run = add_run_command(app, run_a);
  start_args start_a;
  CLI::App* start = add_start_command(app, run_a, start_a);
  stop_args stop_a;
  CLI::App* stop = add_stop_command(app, stop_a);
  ps_args ps_a;
  CLI::App* ps = add_ps_command(app, ps_a);
  ports_args ports_a;
  CLI::App* ports = add_ports_command(app, ports_a);
  who_args who_a;
  CLI::App* who = add_who_command(app, who_a);
  gc_args gc_a;
  CLI::App* gc = add_gc_command(app, gc_a);
  wait_args wait_a;
  CLI::App* wait = add_wait_command(app, wait_a);

  const auto command = [&]() -> std::string {
    for (CLI::App* sub : {run, start, stop, ps, ports, who, gc, wait}) {
      if (app.got_subcommand(sub)) return "harness " + sub->get_name();
    }
    return "harness";
  };

  try {
    app.parse(static_cast<int>(dash - argv), argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::string reason = e.what();
    if (argc > 1 && argv[1][0] != '-' && command() == "harness") {
      reason = "unknown command '" + std::string(argv[1]) + "' (commands: run, start, stop, ps, ports, who, gc, wait)";
    }
    if (dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr && !run_a.separator &&
        (app.got_subcommand(run) || app.got_subcommand(start))) {
      reason += "\n(the server command and its options go after '--': " +
                std::string(app.got_subcommand(run) ? run_usage : start_usage) + ")";
    }
    return usage(reason, command());
  }

  try {
    if (app.got_subcommand(run)) return run_command(run_a, signals);
    // The commands below do not watch signals: Ctrl-C and SIGTERM end them as usual.
    if (!app.got_subcommand(wait)) signal_watch::release();
    if (app.got_subcommand(start)) return start_command(run_a, start_a);
    if (run_a.separator)
      return usage("'--' and a server command belong to 'harness run' and 'harness start'", command());
    if (app.got_subcommand(stop)) return stop_command(stop_a);
    if (app.got_subcommand(ps)) return ps_command(ps_a);
    if (app.got_subcommand(ports)) return ports_command(ports_a);
    if (app.got_subcommand(who)) return who_command(who_a);
    if (app.got_subcommand(gc)) return gc_command(gc_a);
    if (app.got_subcommand(wait)) return wait_command(wait_a, signals);
  } catch (const usage_error& e) {
    return usage(e.what(), command());
  } catch (const std::exception& e) {
    std::cerr << "harness: " << e.what() << "\n";
    return exit_code::start_failed;
  }
  return usage("no command", "harness");
}
