// bench/port-storm — many parallel test processes start servers while other programs
// churn through ephemeral ports: harness lease mode against the naive recipe.
//
//   port-storm [--workers=P] [--sessions=N] [--sides=harness,naive]
//              [--bind-threads=B] [--bind-ring=K] [--bind-interval-us=I]
//              [--connect-threads=C] [--connect-rate=R] [--connect-ring=K] [--out=DIR]
//
// The orchestrator (this process) runs the churner and starts P worker processes per
// side, all at the same time, so both sides see the same machine state:
//   * harness side: each worker runs N lease-mode sessions one after another
//     (session::try_start({fixture --port={port}}), default tcp probe, default respawn
//     policy), then stop();
//   * naive side — the BASELINE, implemented here and not by the harness: bind
//     127.0.0.1:0, read the port with getsockname(), close the socket, posix_spawn
//     `fixture-server --port=<n> --announce-line='listening on {port}'` and wait for
//     that line. When the child exits instead with "bind: Address already in use"
//     (exit 1), the session is counted as a port-conflict failure.
//   * the churner, in this process: B threads each doing bind(127.0.0.1:0) + listen
//     every I µs and keeping its last K such sockets open, closing the oldest (so each
//     ephemeral port picked is held about K × I µs: other tests picking ephemeral ports
//     for their own servers, B × K of them alive at any time), and C threads making R
//     outgoing loopback connections per second each to a local listener, keeping the
//     last K of them open and closing the oldest first (the client side closes:
//     TIME_WAIT on the client's ephemeral port, as HTTP clients in test suites leave).
// Harness leases come from the pool outside ip_local_port_range; the naive side picks
// from inside it, exactly what bind(0) does.
//
// Output in DIR: <side>-<i>.csv per worker ("ready_us,outcome,attempts" per session;
// outcome ok / conflict / failed), <side>.ready.csv (ready times of successful
// sessions, µs), summary.txt (key=value lines, read by bench/report.py). A summary
// table goes to stdout. Exit status 0 when the run completed (whatever the counts).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "harness/session.hpp"

namespace {

using namespace std::chrono_literals;

struct storm_options {
  int workers = 4;
  int sessions = 2500;
  std::vector<std::string> sides = {"harness", "naive"};
  int bind_threads = 4;
  int bind_ring = 32;
  int bind_interval_us = 400;
  int connect_threads = 2;
  int connect_rate = 20;
  int connect_ring = 64;
  std::string out = "port-storm-out";
  // Worker mode.
  std::string worker;
  int id = 0;
};

bool take(std::string_view arg, std::string_view name, std::string& value) {
  if (arg.rfind(name, 0) != 0 || arg.size() <= name.size() || arg[name.size()] != '=') return false;
  value = std::string(arg.substr(name.size() + 1));
  return true;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string part; std::getline(ss, part, sep);) {
    if (!part.empty()) out.push_back(part);
  }
  return out;
}

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

std::uint16_t local_port(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return 0;
  return ntohs(a.sin_port);
}

// --- the workers --------------------------------------------------------------------

struct session_record {
  double ready_us = 0;
  const char* outcome = "failed";
  int attempts = 1;
};

int reported = 0;
int respawns_reported = 0;
void report_failure(const std::string& side, int id, const std::string& text) {
  if (++reported > 5) return;  // enough to diagnose; the counts are in the CSV
  std::cerr << "port-storm: " << side << " worker " << id << ": " << text << "\n";
}

session_record harness_once(int id) {
  session_record r;
  const auto t0 = bench::clock::now();
  auto s = harness::session::try_start({.command = {bench::fixture_server(), "--port={port}"}});
  const auto t1 = bench::clock::now();
  if (s) {
    r.ready_us = bench::micros(t1 - t0);
    r.outcome = "ok";
    r.attempts = static_cast<int>(s->attempts().size());
    if (r.attempts > 1 && ++respawns_reported <= 5) {  // a recovered collision: say why
      std::cerr << "port-storm: harness worker " << id << ": respawned:\n"
                << harness::format_attempts(s->attempts(), "    ");
    }
    (void)s->stop();
    return r;
  }
  const auto& f = s.error();
  // A start that failed because every attempt lost its port is a port-conflict failure.
  const bool conflict = f.code == harness::errc::attempts_exhausted ||
                        f.code == harness::errc::port_collision;
  r.outcome = conflict ? "conflict" : "failed";
  report_failure("harness", id, f.message());
  return r;
}

