// cli/events_posix.hpp — the few events `harness run` and `harness wait` wait for, as
// file descriptors.
//
// The command waits for "a signal or the server's exit" (or "a signal or the client's
// exit", "a signal or the end of the start") without polling: each event is a file
// descriptor that becomes readable, and wait_any() blocks in poll(2) on all of them.
//
//   signal_watch signals = signal_watch::install();     // first thing in main()
//   exit_watch server_exit(session.process());
//   if (wait_any({signals.fd(), server_exit.fd()}) == 0) ... signals.take() ...
//
// Gotchas:
//   * install() must run before any thread exists (the library starts its I/O thread
//     on the first spawn): a thread created earlier would not have the signals blocked
//     and would take them with the default action (death).
#pragma once

#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <optional>
#include <span>
#include <thread>

#include "harness/process.hpp"

namespace harness_cli {

// SIGINT, SIGTERM and SIGHUP, blocked in every thread and delivered to a signalfd.
class signal_watch {
 public:
  // Blocks the signals in the calling thread (and so in every thread it creates
  // later) and ignores SIGPIPE (a closed stdout must not kill us before the server is
  // stopped). Children of the harness get a clean mask and default dispositions.
  static signal_watch install();

  signal_watch(signal_watch&& other) noexcept;
  signal_watch& operator=(signal_watch&&) = delete;
  ~signal_watch();

  // Readable when one of the signals is pending.
  [[nodiscard]] int fd() const { return fd_; }
  // Takes one pending signal (blocks until there is one). Returns its number.
  int take();
  // For commands that do not watch the signals: unblock them in the calling thread (call
  // it before any other thread exists), so that they end the process as usual.
  static void release();

 private:
  explicit signal_watch(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// A file descriptor that becomes readable when the process exits: a pidfd, or (on a
// kernel without pidfd_open) an eventfd written by a thread blocked in wait_for().
// The library observes exits without reaping until stop(), so the pid cannot be
// recycled before the pidfd is opened. Destroy it before or after stop(), never while
// the process object is gone.
class exit_watch {
 public:
  explicit exit_watch(const harness::process& p);
  exit_watch(const exit_watch&) = delete;
  exit_watch& operator=(const exit_watch&) = delete;
  // With the fallback thread: blocks until the process has exited (stop() it first).
  ~exit_watch();

  [[nodiscard]] int fd() const { return fd_; }

 private:
  int fd_ = -1;
  std::thread waiter_{};
};

// A one-shot event another thread can raise (an eventfd).
class event {
 public:
  event();
  event(const event&) = delete;
  event& operator=(const event&) = delete;
  ~event();
  void raise();
  [[nodiscard]] int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

// Blocks until one of `fds` is readable; returns the index of the first that is.
std::size_t wait_any(std::initializer_list<int> fds);
std::size_t wait_any(std::span<const int> fds);
// The same, giving up after `timeout` (nullopt then).
std::optional<std::size_t> wait_any_for(std::initializer_list<int> fds,
                                        std::chrono::milliseconds timeout);

}  // namespace harness_cli
