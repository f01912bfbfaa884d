// The whole command line of `harness run`, as main() hands it to CLI11 and
// make_spec(): the words before the first "--" are options, the rest the server.
//
// Input: the words, separated by NUL bytes.
// Properties: a command line is a spec, a CLI11 parse error or a usage_error, nothing
// else escapes; a spec runs exactly the words after "--"; its readiness timeout is at
// least 1 ms, its attempts 1..1000; every --env is NAME=VALUE with a name; a spec
// without --mode is in lease mode and has {port} somewhere.
#include <algorithm>
#include <string>
#include <vector>

#include "fuzz.hpp"
#include "run_options.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  harness_fuzz::reader in(data, size);
  std::vector<std::string> words{"harness", "run"};
  while (!in.rest().empty()) words.emplace_back(in.take_until('\0'));
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  const int argc = static_cast<int>(words.size());

  // As main() does: everything after the first "--" is the server command.
  const auto dash = std::find_if(argv.begin() + 1, argv.begin() + argc,
                                 [](const char* a) { return std::string_view(a) == "--"; });
  harness_cli::run_args a;
  a.separator = dash != argv.begin() + argc;
  if (a.separator) a.server.assign(dash + 1, argv.begin() + argc);

  CLI::App app{"fuzz", "harness"};
  app.require_subcommand(1);
  harness_cli::add_run_command(app, a);
  try {
    app.parse(static_cast<int>(dash - argv.begin()), argv.data());
  } catch (const CLI::ParseError&) {
    return 0;
  }
  harness::server_spec spec;
  try {
    spec = harness_cli::make_spec(a);
  } catch (const harness_cli::usage_error&) {
    return 0;
  }
  FUZZ_CHECK(a.separator && !a.server.empty());
  FUZZ_CHECK(spec.command == a.server);
  FUZZ_CHECK(spec.ready.timeout.count() >= 1);
  FUZZ_CHECK(spec.respawn.attempts >= 1 && spec.respawn.attempts <= 1000);
  FUZZ_CHECK(spec.ready.probes.size() == a.ready.size());
  for (const auto& [name, value] : spec.env.set) FUZZ_CHECK(!name.empty());
  if (a.mode.empty()) {
    FUZZ_CHECK(spec.port.mode == harness::port_mode::lease);
    FUZZ_CHECK(harness::uses_port_placeholder(spec));
  }
  return 0;
}
