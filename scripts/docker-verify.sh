#!/usr/bin/env bash
# docker-verify.sh — build the convd image and check it for real (needs root: podman).
#   1. ../shared/tools/docker-check.sh: podman build, run, GET /healthz, and then the
#      notebook flow (README, api.md §7) against the container with curl;
#   2. a second container: time from `podman run` to the first 200 on /healthz, the
#      image's own HEALTHCHECK, the user it runs as, and a clean exit 0 on SIGTERM;
#   3. the image size.
#
# Usage: scripts/docker-verify.sh                  (from anywhere; builds localhost/convd:latest)
#        scripts/docker-verify.sh --notebook URL   (only the notebook flow, against any daemon)
# Environment: DOCKER_CHECK=path to docker-check.sh, CONVD_IMAGE=tag to build.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
fixture=$top/tests/fixtures/notebook.json

# The notebook flow: inline forward (creates a session), backward on that session,
# every output compared with the fixture's true values; then the session is deleted.
notebook() {
    local base=${1%/} sid hdr
    tmp=$(mktemp -d)
    curl -sS -D "$tmp/h1" -o "$tmp/fwd" -w '%{http_code}\n' "$base/forward" \
        -d '{"layer":{"W":[[[0,0,0],[0,1,0],[0,-1,0]],[[0,0,0],[0,-1,1],[0,0,0]]]},
             "x":[[[[1,2,3,4],[5,6,7,8],[9,10,11,12],[13,14,15,16]]]]}' >"$tmp/c1"
    echo "POST /forward -> $(cat "$tmp/c1")"
    cat "$tmp/fwd"; echo
    sid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["session"])' "$tmp/fwd")
    hdr=$(tr -d '\r' <"$tmp/h1" | awk -F': ' 'tolower($1)=="x-session-id" {print $2}')
    [ "$hdr" = "$sid" ] || { echo "X-Session-Id header '$hdr' != body session '$sid'"; return 1; }
    curl -sS -o "$tmp/bwd" -w '%{http_code}\n' "$base/backward" \
        -d '{"session":"'"$sid"'","delta":[[[-4,-4],[10,11]],[[1,-7],[1,-11]]]}' >"$tmp/c2"
    echo "POST /backward -> $(cat "$tmp/c2")"
    cat "$tmp/bwd"; echo
    python3 - "$fixture" "$tmp/fwd" "$tmp/bwd" "$(cat "$tmp/c1")" "$(cat "$tmp/c2")" <<'EOF'
import json, sys
fx = json.load(open(sys.argv[1]))["expected"]
fwd, bwd = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
bad = []
if sys.argv[4] != "200" or sys.argv[5] != "200":
    bad.append(f"statuses {sys.argv[4]}, {sys.argv[5]} (want 200, 200)")
if fwd.get("y") != fx["y"]:
    bad.append(f"y = {fwd.get('y')}, want {fx['y']}")
for k in ("dx", "dW", "db"):
    if bwd.get(k) != fx[k]:
        bad.append(f"{k} = {bwd.get(k)}, want {fx[k]}")
if bwd.get("session") != fwd.get("session"):
    bad.append("backward answered for another session")
for b in bad:
    print("MISMATCH:", b)
print("notebook flow:", "FAIL" if bad else "OK (y, dx, dW, db equal the true values)")
sys.exit(1 if bad else 0)
EOF
    [ "$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE "$base/sessions/$sid")" = 204 ] \
        || { echo "DELETE /sessions/$sid did not answer 204"; return 1; }
    echo "DELETE /sessions/{id} -> 204"
}

if [ "${1:-}" = --notebook ]; then
    trap 'rm -rf "${tmp:-}"' EXIT
    notebook "${2:-${BASE_URL:-http://127.0.0.1:8080}}"
    exit
fi

[ "$(id -u)" -eq 0 ] || { echo "docker-verify.sh: run as root (rootful podman)" >&2; exit 1; }
check=${DOCKER_CHECK:-$top/../shared/tools/docker-check.sh}
image=${CONVD_IMAGE:-localhost/convd:latest}
# Docker format keeps HEALTHCHECK (the OCI image format has no field for it).
export BUILDAH_FORMAT=docker

