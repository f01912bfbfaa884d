// Private: the respawn loop, written against three seams so that every branch can be
// unit-tested with mocks (tests/respawn_test.cpp): where ports come from, how one
// start is made and judged, and time (clock, sleep, randomness).
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "harness/error.hpp"
#include "harness/respawn.hpp"

namespace harness::detail {

class port_source {
 public:
  virtual ~port_source() = default;
  // A port to try next (e.g. a fresh lease); a failure ends the loop.
  virtual result<std::uint16_t> acquire() = 0;
  // Gives back a port that collided.
  virtual void release(std::uint16_t port) = 0;
};

// The judgement on one start.
struct start_outcome {
  attempt::result kind = attempt::result::failed;
  std::uint16_t port = 0;  // the port actually used, when the launcher learnt it (announce)
  std::string reason;  // for collision and failed
  failure error;       // for failed: what the caller gets
};

class launcher {
 public:
  virtual ~launcher() = default;
  // Starts the server on `port` and waits until it is ready, collided, or failed.
  virtual start_outcome start(std::uint16_t port) = 0;
  // Stops and forgets what the last start() left running (after a collision).
  virtual void discard() = 0;
};

class time_source {
 public:
  virtual ~time_source() = default;
  virtual std::chrono::steady_clock::time_point now() = 0;
  virtual void sleep_for(std::chrono::milliseconds d) = 0;
  // Uniform in [0, 1).
  virtual double uniform() = 0;
};

// The real clock, sleep and a per-thread random generator.
time_source& system_time();

// The backoff before start number `next` (2-based), full jitter.
std::chrono::milliseconds backoff_delay(const respawn_policy& p, int next, double uniform01);

// Runs starts until one is ready (returns its port: the launcher's when it reported
// one, else the acquired one), one fails (its failure), or
// p.attempts starts collided (errc::attempts_exhausted). `log` gets every start.
result<std::uint16_t> run_respawn_loop(port_source& ports, launcher& start, time_source& time,
                                       const respawn_policy& p, std::vector<attempt>& log);

}  // namespace harness::detail
