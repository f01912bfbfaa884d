#include "harness/gtest/printers.hpp"

#include <algorithm>
#include <string_view>

namespace harness {
namespace {

// The enumerator names of harness::errc. The core has messages but no names; a code
// added to the core later prints as "harness::errc(<n>)" until it is listed here.
std::string_view errc_name(int value) {
  switch (static_cast<errc>(value)) {
    case errc::invalid_argument: return "invalid_argument";
    case errc::empty_argv: return "empty_argv";
    case errc::program_not_found: return "program_not_found";
    case errc::program_not_executable: return "program_not_executable";
    case errc::program_is_directory: return "program_is_directory";
    case errc::bad_pattern: return "bad_pattern";
    case errc::bad_port_range: return "bad_port_range";
    case errc::placeholder_not_allowed: return "placeholder_not_allowed";
    case errc::unsafe_state_dir: return "unsafe_state_dir";
    case errc::spawn_failed: return "spawn_failed";
    case errc::exited_before_ready: return "exited_before_ready";
    case errc::ready_timeout: return "ready_timeout";
    case errc::fail_pattern_matched: return "fail_pattern_matched";
    case errc::bad_announcement: return "bad_announcement";
    case errc::port_out_of_range: return "port_out_of_range";
    case errc::port_collision: return "port_collision";
    case errc::probe_failed: return "probe_failed";
    case errc::callback_threw: return "callback_threw";
    case errc::attempts_exhausted: return "attempts_exhausted";
    case errc::pool_exhausted: return "pool_exhausted";
    case errc::not_running: return "not_running";
    case errc::timeout: return "timeout";
    case errc::output_closed: return "output_closed";
    case errc::server_exited: return "server_exited";
    case errc::bad_exit_status: return "bad_exit_status";
    case errc::sanitizer_report: return "sanitizer_report";
    case errc::left_processes: return "left_processes";
    case errc::name_in_use: return "name_in_use";
  }
  return {};
}

std::string plural(std::uint64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

}  // namespace

std::string error_code_name(std::error_code code) {
  if (code.category() == harness_category()) {
    const auto name = errc_name(code.value());
    if (!name.empty()) return "harness::errc::" + std::string(name);
    return "harness::errc(" + std::to_string(code.value()) + ")";
  }
  return std::string(code.category().name()) + ":" + std::to_string(code.value());
}

void PrintTo(const exit_status& s, std::ostream* os) { *os << s.str(); }

void PrintTo(errc e, std::ostream* os) { *os << error_code_name(make_error_code(e)); }

void PrintTo(const failure& f, std::ostream* os) {
  *os << "[" << error_code_name(f.code) << "] " << f.message();
}

void PrintTo(const error& e, std::ostream* os) { PrintTo(e.info(), os); }

void PrintTo(const attempt& a, std::ostream* os) { *os << to_string(a); }

void PrintTo(const session& s, std::ostream* os) {
  if (!s.valid()) {
    *os << "session (empty)";
    return;
  }
  *os << "session " << s.name() << " on " << s.endpoint() << " (pid " << s.pid() << ", ";
  const auto st = s.status();
  *os << (st ? st->str() : std::string("running")) << ", "
      << plural(s.attempts().size(), "attempt", "attempts") << ", ready in "
      << s.ready_time().count() << " ms)";
}

void PrintTo(const process& p, std::ostream* os) {
  if (!p.valid()) {
    *os << "process (empty)";
    return;
  }
  const auto st = p.status();
  *os << "process '" << p.command_line() << "' (pid " << p.pid() << ", "
      << (st ? st->str() : std::string("running")) << ")";
}

void PrintTo(const output& o, std::ostream* os) {
  *os << "output (" << plural(o.line_count(stream::out), "stdout line", "stdout lines") << ", "
      << plural(o.line_count(stream::err), "stderr line", "stderr lines");
  const auto log = o.log_path();
  if (!log.empty()) *os << ", log " << log.string();
  *os << ")";
}

void print_failure_headline(const failure& f, std::ostream* os) {
  const std::string text = f.message();
  const auto eol = text.find('\n');
  *os << "failure: [" << error_code_name(f.code) << "] " << text.substr(0, eol);
  if (eol != std::string::npos) {
    const auto more = static_cast<std::size_t>(std::count(text.begin() + static_cast<std::ptrdiff_t>(eol), text.end(), '\n'));
    *os << " (+" << more << (more == 1 ? " more line)" : " more lines)");
  }
}

void PrintTo(const result<void>& r, std::ostream* os) {
  if (r.has_value()) {
    *os << "ok";
  } else {
    print_failure_headline(r.error(), os);
  }
}

}  // namespace harness
