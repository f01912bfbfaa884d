// Private: the wait of one start attempt, from spawn to a verdict.
//
// Each round: take the events (announcements, notify datagrams from the server's tree,
// fail patterns, event probes), judge an exit, judge a port-in-use line, run the
// polling probes (tcp, http, callback) with a backoff from poll_initial to poll_cap,
// judge readiness and the deadline (start_judge::judge()), then sleep until the next
// event, poll or the deadline. Everything it needs from the outside — the clock, the
// process, the listener on the port, one try of a probe — comes through
// readiness_world, so the whole engine runs in unit tests against a fake world and a
// fake clock (tests/readiness_engine_test.cpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "harness/detail/session/judge.hpp"
#include "harness/detail/session/respawn_loop.hpp"
#include "harness/detail/session/start_events.hpp"
#include "harness/readiness.hpp"
#include "harness/session_info.hpp"

namespace harness::detail {

class readiness_world {
 public:
  using clock = std::chrono::steady_clock;
  virtual ~readiness_world() = default;

  virtual clock::time_point now() = 0;
  // Sleeps until `ev` changes (its version is no longer `seen`) or `until`.
  virtual void sleep_until(start_events& ev, std::uint64_t seen, clock::time_point until) = 0;

  virtual bool server_running() = 0;
  // The server has exited: lets its last lines in and gives its status.
  virtual exit_status settle_exit() = 0;
  // The server's pid, then the rest of its tree.
  virtual std::vector<int> tree() = 0;
  // Who listens on `port` (the server's own fds first, or its whole tree); `holders`
  // describes a stranger.
  virtual start_judge::listener who_listens(std::uint16_t port, bool whole_tree, std::string& holders) = 0;
  // Whether a notify sender is in the server's tree (1, 0, -1 gone).
  virtual int sender_in_tree(int pid) = 0;
  // What a callback of the user's threw on the I/O thread.
  virtual std::optional<failure> callback_failure() = 0;

  // One try of a polling probe on `port`. `error` is what to show while it is not
  // ready; `fatal` ends the start.
  struct probe_try {
    bool ok = false;
    std::string error;
    std::optional<std::pair<std::error_code, std::string>> fatal;
  };
  virtual probe_try try_probe(const probe& p, std::uint16_t port, std::chrono::milliseconds timeout,
                              const std::string& last_error) = 0;

  // The failure text a test log needs (command, status, tails, holder, log).
  virtual failure report(std::error_code code, const std::string& reason, bool show_holder) = 0;
};

struct readiness_setup {
  const ready_options* ready = nullptr;
  port_mode mode = port_mode::lease;
  std::uint16_t port = 0;          // the leased port (lease mode)
  bool need_ready_signal = false;  // inherit mode without probes
  bool allow_daemon = true;
  std::string port_from{};         // announce mode: the port_from pattern, for messages
};

class readiness_engine {
 public:
  using clock = std::chrono::steady_clock;
  readiness_engine(readiness_setup setup, start_events& ev, readiness_world& world);

  // Waits from `t0` (the spawn) until the start is decided.
  start_outcome wait(clock::time_point t0);

 private:
  std::optional<start_outcome> take_events();
  start_outcome judge_exit();
  std::optional<start_outcome> run_probes(std::uint16_t known_port, std::chrono::milliseconds left, bool& all);
  std::optional<start_outcome> apply(const start_judge::verdict& v);
  start_judge::observation observe() const;
  void look_at_port(start_judge::observation& ob, bool whole_tree);
  bool polling(bool all) const;
  void note_waiting(const std::string& what);
  start_outcome fail(std::error_code code, const std::string& reason, bool show_holder);

  readiness_setup setup_;
  start_events& ev_;
  readiness_world& world_;
  start_outcome out_;
  std::vector<bool> passed_;
  std::vector<std::string> last_error_;
  std::string waiting_for_;
  // The last snapshot of the events.
  std::uint64_t seen_ = 0;
  std::optional<std::string> in_use_line_;
  std::optional<std::uint16_t> announced_;
  bool ready_signal_ = false, exited_ = false;
};

}  // namespace harness::detail
