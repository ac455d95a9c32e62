#!/bin/sh
# run.sh — run every test binary under each BUILD dir given (core, server, integration
# suites), each with its own build's convd, then the Python client's tests once (with the
# first BUILD's convd; tests/python/run.py, Debian's python3). One line per binary; a
# failing binary's whole output follows its line. The last line is the summary
# "N passed, M failed, K skipped" (cmocka's and the Python summaries summed; a binary that
# crashes or exits non-zero without a failure counted counts as one failure).
# The core and server suites' binaries run TEST_JOBS at a time (default: the CPU count):
# they compute and compare, nothing they assert depends on timing. The integration
# binaries run one at a time, as before: they time requests, measure the daemon's RSS and
# give it every core. Lines come in the same order either way.
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
outs=$(mktemp -d)
trap 'rm -rf "$log" "$outs"' EXIT
jobs=${TEST_JOBS:-$(nproc 2>/dev/null || echo 1)}

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

# binaries SUITE...: the test binaries of build $b in those suites, in order.
binaries() {
    for suite in "$@"; do
        for t in "$b"/tests/"$suite"/test_*; do
            [ -x "$t" ] || continue
            case "$t" in *.o | *.d) continue ;; esac
            echo "$t"
        done
    done
}

# out_of BINARY: where a binary run by run_parallel leaves its output (.out) and status (.rc).
out_of() {
    echo "$outs/$(echo "$1" | tr / _)"
}

# run_parallel BINARY...: runs them $jobs at a time (xargs -P) and records each, in the
# order given, as soon as it and every one before it are done. A binary whose status never
# appears (xargs died) counts as failed.
run_parallel() {
    [ $# -gt 0 ] || return 0
    # shellcheck disable=SC2016
    printf '%s\n' "$@" | xargs -n 1 -P "$jobs" sh -c \
        'o="$0/$(echo "$1" | tr / _)"; "$1" >"$o.out" 2>&1; echo $? >"$o.tmp" && mv "$o.tmp" "$o.rc"' \
        "$outs" &
    xpid=$!
    for t in "$@"; do
        o=$(out_of "$t")
        while [ ! -f "$o.rc" ] && kill -0 "$xpid" 2>/dev/null; do
            sleep 0.2
        done
        rc=1
        [ -f "$o.rc" ] && rc=$(cat "$o.rc")
        cat "$o.out" >"$log" 2>/dev/null || : >"$log"
        record "$t" "$rc" "$(cmocka_count PASSED)" "$(cmocka_count FAILED)" \
            "$(cmocka_count SKIPPED)"
    done
    wait "$xpid"
}

export CONVD_FIXTURES="$top/tests/fixtures" CMOCKA_MESSAGE_OUTPUT=stdout
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
for b in "$@"; do
    case "$b" in /*) convd=$b/convd ;; *) convd=$top/$b/convd ;; esac
    export CONVD_BIN="$convd"
    # shellcheck disable=SC2046
    run_parallel $(binaries core server)
    for t in $(binaries integration); do
        "$t" >"$log" 2>&1
        rc=$?
        record "$t" "$rc" "$(cmocka_count PASSED)" "$(cmocka_count FAILED)" \
            "$(cmocka_count SKIPPED)"
    done
done

# The Python client's tests, once, against the first build's daemon.
case "$1" in /*) convd=$1/convd ;; *) convd=$top/$1/convd ;; esac
CONVD_BIN="$convd" PYTHONDONTWRITEBYTECODE=1 \
    "${CONVD_PYTHON:-/usr/bin/python3}" tests/python/run.py >"$log" 2>&1
rc=$?
summary='^python: \([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed, \([0-9][0-9]*\) skipped.*'
p=$(sed -n "s/$summary/\1/p" "$log")
record tests/python "$rc" "${p:-0}" "$(sed -n "s/$summary/\2/p" "$log" | grep . || echo 1)" \
    "$(sed -n "s/$summary/\3/p" "$log" | grep . || echo 0)"

[ -n "$failed_names" ] && echo "failing binaries:$failed_names"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
