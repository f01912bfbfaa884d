# scripts/lib/ctest-suite.sh — the parts scripts/test and scripts/sanitize share: reusing
# a build directory, running ctest with a JUnit report, and the "N passed, N failed"
# summary with its exit status. Sourced, not run. The sourcing script defines
# script_name (the prefix of its messages, e.g. "test") and say().

# Prints the summary line and exits; used for failures before any test ran.
fail_before_tests() {
  printf '%s: error: %s\n' "$script_name" "$1" >&2
  echo "0 passed, 1 failed"
  exit 1
}

# A build directory configured with another generator, or for a source tree at another
# path (the repository was moved or copied with its build directory), cannot be reused
# by the next configure. Drops only the cache (not the build outputs) so it starts clean.
#   drop_stale_cache <repo> <build dir>
drop_stale_cache() {
  local repo="$1" build_dir="$2"
  if [[ -f "$build_dir/CMakeCache.txt" ]] \
     && ! { grep -qx 'CMAKE_GENERATOR:INTERNAL=Ninja' "$build_dir/CMakeCache.txt" \
            && grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$repo" "$build_dir/CMakeCache.txt"; }; then
    say "$(basename "$build_dir")/ was configured differently (another generator or source path); starting its cache afresh"
    rm -rf "$build_dir/CMakeCache.txt" "$build_dir/CMakeFiles"
  fi
}

# Runs ctest over <build dir> (-j2, output on failure, a JUnit report under
# <build dir>/Testing/<name>-junit.xml) and counts the results into the globals
# ctest_rc, passed, failed, skipped, disabled and count_source.
#   run_ctest_counted <build dir> <name> [ctest args...]
#
# Counts come from the JUnit report: status="run" passed, "fail" failed, "notrun"
# failed unless it was a skip (SKIP_RETURN_CODE / SKIP_REGULAR_EXPRESSION, e.g.
# GTEST_SKIP), "disabled" is neither. When there is no usable report (ctest crashed, or a
# ctest argument such as -N prevented one) they come from ctest's own summary line.
run_ctest_counted() {
  local build_dir="$1" name="$2"
  shift 2
  local junit="$build_dir/Testing/$name-junit.xml"
  local ctest_log="$build_dir/Testing/$name-ctest.log"
  mkdir -p "$build_dir/Testing"
  rm -f "$junit" "$ctest_log"

  set +e
  ctest --test-dir "$build_dir" --output-on-failure -j2 --no-tests=error \
    --output-junit "$junit" "$@" 2>&1 | tee "$ctest_log"
  ctest_rc=${PIPESTATUS[0]}
  set -e

  local counts
  counts="$(python3 - "$junit" "$ctest_log" <<'PY' || true
import re, sys
import xml.etree.ElementTree as ET

junit, log = sys.argv[1], sys.argv[2]
try:
    passed = failed = skipped = disabled = 0
    for case in ET.parse(junit).getroot().iter("testcase"):
        status = case.get("status", "")
        if status == "run":
            passed += 1
        elif status == "disabled":
            disabled += 1
        elif status == "notrun":
            skip = case.find("skipped")
            reason = skip.get("message", "") if skip is not None else ""
            if reason.startswith("SKIP_"):
                skipped += 1
            else:
                failed += 1
        else:
            failed += 1
    print(passed, failed, skipped, disabled, "junit")
except Exception:
    text = open(log, errors="replace").read() if log else ""
    m = re.findall(r"(\d+)% tests passed, (\d+) tests? failed out of (\d+)", text)
    if m:
        _, bad, total = (int(x) for x in m[-1])
        print(total - bad, bad, 0, 0, "summary")
    else:
        print(0, 0, 0, 0, "none")
PY
)"
  read -r passed failed skipped disabled count_source <<<"${counts:-0 0 0 0 none}"
}

# After run_ctest_counted (and whatever the caller added to `failed`): prints the
# skipped/disabled line and "N passed, N failed", and exits non-zero when a test failed
# or did not run, when no result was found, or when ctest itself failed.
print_summary_and_exit() {
  local status=0
  if [[ "$count_source" == none ]]; then
    say "could not find test results (no JUnit report and no ctest summary)"
    failed=$((failed + 1))
  fi
  if ((skipped > 0 || disabled > 0)); then
    say "$skipped skipped, $disabled disabled"
  fi
  if ((ctest_rc != 0 && failed == 0)); then
    # ctest failed without a failing test: no test matched, a bad argument, ...
    say "ctest exited with status $ctest_rc"
    failed=1
  fi
  ((failed == 0)) || status=1
  echo "$passed passed, $failed failed"
  exit "$status"
}