echo "== docker-check.sh (build, run, /healthz, notebook flow)"
DOCKER_CHECK_TAG=$image DOCKER_CHECK_THEN="bash '$top/scripts/docker-verify.sh' --notebook" \
    bash "$check" "$top"

# The same ulimits docker-check.sh passes: podman's defaults exceed this host's hard limits.
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu); pid_max=$(cat /proc/sys/kernel/pid_max)
[ "$nofile" = unlimited ] && nofile=1048576
[ "$nproc" = unlimited ] && nproc=$pid_max
[ "$nproc" -gt "$pid_max" ] && nproc=$pid_max
# podman 4.3 wants systemd for health-check timers and logs an error without it (harmless:
# `podman healthcheck run` works); keep those lines out of the report.
pm() {
    podman --runtime "${DOCKER_CHECK_RUNTIME:-runc}" "$@" \
        2> >(grep -v 'unable to get systemd connection' >&2)
}
P=(pm)

echo "== start-to-ready (5 starts), HEALTHCHECK, user, SIGTERM"
now_ms() { echo $(($(date +%s%N) / 1000000)); }
cid=""
trap '[ -z "$cid" ] || "${P[@]}" rm -f -t 3 "$cid" >/dev/null 2>&1 || true' EXIT
# Starts a container and prints "id total_ms run_ms": from `podman run` to the first 200
# on /healthz, and how much of that `podman run` itself took (on failure: removes it and
# returns 1). The health timer is left off (this host has no systemd to run it);
# `podman healthcheck run` below runs the image's HEALTHCHECK by hand.
start_timed() {
    local t0 t1 port id
    t0=$(now_ms)
    id=$("${P[@]}" run -d --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc" \
        --health-interval=disable -p 127.0.0.1::8080 "$image")
    t1=$(now_ms)
    port=$(podman port "$id" 8080/tcp | head -n1)
    until [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://$port/healthz")" = 200 ]; do
        if [ $(($(now_ms) - t0)) -ge 30000 ]; then
            podman logs "$id" >&2
            echo "not ready in 30 s" >&2
            "${P[@]}" rm -f -t 3 "$id" >/dev/null
            return 1
        fi
        sleep 0.005
    done
    echo "$id $(($(now_ms) - t0)) $((t1 - t0))"
}
times=()
for i in 1 2 3 4 5; do
    [ -z "$cid" ] || "${P[@]}" rm -f -t 3 "$cid" >/dev/null
    cid=""
    out=$(start_timed) || exit 1
    read -r cid total run <<<"$out"
    echo "start $i: ready $total ms after podman run (podman run itself: $run ms)"
    times+=("$total")
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
echo "start-to-ready: median $(sed -n 3p <<<"$sorted") ms over 5 starts" \
    "(min $(sed -n 1p <<<"$sorted"), max $(sed -n 5p <<<"$sorted"))"
echo "user: $(podman inspect -f '{{.Config.User}}' "$cid")," \
    "uid in the container: $(podman exec "$cid" id -u 2>/dev/null || echo '?')"
if "${P[@]}" healthcheck run "$cid" >/dev/null; then
    echo "HEALTHCHECK (convd --healthcheck): healthy"
else
    echo "HEALTHCHECK (convd --healthcheck): FAILED"
    exit 1
fi
t3=$(now_ms)
"${P[@]}" stop -t 15 "$cid" >/dev/null
rc=$(podman inspect -f '{{.State.ExitCode}}' "$cid")
echo "SIGTERM: exit status $rc after $(($(now_ms) - t3)) ms"
podman logs "$cid" 2>&1 | tail -n 5 | sed 's/^/  log: /'
[ "$rc" = 0 ] || { echo "expected exit status 0 on SIGTERM"; exit 1; }

echo "== image"
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$image"
echo "docker-verify: OK"
