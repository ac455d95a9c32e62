#!/bin/sh
# durable.sh — what a state_dir costs, measured in one run against the memory-only daemon
# (docs/performance.md, "Durable sessions"): the notebook forward+backward pair's
# requests/s, the p50 of an SGD step (lr) on the notebook layer and on a c_resnet_mid-sized
# layer (W of 147 KB float32, a 1x64x8x8 input so the write dominates), and the RSS of 5,000
# idle sessions after one small forward each.
# Usage: bench/durable.sh CONVD_BIN     Env: BENCH_SECONDS (default 5 per figure)
set -eu
convd=${1:?usage: bench/durable.sh CONVD_BIN}
here=$(cd "$(dirname "$0")" && pwd)
secs=${BENCH_SECONDS:-5}
. "$here/daemon.sh"

# start MODE [ARGS...]: MODE memory or disk (a fresh state dir); sets pid and base.
start() {
    mode=$1
    shift
    rm -rf "$tmp/state"
    dir=
    [ "$mode" = disk ] && dir=$tmp/state
    start_daemon "$convd" http --state-dir="$dir" "$@"
}
stop() { stop_daemon; }
post() { # PATH BODY → answer
    curl -sf "$base$1" -H 'Content-Type: application/json' --data-binary "$2"
}
sid_of() { sed -n 's/.*"session":"\([^"]*\)".*/\1/p'; }
# wrk_line FILE → "rps p50_ms"
wrk_line() {
    awk 'function ms(v) { if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
                          if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
                          if (v ~ /s$/) { sub(/s$/, "", v); return v * 1000 } return v }
         $1 == "50%" { p50 = ms($2) } $1 == "Requests/sec:" { rps = $2 }
         END { printf "%.0f %.3f\n", rps, p50 }' "$1"
}
check_ok() {
    if grep -qE '^ *(Non-2xx or 3xx responses|Socket errors):' "$1"; then
        cat "$1" >&2
        echo "durable.sh: requests failed" >&2
        exit 1
    fi
}

nb_fwd='{"layer":{"W":[[[0,0,0],[0,1,0],[0,-1,0]],[[0,0,0],[0,-1,1],[0,0,0]]]},"x":[[[[1,2,3,4],[5,6,7,8],[9,10,11,12],[13,14,15,16]]]]}'
nb_delta='[[[-4,-4],[10,11]],[[1,-7],[1,-11]]]'

# 1. the notebook pair (8 connections, one wrk thread), memory then disk, twice
for rep in 1 2; do
    for mode in memory disk; do
        start "$mode"
        SID=$(post /forward "$nb_fwd" | sid_of)
        export SID
        wrk -t1 -c8 -d"${secs}s" --latency -s "$here/notebook_pair.lua" "$base/" >"$tmp/wrk.txt"
        check_ok "$tmp/wrk.txt"
        set -- $(wrk_line "$tmp/wrk.txt")
        eval "pair_${mode}_$rep=$1"
        stop
    done
done
awk -v m1="$pair_memory_1" -v m2="$pair_memory_2" -v d1="$pair_disk_1" -v d2="$pair_disk_2" \
    'BEGIN { m = (m1 + m2) / 2; d = (d1 + d2) / 2
             printf "bench durable=notebook_pair conns=8 memory_rps=%.0f state_dir_rps=%.0f ratio=%.3f\n", m, d, d / m }'

# 2. SGD steps, one connection: p50 with and without a state dir
python3 - "$tmp" <<'PY'
import base64, random, struct, sys
out = sys.argv[1]
rnd = random.Random(3)
def t(shape):
    n = 1
    for s in shape:
        n *= s
    raw = struct.pack("<%df" % n, *(rnd.uniform(-1, 1) for _ in range(n)))
    return '{"shape":%s,"dtype":"float32","base64":"%s"}' % (list(shape), base64.b64encode(raw).decode())
open(out + "/rx.json", "w").write(t([1, 64, 8, 8]))
open(out + "/rd.json", "w").write(t([1, 64, 8, 8]))
PY
step() { # NAME LAYER X DELTA LR
    name=$1 layer=$2 x=$3 delta=$4 lr=$5
    for mode in memory disk; do
        start "$mode"
        SID=$(post /sessions "$layer" | sid_of)
        post /forward "{\"session\":\"$SID\",\"x\":$x}" >/dev/null
        printf '{"session":"%s","delta":%s,"lr":%s}' "$SID" "$delta" "$lr" >"$tmp/step.json"
        BODY=$tmp/step.json PATH_=/backward wrk -t1 -c1 -d"${secs}s" --latency \
            -s "$here/big_pair.lua" "$base/" >"$tmp/wrk.txt"
        check_ok "$tmp/wrk.txt"
        p50=$(wrk_line "$tmp/wrk.txt" | cut -d' ' -f2)
        eval "step_${mode}=$p50"
        stop
    done
    awk -v n="$name" -v m="$step_memory" -v d="$step_disk" \
        'BEGIN { printf "bench durable=sgd_step layer=%s memory_p50_ms=%.3f state_dir_p50_ms=%.3f added_ms=%.3f\n", n, m, d, d - m }'
}
step notebook '{"W":[[[0,0,0],[0,1,0],[0,-1,0]],[[0,0,0],[0,-1,1],[0,0,0]]]}' \
    '[[[[1,2,3,4],[5,6,7,8],[9,10,11,12],[13,14,15,16]]]]' "$nb_delta" 1e-6
step c_resnet_mid_w147kb \
    '{"in_channels":64,"out_channels":64,"kernel_size":3,"padding":1,"dtype":"float32","init":{"scheme":"kaiming_uniform","seed":1}}' \
    "$(cat "$tmp/rx.json")" "$(cat "$tmp/rd.json")" 1e-6

# 3. RSS of 5,000 idle sessions, each a c_resnet_mid-sized layer (W 147 KB float32) after
# one 1x64x8x8 forward: once the reaper has trimmed their workspaces (memory, disk), and on
# a disk daemon with persist_inputs, whose idle sessions leave memory after half the idle
# timeout (measured when the last one has been idle that long; the timeout is long enough
# for the first not to expire by then).
rss() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status"; }
make_sessions() {
    python3 - "$base" "$tmp/rx.json" <<'PY'
import http.client, sys, time, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
x = open(sys.argv[2]).read()
c = http.client.HTTPConnection(u.hostname, u.port)
body = ('{"layer":{"in_channels":64,"out_channels":64,"kernel_size":3,"padding":1,'
        '"dtype":"float32","init":{"scheme":"kaiming_uniform","seed":1}},"x":%s}' % x)
t0 = time.time()
for i in range(5000):
    c.request("POST", "/forward", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
print("%.1f" % (time.time() - t0))
PY
}
for run in memory disk unloaded; do
    case $run in
    unloaded) start disk --max-sessions 6000 --idle-timeout 50 --persist-inputs true ;;
    *) start "$run" --max-sessions 6000 ;;
    esac
    r0=$(rss)
    took=$(make_sessions)
    r1=$(rss)
    wait_s=3
    [ "$run" = unloaded ] && wait_s=28
    sleep "$wait_s"
    r2=$(rss)
    stop
    echo "bench durable=idle_sessions mode=$run sessions=5000 create_s=$took rss_empty_mb=$((r0 / 1024)) rss_busy_mb=$((r1 / 1024)) rss_idle_mb=$((r2 / 1024)) per_session_kb=$(((r2 - r0) / 5000))"
done
