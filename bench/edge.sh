#!/bin/sh
# edge.sh — the edge's figures (issue 13), run by `make bench-http` after http.sh.
# Usage: bench/edge.sh CONVD_BIN [BASELINE_CONVD_BIN]
#   1. /healthz latency on new connections while every core computes (one wrk client per
#      core looping a ~0.3 s base64 forward): `bench edge=healthz_under_load ... p50_ms p99_ms`
#      (goal p99 < 10 ms);
#   2. the notebook pair (bench/notebook_pair.lua) at 2 and 8 connections, plain and over
#      TLS (a self-signed certificate made with openssl): `bench edge=notebook_pair ...`;
#   3. peak RSS of one nested-JSON forward per MB of its body (VmHWM growth / body MB, a
#      ~BENCH_JSON_MB MB body): `bench edge=json_peak ... per_body_mb=` (goal <= 8).
# With BASELINE_CONVD_BIN (e.g. a build of main), 1-3 run for it too in the same run and
# the notebook lines add ratio= (this build / baseline). Needs wrk, curl, python3, openssl.
set -eu
convd=${1:?usage: bench/edge.sh CONVD_BIN [BASELINE_CONVD_BIN]}
baseline=${2:-}
secs=${BENCH_SECONDS:-5}
json_mb=${BENCH_JSON_MB:-40}
here=$(cd "$(dirname "$0")" && pwd)
for tool in wrk curl python3 openssl; do
    command -v "$tool" >/dev/null || { echo "edge.sh: $tool is required" >&2; exit 1; }
done
cores=$(nproc)

. "$here/daemon.sh"

# The bodies: a ~0.3 s base64 forward, and a nested-JSON forward of ~json_mb MB.
python3 - "$tmp" "$json_mb" <<'PY'
import base64, json, random, struct, sys
tmp, mb = sys.argv[1], float(sys.argv[2])
def b64(shape, vals):
    n = 1
    for s in shape:
        n *= s
    raw = struct.pack("<%df" % n, *[vals(i) for i in range(n)])
    return {"shape": shape, "dtype": "float32", "base64": base64.b64encode(raw).decode()}
load = {"layer": {"W": b64([128, 128, 5, 5], lambda i: (i % 3) / 64), "bias": False},
        "x": b64([2, 128, 64, 64], lambda i: (i % 5) / 4), "output": "base64"}
open(tmp + "/load.json", "w").write(json.dumps(load))
# nested x (N,C,H,W) of 7-character numbers, with a 1x1 layer: the body is almost all x
c, h = 16, 64
n = max(1, int(mb * 1e6 / (c * h * h * 8)))
random.seed(1)
row = lambda: [round(random.uniform(-1, 1), 4) for _ in range(h)]
x = [[[row() for _ in range(h)] for _ in range(c)] for _ in range(n)]
body = {"layer": {"W": [[[[0.5]] for _ in range(c)]], "bias": False}, "x": x}
open(tmp + "/json.json", "w").write(json.dumps(body, separators=(",", ":")))
PY
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null

# healthz BIN NAME: p50/p99 of 200 /healthz on new connections under a full load.
healthz() {
    start_daemon "$1" http
    BODY=$tmp/load.json PATH_=/forward wrk -t"$cores" -c"$cores" -d"$((secs + 30))s" \
        --timeout 30s -s "$here/big_pair.lua" "$base/" >/dev/null 2>&1 &
    load=$!
    sleep 1
    i=0
    : >"$tmp/lat"
    while [ $i -lt 200 ]; do
        curl -s -o /dev/null -w '%{time_total}\n' "$base/healthz" >>"$tmp/lat"
        sleep 0.02
        i=$((i + 1))
    done
    kill "$load" 2>/dev/null || true
    wait "$load" 2>/dev/null || true
    stop_daemon
    sort -n "$tmp/lat" | awk -v name="$2" -v c="$cores" '
        { v[NR] = $1 * 1000 }
        END { printf "bench edge=healthz_under_load build=%s load_clients=%d probes=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
                     name, c, NR, v[int(NR * 0.5)], v[int(NR * 0.99)], v[NR] }'
}

# pair BIN NAME SCHEME ARGS...: notebook pair rps at 2 (2 wrk threads) and 8 (1) conns.
pair() {
    bin=$1 name=$2 scheme=$3
    shift 3
    start_daemon "$bin" "$scheme" "$@"
    sid=$(curl -s --cacert "$tmp/cert.pem" "$base/sessions" \
        -d '{"W":[[[0,0,0],[0,1,0],[0,-1,0]],[[0,0,0],[0,-1,1],[0,0,0]]]}' |
        sed -n 's/.*"session":"\([0-9a-f]*\)".*/\1/p')
    for ct in 2:2 8:1; do
        c=${ct%:*} t=${ct#*:}
        rps=$(SID=$sid wrk -t"$t" -c"$c" -d"${secs}s" -s "$here/notebook_pair.lua" "$base/" |
            awk '$1 == "Requests/sec:" { printf "%.0f", $2 }')
        echo "$name $scheme $c $rps" >>"$tmp/pairs"
        echo "bench edge=notebook_pair build=$name scheme=$scheme conns=$c rps=$rps"
    done
    stop_daemon
}

# json_peak BIN NAME: VmHWM growth of one nested-JSON forward, per MB of body.
json_peak() {
    start_daemon "$1" http
    before=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$pid/status")
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary "@$tmp/json.json" "$base/forward")
    after=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$pid/status")
    stop_daemon
    bytes=$(wc -c <"$tmp/json.json")
    awk -v b="$bytes" -v k0="$before" -v k1="$after" -v name="$2" -v code="$code" 'BEGIN {
        mb = b / 1e6; grow = (k1 - k0) * 1024 / 1e6
        printf "bench edge=json_peak build=%s status=%s body_mb=%.1f peak_growth_mb=%.0f per_body_mb=%.1f\n",
               name, code, mb, grow, grow / mb }'
}

: >"$tmp/pairs"
builds="this:$convd"
[ -n "$baseline" ] && builds="$builds baseline:$baseline"
for nb in $builds; do
    healthz "${nb#*:}" "${nb%%:*}"
done
for nb in $builds; do
    pair "${nb#*:}" "${nb%%:*}" http
done
pair "$convd" this https --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem"
if [ -n "$baseline" ]; then
    awk '{ r[$1 " " $2 " " $3] = $4 }
        END { for (c = 2; c <= 8; c += 6) if (r["baseline http " c] > 0)
            printf "bench edge=notebook_pair_ratio conns=%d this_over_baseline=%.2f\n", c,
                   r["this http " c] / r["baseline http " c] }' "$tmp/pairs"
fi
awk '{ r[$1 " " $2 " " $3] = $4 }
    END { for (c = 2; c <= 8; c += 6) if (r["this http " c] > 0)
        printf "bench edge=tls_over_plain conns=%d ratio=%.2f\n", c,
               r["this https " c] / r["this http " c] }' "$tmp/pairs"
for nb in $builds; do
    json_peak "${nb#*:}" "${nb%%:*}"
done
