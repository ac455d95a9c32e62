#!/bin/sh
# run.sh — run every test binary under each BUILD dir given (core, server, integration
# suites), each with its own build's convd, and finish with one summary line
# "N passed, M failed" (cmocka's per-binary summaries are summed; a binary that crashes
# or exits non-zero without a cmocka summary counts as one failure).
# Exit status: 0 only if nothing failed and at least one test ran.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
[ $# -gt 0 ] || set -- build

passed=0
failed=0
failed_names=""
log=$(mktemp)
trap 'rm -f "$log"' EXIT

for b in "$@"; do
    for suite in core server integration; do
        for t in "$b"/tests/$suite/test_*; do
            [ -x "$t" ] || continue
            case "$t" in *.o | *.d) continue ;; esac
            echo "== $t"
            CONVD_BIN="$top/$b/convd" CONVD_FIXTURES="$top/tests/fixtures" \
                CMOCKA_MESSAGE_OUTPUT=stdout ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" \
                "$t" >"$log" 2>&1
            rc=$?
            cat "$log"
            p=$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test(s)\..*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
            f=$(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test(s).*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
            if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
                f=1
            fi
            passed=$((passed + p))
            failed=$((failed + f))
            [ "$f" -gt 0 ] && failed_names="$failed_names $t"
        done
    done
done

[ -n "$failed_names" ] && echo "failing binaries:$failed_names"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
