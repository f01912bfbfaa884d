// `harness run --ready SPEC`, as parse_ready() reads it: tcp, http, http:PATH,
// http:PATH:STATUS, log:REGEX, cmd:COMMAND, redis, memcached, announce, notify.
//
// Properties: a spec is a probe or a usage_error, nothing else escapes; the probe is
// of the kind the spec names; an http probe has a path starting with '/' and a status
// in 100..599 or 0 (any 2xx), and the spec made from it reads back the same; a log
// probe's pattern is the text after "log:"; a cmd probe runs the text after "cmd:" with
// /bin/sh -c.
#include <string>

#include "fuzz.hpp"
#include "run_options.hpp"

using harness::probe;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view spec(reinterpret_cast<const char*>(data), size);
  probe p;
  try {
    p = harness_cli::parse_ready(spec);
  } catch (const harness_cli::usage_error& e) {
    FUZZ_CHECK(std::string_view(e.what()).find('\'') != std::string_view::npos);
    return 0;
  }
  (void)p.describe();
  const auto kind = spec.substr(0, spec.find(':'));
  switch (p.what) {
    case probe::kind::tcp: FUZZ_CHECK(spec == "tcp"); break;
    case probe::kind::announce: FUZZ_CHECK(spec == "announce"); break;
    case probe::kind::notify: FUZZ_CHECK(spec == "notify"); break;
    case probe::kind::log:
      FUZZ_CHECK(kind == "log");
      FUZZ_CHECK(!p.pattern.empty() && p.pattern == spec.substr(4));
      break;
    case probe::kind::http: {
      FUZZ_CHECK(kind == "http");
      FUZZ_CHECK(!p.path.empty() && p.path.front() == '/');
      FUZZ_CHECK(p.status == 0 || (p.status >= 100 && p.status <= 599));
      const probe again = harness_cli::parse_ready(
          "http:" + p.path + (p.status == 0 ? std::string() : ":" + std::to_string(p.status)));
      FUZZ_CHECK(again.what == probe::kind::http && again.path == p.path && again.status == p.status);
      break;
    }
    case probe::kind::command:
      FUZZ_CHECK(kind == "cmd");
      FUZZ_CHECK(p.argv.size() == 3 && p.argv[0] == "/bin/sh" && p.argv[1] == "-c" && p.argv[2] == spec.substr(4));
      break;
    case probe::kind::redis: FUZZ_CHECK(spec == "redis"); break;
    case probe::kind::memcached: FUZZ_CHECK(spec == "memcached"); break;
    case probe::kind::callback:
      harness_fuzz::violated("a spec never makes a callback probe", __FILE__, __LINE__);
  }
  return 0;
}
