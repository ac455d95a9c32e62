#!/bin/sh
# run.sh BUILD SECONDS TARGET... — replays fuzz/regressions/<target>/* with each fuzzer
# (every file once; a crash fails), then fuzzes each target for SECONDS from the seeds in
# fuzz/corpus/<target> plus a working corpus kept in BUILD/corpus/<target> (so repeated runs
# build on each other), with fuzz/<target>.dict. New crashes land in BUILD/artifacts/<target>/.
# FUZZ_TIMEOUT (default 90) is the seconds one input may take: the fuzz build compiles the
# SIMD kernel files at -O0 (Makefile, FUZZ_KERNEL_CFLAGS).
# Prints one line per target: executions, time, corpus size, crashes. Exit 1 on any failure.
set -u
build=$1
seconds=$2
shift 2
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1

# max_len per target: request bodies go up to the harness's 12000-byte body limit
max_len() {
    case $1 in
    fuzz_request) echo 16384 ;;
    *) echo 8192 ;;
    esac
}

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
status=0
summary=""
for t in "$@"; do
    bin=$build/$t
    [ -x "$bin" ] || { echo "fuzz: $bin is not built"; exit 1; }
    regs=$(find "fuzz/regressions/$t" -type f 2>/dev/null | sort)
    nreg=0
    if [ -n "$regs" ]; then
        nreg=$(echo "$regs" | wc -l)
        # shellcheck disable=SC2086
        if ! "$bin" -rss_limit_mb=2048 $regs >"$build/$t.replay.log" 2>&1; then
            echo "fuzz: $t FAILED replaying fuzz/regressions/$t:"
            grep -a -v '^    #' "$build/$t.replay.log" | tail -20
            status=1
            summary="$summary$t: FAILED replaying fuzz/regressions/$t (log $build/$t.replay.log)
"
            continue
        fi
    fi
    work=$build/corpus/$t
    art=$build/artifacts/$t
    mkdir -p "$work" "$art"
    dict=
    [ -f "fuzz/$t.dict" ] && dict="-dict=fuzz/$t.dict"
    log=$build/$t.log
    # shellcheck disable=SC2086
    "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout="${FUZZ_TIMEOUT:-90}" -max_len="$(max_len "$t")" \
        -print_final_stats=1 -artifact_prefix="$art/" $dict "$work" "fuzz/corpus/$t" \
        >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    corpus=$(find "$work" -type f | wc -l)
    crashes=$(find "$art" -type f | wc -l)
    line="$t: ${execs:-?} executions in ${secs:-?} s, corpus $corpus inputs, $nreg regressions replayed"
    if [ "$rc" -ne 0 ]; then
        line="$line, FAILED (exit $rc; $crashes artifacts in $art; log $log)"
        echo "fuzz: $t failed; the end of its log:"
        grep -v '^#' "$log" | tail -60
        status=1
    fi
    echo "$line"
    summary="$summary$line
"
done
printf '%s' "$summary" >"$build/summary.txt"
echo "== fuzz summary"
cat "$build/summary.txt"
exit $status
