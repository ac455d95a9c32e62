#!/bin/sh
# tsan.sh BUILD — runs the concurrency-relevant tests of a -fsanitize=thread build (`make
# tsan` builds BUILD=build/tsan): the core's layer tests (its own threads), the session
# store unit test, then the integration suites
# that run requests in parallel, on one session, across sessions, or during a drain, each
# against BUILD/convd (instrumented too), then TSAN_SOAK_MINUTES (default 0.5) of the soak's
# traffic (build/soak/soak) against that daemon. ThreadSanitizer reports from every process go to
# BUILD/logs/tsan.<pid>; any report fails the run, as does any failing test.
# scripts/tsan.supp ignores libc calls made from inside OpenBLAS (not instrumented; see the file).
# `tsan.sh --list` prints those test binaries (paths under BUILD), what `make tsan` builds.
set -u

# the core's own threads first (layers split by images, two layers at once), then the daemon
tests="tests/core/test_conv_random tests/core/test_layer tests/server/test_session"
for s in concurrency sessions lifecycle limits durable; do
    tests="$tests tests/integration/test_$s"
done
if [ "${1:-}" = --list ]; then
    echo "$tests"
    exit 0
fi

build=${1:-build/tsan}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
logdir="$top/$build/logs"
rm -rf "$logdir"
mkdir -p "$logdir"
export TSAN_OPTIONS="suppressions=$top/scripts/tsan.supp log_path=$logdir/tsan second_deadlock_stack=1 history_size=4 ${TSAN_EXTRA:-}"

passed=0
failed=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for t in $tests; do
    bin=$build/$t
    if [ ! -x "$bin" ]; then
        echo "== $bin: not built, skipped"
        continue
    fi
    echo "== $bin (ThreadSanitizer)"
    start=$(date +%s)
    CONVD_BIN="$top/$build/convd" CONVD_FIXTURES="$top/tests/fixtures" CMOCKA_MESSAGE_OUTPUT=stdout \
        "$bin" >"$out" 2>&1
    rc=$?
    p=$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test(s)\..*/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
    f=$(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test(s).*/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    [ "$f" -gt 0 ] && tail -60 "$out"
    echo "   $p passed, $f failed in $(($(date +%s) - start)) s"
    passed=$((passed + p))
    failed=$((failed + f))
done

# The soak's mixed traffic (6 client threads: sessions, churn, expiry, bad requests)
# against the instrumented daemon; RSS is not checked, TSan's shadow memory blurs it.
soak=$top/build/soak/soak
minutes=${TSAN_SOAK_MINUTES:-0.5}
if [ -x "$soak" ] && [ "$minutes" != 0 ]; then
    echo "== $soak $build/convd $minutes min (ThreadSanitizer daemon)"
    if SOAK_RSS_MAX_GROWTH=-1 "$soak" "$top/$build/convd" "$minutes" tests/fixtures >"$out" 2>&1; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
    grep -E '^(requests|valid|soak)' "$out"
fi

reports=0
for l in "$logdir"/tsan.*; do
    [ -f "$l" ] || continue
    n=$(grep -c '^WARNING: ThreadSanitizer' "$l")
    [ "$n" -eq 0 ] && continue
    reports=$((reports + n))
    echo "== $l: $n ThreadSanitizer reports; the first:"
    sed -n '/^WARNING: ThreadSanitizer/,/^SUMMARY/p' "$l" | head -60
done
echo "tsan: $reports ThreadSanitizer reports"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ] && [ "$reports" -eq 0 ]
