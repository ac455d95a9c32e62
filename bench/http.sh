#!/bin/sh
# http.sh — HTTP benchmark of the convd daemon (run by `make bench-http`).
# Usage: bench/http.sh CONVD_BIN BENCH_CORE_BIN [BENCH_LOOPBACK_BIN]
#   1. the notebook's forward+backward pair on one session (bench/notebook_pair.lua): 2
#      connections from two wrk threads, then 8 from one and from two, ~10 s each
#      (BENCH_SECONDS), printing `bench http=notebook_pair conns=<n> wrk_threads=<t>
#      rps=<..> p50_ms=<..> p99_ms=<..>`;
#   2. forward and backward of an 8x64x56x56 float32 layer (64 filters, 3x3, pad 1) with
#      base64 tensors (bench/big_pair.lua; bodies generated with python3), printing the
#      mean time per request and per pair next to the pure compute time for the same shape
#      (`c_resnet_mid`) twice: bench_core's, run alone afterwards (core_ms), and the core's
#      time inside the daemon during those same requests, from /metrics
#      (daemon_compute_ms); the pair line adds overhead_ms and ratio against the latter.
#      With BENCH_LOOPBACK_BIN, bench_loopback's line comes first (one request's bytes there
#      and back over loopback TCP with no HTTP at all), and the pair line adds floor_ms
#      (twice its mean, as wrk's are means: forward and backward each move that much) and
#      floor_ratio, the ratio of a daemon that did nothing but compute and move the bytes.
# Needs wrk and curl; part 2 needs python3 (skipped with a note when it is missing).
set -eu
convd=${1:?usage: bench/http.sh CONVD_BIN BENCH_CORE_BIN [BENCH_LOOPBACK_BIN]}
core=${2:?usage: bench/http.sh CONVD_BIN BENCH_CORE_BIN [BENCH_LOOPBACK_BIN]}
loopback=${3:-}
secs=${BENCH_SECONDS:-10}
here=$(cd "$(dirname "$0")" && pwd)
for tool in wrk curl; do
    command -v "$tool" >/dev/null || { echo "http.sh: $tool is required" >&2; exit 1; }
done

. "$here/daemon.sh"

# wrk_stats FILE: "rps p50_ms p99_ms mean_ms" from wrk --latency output.
wrk_stats() {
    awk '
    function ms(v) {
        if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
        if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
        if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
        return v
    }
    $1 == "Latency" && mean == "" { mean = ms($2) }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    $1 == "Requests/sec:" { rps = $2 }
    END { printf "%.0f %.3f %.3f %.3f\n", rps, p50, p99, mean }' "$1"
}

# session_of JSON: the "session" field.
session_of() {
    sed -n 's/.*"session":"\([0-9a-f]*\)".*/\1/p'
}

