// harness/named_server.hpp — one server shared by every process of a test run, by name.
//
// Under gtest_discover_tests every TEST is its own process; a named server is started
// once by whichever process asks first and attached to by the others:
//
//   auto db = harness::named_server::attach("db", spec);   // start or attach, once ready
//   connect(db.host(), db.port());
//
// One live instance per name per user and state directory. It is kept by a small
// process of its own (harness-keeper), not by the test process that started it, so it
// outlives its starter; it stops when its last user is gone:
//   * each attach is a hold by a process (this one, or options.hold_for): the hold ends
//     when the handle is destroyed or release()d, or when that process dies — a crashed
//     test never keeps it up;
//   * with keep_warm, it stays up that long after the last hold ends (for dev loops),
//     and is replaced when an attach asks for a different spec; it never stays longer;
//   * stop(name) stops it now, whoever holds it (the operator's stop).
// While a start or a stop is in progress, other callers wait (options.wait) and then
// attach or start; a record whose keeper is gone is stale and replaced, never trusted.
// The spec must be written down to travel to the keeper: no callbacks (on_exit,
// on_line, a callback probe, an http body predicate); errc::invalid_argument says which.
// A different spec under a live name is errc::name_in_use.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "harness/error.hpp"
#include "harness/session.hpp"

namespace harness {

struct named_options {
  // How long to wait for another process's start or stop of the same name.
  std::chrono::milliseconds wait = std::chrono::seconds(120);
  // Stay up this long after the last hold ends; nullopt: stop with the last hold.
  std::optional<std::chrono::milliseconds> keep_warm{};
  // The process whose life the hold lasts (0: this one). `harness start` passes its
  // parent: the ctest or shell that ran it.
  int hold_for = 0;
  // Take the port and hold it, but start the server only at the first attach without
  // `reserve` (so that CTest can give every test <NAME>_PORT before the setup test ran).
  bool reserve = false;
};

// What the record of a named server says (named_server::list(), `harness ps`).
struct named_info {
  std::string name{};
  std::string phase{};      // reserved, starting, ready, stopping, exited; busy (its record is
                            // being written under the lock) or corrupt (a leftover) when unreadable
  bool stale = false;       // its keeper is gone: the record is a leftover
  int pid = 0;              // the server's process (0 before the start)
  int keeper_pid = 0;
  std::string host{};
  std::uint16_t port = 0;
  std::string endpoint{};
  std::string command{};
  std::vector<int> users{}; // the processes holding it
  std::optional<std::chrono::milliseconds> keep_warm{};
  std::int64_t created_ms = 0;     // unix time (ms) the keeper started
  std::int64_t ready_ms = 0;       // when it became ready (0: not yet)
  std::int64_t idle_since_ms = 0;  // keep-warm: when the last hold ended (0: held)
  std::filesystem::path log{};     // the server's log file
  std::string fingerprint{};
  std::string exit_status{};       // phase exited: how it ended
};

class named_server {
 public:
  // Starts the server, or attaches to the live one of that name; returns once it is
  // ready. Fails as session::try_start() does, plus errc::name_in_use and
  // errc::timeout (another process's start or stop took longer than options.wait).
  [[nodiscard]] static result<named_server> try_attach(std::string name, server_spec spec,
                                                       named_options options = {});
  // The same; throws harness::error.
  [[nodiscard]] static named_server attach(std::string name, server_spec spec, named_options options = {});

  // Stops the server of that name now, whoever holds it, and waits until it is gone.
  // False when none was running (a stale record is removed).
  static result<bool> stop(std::string_view name, std::chrono::milliseconds wait = std::chrono::seconds(60));

  // Every named server of this user (state directory), stale records included.
  [[nodiscard]] static result<std::vector<named_info>> list();
  // The named server `name` as its keeper reports it now; nullopt when none is live.
  [[nodiscard]] static result<std::optional<named_info>> find(std::string_view name);

  named_server() noexcept = default;
  named_server(named_server&& other) noexcept;
  named_server& operator=(named_server&& other) noexcept;
  named_server(const named_server&) = delete;
  named_server& operator=(const named_server&) = delete;
  ~named_server();  // release()

  // Ends this hold (the server stops if it was the last and there is no keep-warm).
  void release() noexcept;
  // Lets go of the handle but not of the hold: it lasts as long as the holding process
  // (what `harness start` does for its parent).
  void keep_hold() noexcept { held_ = false; }

  // Ends the holds of process `hold_for` on the server `name`; says what happened.
  static result<std::string> release_hold(std::string_view name, int hold_for);

  [[nodiscard]] bool valid() const noexcept { return !info_.name.empty(); }
  explicit operator bool() const noexcept { return valid(); }

  [[nodiscard]] const std::string& name() const noexcept { return info_.name; }
  [[nodiscard]] const std::string& host() const noexcept { return info_.host; }
  [[nodiscard]] std::uint16_t port() const noexcept { return info_.port; }
  [[nodiscard]] const std::string& endpoint() const noexcept { return info_.endpoint; }
  [[nodiscard]] std::string url(std::string_view path = "/") const;
  [[nodiscard]] int pid() const noexcept { return info_.pid; }
  [[nodiscard]] const std::filesystem::path& log_path() const noexcept { return info_.log; }
  // True when this call started it (false: attached to a live one).
  [[nodiscard]] bool started_here() const noexcept { return started_here_; }
  // As the keeper reported it at attach time.
  [[nodiscard]] const named_info& info() const noexcept { return info_; }

  // The verdict so far: errc::server_exited (with its status and last lines) when the
  // server is gone, nullopt while it runs.
  [[nodiscard]] std::optional<failure> check() const;
  // A few lines for failure messages and listener reports.
  [[nodiscard]] std::string summary() const;

 private:
  named_info info_{};
  int holder_ = 0;
  std::uint64_t holder_start_ = 0;
  bool started_here_ = false;
  bool held_ = false;
};

}  // namespace harness
