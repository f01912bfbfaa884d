#!/usr/bin/env bash
# bench/profile.sh — CPU profile of one harness-bench benchmark, folded by harness
# component (the evidence behind "Where the time goes" in bench/RESULTS.md).
#
#   bench/profile.sh 'start_stop/lease_tcp/' [iterations]    (after scripts/bench built it)
#
# Runs `perf record -e cpu-clock --call-graph dwarf` (a software clock: works in VMs
# without a PMU) on build-bench/bin/harness-bench with one repetition of the chosen
# benchmark, then bench/perf_fold.py. The figures are per iteration (the warm-up
# session is counted in, hence iterations + 1).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
filter="${1:?usage: bench/profile.sh BENCHMARK_REGEX [ITERATIONS]}"
iters="${2:-40}"
out="$root/build-bench/profile"
mkdir -p "$out"
export HARNESS_LOG_DIR="$out/logs"
perf record -q -e cpu-clock -F 4000 --call-graph dwarf,32768 -o "$out/perf.data" \
  "$root/build-bench/bin/harness-bench" --iters="$iters" --reps=1 --benchmark_filter="$filter"
perf script -i "$out/perf.data" 2>/dev/null |
  python3 "$root/bench/perf_fold.py" --freq 4000 --per "$((iters + 1))"
rm -rf "$out/logs" "$out/perf.data.old"
