// harness/exit_status.hpp — how a process ended, as a value that prints itself.
//
//   harness::exit_status s = proc.stop();
//   std::cout << s;                       // "exited with status 3", "killed by signal 9 (SIGKILL)"
//   if (s.exited() && s.code() == 0) ...
//
// Built from a raw waitpid() status with from_wait_status(). An unknown status (the
// child could not be reaped, e.g. because somebody else's waitpid(-1) took it) prints
// as "status unknown" rather than inventing one.
#pragma once

#include <iosfwd>
#include <string>

namespace harness {

class exit_status {
 public:
  enum class kind { unknown, exited, signaled };

  constexpr exit_status() = default;
  static constexpr exit_status exited_with(int code) { return {kind::exited, code, 0, false}; }
  static constexpr exit_status killed_by(int signal, bool core_dumped = false) {
    return {kind::signaled, 0, signal, core_dumped};
  }
  // From a raw status as filled in by waitpid(2).
  static exit_status from_wait_status(int wait_status);

  [[nodiscard]] constexpr kind how() const { return kind_; }
  [[nodiscard]] constexpr bool known() const { return kind_ != kind::unknown; }
  [[nodiscard]] constexpr bool exited() const { return kind_ == kind::exited; }
  [[nodiscard]] constexpr bool signaled() const { return kind_ == kind::signaled; }
  // True for "exited with status 0".
  [[nodiscard]] constexpr bool success() const { return exited() && code_ == 0; }
  // Exit code; meaningful only when exited().
  [[nodiscard]] constexpr int code() const { return code_; }
  // Signal number; meaningful only when signaled().
  [[nodiscard]] constexpr int signal() const { return signal_; }
  [[nodiscard]] constexpr bool core_dumped() const { return core_; }

  // "exited with status 3", "killed by signal 9 (SIGKILL)", "status unknown".
  [[nodiscard]] std::string str() const;
  // The status a shell would report: code, or 128 + signal; 255 when unknown.
  [[nodiscard]] int shell_code() const;

  friend constexpr bool operator==(const exit_status&, const exit_status&) = default;

 private:
  constexpr exit_status(kind k, int code, int sig, bool core)
      : kind_(k), code_(code), signal_(sig), core_(core) {}
  kind kind_ = kind::unknown;
  int code_ = 0;
  int signal_ = 0;
  bool core_ = false;
};

std::ostream& operator<<(std::ostream& os, const exit_status& s);

// "SIGKILL" for 9; "signal 70" for numbers without a name.
std::string signal_name(int signal);

}  // namespace harness
