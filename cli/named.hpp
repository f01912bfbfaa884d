// cli/named.hpp — the operations commands: named shared servers (`start`, `stop`), and
// what runs (`ps`, `who`, `gc`).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "run_options.hpp"

namespace harness_cli {

inline constexpr std::string_view start_usage = "harness start --name NAME [OPTIONS] -- SERVER [ARGS...]";

struct start_args {
  std::string name{};
  double keep_warm_seconds = 0;
  double wait_seconds = 120;
  int hold_for = 0;
  bool reserve = false;
};

struct stop_args {
  std::string name{};
  bool release = false;
  int hold_for = 0;
  double wait_seconds = 60;
};

struct ps_args {
  bool json = false;
};

struct who_args {
  int port = 0;
  bool json = false;
};

struct gc_args {
  bool dry_run = false;
};

CLI::App* add_start_command(CLI::App& app, run_args& server, start_args& args);
CLI::App* add_stop_command(CLI::App& app, stop_args& args);
CLI::App* add_ps_command(CLI::App& app, ps_args& args);
CLI::App* add_who_command(CLI::App& app, who_args& args);
CLI::App* add_gc_command(CLI::App& app, gc_args& args);

int start_command(const run_args& server, const start_args& args);
int stop_command(const stop_args& args);
int ps_command(const ps_args& args);
int who_command(const who_args& args);
int gc_command(const gc_args& args);

}  // namespace harness_cli
