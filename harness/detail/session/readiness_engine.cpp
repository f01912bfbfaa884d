#include "harness/detail/session/readiness_engine.hpp"

#include <algorithm>

#include "harness/timeouts.hpp"

namespace harness::detail {

using std::chrono::milliseconds;

readiness_engine::readiness_engine(readiness_setup setup, start_events& ev, readiness_world& world)
    : setup_(std::move(setup)), ev_(ev), world_(world), passed_(setup_.ready->probes.size(), false),
      last_error_(setup_.ready->probes.size()) {}

void readiness_engine::note_waiting(const std::string& what) {
  if (!waiting_for_.empty()) waiting_for_ += ", ";
  waiting_for_ += what;
}

start_outcome readiness_engine::fail(std::error_code code, const std::string& reason, bool show_holder) {
  out_.kind = attempt::result::failed;
  out_.reason = reason;
  out_.error = world_.report(code, reason, show_holder);
  return out_;
}

// Takes what the I/O thread reported: notify datagrams (from the server's tree only),
// malformed announcements, fail patterns; latches the event-driven probes.
std::optional<start_outcome> readiness_engine::take_events() {
  std::optional<failure> bad;
  std::optional<failure> thrown;
  std::optional<std::string> fail_line;
  {
    std::lock_guard lock(ev_.m);
    thrown = ev_.thrown;
    for (auto& d : ev_.notify_pending) {
      if (d.in_tree == -2) d.in_tree = world_.sender_in_tree(d.sender);
      // In the tree; or gone before it could be checked (a short-lived helper such as
      // systemd-notify) and of our own user. A live process outside the tree never.
      if (!(d.in_tree == 1 || (d.in_tree == -1 && d.same_user))) continue;
      take_notify_datagram(ev_, d.text);
    }
    ev_.notify_pending.clear();
    seen_ = ev_.version;
    bad = ev_.bad;
    fail_line = ev_.fail_line;
    in_use_line_ = ev_.collision;
    announced_ = ev_.announced;
    ready_signal_ = ev_.ready_signal;
    exited_ = ev_.exited;
    const auto& probes = setup_.ready->probes;
    for (std::size_t i = 0; i < passed_.size(); ++i) {
      if (probes[i].what == probe::kind::log && ev_.log_hit[i]) passed_[i] = true;
      if (probes[i].what == probe::kind::announce && ev_.ready_fd_signal) passed_[i] = true;
      if (probes[i].what == probe::kind::notify && ev_.notify_signal) passed_[i] = true;
    }
  }
  if (!thrown) thrown = world_.callback_failure();
  if (thrown) return fail(errc::callback_threw, thrown->detail, false);
  if (bad) {
    out_.kind = attempt::result::failed;
    out_.reason = bad->message();
    out_.error = world_.report(bad->code, bad->detail, false);
    return out_;
  }
  if (fail_line) return fail(errc::fail_pattern_matched, *fail_line, false);
  return std::nullopt;
}

start_judge::observation readiness_engine::observe() const {
  start_judge::observation ob;
  ob.lease = setup_.mode == port_mode::lease;
  ob.announce = setup_.mode == port_mode::announce;
  ob.port = setup_.port;
  ob.allow_daemon = setup_.allow_daemon;
  ob.in_use_line = in_use_line_;
  ob.timeout_ms = timeouts::scaled(setup_.ready->timeout).count();
  return ob;
}

void readiness_engine::look_at_port(start_judge::observation& ob, bool whole_tree) {
  ob.on_port = world_.who_listens(ob.port, whole_tree, ob.holders);
}

// Carries out a verdict; nullopt: keep waiting.
std::optional<start_outcome> readiness_engine::apply(const start_judge::verdict& v) {
  switch (v.what) {
    case start_judge::outcome::wait:
      return std::nullopt;
    case start_judge::outcome::ready:
      out_.kind = attempt::result::ready;
      return out_;
    case start_judge::outcome::collision:
      out_.kind = attempt::result::collision;
      out_.reason = v.reason;
      return out_;
    case start_judge::outcome::failed:
      return fail(v.code, v.reason, v.show_holder);
  }
  return std::nullopt;
}

start_outcome readiness_engine::judge_exit() {
  const exit_status status = world_.settle_exit();  // the last lines are in now
  {
    std::lock_guard lock(ev_.m);
    in_use_line_ = ev_.collision;
  }
  auto ob = observe();
  ob.exited = status;
  // The server is gone but its tree is still there (stopped only when the start is
  // over): who listens on the port, and what it left running.
  const auto tree = world_.tree();
  if (ob.lease) look_at_port(ob, true);
  if (tree.size() > 1) ob.left.assign(tree.begin() + 1, tree.end());
  return *apply(start_judge::judge(ob));
}

// Runs every polling probe that has not passed; `all` says whether all have.
std::optional<start_outcome> readiness_engine::run_probes(std::uint16_t known_port, milliseconds left, bool& all) {
  const auto connect_timeout =
      std::clamp(timeouts::scaled(timeouts::connect), milliseconds(1), std::max(left, milliseconds(1)));
  for (std::size_t i = 0; i < passed_.size(); ++i) {
    if (passed_[i]) continue;
    const auto& p = setup_.ready->probes[i];
    // Most need the port; a callback runs even before it is known. A command gets the
    // whole time left (one run of pg_isready may take longer than a connect).
    if (p.polled() && (known_port != 0 || !p.needs_port())) {
      const auto limit = p.what == probe::kind::command ? std::max(left, milliseconds(1)) : connect_timeout;
      auto t = world_.try_probe(p, known_port, limit, last_error_[i]);
      if (t.fatal) return fail(t.fatal->first, t.fatal->second, false);
      last_error_[i] = t.error;
      if (t.ok) {
        passed_[i] = true;
        continue;
      }
    }
    all = false;
    note_waiting(p.describe() + (last_error_[i].empty() ? "" : " (" + last_error_[i] + ")"));
  }
  return std::nullopt;
}

// Whether the next round must come by itself (a probe to poll, a listener to wait
// for) rather than on an event.
bool readiness_engine::polling(bool all) const {
  // Lease mode, or announce mode once the port is known: the listener is looked for.
  const bool port_known = setup_.mode == port_mode::lease || (setup_.mode == port_mode::announce && announced_);
  bool polling = port_known && (!all || in_use_line_);
  for (std::size_t i = 0; i < passed_.size(); ++i) {
    polling = polling || (!passed_[i] && setup_.ready->probes[i].polled());
  }
  return polling;
}

start_outcome readiness_engine::wait(clock::time_point t0) {
  const auto& ready = *setup_.ready;
  const auto deadline = t0 + timeouts::scaled(ready.timeout);
  auto delay = std::chrono::duration_cast<std::chrono::microseconds>(ready.poll_initial);
  const auto cap = std::chrono::duration_cast<std::chrono::microseconds>(ready.poll_cap);
  const bool lease = setup_.mode == port_mode::lease, announce = setup_.mode == port_mode::announce;
  const bool progress = static_cast<bool>(ready.on_progress);
  auto next_progress = t0 + timeouts::scaled(ready.progress_after);
  const auto progress_every = std::max(timeouts::scaled(ready.progress_every), milliseconds(1));
  for (;;) {
    if (auto decided = take_events()) return *decided;
    if (exited_ || !world_.server_running()) return judge_exit();
    // Lease mode: a stranger on the leased port (on any address) ends the attempt as a
    // collision at once, before probing, whether or not a port-in-use line came.
    if (lease) {
      auto ob = observe();
      look_at_port(ob, false);
      if (auto decided = apply(start_judge::judge(ob))) return *decided;
    }
    const std::uint16_t known_port = announce ? announced_.value_or(0) : setup_.port;
    if (announce && announced_) out_.port = *announced_;
    bool all = true;
    waiting_for_.clear();
    if (announce && !announced_) {
      all = false;
      note_waiting(setup_.port_from.empty() ? std::string("the port announcement (HARNESS_READY_FD or NOTIFY_SOCKET)")
                                            : "a line matching port_from /" + setup_.port_from + "/");
    }
    if (setup_.need_ready_signal && !ready_signal_) {
      all = false;
      note_waiting("READY=1 or PORT=<n> (HARNESS_READY_FD or NOTIFY_SOCKET)");
    }
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - world_.now());
    if (auto decided = run_probes(known_port, left, all)) return *decided;
    const bool late = world_.now() >= deadline;
    if (all || late) {
      auto ob = observe();
      ob.probes_passed = all;
      ob.deadline_passed = late;
      ob.port = known_port;
      if (lease || known_port != 0) look_at_port(ob, false);
      if ((lease || known_port != 0) && all && ob.on_port == start_judge::listener::nobody) {
        all = false;
        note_waiting(lease ? "a listener on port " + std::to_string(known_port)
                           : "a listener of the server on the announced port " + std::to_string(known_port));
      }
      ob.waiting_for = waiting_for_;
      if (auto decided = apply(start_judge::judge(ob))) {
        if (decided->kind == attempt::result::ready && announce) decided->port = known_port;
        return *decided;
      }
    }
    // A slow start says where it stands now and then.
    if (progress && world_.now() >= next_progress) {
      const auto now = world_.now();
      ready.on_progress({std::chrono::duration_cast<milliseconds>(now - t0),
                         std::chrono::duration_cast<milliseconds>(deadline - now), waiting_for_});
      while (next_progress <= now) next_progress += progress_every;
    }
    // Sleep until an event, the next poll, the next progress line, or the deadline.
    const bool poll = polling(all);
    auto until = poll ? std::min(deadline, world_.now() + delay) : deadline;
    if (progress) until = std::min(until, next_progress);
    world_.sleep_until(ev_, seen_, until);
    if (poll) delay = std::min(delay * 2, cap);
  }
}

}  // namespace harness::detail
