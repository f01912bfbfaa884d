// bench/harness_bench.cpp — Google Benchmark for serve-harness with the fixture server.
//
//   harness-bench [--samples-dir=DIR] [--iters=N] [--reps=R] [--memory-sessions=N]
//                 [--benchmark_* flags]
//
// Benchmarks (scripts/bench runs them with --benchmark_enable_random_interleaving, so
// the repetitions of every benchmark are shuffled together and each comparison is
// measured side by side under the same machine load):
//   start_stop/<mode>      session::try_start + stop(); the reported (manual) time is
//                          spawn->ready (try_start), the stop part is the `stop_us`
//                          counter; modes: lease_tcp, lease_log, announce_fd,
//                          announce_notify, announce_regex, inherit, lease_http
//   floor/posix_spawn      no harness code: posix_spawn the fixture with --port=0
//                          --announce=ready-fd (a pipe as HARNESS_READY_FD, stdio on
//                          /dev/null), read "PORT=<n>", one connect(); then SIGTERM +
//                          waitpid, timed separately as `stop_us` (the stop floor)
//   stop/cooperative       stop() of a server that honours SIGTERM (start untimed)
//   stop/ignores_sigterm   stop() of a server that ignores SIGTERM, grace 50 ms; the
//                          reported time is stop() minus the (scaled) grace period
//   lease/acquire_release  lease::try_acquire + release, private lock dir, 64-port range
//                          in the pool (arg: how many of the 64 are already held);
//                          ..._default_pool: the shared default pool and state dir
//   memory/live_sessions   RSS and fd delta of this process per live session (a warm-up
//                          round of N sessions first, then N measured)
//   cost/*                 the pieces profiling showed to be expensive, next to the
//                          way the core does them now (see bench/RESULTS.md): reading
//                          /proc/net/tcp{,6} vs the NETLINK_SOCK_DIAG query for
//                          listeners only; the tree walk of stop() with and without the
//                          pid shortcut, a /proc environ scan and a bare stat scan; the
//                          lease record write (truncate-then-write vs write-then-truncate,
//                          then close, on the state dir's filesystem)
//
// With --samples-dir, every per-iteration sample (microseconds) is written to
// DIR/<series>.csv, one value per line, for percentiles and plots.
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "harness/detail/os/proc_fs.hpp"
#include "harness/detail/os/proc_tree.hpp"   // private: only for the cost breakdown below
#include "harness/detail/os/proc_net.hpp"  // private: only for the cost breakdown below
#include "harness/lease.hpp"
#include "harness/session.hpp"
#include "harness/timeouts.hpp"

