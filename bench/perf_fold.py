#!/usr/bin/env python3
"""bench/perf_fold.py — where the CPU of a harness-bench run goes, by harness component.

    perf script -i perf.data | bench/perf_fold.py [--per N]

Reads `perf script` output of a `perf record -e cpu-clock --call-graph dwarf` run of
harness-bench (see bench/profile.sh) and puts every sample into the first category
whose marker appears anywhere in its call stack (the list is in priority order), so the
shares add up to 100%. With --per N, also prints milliseconds per unit of N (e.g. per
session) from the sampling frequency given with --freq.
"""
import argparse
import collections
import sys

CATEGORIES = [
    ("listener check: read /proc/net/tcp + tcp6 (procnet::listening_inodes)", "procnet::listening_inodes"),
    ("listener check: /proc/<pid>/fd (procnet::socket_inodes)", "procnet::socket_inodes"),
    ("/proc scan for the tree in process::stop (collect_marked)", "collect_marked"),
    ("/proc scan for the tree at ready (our_tree: find_tree / find_by_environ)", ("find_tree", "find_by_environ")),
    ("spawn: fork + child setup until exec (spawn_child)", "spawn_child"),
    ("lease acquire / release / note", "lease::"),
    ("tcp probe connects (net::try_connect)", "net::try_connect"),
    ("http probe (http_get)", "http_get"),
    ("harness I/O thread (pipes, log file, events)", "scheduler::run"),
    ("spec checks and regex compilation (regex::compile)", "regex::compile"),
    ("log file creation (open_log)", "open_log"),
    ("rest of session::try_start", "session::try_start"),
    ("rest of process::stop", "process::stop"),
    ("rest of session stop / destruction", "session::"),
    ("floor: posix_spawn, pipe, connect (no harness code)", "bm_floor"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--per", type=float, default=0, help="divide into this many units (e.g. sessions)")
    ap.add_argument("--freq", type=float, default=4000, help="perf record -F value")
    ap.add_argument("--comm", default="harness-bench", help="the runner's command name")
    args = ap.parse_args()
    counts = collections.Counter()
    total = 0
    comm, frames = None, []

    def flush():
        nonlocal total
        if comm is None:
            return
        total += 1
        if comm != args.comm:
            counts[f"process {comm} (the server under test, or another)"] += 1
            return
        for name, marker in CATEGORIES:
            markers = marker if isinstance(marker, tuple) else (marker,)
            if any(mk in f for f in frames for mk in markers):
                counts[name] += 1
                return
        counts["other runner CPU (benchmark loop, libc, kernel entry)"] += 1

    for line in sys.stdin:
        if not line.strip():
            flush()
            comm, frames = None, []
        elif not line[0].isspace():
            comm = line.split()[0]
        else:
            frames.append(line.strip())
    flush()
    if total == 0:
        print("no samples")
        return 1
    for name, n in counts.most_common():
        extra = f"  {n / args.freq * 1000 / args.per:7.2f} ms per unit" if args.per else ""
        print(f"{100.0 * n / total:5.1f}%{extra}  {name}")
    print(f"{total} samples" + (f", {total / args.freq * 1000 / args.per:.2f} ms CPU per unit" if args.per else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
