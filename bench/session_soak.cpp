// bench/session-soak — runs many sessions one after another in one runner process and
// checks that the runner does not grow: RSS within +5% and the fd count back to its
// baseline after the last session.
//
//   session-soak [--sessions=10000] [--warmup=200] [--every=250] [--out=FILE.csv]
//
// The sessions rotate through the three port modes (lease + tcp probe, announce over
// HARNESS_READY_FD, inherit + announce), each started with session::try_start and
// ended with stop() and destruction. The baseline is taken after `warmup` sessions
// (the I/O thread, the reaper, allocator arenas and caches exist by then); the fd
// count is also compared with the count before the first session. Every `every`
// sessions a line "session,rss_kib,fds,threads" goes to the CSV.
//
// The verdict uses the raw RSS. For diagnosis, the RSS after malloc_trim(0) (freed heap
// given back to the kernel) is reported too, at the baseline and at the end: a gap
// between the two is memory the allocator kept after a large transient allocation, not
// memory still in use.
//
// Prints key=value lines (read by bench/report.py); exit status 0 when RSS stayed
// within +5% and the fds are back to the baseline, 1 otherwise, 2 when a session failed.
#include <malloc.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "harness/session.hpp"

namespace {

bool take(std::string_view arg, std::string_view name, std::string& value) {
  if (arg.rfind(name, 0) != 0 || arg.size() <= name.size() || arg[name.size()] != '=') return false;
  value = std::string(arg.substr(name.size() + 1));
  return true;
}

harness::server_spec spec_for(int i) {
  const std::string fx = bench::fixture_server();
  switch (i % 3) {
    case 0:
      return {.command = {fx, "--port={port}"}};
    case 1:
      return {.command = {fx, "--port=0", "--announce=ready-fd"},
              .port = {.mode = harness::port_mode::announce}};
    default:
      return {.command = {fx, "--listen-fds", "--announce=auto"},
              .port = {.mode = harness::port_mode::inherit}};
  }
}

}  // namespace

int main(int argc, char** argv) {
  int sessions = 10000, warmup = 200, every = 250;
  std::string out;
  for (int i = 1; i < argc; ++i) {
    std::string v;
    const std::string_view a = argv[i];
    if (take(a, "--sessions", v)) {
      sessions = std::stoi(v);
    } else if (take(a, "--warmup", v)) {
      warmup = std::stoi(v);
    } else if (take(a, "--every", v)) {
      every = std::max(1, std::stoi(v));
    } else if (take(a, "--out", v)) {
      out = v;
    } else {
      std::cerr << "session-soak: unknown argument '" << a << "'\n";
      return 64;
    }
  }
  std::FILE* csv = out.empty() ? nullptr : std::fopen(out.c_str(), "w");
  if (csv != nullptr) std::fprintf(csv, "session,rss_kib,fds,threads\n");

  const int fds_initial = bench::open_fds();
  const long rss_initial = bench::rss_kib();
  long rss_base = 0, rss_max = 0, rss_base_trimmed = 0;
  int fds_base = 0, failures = 0;
  const auto t0 = bench::clock::now();
  for (int i = 1; i <= sessions + warmup; ++i) {
    {
      auto s = harness::session::try_start(spec_for(i));
      if (!s) {
        if (++failures <= 5) std::cerr << "session-soak: session " << i << ": " << s.error().message() << "\n";
        continue;
      }
      (void)s->stop();
    }
    if (i == warmup) {
      rss_base = bench::rss_kib();
      fds_base = bench::open_fds();
      ::malloc_trim(0);
      rss_base_trimmed = bench::rss_kib();
    }
    if (i % every == 0 || i == sessions + warmup) {
      const long rss = bench::rss_kib();
      if (i >= warmup) rss_max = std::max(rss_max, rss);
      if (csv != nullptr) std::fprintf(csv, "%d,%ld,%d,%d\n", i, rss, bench::open_fds(), bench::thread_count());
    }
  }
  const double wall_s = std::chrono::duration<double>(bench::clock::now() - t0).count();
  const long rss_end = bench::rss_kib();
  const int fds_end = bench::open_fds();
  ::malloc_trim(0);
  const long rss_end_trimmed = bench::rss_kib();
  if (csv != nullptr) std::fclose(csv);

  const auto pool = harness::default_port_range();
  const auto ephemeral = harness::ephemeral_port_range();
  const double growth = rss_base > 0 ? 100.0 * static_cast<double>(rss_end - rss_base) / static_cast<double>(rss_base) : 0;
  const bool rss_ok = growth <= 5.0;
  const bool fds_ok = fds_end == fds_base;
  std::printf("sessions=%d\nwarmup=%d\nfailures=%d\nwall_s=%.1f\nrss_initial_kib=%ld\nrss_base_kib=%ld\n"
              "rss_end_kib=%ld\nrss_max_kib=%ld\nrss_growth_pct=%.2f\nfds_initial=%d\nfds_base=%d\nfds_end=%d\n"
              "rss_ok=%d\nfds_ok=%d\npool=%u-%u\nephemeral=%u-%u\nrss_base_trimmed_kib=%ld\n"
              "rss_end_trimmed_kib=%ld\n",
              sessions, warmup, failures, wall_s, rss_initial, rss_base, rss_end, rss_max, growth,
              fds_initial, fds_base, fds_end, rss_ok ? 1 : 0, fds_ok ? 1 : 0,
              pool ? unsigned{pool->first} : 0u, pool ? unsigned{pool->last} : 0u, unsigned{ephemeral.first},
              unsigned{ephemeral.last}, rss_base_trimmed, rss_end_trimmed);
  if (failures > 0) return 2;
  return rss_ok && fds_ok ? 0 : 1;
}