namespace {

using namespace std::chrono_literals;
using harness::port_mode;
using harness::probe;
using harness::server_spec;

// --- options and samples ------------------------------------------------------------

struct bench_options {
  std::string samples_dir;
  int iters = 20;
  int reps = 10;
  int memory_sessions = 50;
};
bench_options opts;

// series name -> samples in microseconds (benchmarks run on one thread).
std::map<std::string, std::vector<double>> samples;

double mean_of(const std::vector<double>& v, std::size_t from) {
  if (v.size() <= from) return 0;
  return std::accumulate(v.begin() + static_cast<std::ptrdiff_t>(from), v.end(), 0.0) /
         static_cast<double>(v.size() - from);
}

// CPU time of this whole process (every thread; not the children), in microseconds.
double process_cpu_us() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e6 +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

std::vector<std::string> fx(std::vector<std::string> args) {
  args.insert(args.begin(), bench::fixture_server());
  return args;
}

// --- the specs, one per port mode and probe -----------------------------------------

struct mode_case {
  const char* name;
  server_spec spec;
};

std::vector<mode_case> mode_cases() {
  std::vector<mode_case> out;
  out.push_back({"lease_tcp", {.command = fx({"--port={port}"}),
                               .ready = {.probes = {probe::tcp()}}}});
  // The fixture expands its own {port} ("{{port}}" is our escape for it), after bind.
  out.push_back({"lease_log", {.command = fx({"--port={port}", "--announce-line=listening on {{port}}"}),
                               .ready = {.probes = {probe::log("^listening on [0-9]+$")}}}});
  out.push_back({"announce_fd", {.command = fx({"--port=0", "--announce=ready-fd"}),
                                 .port = {.mode = port_mode::announce},
                                 .ready = {.probes = {probe::announce()}}}});
  out.push_back({"announce_notify", {.command = fx({"--port=0", "--announce=notify"}),
                                     .port = {.mode = port_mode::announce},
                                     .ready = {.probes = {probe::notify()}}}});
  out.push_back({"announce_regex",
                 {.command = fx({"--port=0",
                                 "--announce-line=Serving HTTP on 127.0.0.1 port {{port}} (http://127.0.0.1:{{port}}/)"}),
                  .port = {.mode = port_mode::announce, .port_from = R"(Serving HTTP on \S+ port (\d+))"}}});
  out.push_back({"inherit", {.command = fx({"--listen-fds", "--announce=auto"}),
                             .port = {.mode = port_mode::inherit}}});
  out.push_back({"lease_http", {.command = fx({"--port={port}", "--serve=http"}),
                                .ready = {.probes = {probe::http("/")}}}});
  return out;
}

// --- start_stop/<mode> --------------------------------------------------------------

void bm_start_stop(benchmark::State& state, const mode_case& c) {
  const std::string series = std::string("start_stop.") + c.name;
  auto& starts = samples[series + ".start"];
  auto& stops = samples[series + ".stop"];
  const std::size_t first = stops.size();
  std::int64_t respawns = 0;
  double cpu_start = 0, cpu_stop = 0;
  for (auto _ : state) {
    server_spec spec = c.spec;  // the copy is not part of the measurement
    const double c0 = process_cpu_us();
    const auto t0 = bench::clock::now();
    bench::clock::time_point t1;
    double c1;
    {
      auto s = harness::session::try_start(std::move(spec));
      t1 = bench::clock::now();
      c1 = process_cpu_us();
      if (!s) {
        state.SkipWithError(s.error().message().c_str());
        break;
      }
      respawns += static_cast<std::int64_t>(s->attempts().size()) - 1;
      (void)s->stop();
    }  // destruction (lease release, fds) belongs to the stop part
    const auto t2 = bench::clock::now();
    cpu_start += c1 - c0;
    cpu_stop += process_cpu_us() - c1;
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    starts.push_back(bench::micros(t1 - t0));
    stops.push_back(bench::micros(t2 - t1));
  }
  const auto n = static_cast<double>(std::max<benchmark::IterationCount>(1, state.iterations()));
  state.counters["stop_us"] = mean_of(stops, first);
  state.counters["respawns"] = static_cast<double>(respawns);
  // CPU the runner (all its threads) spent per start and per stop: on a shared machine
  // every CPU millisecond also costs waiting for a core.
  state.counters["start_cpu_us"] = cpu_start / n;
  state.counters["stop_cpu_us"] = cpu_stop / n;
}

// --- floor/posix_spawn --------------------------------------------------------------

void bm_floor(benchmark::State& state) {
  auto& starts = samples["floor.start"];
  auto& stops = samples["floor.stop"];
  const std::size_t first = stops.size();
  const bench::argv_block argv({bench::fixture_server(), "--port=0", "--announce=ready-fd"});
  const bench::env_block env({"HARNESS_READY_FD=3"});
  double cpu_start = 0, cpu_stop = 0;
  for (auto _ : state) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0 || p[1] == 3) {
      state.SkipWithError("pipe2");
      break;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, p[1], 3);  // dup2 clears CLOEXEC on fd 3

    const double c0 = process_cpu_us();
    const auto t0 = bench::clock::now();
    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, argv.get()[0], &fa, nullptr, argv.get(), env.get());
    posix_spawn_file_actions_destroy(&fa);
    ::close(p[1]);
    if (rc != 0) {
      ::close(p[0]);
      state.SkipWithError("posix_spawn failed");
      break;
    }
    std::string line;
    char buf[64];
    while (line.find('\n') == std::string::npos) {
      const ssize_t n = ::read(p[0], buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      line.append(buf, static_cast<std::size_t>(n));
    }
    ::close(p[0]);
    bool ok = line.rfind("PORT=", 0) == 0;
    if (ok) {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<std::uint16_t>(std::atoi(line.c_str() + 5)));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
      ::close(fd);
    }
    const auto t1 = bench::clock::now();
    const double c1 = process_cpu_us();
    ::kill(pid, SIGTERM);
    bench::wait_child(pid);
    const auto t2 = bench::clock::now();
    cpu_start += c1 - c0;
    cpu_stop += process_cpu_us() - c1;
    if (!ok) {
      state.SkipWithError(("floor: no port / connect failed: " + line).c_str());
      break;
    }
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    starts.push_back(bench::micros(t1 - t0));
    stops.push_back(bench::micros(t2 - t1));
  }
  const auto n = static_cast<double>(std::max<benchmark::IterationCount>(1, state.iterations()));
  state.counters["stop_us"] = mean_of(stops, first);
  state.counters["start_cpu_us"] = cpu_start / n;
  state.counters["stop_cpu_us"] = cpu_stop / n;
}

