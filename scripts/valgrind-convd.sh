#!/bin/sh
# valgrind-convd.sh — convd under valgrind memcheck, for the integration tests.
#
#   CONVD_BIN=scripts/valgrind-convd.sh <integration test>
#       Runs as the daemon: execs valgrind on the real binary ($VG_CONVD_REAL, default
#       build/valgrind/convd) with every argument, logging to $VG_CONVD_LOGDIR/convd.<pid>.log
#       (default build/valgrind/logs). These variables are not CONVD_*, which the harness
#       strips from the daemon's environment. CONVD_DRAIN_TIMEOUT defaults to 120 s here
#       (VG_CONVD_DRAIN_TIMEOUT), as a request that takes 0.5 s natively takes ~25 s.
#   scripts/valgrind-convd.sh --run-suite BUILD
#       Runs every BUILD/tests/integration/test_* with this wrapper as the daemon, then
#       summarises the valgrind logs. Fails if a test fails or any log shows an error or a
#       definite/indirect leak. (`make valgrind` builds BUILD=build/valgrind and runs this.)
# Suppressions (scripts/valgrind.supp) are for third-party noise only, never for our code.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
self="$top/scripts/valgrind-convd.sh"

if [ "${1:-}" != "--run-suite" ]; then
    real=${VG_CONVD_REAL:-$top/build/valgrind/convd}
    logdir=${VG_CONVD_LOGDIR:-$top/build/valgrind/logs}
    mkdir -p "$logdir"
    # Everything runs 20-50x slower under memcheck: unless the test set one, give in-flight
    # requests a drain timeout that fits (a flag from the test still wins over this).
    CONVD_DRAIN_TIMEOUT=${CONVD_DRAIN_TIMEOUT:-${VG_CONVD_DRAIN_TIMEOUT:-120}}
    export CONVD_DRAIN_TIMEOUT
    exec valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect \
        --errors-for-leak-kinds=definite,indirect --error-exitcode=99 --track-origins=yes \
        --suppressions="$top/scripts/valgrind.supp" --log-file="$logdir/convd.%p.log" \
        "$real" "$@"
fi

build=${2:?usage: valgrind-convd.sh --run-suite BUILD}
cd "$top" || exit 1
logdir="$top/$build/logs"
rm -rf "$logdir"
mkdir -p "$logdir"
export VG_CONVD_REAL="$top/$build/convd" VG_CONVD_LOGDIR="$logdir"
passed=0
failed=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for t in "$build"/tests/integration/test_*; do
    case "$t" in *.o | *.d) continue ;; esac
    [ -x "$t" ] || continue
    echo "== $t (daemon under valgrind)"
    start=$(date +%s)
    CONVD_BIN="$self" CONVD_FIXTURES="$top/tests/fixtures" CMOCKA_MESSAGE_OUTPUT=stdout \
        "$t" >"$out" 2>&1
    rc=$?
    p=$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test(s)\..*/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
    f=$(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test(s).*/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    [ "$f" -gt 0 ] && cat "$out"
    echo "   $p passed, $f failed in $(($(date +%s) - start)) s"
    passed=$((passed + p))
    failed=$((failed + f))
done

# One valgrind log per daemon process (and per CLI run: --help, --version, healthcheck).
logs=0
bad=0
for l in "$logdir"/convd.*.log; do
    [ -f "$l" ] || continue
    logs=$((logs + 1))
    errs=$(sed -n 's/.*ERROR SUMMARY: \([0-9][0-9]*\) errors.*/\1/p' "$l" | tail -1)
    if [ -z "$errs" ]; then
        # no summary: the process was SIGKILLed (a test's deliberate kill) or is still running
        continue
    fi
    def=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$l" | tail -1 | tr -d ,)
    ind=$(sed -n 's/.*indirectly lost: \([0-9,]*\) bytes.*/\1/p' "$l" | tail -1 | tr -d ,)
    if [ "$errs" -ne 0 ] || [ "${def:-0}" -ne 0 ] || [ "${ind:-0}" -ne 0 ]; then
        bad=$((bad + 1))
        echo "== valgrind: $l: $errs errors, definitely lost ${def:-0} B, indirectly lost ${ind:-0} B"
        sed -n '/^==[0-9]*== [A-Z].*\(Invalid\|uninitialised\|Mismatched\|definitely\|indirectly\|overlap\|Syscall\)/,/^==[0-9]*== $/p' "$l" | head -80
    fi
done
unfinished=$(grep -L "ERROR SUMMARY" "$logdir"/convd.*.log 2>/dev/null | wc -l)
echo "valgrind: $logs daemon/CLI runs, $bad with errors or leaks, $unfinished without a summary (killed)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ] && [ "$bad" -eq 0 ]