// The naive recipe: the baseline this benchmark compares against.
session_record naive_once(int id) {
  session_record r;
  const auto t0 = bench::clock::now();
  // 1. bind port 0, read the number, let go of the socket.
  const int probe = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in any = loopback(0);
  if (probe < 0 || ::bind(probe, reinterpret_cast<sockaddr*>(&any), sizeof any) != 0) {
    report_failure("naive", id, std::string("bind(0): ") + std::strerror(errno));
    if (probe >= 0) ::close(probe);
    return r;
  }
  const std::uint16_t port = local_port(probe);
  ::close(probe);

  // 2. hand the number to the child.
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return r;
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return r;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  const bench::argv_block argv({bench::fixture_server(), "--port=" + std::to_string(port),
                                "--announce-line=listening on {port}"});
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, argv.get()[0], &fa, nullptr, argv.get(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  ::close(err[1]);
  if (rc != 0) {
    ::close(out[0]);
    ::close(err[0]);
    report_failure("naive", id, std::string("posix_spawn: ") + std::strerror(rc));
    return r;
  }

  // 3. wait for it: the line it prints once it listens, or end-of-file.
  std::string text;
  bool ready = false;
  char buf[512];
  for (;;) {
    const ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.find("listening on ") != std::string::npos) {
      ready = true;
      break;
    }
  }
  const auto t1 = bench::clock::now();
  ::close(out[0]);
  if (ready) {
    r.ready_us = bench::micros(t1 - t0);
    r.outcome = "ok";
    ::kill(pid, SIGTERM);
    bench::wait_child(pid);
    ::close(err[0]);
    return r;
  }
  std::string errors;
  for (;;) {
    const ssize_t n = ::read(err[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    errors.append(buf, static_cast<std::size_t>(n));
  }
  ::close(err[0]);
  const int status = bench::wait_child(pid);
  const bool bind_error = WIFEXITED(status) && WEXITSTATUS(status) == 1 &&
                          errors.find("Address already in use") != std::string::npos;
  r.outcome = bind_error ? "conflict" : "failed";
  if (!bind_error) report_failure("naive", id, "child failed: " + errors);
  return r;
}

int run_worker(const storm_options& o) {
  std::FILE* f = std::fopen(o.out.c_str(), "w");
  if (f == nullptr) {
    std::cerr << "port-storm: cannot write " << o.out << "\n";
    return 1;
  }
  const bool naive = o.worker == "naive";
  for (int i = 0; i < o.sessions; ++i) {
    const session_record r = naive ? naive_once(o.id) : harness_once(o.id);
    std::fprintf(f, "%.1f,%s,%d\n", r.ready_us, r.outcome, r.attempts);
  }
  return std::fclose(f) == 0 ? 0 : 1;
}

// --- the churner --------------------------------------------------------------------

struct churn_stats {
  std::atomic<std::uint64_t> binds{0}, bind_errors{0}, connects{0}, connect_errors{0};
};

class churner {
 public:
  churner(const storm_options& o, churn_stats& stats) : o_(o), stats_(stats) {}

  void start() {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = loopback(0);
    if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listener_, 4096) != 0) {
      throw std::runtime_error(std::string("churner listener: ") + std::strerror(errno));
    }
    listen_port_ = local_port(listener_);
    if (o_.connect_threads > 0) threads_.emplace_back([this] { accept_loop(); });
    for (int i = 0; i < o_.bind_threads; ++i) threads_.emplace_back([this, i] { bind_loop(i); });
    for (int i = 0; i < o_.connect_threads; ++i) threads_.emplace_back([this, i] { connect_loop(i); });
  }

  void stop() {
    done_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    for (auto& t : threads_) t.join();
    ::close(listener_);
    for (int fd : accepted_) ::close(fd);
  }

 private:
  void bind_loop(int) {
    std::deque<int> ring;
    const auto period = std::chrono::microseconds(std::max(1, o_.bind_interval_us));
    auto next = bench::clock::now();
    while (!done_) {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a = loopback(0);
      if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::listen(fd, 8) == 0) {
        ++stats_.binds;
        ring.push_back(fd);
      } else {
        ++stats_.bind_errors;
        if (fd >= 0) ::close(fd);
      }
      while (static_cast<int>(ring.size()) > std::max(1, o_.bind_ring)) {
        ::close(ring.front());
        ring.pop_front();
      }
      next += period;
      const auto now = bench::clock::now();
      if (next < now) next = now;  // fell behind (a loaded machine): do not burst
      std::this_thread::sleep_until(next);
    }
    for (int fd : ring) ::close(fd);
  }

  void accept_loop() {
    while (!done_) {
      const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (done_) break;
        continue;
      }
      // Keep the server side open until the client closes (the client's TIME_WAIT is
      // what real suites leave on ephemeral ports); drop it once it reads EOF.
      std::lock_guard lock(m_);
      accepted_.push_back(fd);
      reap_closed_locked();
    }
  }

  void reap_closed_locked() {
    std::erase_if(accepted_, [](int fd) {
      char c;
      const ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        ::close(fd);
        return true;
      }
      return false;
    });
  }

  void connect_loop(int) {
    std::deque<int> ring;
    const auto period = std::chrono::microseconds(1'000'000 / std::max(1, o_.connect_rate));
    auto next = bench::clock::now();
    while (!done_) {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a = loopback(listen_port_);
      if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
        ++stats_.connects;
        ring.push_back(fd);
      } else {
        ++stats_.connect_errors;
        if (fd >= 0) ::close(fd);
      }
      while (static_cast<int>(ring.size()) > o_.connect_ring) {
        ::close(ring.front());
        ring.pop_front();
      }
      next += period;
      const auto now = bench::clock::now();
      if (next < now) next = now;
      std::this_thread::sleep_until(next);
    }
    for (int fd : ring) ::close(fd);
  }

  const storm_options& o_;
  churn_stats& stats_;
  std::atomic<bool> done_{false};
  int listener_ = -1;
  std::uint16_t listen_port_ = 0;
  std::mutex m_;
  std::vector<int> accepted_;
  std::vector<std::thread> threads_;
};