# ---- 1. the notebook pair ----
start_daemon "$convd" http ${CONVD_BENCH_ARGS:-}
nb_fwd='{"layer":{"W":[[[0,0,0],[0,1,0],[0,-1,0]],[[0,0,0],[0,-1,1],[0,0,0]]]},"x":[[[[1,2,3,4],[5,6,7,8],[9,10,11,12],[13,14,15,16]]]]}'
SID=$(curl -sf "$base/forward" -H 'Content-Type: application/json' -d "$nb_fwd" | session_of)
[ -n "$SID" ] || { echo "http.sh: could not create the notebook session" >&2; exit 1; }
export SID
# wrk threads: at 2 connections, one each (a thread serving both would serialise their
# round trips); at 8, one thread, busy all the time, then wrk's default of two for
# comparison: with two, four busy threads share the two cores and the p99 shows the
# scheduler's time slices (README.md, "HTTP").
for run in "2 2" "1 8" "2 8"; do # "threads connections"
    threads=${run% *} conns=${run#* }
    wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s "$here/notebook_pair.lua" "$base/" \
        >"$tmp/wrk.txt"
    set -- $(wrk_stats "$tmp/wrk.txt")
    echo "bench http=notebook_pair conns=$conns wrk_threads=$threads rps=$1 p50_ms=$2 p99_ms=$3"
done
stop_daemon

# ---- 2. a ResNet-sized layer, base64 float32 ----
if ! command -v python3 >/dev/null; then
    echo "# http.sh: python3 not found: skipping the c_resnet_mid HTTP benchmark" >&2
    exit 0
fi
start_daemon "$convd" http ${CONVD_BENCH_ARGS:-}
layer='{"in_channels":64,"out_channels":64,"kernel_size":3,"padding":1,"dtype":"float32","init":{"scheme":"kaiming_uniform","seed":1}}'
SID=$(curl -sf "$base/sessions" -H 'Content-Type: application/json' -d "$layer" | session_of)
[ -n "$SID" ] || { echo "http.sh: could not create the c_resnet_mid session" >&2; exit 1; }
python3 - "$SID" "$tmp" <<'PY'
import base64, random, struct, sys
sid, out = sys.argv[1], sys.argv[2]
n = 8 * 64 * 56 * 56
rnd = random.Random(7)
def t(shape):
    raw = struct.pack("<%df" % n, *(rnd.uniform(-1, 1) for _ in range(n)))
    return '{"shape":%s,"dtype":"float32","base64":"%s"}' % (
        list(shape), base64.b64encode(raw).decode())
shape = [8, 64, 56, 56]
with open(out + "/fwd.json", "w") as f:
    f.write('{"session":"%s","x":%s}' % (sid, t(shape)))
with open(out + "/bwd.json", "w") as f:
    f.write('{"session":"%s","delta":%s}' % (sid, t(shape)))
PY
# compute_total: the daemon's convd_compute_seconds_total (its time inside the core).
compute_total() {
    curl -sf "$base/metrics" | awk '$1 == "convd_compute_seconds_total" { print $2 }'
}
# one forward first, so the backward has a cache
curl -sf -o /dev/null "$base/forward" -H 'Content-Type: application/json' --data-binary "@$tmp/fwd.json"
for pass in forward backward; do
    body=$tmp/fwd.json
    [ "$pass" = backward ] && body=$tmp/bwd.json
    c0=$(compute_total)
    BODY=$body PATH_=/$pass wrk -t1 -c1 -d"${secs}s" --timeout 30s --latency \
        -s "$here/big_pair.lua" "$base/" >"$tmp/wrk.txt"
    c1=$(compute_total)
    # the daemon's compute per request during these very requests (wrk's count of
    # completed requests; one cut off at the end adds under 1 %)
    n=$(awk '$2 == "requests" && $3 == "in" { print $1 }' "$tmp/wrk.txt")
    eval "daemon_$pass=$(awk -v a="$c0" -v b="$c1" -v n="${n:-0}" \
        'BEGIN { printf "%.3f", (n > 0 ? (b - a) * 1000 / n : 0) }')"
    if grep -qE '^ *(Non-2xx or 3xx responses|Socket errors):' "$tmp/wrk.txt"; then
        cat "$tmp/wrk.txt" >&2
        echo "http.sh: the c_resnet_mid $pass requests did not all succeed" >&2
        exit 1
    fi
    set -- $(wrk_stats "$tmp/wrk.txt")
    eval "http_$pass=$4"
done
stop_daemon
BENCH_SHAPES=c_resnet_mid "$core" >"$tmp/core.txt" 2>/dev/null
core_ms() {
    sed -n "s/^bench shape=c_resnet_mid dtype=float32 pass=$1 .* ms=\([0-9.]*\).*/\1/p" \
        "$tmp/core.txt" | head -n 1
}
# the daemon's /forward caches x, as bench_core's forward_cached does
core_f=$(core_ms forward_cached)
core_b=$(core_ms backward)
floor=0
# the floor is an extra: without it the pair line still prints, without floor_*
if [ -n "$loopback" ]; then
    if "$loopback" >"$tmp/loopback.txt"; then
        cat "$tmp/loopback.txt"
        floor=$(sed -n 's/.* mean_ms=\([0-9.]*\).*/\1/p' "$tmp/loopback.txt")
    else
        echo "# http.sh: $loopback failed: no loopback floor in this run" >&2
    fi
fi
# core_ms: bench_core alone, after the daemon stopped; daemon_compute_ms: the core's time
# inside the daemon for the same requests (same run, so the VM's drift cancels out).
awk -v hf="$http_forward" -v hb="$http_backward" -v cf="${core_f:-0}" -v cb="${core_b:-0}" \
    -v df="$daemon_forward" -v db="$daemon_backward" -v fl="${floor:-0}" \
    'BEGIN {
    f = "bench http=c_resnet_mid dtype=float32 form=base64 pass=%s ms=%.1f core_ms=%.1f daemon_compute_ms=%.1f"
    printf f "\n", "forward", hf, cf, df
    printf f "\n", "backward", hb, cb, db
    printf f " overhead_ms=%.1f ratio=%.2f", "pair", hf + hb, cf + cb, df + db, hf + hb - df - db, (df + db > 0 ? (hf + hb) / (df + db) : 0)
    if (fl > 0 && df + db > 0)
        printf " floor_ms=%.1f floor_ratio=%.2f", 2 * fl, (df + db + 2 * fl) / (df + db)
    printf "\n"
    }'