// --- stop/* -------------------------------------------------------------------------

void bm_stop(benchmark::State& state, bool ignores_sigterm) {
  const auto grace = 50ms;
  const double grace_us =
      std::chrono::duration<double, std::micro>(harness::timeouts::scaled(grace)).count();
  auto& stops = samples[ignores_sigterm ? "stop.ignores_sigterm" : "stop.cooperative"];
  std::vector<std::string> args = {"--port={port}"};
  if (ignores_sigterm) args.emplace_back("--ignore-sigterm");
  for (auto _ : state) {
    auto s = harness::session::try_start({.command = fx(args), .stop = {.grace = grace}});
    if (!s) {
      state.SkipWithError(s.error().message().c_str());
      break;
    }
    const auto t0 = bench::clock::now();
    const harness::exit_status st = s->stop();
    const auto t1 = bench::clock::now();
    const bool expected = ignores_sigterm ? (st.signaled() && st.signal() == SIGKILL) : st.success();
    if (!expected) {
      state.SkipWithError(("unexpected exit status: " + st.str()).c_str());
      break;
    }
    double us = bench::micros(t1 - t0);
    if (ignores_sigterm) us -= grace_us;
    state.SetIterationTime(std::max(us, 0.0) / 1e6);
    stops.push_back(us);
  }
  if (ignores_sigterm) state.counters["grace_subtracted_us"] = grace_us;
}

// --- lease/acquire_release ----------------------------------------------------------

void bm_lease(benchmark::State& state) {
  const auto pool = harness::default_port_range();
  if (!pool) {
    state.SkipWithError(pool.error().message().c_str());
    return;
  }
  // A private lock directory: only this benchmark uses it, so the numbers do not depend
  // on other users of the shared pool (the "is the port free" check still runs).
  char tmpl[] = "/tmp/harness-bench-leases-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    state.SkipWithError("mkdtemp");
    return;
  }
  const std::filesystem::path dir = tmpl;
  const harness::port_range range{static_cast<std::uint16_t>(pool->last - 63), pool->last};
  const harness::lease_options lo{.range = range, .directory = dir};
  std::vector<harness::lease> held;
  for (std::int64_t i = 0; i < state.range(0); ++i) {
    const auto p = static_cast<std::uint16_t>(range.first + i);
    if (auto l = harness::lease::try_acquire({.range = harness::port_range{p, p}, .directory = dir})) {
      held.push_back(std::move(*l));
    }
  }
  for (auto _ : state) {
    auto l = harness::lease::try_acquire(lo);
    if (!l) {
      state.SkipWithError(l.error().message().c_str());
      break;
    }
    benchmark::DoNotOptimize(l->port());
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["held"] = static_cast<double>(held.size());
  held.clear();
  std::filesystem::remove_all(dir);
}

// The same against the shared default pool and state directory, as sessions use them.
void bm_lease_default(benchmark::State& state) {
  for (auto _ : state) {
    auto l = harness::lease::try_acquire();
    if (!l) {
      state.SkipWithError(l.error().message().c_str());
      break;
    }
    benchmark::DoNotOptimize(l->port());
  }
  state.SetItemsProcessed(state.iterations());
}

// --- memory/live_sessions -----------------------------------------------------------

