// Private: what one start attempt learns from the server while it waits — output
// lines, announcements on the ready fd, notify datagrams, the exit — gathered on the
// harness I/O thread and read by the waiting thread.
//
// take_line() is the session's own look at each output line (fail patterns, log
// probes, port_from, port-in-use lines); take_announcement_line() parses the
// HARNESS_READY_FD and NOTIFY_SOCKET protocols. Both are plain functions of their
// inputs, tested without processes (tests/readiness_engine_test.cpp).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "harness/collision.hpp"
#include "harness/error.hpp"
#include "harness/detail/text/regex.hpp"

namespace harness::detail {

// Regular expressions compiled once per session, shared with the I/O thread.
struct matchers {
  std::vector<regex> fail_on;
  std::vector<std::pair<std::size_t, regex>> log_probes;  // probe index -> pattern
  std::optional<regex> port_from;
  std::optional<collision_classifier> classifier;         // lease mode only
};

// What the I/O thread reports to one waiting start. All fields under `m`.
struct start_events {
  std::mutex m;
  std::condition_variable cv;
  std::uint64_t version = 0;  // bumped on every change
  bool active = true;         // false once the start is decided
  std::vector<bool> log_hit;
  std::optional<std::string> fail_line;
  std::optional<std::string> collision;  // a port-in-use line about our port
  std::optional<std::uint16_t> announced;
  bool ready_signal = false;  // READY=1 / PORT= on the ready fd, or READY=1 over notify
  bool ready_fd_signal = false;
  bool notify_signal = false;
  std::optional<failure> bad;
  std::optional<failure> thrown;  // the user's on_line threw (it also wakes the waiter)
  bool exited = false;
  std::string ready_fd_buffer;
  // Datagrams from NOTIFY_SOCKET, parsed by the waiting thread, with the sender as the
  // kernel reports it: whether it was in the server's tree when it arrived (1 yes, 0 no,
  // -1 gone already, -2 not known yet: the supervisor was not known), and whether it
  // ran as our user.
  struct datagram {
    pid_t sender = 0;
    int in_tree = -1;
    bool same_user = false;
    std::string text;
  };
  std::vector<datagram> notify_pending;
  std::atomic<pid_t> supervisor{0};  // set once the server is spawned

  // Runs f under the lock while the start is undecided; wakes the waiter when f says
  // something changed.
  template <class F>
  void update(F&& f) {
    {
      std::lock_guard lock(m);
      if (!active) return;
      if (f()) ++version;
    }
    cv.notify_all();
  }
};

// "1".."65535" as a port.
std::optional<std::uint16_t> parse_port(std::string_view text);

// One announcement line ("PORT=<n>", "READY=1"; other sd_notify fields are ignored);
// true when something changed. Call with `ev.m` held.
bool take_announcement_line(start_events& ev, std::string_view line, bool from_notify);

// One NOTIFY_SOCKET datagram's text: each of its lines is an announcement line (other
// sd_notify fields are ignored). Call with `ev.m` held, for a sender already judged to
// be the server's.
void take_notify_datagram(start_events& ev, std::string_view text);

// Bytes read from the ready fd (with `ev.m` held): complete lines are taken; an
// over-long line is a bad announcement. True when something changed.
bool take_ready_fd_bytes(start_events& ev, std::string_view bytes);

// One output line against the session's matchers (with `ev.m` held); `port` is the
// leased port (port-in-use lines about other ports are not ours). True when something
// changed.
bool take_line(start_events& ev, const matchers& m, std::string_view line, std::uint16_t port);

}  // namespace harness::detail
