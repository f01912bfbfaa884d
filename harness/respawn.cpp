#include "harness/respawn.hpp"

#include <algorithm>
#include <cmath>
#include <ostream>
#include <random>
#include <thread>

#include "harness/detail/session/respawn_loop.hpp"

namespace harness {

const char* to_string(attempt::result r) {
  switch (r) {
    case attempt::result::ready: return "ready";
    case attempt::result::collision: return "collision";
    case attempt::result::failed: return "failed";
  }
  return "?";
}

std::string to_string(const attempt& a) {
  std::string s = "port " + std::to_string(a.port) + ": " + to_string(a.outcome);
  if (!a.reason.empty()) s += " (" + a.reason + ")";
  s += " after " + std::to_string(a.duration.count()) + " ms";
  return s;
}

std::ostream& operator<<(std::ostream& os, const attempt& a) { return os << to_string(a); }

std::string format_attempts(const std::vector<attempt>& attempts, std::string_view indent) {
  std::string out;
  for (std::size_t i = 0; i < attempts.size(); ++i) {
    out += std::string(indent) + std::to_string(i + 1) + ". " + to_string(attempts[i]) + "\n";
  }
  return out;
}

namespace detail {

namespace {
class system_time_source final : public time_source {
 public:
  std::chrono::steady_clock::time_point now() override { return std::chrono::steady_clock::now(); }
  void sleep_for(std::chrono::milliseconds d) override { std::this_thread::sleep_for(d); }
  double uniform() override {
    thread_local std::mt19937_64 rng(std::random_device{}());
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  }
};
}  // namespace

time_source& system_time() {
  static system_time_source instance;
  return instance;
}

std::chrono::milliseconds backoff_delay(const respawn_policy& p, int next, double uniform01) {
  // Delay ceiling doubles per retry: base, 2*base, 4*base, ... capped.
  const int doublings = std::clamp(next - 2, 0, 30);
  const double ceiling = std::min(static_cast<double>(p.backoff_cap.count()),
                                  static_cast<double>(p.backoff_base.count()) * std::ldexp(1.0, doublings));
  const double u = std::clamp(uniform01, 0.0, 1.0);
  return std::chrono::milliseconds(static_cast<long>(std::floor(ceiling * u)));
}

result<std::uint16_t> run_respawn_loop(port_source& ports, launcher& start, time_source& time,
                                       const respawn_policy& p, std::vector<attempt>& log) {
  if (p.attempts < 1) {
    return make_failure(errc::invalid_argument, "respawn attempts must be at least 1");
  }
  for (int n = 1;; ++n) {
    auto port = ports.acquire();
    if (!port) return std::move(port).error();
    const auto t0 = time.now();
    start_outcome outcome = start.start(*port);
    const std::uint16_t used = outcome.port != 0 ? outcome.port : *port;
    log.push_back(attempt{used, outcome.kind, outcome.reason,
                          std::chrono::duration_cast<std::chrono::milliseconds>(time.now() - t0)});
    switch (outcome.kind) {
      case attempt::result::ready:
        return used;
      case attempt::result::failed:
        return std::move(outcome.error);
      case attempt::result::collision:
        break;
    }
    start.discard();
    ports.release(*port);
    if (n >= p.attempts) {
      return make_failure(errc::attempts_exhausted,
                          "the port was taken on each of " + std::to_string(n) + " starts");
    }
    time.sleep_for(backoff_delay(p, n + 1, time.uniform()));
  }
}

}  // namespace detail
}  // namespace harness
