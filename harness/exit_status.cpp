#include "harness/exit_status.hpp"

#include <sys/wait.h>

#include <csignal>
#include <ostream>

namespace harness {

exit_status exit_status::from_wait_status(int wait_status) {
  if (WIFEXITED(wait_status)) return exited_with(WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) {
    return killed_by(WTERMSIG(wait_status), WCOREDUMP(wait_status) != 0);
  }
  return {};
}

std::string signal_name(int signal) {
  switch (signal) {
    case SIGHUP: return "SIGHUP";
    case SIGINT: return "SIGINT";
    case SIGQUIT: return "SIGQUIT";
    case SIGILL: return "SIGILL";
    case SIGTRAP: return "SIGTRAP";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGKILL: return "SIGKILL";
    case SIGUSR1: return "SIGUSR1";
    case SIGSEGV: return "SIGSEGV";
    case SIGUSR2: return "SIGUSR2";
    case SIGPIPE: return "SIGPIPE";
    case SIGALRM: return "SIGALRM";
    case SIGTERM: return "SIGTERM";
    case SIGCHLD: return "SIGCHLD";
    case SIGCONT: return "SIGCONT";
    case SIGSTOP: return "SIGSTOP";
    case SIGTSTP: return "SIGTSTP";
    case SIGXCPU: return "SIGXCPU";
    case SIGXFSZ: return "SIGXFSZ";
    case SIGSYS: return "SIGSYS";
    default: return "signal " + std::to_string(signal);
  }
}

std::string exit_status::str() const {
  switch (kind_) {
    case kind::exited:
      return "exited with status " + std::to_string(code_);
    case kind::signaled: {
      std::string s = "killed by signal " + std::to_string(signal_);
      std::string name = signal_name(signal_);
      if (name.rfind("SIG", 0) == 0) s += " (" + name + ")";
      if (core_) s += ", core dumped";
      return s;
    }
    case kind::unknown:
      break;
  }
  return "status unknown";
}

int exit_status::shell_code() const {
  switch (kind_) {
    case kind::exited: return code_;
    case kind::signaled: return 128 + signal_;
    case kind::unknown: break;
  }
  return 255;
}

std::ostream& operator<<(std::ostream& os, const exit_status& s) { return os << s.str(); }

}  // namespace harness
