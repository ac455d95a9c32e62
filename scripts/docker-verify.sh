#!/usr/bin/env bash
# docker-verify.sh — build the convd image and check it for real, with podman or docker.
#   1. build the image (podman: --format docker, which keeps the HEALTHCHECK), run it,
#      GET /healthz, then the notebook flow (README, api.md §7) against the container;
#   2. a second container: time from `run` to the first 200 on /healthz, the image's own
#      HEALTHCHECK, the user it runs as, and a clean exit 0 on SIGTERM;
#   3. the image size.
#
# Usage: scripts/docker-verify.sh                  (from anywhere; builds localhost/convd:latest)
#        scripts/docker-verify.sh --notebook URL   (only the notebook flow, against any daemon)
# Needs curl and python3 (scripts/deps.sh run) and podman or docker.
# Environment: CONVD_ENGINE=podman|docker (default: podman if installed, else docker),
# CONVD_IMAGE=tag to build, DOCKER_CHECK_RUNTIME=OCI runtime for podman. Where the
# workplace's ../shared/tools/docker-check.sh exists (or DOCKER_CHECK names it), podman
# step 1 goes through it: it builds from a local Debian base image, with no registry.
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

for tool in curl python3; do
    command -v "$tool" >/dev/null || { echo "docker-verify.sh: needs $tool (scripts/deps.sh run)" >&2; exit 1; }
done
if [ "${1:-}" = --notebook ]; then
    trap 'rm -rf "${tmp:-}"' EXIT
    notebook "${2:-${BASE_URL:-http://127.0.0.1:8080}}"
    exit
fi

engine=${CONVD_ENGINE:-}
if [ -z "$engine" ]; then
    if command -v podman >/dev/null; then engine=podman; else engine=docker; fi
fi
command -v "$engine" >/dev/null || { echo "docker-verify.sh: install podman or docker" >&2; exit 1; }
image=${CONVD_IMAGE:-localhost/convd:latest}
check=${DOCKER_CHECK:-$top/../shared/tools/docker-check.sh}
[ "$engine" = podman ] && [ -f "$check" ] || check=""
runtime=${DOCKER_CHECK_RUNTIME:-}
[ -n "$check" ] && runtime=${runtime:-runc}

# The container engine, quiet about podman 4.3's missing systemd (health-check timers;
# harmless, `podman healthcheck run` works).
eng() {
    if [ "$engine" = podman ]; then
        podman ${runtime:+--runtime "$runtime"} "$@" \
            2> >(grep -v 'unable to get systemd connection' >&2)
    else
        docker "$@"
    fi
}
P=(eng)
# Removes a container at once (podman would wait 10 s for it to stop).
rm_c() {
    if [ "$engine" = podman ]; then eng rm -f -t 3 "$@"; else eng rm -f "$@"; fi >/dev/null
}

run_args=(-d -p 127.0.0.1::8080)
if [ "$engine" = podman ]; then
    # podman's defaults exceed some hosts' hard limits (the ones docker-check.sh passes).
    nofile=$(ulimit -Hn); nproc=$(ulimit -Hu); pid_max=$(cat /proc/sys/kernel/pid_max)
    [ "$nofile" = unlimited ] && nofile=1048576
    [ "$nproc" = unlimited ] && nproc=$pid_max
    [ "$nproc" -gt "$pid_max" ] && nproc=$pid_max
    # The health timer is left off (it needs systemd); `podman healthcheck run` below runs
    # the image's HEALTHCHECK by hand.
    run_args+=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc"
        --health-interval=disable)
fi

cid=""
trap '[ -z "$cid" ] || rm_c "$cid" 2>/dev/null || true; rm -rf "${tmp:-}"' EXIT
# Prints the container's loopback address for port 8080.
addr_of() { "${P[@]}" port "$1" 8080/tcp | grep -m1 '^127\.0\.0\.1:'; }

