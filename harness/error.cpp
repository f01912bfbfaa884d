#include "harness/error.hpp"

namespace harness {
namespace {

class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "harness"; }

  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::invalid_argument: return "invalid argument";
      case errc::empty_argv: return "no program given (empty argv)";
      case errc::program_not_found: return "program not found";
      case errc::program_not_executable: return "program is not executable";
      case errc::program_is_directory: return "program is a directory";
      case errc::bad_pattern: return "bad regular expression";
      case errc::bad_port_range: return "bad port range";
      case errc::placeholder_not_allowed: return "placeholder not allowed here";
      case errc::unsafe_state_dir: return "unsafe state directory";
      case errc::spawn_failed: return "could not start the process";
      case errc::exited_before_ready: return "server exited before it was ready";
      case errc::ready_timeout: return "server did not become ready in time";
      case errc::fail_pattern_matched: return "server printed a failure pattern";
      case errc::bad_announcement: return "malformed port announcement";
      case errc::port_out_of_range: return "announced port out of range";
      case errc::port_collision: return "port taken by another process";
      case errc::probe_failed: return "readiness probe failed";
      case errc::callback_threw: return "a callback threw an exception";
      case errc::attempts_exhausted: return "every start attempt failed";
      case errc::pool_exhausted: return "no free port in the lease pool";
      case errc::not_running: return "process is not running";
      case errc::timeout: return "timed out";
      case errc::output_closed: return "output ended before a matching line";
      case errc::server_exited: return "server exited while the test ran";
      case errc::bad_exit_status: return "server ended with an unexpected status";
      case errc::sanitizer_report: return "sanitizer report in the server's output";
      case errc::left_processes: return "server left processes running";
      case errc::name_in_use: return "a shared server of that name runs another spec";
    }
    return "unknown harness error " + std::to_string(ev);
  }
};

}  // namespace

const std::error_category& harness_category() noexcept {
  static const category instance;
  return instance;
}

std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), harness_category()};
}

std::string failure::message() const {
  std::string text = code.message();
  if (!detail.empty()) {
    text += ": ";
    text += detail;
  }
  return text;
}

error::error(failure f)
    : std::system_error(f.code, f.detail), failure_(std::move(f)), text_(failure_.message()) {}

failure make_failure(std::error_code code, std::string detail) {
  return failure{code, std::move(detail)};
}

failure make_failure(errc code, std::string detail) {
  return failure{make_error_code(code), std::move(detail)};
}

failure make_system_failure(int err, std::string detail) {
  return failure{std::error_code(err, std::system_category()), std::move(detail)};
}

}  // namespace harness
