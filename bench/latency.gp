# bench/latency.gp — latency distributions of one scripts/bench run, as CDFs.
#
#   gnuplot -e "dir='build-bench/bench-data/plot'; out='bench/latency.png'" bench/latency.gp
#
# Reads the "ms fraction" files that bench/report.py writes into `dir`.
if (!exists("dir")) dir = 'build-bench/bench-data/plot'
if (!exists("out")) out = 'bench/latency.png'

set terminal pngcairo size 1400,1700 font "DejaVu Sans,13" linewidth 1.5 noenhanced
set output out
set multiplot layout 3,1 title "serve-harness latency (CDF; x: milliseconds, log scale; y: fraction of samples ≤ x)" font ",16"

set logscale x 10
set grid xtics mxtics ytics lc rgb "#dddddd"
set yrange [0:1]
set ytics 0.1
set format y "%.1f"
set key outside right top vertical Left reverse noenhanced spacing 1.2 width -4
set xlabel "milliseconds"
set ylabel "fraction ≤ x"
set lmargin 10
set rmargin 52

file(s) = dir . '/' . s . '.cdf'
have(s) = system('test -s "' . file(s) . '" && echo 1 || echo 0') eq "1"

# Builds "plot" arguments from the series whose file exists and is not empty.
add(cmd, s, style) = have(s) ? cmd . (strlen(cmd) > 0 ? ", " : "") . "'" . file(s) . "' u 1:2 w l " . style : cmd

# --- 1. spawn -> ready ----------------------------------------------------------------
set title "spawn → ready: harness modes vs the posix_spawn floor (interleaved micro-benchmark)"
set xrange [0.3:100]
c = ""
c = add(c, 'floor', 'lw 4 lc rgb "#000000" title "floor: posix_spawn + pipe + connect"')
c = add(c, 'announce_fd', 'lw 2 lc rgb "#1f77b4" title "announce (ready fd)"')
c = add(c, 'announce_notify', 'lw 2 lc rgb "#17becf" dt 2 title "announce (notify)"')
c = add(c, 'announce_regex', 'lw 2 lc rgb "#9467bd" dt 4 title "announce (port_from regex)"')
c = add(c, 'inherit', 'lw 2 lc rgb "#2ca02c" title "inherit (+ announce)"')
c = add(c, 'lease_tcp', 'lw 2 lc rgb "#d62728" title "lease + tcp probe"')
c = add(c, 'lease_log', 'lw 2 lc rgb "#ff7f0e" dt 2 title "lease + log probe"')
c = add(c, 'lease_http', 'lw 2 lc rgb "#8c564b" dt 4 title "lease + http probe"')
if (strlen(c) > 0) { eval("plot " . c) } else { plot NaN notitle }

# --- 2. stop ----------------------------------------------------------------------------
set title "stop: session::stop() vs kill(SIGTERM) + waitpid"
set xrange [0.05:100]
c = ""
c = add(c, 'stop_floor', 'lw 4 lc rgb "#000000" title "floor: kill(SIGTERM) + waitpid"')
c = add(c, 'stop_coop', 'lw 2 lc rgb "#1f77b4" title "stop(), server honours SIGTERM"')
c = add(c, 'stop_ignore', 'lw 2 lc rgb "#d62728" title "stop(), SIGTERM ignored, minus 50 ms grace"')
if (strlen(c) > 0) { eval("plot " . c) } else { plot NaN notitle }

# --- 3. storm ---------------------------------------------------------------------------
set title "port storm: ready time under parallel load and ephemeral-port churn"
set xrange [0.3:1000]
c = ""
c = add(c, 'floor', 'lw 3 dt 3 lc rgb "#000000" title "floor (micro-benchmark above, for scale)"')
c = add(c, 'storm_harness', 'lw 2 lc rgb "#d62728" title "harness lease mode (storm)"')
c = add(c, 'storm_naive', 'lw 2 lc rgb "#7f7f7f" title "naive baseline: bind 0, close, pass (storm)"')
if (strlen(c) > 0) { eval("plot " . c) } else { plot NaN notitle }

unset multiplot