void bm_memory(benchmark::State& state, const mode_case& c) {
  const int n = opts.memory_sessions;
  auto start_n = [&](std::vector<harness::session>& live) {
    for (int i = 0; i < n; ++i) {
      auto s = harness::session::try_start(c.spec);
      if (!s) {
        state.SkipWithError(s.error().message().c_str());
        return false;
      }
      live.push_back(std::move(*s));
    }
    return true;
  };
  {
    // Warm-up round: heap and I/O thread structures grow to their working size once.
    std::vector<harness::session> warm;
    if (!start_n(warm)) return;
  }
  for (auto _ : state) {
    const long rss0 = bench::rss_kib();
    const int fds0 = bench::open_fds();
    long child_rss = 0;
    std::vector<harness::session> live;
    live.reserve(static_cast<std::size_t>(n));
    if (!start_n(live)) return;
    const long rss1 = bench::rss_kib();
    const int fds1 = bench::open_fds();
    for (auto& s : live) child_rss += bench::rss_kib(s.pid());
    live.clear();
    const long rss2 = bench::rss_kib();
    const int fds2 = bench::open_fds();
    state.counters["rss_kib_per_session"] = static_cast<double>(rss1 - rss0) / n;
    state.counters["fds_per_session"] = static_cast<double>(fds1 - fds0) / n;
    state.counters["fds_left_after_stop"] = fds2 - fds0;
    state.counters["rss_kib_left_after_stop"] = static_cast<double>(rss2 - rss0);
    state.counters["server_rss_kib_each"] = static_cast<double>(child_rss) / n;
    state.counters["sessions"] = n;
  }
}

// --- cost/* -------------------------------------------------------------------------

// A listening socket of our own on 127.0.0.1 (port chosen by the kernel).
struct own_listener {
  int fd = -1;
  std::uint16_t port = 0;
  own_listener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::listen(fd, 4) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      port = ntohs(a.sin_port);
    }
  }
  ~own_listener() {
    if (fd >= 0) ::close(fd);
  }
};

// The /proc way to find the listener of a port (the core's fallback when netlink is
// not available): read and parse /proc/net/tcp and /proc/net/tcp6.
std::vector<std::uint64_t> proc_net_listening_inodes(std::uint16_t port) {
  std::vector<std::uint64_t> out;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::stringstream text;
    text << in.rdbuf();
    for (const auto& s : harness::detail::procnet::parse_tcp_table(text.str())) {
      if (s.local_port == port && s.state == 0x0A && s.inode != 0) out.push_back(s.inode);
    }
  }
  return out;
}

void bm_cost_proc_net_tcp(benchmark::State& state) {
  own_listener l;
  for (auto _ : state) {
    auto inodes = proc_net_listening_inodes(l.port);
    if (inodes.empty()) {
      state.SkipWithError("/proc/net/tcp has no listener");
      break;
    }
    benchmark::DoNotOptimize(inodes);
  }
}

// What the core uses: NETLINK_SOCK_DIAG (what `ss -ltn` uses) asking for sockets in
// state LISTEN only, so the kernel walks the listening hash only, not the whole
// established hash table that /proc/net/tcp walks (procnet::listening_inodes).
void bm_cost_sock_diag(benchmark::State& state) {
  own_listener l;
  if (harness::detail::procnet::listening_inodes(l.port) != proc_net_listening_inodes(l.port)) {
    state.SkipWithError("sock_diag and /proc/net/tcp disagree");
    return;
  }
  for (auto _ : state) {
    auto inodes = harness::detail::procnet::listening_inodes(l.port);
    if (inodes.empty()) {
      state.SkipWithError("sock_diag found nothing");
      break;
    }
    benchmark::DoNotOptimize(inodes);
  }
}

// The tree walk: process::tree() and every sweep of the supervisor read the kernel's
// child lists below the supervisor. `full`: the /proc scan used on kernels without them.
void bm_cost_tree_walk(benchmark::State& state, bool full) {
  auto child = harness::process::try_spawn(
      {.argv = {bench::fixture_server(), "--port=0", "--serve=none"}, .output = {.log_file = false}});
  if (!child) {
    state.SkipWithError("cannot start the fixture");
    return;
  }
  harness::detail::proctree::disable_child_lists_for_testing(full);
  std::vector<pid_t> found;
  for (auto _ : state) {
    harness::detail::proctree::descendants(child->supervisor_pid(), found);
    benchmark::DoNotOptimize(found);
  }
  harness::detail::proctree::disable_child_lists_for_testing(false);
  child->stop();
}

