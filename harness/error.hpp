// harness/error.hpp — error codes, the failure record and result<T>.
//
// Every fallible call in serve-harness comes in two forms:
//
//   harness::process p = harness::process::spawn(opts);          // throws harness::error
//   harness::result<harness::process> r = harness::process::try_spawn(opts);
//   if (!r) std::cerr << r.error().message() << "\n";            // code + full detail
//
// Codes are std::error_code values in the "harness" category (harness::errc), so a
// test can assert on the kind of failure (`r.error().code == harness::errc::timeout`)
// while a human reads the detail text (command line, exit status, stderr tail, ...).
// System call failures keep their std::system_category() code.
#pragma once

#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

namespace harness {

enum class errc {
  // Bad input: detected before anything is started.
  invalid_argument = 1,      // an option or spec field that cannot work
  empty_argv,                // no program given
  program_not_found,         // not a file, or not found on PATH
  program_not_executable,    // exists but lacks execute permission
  program_is_directory,      // the "program" is a directory
  bad_pattern,               // a regular expression that does not compile
  bad_port_range,            // empty, inverted or out-of-range port range
  placeholder_not_allowed,   // e.g. {port} in inherit mode
  unsafe_state_dir,          // private directory failed ownership/mode/symlink checks

  // Starting and readiness.
  spawn_failed,              // fork/exec failed for a system reason
  exited_before_ready,       // the child exited while we waited for readiness
  ready_timeout,             // the readiness deadline passed
  fail_pattern_matched,      // a negative pattern (e.g. FATAL) appeared in the output
  bad_announcement,          // a malformed announce line / notify message
  port_out_of_range,         // an announced port outside 1..65535
  port_collision,            // the port was taken by somebody else
  probe_failed,              // a readiness probe reported a definite failure
  callback_threw,            // a callback of yours (on_line, on_exit, a probe) threw
  attempts_exhausted,        // every respawn attempt failed
  pool_exhausted,            // no free port left in the lease pool

  // Lifecycle.
  not_running,               // the operation needs a live child
  timeout,                   // a wait passed its deadline
  output_closed,             // the output ended before a matching line appeared

  // Verdicts on a started server (session::check()).
  server_exited,             // it exited on its own while the test ran
  bad_exit_status,           // it ended with a status the spec does not expect
  sanitizer_report,          // its output holds a sanitizer report
  left_processes,            // it exited and left processes of its tree running

  // Named shared servers.
  name_in_use,               // a shared server of that name runs another spec
};

// The category behind harness::errc; name() is "harness".
const std::error_category& harness_category() noexcept;

std::error_code make_error_code(errc e) noexcept;

// A failed operation: the code a test can compare, and the text a human needs.
// `detail` is multi-line when there is much to say (command, status, stderr tail).
struct failure {
  std::error_code code;
  std::string detail;

  // "<code message>: <detail>" (or just the code message when detail is empty).
  [[nodiscard]] std::string message() const;
};

// Thrown by the throwing convenience forms. what() is failure::message().
class error : public std::system_error {
 public:
  explicit error(failure f);
  [[nodiscard]] const failure& info() const noexcept { return failure_; }
  [[nodiscard]] const char* what() const noexcept override { return text_.c_str(); }

 private:
  failure failure_;
  std::string text_;
};

failure make_failure(std::error_code code, std::string detail = {});
failure make_failure(errc code, std::string detail = {});
// A system failure from errno, e.g. make_system_failure(errno, "pipe2").
failure make_system_failure(int err, std::string detail = {});

// Either a T or a failure. Checked with `if (r)`; value() throws harness::error.
template <class T>
class [[nodiscard]] result {
 public:
  result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT
  result(failure f) : v_(std::in_place_index<1>, std::move(f)) {}    // NOLINT

  [[nodiscard]] bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & {
    check();
    return std::get<0>(v_);
  }
  const T& value() const& {
    check();
    return std::get<0>(v_);
  }
  T&& value() && {
    check();
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }

  // Precondition: !has_value().
  [[nodiscard]] const failure& error() const& { return std::get<1>(v_); }
  [[nodiscard]] failure&& error() && { return std::get<1>(std::move(v_)); }

 private:
  void check() const {
    if (v_.index() != 0) throw harness::error(std::get<1>(v_));
  }
  std::variant<T, failure> v_;
};

template <>
class [[nodiscard]] result<void> {
 public:
  result() = default;
  result(failure f) : f_(std::move(f)), ok_(false) {}  // NOLINT

  [[nodiscard]] bool has_value() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  void value() const {
    if (!ok_) throw harness::error(f_);
  }
  [[nodiscard]] const failure& error() const& { return f_; }
  [[nodiscard]] failure&& error() && { return std::move(f_); }

 private:
  failure f_;
  bool ok_ = true;
};

}  // namespace harness

template <>
struct std::is_error_code_enum<harness::errc> : std::true_type {};
