#!/bin/sh
# run.sh — run every test binary under each BUILD dir given (core, server, integration
# suites), each with its own build's convd, then the Python client's tests once (with the
# first BUILD's convd; tests/python/run.py, Debian's python3). One line per binary; a
# failing binary's whole output follows its line. The last line is the summary
# "N passed, M failed, K skipped" (cmocka's and the Python summaries summed; a binary that
# crashes or exits non-zero without a failure counted counts as one failure).
# Exit status: 0 only if nothing failed and at least one test ran.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
[ $# -gt 0 ] || set -- build

passed=0
failed=0
skipped=0
failed_names=""
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# cmocka_count WORD: the sum of cmocka's "[  WORD  ] N test(s)" lines in $log.
cmocka_count() {
    sed -n "s/^\[  $1 *\] \([0-9][0-9]*\) test(s).*/\1/p" "$log" | awk '{s+=$1} END {print s+0}'
}

# record NAME RC P F S: adds one binary's counts and prints its line (and its log on failure).
record() {
    f=$4
    [ "$2" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    passed=$((passed + $3))
    failed=$((failed + f))
    skipped=$((skipped + $5))
    line="$3 passed"
    [ "$f" -gt 0 ] && line="$line, $f failed"
    [ "$5" -gt 0 ] && line="$line, $5 skipped"
    if [ "$f" -gt 0 ]; then
        echo "FAIL $1: $line (exit status $2)"
        cat "$log"
        failed_names="$failed_names $1"
    else
        echo "ok   $1: $line"
    fi
}

for b in "$@"; do
    case "$b" in /*) convd=$b/convd ;; *) convd=$top/$b/convd ;; esac
    for suite in core server integration; do
        for t in "$b"/tests/"$suite"/test_*; do
            [ -x "$t" ] || continue
            case "$t" in *.o | *.d) continue ;; esac
            CONVD_BIN="$convd" CONVD_FIXTURES="$top/tests/fixtures" \
                CMOCKA_MESSAGE_OUTPUT=stdout ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" \
                "$t" >"$log" 2>&1
            rc=$?
            record "$t" "$rc" "$(cmocka_count PASSED)" "$(cmocka_count FAILED)" \
                "$(cmocka_count SKIPPED)"
        done
    done
done

# The Python client's tests, once, against the first build's daemon.
case "$1" in /*) convd=$1/convd ;; *) convd=$top/$1/convd ;; esac
CONVD_BIN="$convd" ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" PYTHONDONTWRITEBYTECODE=1 \
    "${CONVD_PYTHON:-/usr/bin/python3}" tests/python/run.py >"$log" 2>&1
rc=$?
summary='^python: \([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed, \([0-9][0-9]*\) skipped.*'
p=$(sed -n "s/$summary/\1/p" "$log")
record tests/python "$rc" "${p:-0}" "$(sed -n "s/$summary/\2/p" "$log" | grep . || echo 1)" \
    "$(sed -n "s/$summary/\3/p" "$log" | grep . || echo 0)"

[ -n "$failed_names" ] && echo "failing binaries:$failed_names"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
