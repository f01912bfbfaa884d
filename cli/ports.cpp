#include "ports.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "exit_codes.hpp"
#include "text.hpp"
#include "harness/lease.hpp"

namespace harness_cli {
namespace {



}  // namespace

CLI::App* add_ports_command(CLI::App& app, ports_args& args) {
  CLI::App* ports = app.add_subcommand(
      "ports", "List the leased ports of the shared pool: port, held, holder pid, age, note.");
  ports->add_flag("--json", args.json, "Print a JSON array instead of a table");
  ports->add_flag("--all", args.all,
                  "Also list the ports nobody holds now (with their last holder)");
  ports->footer(
      "A port is held while a process holds its lease (the kernel drops it when the\n"
      "holder dies). The pool directory is <state dir>/ports (HARNESS_STATE_DIR).");
  return ports;
}

int ports_command(const ports_args& args) {
  auto leases = harness::list_leases();
  if (!leases) {
    std::cerr << "harness: " << leases.error().message() << "\n";
    return exit_code::start_failed;
  }
  auto records = std::move(*leases);
  if (!args.all) std::erase_if(records, [](const harness::lease_record& r) { return !r.held; });
  std::sort(records.begin(), records.end(),
            [](const auto& a, const auto& b) { return a.port < b.port; });
  const std::int64_t now = std::time(nullptr);
  auto age = [now](const harness::lease_record& r) {
    return r.since > 0 ? std::max<std::int64_t>(0, now - r.since) : -1;
  };

  if (args.json) {
    auto list = nlohmann::ordered_json::array();
    for (const auto& r : records) {
      list.push_back({{"port", r.port},
                      {"held", r.held},
                      {"pid", r.pid},
                      {"since", r.since},
                      {"age_seconds", age(r)},
                      {"note", r.note}});
    }
    std::cout << list.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
    return exit_code::ok;
  }
  char line[64];
  std::snprintf(line, sizeof line, "%-6s %-5s %-8s %-7s ", "PORT", "HELD", "PID", "AGE");
  std::cout << line << "NOTE\n";
  for (const auto& r : records) {
    const std::string pid = r.pid > 0 ? std::to_string(r.pid) : "-";
    const std::string since = age(r) >= 0 ? age_text(age(r)) : "-";
    std::snprintf(line, sizeof line, "%-6u %-5s %-8s %-7s ", static_cast<unsigned>(r.port),
                  r.held ? "yes" : "no", pid.c_str(), since.c_str());
    std::cout << line << printable(r.note) << "\n";
  }
  return exit_code::ok;
}

}  // namespace harness_cli