// procfs::find_by_environ: what our_tree() (lease-mode readiness) and stop() (twice,
// collect_marked) run: every /proc/<pid>/environ of our uid is read.
void bm_cost_environ_scan(benchmark::State& state) {
  std::int64_t processes = 0;
  for (auto _ : state) {
    auto found = harness::detail::procfs::find_by_environ("HARNESS_SESSION=bench-nobody");
    benchmark::DoNotOptimize(found);
  }
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const auto name = e.path().filename().string();
    if (!name.empty() && name.find_first_not_of("0123456789") == std::string::npos) ++processes;
  }
  state.counters["processes"] = static_cast<double>(processes);
}

// The floor of any full /proc scan (what find_tree() does before it looks at
// environments): readdir /proc, fstatat, read /proc/<pid>/stat of every process.
void bm_cost_stat_scan(benchmark::State& state) {
  for (auto _ : state) {
    int n = 0;
    DIR* dir = ::opendir("/proc");
    if (dir == nullptr) {
      state.SkipWithError("opendir /proc");
      break;
    }
    const int dfd = ::dirfd(dir);
    char buf[1024];
    while (const dirent* e = ::readdir(dir)) {
      if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
      struct stat st {};
      if (::fstatat(dfd, e->d_name, &st, 0) != 0) continue;
      const std::string path = std::string("/proc/") + e->d_name + "/stat";
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      n += ::read(fd, buf, sizeof buf) > 0 ? 1 : 0;
      ::close(fd);
    }
    ::closedir(dir);
    benchmark::DoNotOptimize(n);
  }
}

// The lease record: lease.cpp write_record() does ftruncate(fd, 0) then pwrite; the
// lock file is closed when the lease ends. On ext4 (auto_da_alloc) a file truncated to
// 0 and rewritten is flushed on close, and the next truncate waits for that write-back.
// Proposed: pwrite first, then ftruncate(fd, size) (only drops a longer old tail).
void bm_cost_record(benchmark::State& state, bool truncate_first) {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp != nullptr && *tmp == '/' ? tmp : "/tmp") + "/harness-bench-record-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    state.SkipWithError("mkdtemp");
    return;
  }
  const std::string record =
      "pid=12345\nsince=1700000000\nnote=" + std::string(bench::fixture_server()) + " --port=20417\n";
  // One lease's life of a lock file: open, write the record, close (release).
  auto lease_once = [&](std::int64_t i) {
    const std::string path = tmpl + "/" + std::to_string(20000 + i % 64) + ".lock";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
    if (fd < 0) return false;
    bool ok;
    if (truncate_first) {
      ok = ::ftruncate(fd, 0) == 0 &&
           ::pwrite(fd, record.data(), record.size(), 0) == static_cast<ssize_t>(record.size());
    } else {
      ok = ::pwrite(fd, record.data(), record.size(), 0) == static_cast<ssize_t>(record.size()) &&
           ::ftruncate(fd, static_cast<off_t>(record.size())) == 0;
    }
    ::close(fd);
    return ok;
  };
  // Lock files are never deleted: by the time a port is leased again, its file has been
  // through earlier leases. Two untimed passes over the 64 files first.
  for (std::int64_t i = 0; i < 128; ++i) {
    if (!lease_once(i)) {
      state.SkipWithError("cannot write the lock files");
      return;
    }
  }
  std::int64_t i = 0;
  for (auto _ : state) {
    if (!lease_once(i++)) {
      state.SkipWithError("write");
      break;
    }
  }
  std::filesystem::remove_all(tmpl);
}

// --- main ---------------------------------------------------------------------------

