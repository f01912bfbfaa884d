// cli/ports.hpp — `harness ports`: the leases of the shared port pool.
#pragma once

#include <CLI/CLI.hpp>

namespace harness_cli {

struct ports_args {
  bool json = false;
  bool all = false;  // also the ports nobody holds now (lock files are never deleted)
};

CLI::App* add_ports_command(CLI::App& app, ports_args& args);

// Prints the held leases of the pool (every lock file with --all): port, held, pid,
// age, note. Returns the exit status (3 when the pool directory cannot be read).
int ports_command(const ports_args& args);

}  // namespace harness_cli