if [ -n "$check" ]; then
    echo "== docker-check.sh (build, run, /healthz, notebook flow)"
    # Docker format keeps HEALTHCHECK (the OCI image format has no field for it).
    BUILDAH_FORMAT=docker DOCKER_CHECK_TAG=$image \
        DOCKER_CHECK_THEN="bash '$top/scripts/docker-verify.sh' --notebook" bash "$check" "$top"
else
    echo "== $engine build, run, /healthz, notebook flow"
    fmt=(); [ "$engine" = podman ] && fmt=(--format docker)
    "${P[@]}" build "${fmt[@]}" -t "$image" "$top"
    cid=$("${P[@]}" run "${run_args[@]}" "$image")
    base=http://$(addr_of "$cid")
    for _ in $(seq 300); do
        [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$base/healthz")" = 200 ] && break
        sleep 0.1
    done
    curl -sS -w '\n' "$base/healthz"
    notebook "$base"
    rm_c "$cid"
    cid=""
fi

echo "== start-to-ready (5 starts), HEALTHCHECK, user, SIGTERM"
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# Starts a container and prints "id total_ms run_ms": from `run` to the first 200 on
# /healthz, and how much of that `run` itself took (on failure: removes it and returns 1).
start_timed() {
    local t0 t1 port id
    t0=$(now_ms)
    id=$("${P[@]}" run "${run_args[@]}" "$image")
    t1=$(now_ms)
    port=$(addr_of "$id")
    until [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://$port/healthz")" = 200 ]; do
        if [ $(($(now_ms) - t0)) -ge 30000 ]; then
            "${P[@]}" logs "$id" >&2
            echo "not ready in 30 s" >&2
            rm_c "$id"
            return 1
        fi
        sleep 0.005
    done
    echo "$id $(($(now_ms) - t0)) $((t1 - t0))"
}
times=()
for i in 1 2 3 4 5; do
    [ -z "$cid" ] || rm_c "$cid"
    cid=""
    out=$(start_timed) || exit 1
    read -r cid total run <<<"$out"
    echo "start $i: ready $total ms after $engine run ($engine run itself: $run ms)"
    times+=("$total")
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
echo "start-to-ready: median $(sed -n 3p <<<"$sorted") ms over 5 starts" \
    "(min $(sed -n 1p <<<"$sorted"), max $(sed -n 5p <<<"$sorted"))"
echo "user: $("${P[@]}" inspect -f '{{.Config.User}}' "$cid")," \
    "uid in the container: $("${P[@]}" exec "$cid" id -u 2>/dev/null || echo '?')"
# docker runs the HEALTHCHECK on its own timer: wait for its verdict (start period 5 s,
# interval 10 s); podman's timer is off, so run the check once by hand.
healthy() {
    if [ "$engine" = podman ]; then
        "${P[@]}" healthcheck run "$1" >/dev/null
        return
    fi
    for _ in $(seq 40); do
        case $("${P[@]}" inspect -f '{{.State.Health.Status}}' "$1") in
        healthy) return 0 ;;
        unhealthy) return 1 ;;
        esac
        sleep 1
    done
    return 1
}
if healthy "$cid"; then
    echo "HEALTHCHECK (convd --healthcheck): healthy"
else
    echo "HEALTHCHECK (convd --healthcheck): FAILED"
    exit 1
fi
t3=$(now_ms)
"${P[@]}" stop -t 15 "$cid" >/dev/null
rc=$("${P[@]}" inspect -f '{{.State.ExitCode}}' "$cid")
echo "SIGTERM: exit status $rc after $(($(now_ms) - t3)) ms"
"${P[@]}" logs "$cid" 2>&1 | tail -n 5 | sed 's/^/  log: /'
[ "$rc" = 0 ] || { echo "expected exit status 0 on SIGTERM"; exit 1; }

echo "== image"
"${P[@]}" image inspect -f '{{.Size}}' "$image" | awk -v i="$image" '{printf "%s %.0f MB\n", i, $1 / 1e6}'
echo "docker-verify: OK"