// --- the orchestrator ---------------------------------------------------------------

struct side_summary {
  int sessions = 0, ok = 0, conflicts = 0, other_failures = 0, respawns = 0;
  std::vector<double> ready;
};

int run_orchestrator(const storm_options& o, const char* self) {
  std::filesystem::create_directories(o.out);
  churn_stats stats;
  churner churn(o, stats);
  churn.start();
  std::this_thread::sleep_for(200ms);  // let the churn reach its pace

  const auto t0 = bench::clock::now();
  std::map<pid_t, std::string> running;
  for (int i = 0; i < o.workers; ++i) {
    for (const auto& side : o.sides) {  // interleaved: h0 n0 h1 n1 ...
      const std::string file = o.out + "/" + side + "-" + std::to_string(i) + ".csv";
      const bench::argv_block argv({self, "--worker=" + side, "--id=" + std::to_string(i),
                                    "--sessions=" + std::to_string(o.sessions), "--out=" + file});
      pid_t pid = -1;
      if (const int rc = ::posix_spawn(&pid, self, nullptr, nullptr, argv.get(), environ); rc != 0) {
        std::cerr << "port-storm: cannot start a worker: " << std::strerror(rc) << "\n";
        churn.stop();
        return 1;
      }
      running[pid] = side + "-" + std::to_string(i);
    }
  }
  int worker_failures = 0;
  for (const auto& [pid, name] : running) {
    const int st = bench::wait_child(pid);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
      ++worker_failures;
      std::cerr << "port-storm: worker " << name << " ended badly (status " << st << ")\n";
    }
  }
  const double wall_s = std::chrono::duration<double>(bench::clock::now() - t0).count();
  churn.stop();

  std::map<std::string, side_summary> sums;
  for (const auto& side : o.sides) {
    side_summary& s = sums[side];
    for (int i = 0; i < o.workers; ++i) {
      std::ifstream in(o.out + "/" + side + "-" + std::to_string(i) + ".csv");
      std::string line;
      while (std::getline(in, line)) {
        const auto parts = split(line, ',');
        if (parts.size() != 3) continue;
        ++s.sessions;
        const int attempts = std::stoi(parts[2]);
        if (parts[1] == "ok") {
          ++s.ok;
          s.ready.push_back(std::stod(parts[0]));
          s.respawns += attempts - 1;
        } else if (parts[1] == "conflict") {
          ++s.conflicts;
        } else {
          ++s.other_failures;
        }
      }
    }
    bench::write_samples(o.out + "/" + side + ".ready.csv", s.ready);
  }

  std::ofstream summary(o.out + "/summary.txt");
  summary << "workers_per_side=" << o.workers << "\nsessions_per_worker=" << o.sessions
          << "\nbind_threads=" << o.bind_threads << "\nbind_ring=" << o.bind_ring
          << "\nbind_interval_us=" << o.bind_interval_us
          << "\nconnect_threads=" << o.connect_threads << "\nconnect_rate=" << o.connect_rate
          << "\nconnect_ring=" << o.connect_ring << "\nwall_s=" << wall_s
          << "\nchurn_binds=" << stats.binds << "\nchurn_bind_errors=" << stats.bind_errors
          << "\nchurn_connects=" << stats.connects << "\nchurn_connect_errors=" << stats.connect_errors
          << "\nworker_failures=" << worker_failures << "\n";
  std::printf("port-storm: %d workers per side × %d sessions, %.1f s; churn: %llu binds (%d threads, "
              "every %d us, %d held each), %llu connects (%d threads × %d/s)\n",
              o.workers, o.sessions, wall_s, static_cast<unsigned long long>(stats.binds.load()),
              o.bind_threads, o.bind_interval_us, o.bind_ring,
              static_cast<unsigned long long>(stats.connects.load()), o.connect_threads, o.connect_rate);
  std::printf("%-8s %9s %9s %15s %15s %9s %11s %11s\n", "side", "sessions", "ready", "port-conflicts",
              "other-failures", "respawns", "p50 ms", "p99 ms");
  for (const auto& [side, s] : sums) {
    const double p50 = bench::percentile(s.ready, 0.50) / 1000, p99 = bench::percentile(s.ready, 0.99) / 1000;
    summary << side << ".sessions=" << s.sessions << "\n"
            << side << ".ok=" << s.ok << "\n"
            << side << ".conflicts=" << s.conflicts << "\n"
            << side << ".other_failures=" << s.other_failures << "\n"
            << side << ".respawns=" << s.respawns << "\n"
            << side << ".p50_ms=" << p50 << "\n"
            << side << ".p99_ms=" << p99 << "\n";
    std::printf("%-8s %9d %9d %15d %15d %9d %11.2f %11.2f\n", side.c_str(), s.sessions, s.ok, s.conflicts,
                s.other_failures, s.respawns, p50, p99);
  }
  std::printf("port-storm: results in %s\n", o.out.c_str());
  return worker_failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  storm_options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    std::string v;
    try {
      if (take(a, "--workers", v)) {
        o.workers = std::stoi(v);
      } else if (take(a, "--sessions", v)) {
        o.sessions = std::stoi(v);
      } else if (take(a, "--sides", v)) {
        o.sides = split(v, ',');
      } else if (take(a, "--bind-threads", v)) {
        o.bind_threads = std::stoi(v);
      } else if (take(a, "--bind-ring", v)) {
        o.bind_ring = std::stoi(v);
      } else if (take(a, "--bind-interval-us", v)) {
        o.bind_interval_us = std::stoi(v);
      } else if (take(a, "--connect-threads", v)) {
        o.connect_threads = std::stoi(v);
      } else if (take(a, "--connect-rate", v)) {
        o.connect_rate = std::stoi(v);
      } else if (take(a, "--connect-ring", v)) {
        o.connect_ring = std::stoi(v);
      } else if (take(a, "--out", v)) {
        o.out = v;
      } else if (take(a, "--worker", v)) {
        o.worker = v;
      } else if (take(a, "--id", v)) {
        o.id = std::stoi(v);
      } else {
        std::cerr << "port-storm: unknown argument '" << a << "' (see the top of bench/port_storm.cpp)\n";
        return 64;
      }
    } catch (const std::exception&) {
      std::cerr << "port-storm: bad value in '" << a << "'\n";
      return 64;
    }
  }
  for (const auto& s : o.sides) {
    if (s != "harness" && s != "naive") {
      std::cerr << "port-storm: --sides takes harness and/or naive, not '" << s << "'\n";
      return 64;
    }
  }
  if (!o.worker.empty()) {
    if (o.worker != "harness" && o.worker != "naive") return 64;
    return run_worker(o);
  }
  return run_orchestrator(o, "/proc/self/exe");
}