bool take_option(std::string_view arg, std::string_view name, std::string& value) {
  if (arg.rfind(name, 0) != 0 || arg.size() <= name.size() || arg[name.size()] != '=') return false;
  value = std::string(arg.substr(name.size() + 1));
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string v;
    const std::string_view a = argv[i];
    if (take_option(a, "--samples-dir", v)) {
      opts.samples_dir = v;
    } else if (take_option(a, "--iters", v)) {
      opts.iters = std::stoi(v);
    } else if (take_option(a, "--reps", v)) {
      opts.reps = std::stoi(v);
    } else if (take_option(a, "--memory-sessions", v)) {
      opts.memory_sessions = std::stoi(v);
    } else {
      rest.push_back(argv[i]);
    }
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 64;

  // One session before anything is measured: the harness I/O thread, the reaper
  // process and the state directory are created once per runner, not per session.
  {
    auto warm = harness::session::try_start(mode_cases().front().spec);
    if (!warm) {
      std::cerr << "harness-bench: warm-up session failed: " << warm.error().message() << "\n";
      return 1;
    }
  }

  static const std::vector<mode_case> cases = mode_cases();
  for (const auto& c : cases) {
    benchmark::RegisterBenchmark((std::string("start_stop/") + c.name).c_str(),
                                 [&c](benchmark::State& s) { bm_start_stop(s, c); })
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond)
        ->Iterations(opts.iters)
        ->Repetitions(opts.reps);
  }
  benchmark::RegisterBenchmark("floor/posix_spawn", bm_floor)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond)
      ->Iterations(opts.iters)
      ->Repetitions(opts.reps);
  benchmark::RegisterBenchmark("stop/cooperative", [](benchmark::State& s) { bm_stop(s, false); })
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond)
      ->Iterations(opts.iters)
      ->Repetitions(opts.reps);
  benchmark::RegisterBenchmark("stop/ignores_sigterm", [](benchmark::State& s) { bm_stop(s, true); })
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond)
      ->Iterations(std::max(1, opts.iters / 2))
      ->Repetitions(opts.reps);
  benchmark::RegisterBenchmark("lease/acquire_release", bm_lease)
      ->Arg(0)
      ->Arg(48)
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime()
      ->Repetitions(1);
  benchmark::RegisterBenchmark("lease/acquire_release_default_pool", bm_lease_default)
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime()
      ->Repetitions(1);
  const auto cost_iters = static_cast<benchmark::IterationCount>(opts.iters) * 5;
  benchmark::RegisterBenchmark("cost/listeners_proc_net_tcp", bm_cost_proc_net_tcp)
      ->Unit(benchmark::kMicrosecond)->Iterations(cost_iters)->Repetitions(opts.reps);
  benchmark::RegisterBenchmark("cost/listeners_sock_diag", bm_cost_sock_diag)
      ->Unit(benchmark::kMicrosecond)->Iterations(cost_iters)->Repetitions(opts.reps);
  benchmark::RegisterBenchmark("cost/proc_environ_scan", bm_cost_environ_scan)
      ->Unit(benchmark::kMicrosecond)->Iterations(cost_iters)->Repetitions(opts.reps);
  benchmark::RegisterBenchmark("cost/tree_walk_young_pids", bm_cost_tree_walk, false)
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("cost/tree_walk_full", bm_cost_tree_walk, true)
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("cost/proc_stat_scan", bm_cost_stat_scan)
      ->Unit(benchmark::kMicrosecond)->Iterations(cost_iters)->Repetitions(opts.reps);
  benchmark::RegisterBenchmark("cost/lease_record_truncate_then_write",
                               [](benchmark::State& s) { bm_cost_record(s, true); })
      ->Unit(benchmark::kMicrosecond)->Iterations(cost_iters)->Repetitions(opts.reps);
  benchmark::RegisterBenchmark("cost/lease_record_write_then_truncate",
                               [](benchmark::State& s) { bm_cost_record(s, false); })
      ->Unit(benchmark::kMicrosecond)->Iterations(cost_iters)->Repetitions(opts.reps);
  for (const auto& c : cases) {
    const std::string_view name = c.name;
    if (name != "lease_tcp" && name != "announce_fd" && name != "inherit") continue;
    benchmark::RegisterBenchmark((std::string("memory/live_sessions/") + c.name).c_str(),
                                 [&c](benchmark::State& s) { bm_memory(s, c); })
        ->Iterations(1)
        ->Repetitions(1)
        ->Unit(benchmark::kMillisecond);
  }

  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();

  if (!opts.samples_dir.empty()) {
    std::filesystem::create_directories(opts.samples_dir);
    for (const auto& [series, v] : samples) {
      if (v.empty()) continue;
      if (!bench::write_samples(opts.samples_dir + "/" + series + ".csv", v)) {
        std::cerr << "harness-bench: cannot write " << opts.samples_dir << "/" << series << ".csv\n";
        return 1;
      }
    }
  }
  return 0;
}
