#!/bin/sh
# run.sh — run every test binary under each BUILD dir given (core, server, integration
# suites), each with its own build's convd, then the Python client's tests once (with the
# first BUILD's convd; tests/python/run.py, Debian's python3), and finish with one summary
# line "N passed, M failed" (cmocka's per-binary summaries and the Python summary are
# summed; a binary that crashes or exits non-zero without a summary counts as one failure).
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

# Skipped Python tests (features a daemon does not have yet) count neither way.
py=${CONVD_PYTHON:-/usr/bin/python3}
echo "== tests/python (with $1/convd)"
CONVD_BIN="$top/$1/convd" ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" PYTHONDONTWRITEBYTECODE=1 \
    "$py" tests/python/run.py >"$log" 2>&1
rc=$?
cat "$log"
summary='^python: \([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed.*'
p=$(sed -n "s/$summary/\1/p" "$log")
f=$(sed -n "s/$summary/\2/p" "$log")
if [ -z "$p" ]; then
    p=0
    f=1
elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1
fi
passed=$((passed + p))
failed=$((failed + f))
[ "$f" -gt 0 ] && failed_names="$failed_names tests/python"

[ -n "$failed_names" ] && echo "failing binaries:$failed_names"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
