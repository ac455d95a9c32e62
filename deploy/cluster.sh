#!/usr/bin/env bash
# cluster.sh — a convd cluster on this machine's loopback: N convd processes, each with its
# own state dir and node name, behind a private nginx that routes every session to its
# node (deploy/nginx/). The same shape as deploy/compose.yaml and deploy/k8s/, with
# processes instead of containers: for trying the cluster out and for its integration test.
#
#   deploy/cluster.sh up N          start nodes n1..nN and the router; prints
#                                     front URL
#                                     node NAME URL PID      (one line per node)
#   deploy/cluster.sh add [NAME]    one more node (default: the next nK), reloads the router,
#                                   prints its node line
#   deploy/cluster.sh restart NAME  stops NAME if it still runs, starts it again on its state
#                                   dir (e.g. after a kill -9), reloads the router, prints
#                                   its new node line
#   deploy/cluster.sh status        the front line and every node line (PID "-" if it is not
#                                   running)
#   deploy/cluster.sh down          stops every node (SIGTERM: they drain) and the router
#
# Environment:
#   CLUSTER_DIR   where everything lives (default ./var/cluster): cluster.state (what runs,
#                 on which ports, so the commands find each other), NAME/state (a node's
#                 state_dir), NAME/convd.log, nginx/ (the router's prefix: config, pid, logs,
#                 temp files). `down` keeps the state dirs: `up` again serves the same
#                 sessions.
#   CONVD_BIN     the daemon (default build/convd of this tree)
#   NGINX         the nginx binary (default: nginx from PATH, else /usr/sbin/nginx)
#   CLUSTER_PORT  the router's port (default: a free one in 20000-29999)
#   CLUSTER_CONVD_ARGS  extra flags for every node (word-split)
# Nodes listen on 127.0.0.1 on ports the kernel picks (--port 0); no root is needed. As
# root, the router's workers run as root too (see nginx/standalone.conf.in). Other CONVD_*
# variables reach the nodes as usual (flags set here win).
# Every wait is bounded: a node gets 20 s to print its listening line, a router reload
# 10 s to take effect, `down` 15 s for nodes to drain before they are killed.
# Exit status: 0 on success; 1 with the reason on stderr (nothing started is left running
# by a failed `up`).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
convd=${CONVD_BIN:-$top/build/convd}
nginx_bin=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}

die() {
    echo "cluster.sh: $*" >&2
    exit 1
}

mkdir -p "${CLUSTER_DIR:-./var/cluster}"
dir=$(cd "${CLUSTER_DIR:-./var/cluster}" && pwd)
state=$dir/cluster.state
ngx=$dir/nginx

# One command at a time per cluster directory (the nodes and nginx must not inherit fd 9,
# or the lock would outlive this command).
exec 9>"$dir/.lock"
flock -w 60 9 || die "another cluster.sh holds $dir/.lock for over 60 s"

front_port=""
names=()
declare -A port pid

state_read() {
    [ -f "$state" ] || return 1
    local kind a b c
    names=()
    while read -r kind a b c; do
        case $kind in
        front) front_port=$a ;;
        node)
            names+=("$a")
            port[$a]=$b
            pid[$a]=$c
            ;;
        esac
    done <"$state"
}

state_write() {
    local n
    {
        echo "front $front_port"
        for n in "${names[@]}"; do
            echo "node $n ${port[$n]} ${pid[$n]}"
        done
    } >"$state.tmp"
    mv "$state.tmp" "$state"
}

# Whether pid $1 is a live (not zombie) process whose command line names $2.
runs() {
    local p=$1 what=$2 st cmd
    [ -n "$p" ] && [ "$p" != - ] && kill -0 "$p" 2>/dev/null || return 1
    st=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) || return 1
    [ "$st" != Z ] || return 1
    cmd=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || return 1
    [[ $cmd == *"$what"* ]]
}

node_runs() {
    runs "${pid[$1]:-}" "$dir/$1/state"
}

nginx_pid() {
    cat "$ngx/nginx.pid" 2>/dev/null || true
}

nginx_runs() {
    runs "$(nginx_pid)" "$ngx/"
}

# Starts node $1 on its state dir; sets port[$1] and pid[$1].
start_node() {
    local n=$1 d=$dir/$1 p="" deadline
    mkdir -p "$d/state"
    [ ! -f "$d/convd.log" ] || mv -f "$d/convd.log" "$d/convd.log.prev"
    # shellcheck disable=SC2086
    setsid "$convd" --bind 127.0.0.1 --port 0 --state-dir "$d/state" --node-name "$n" \
        --max-connections-per-ip 0 ${CLUSTER_CONVD_ARGS:-} </dev/null >"$d/convd.log" 2>&1 9>&- &
    pid[$n]=$!
    deadline=$((SECONDS + 20))
    while [ $SECONDS -lt $deadline ]; do
        p=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p;T;q' "$d/convd.log" 2>/dev/null || true)
        [ -z "$p" ] || break
        kill -0 "${pid[$n]}" 2>/dev/null || break
        sleep 0.05
    done
    if [ -z "$p" ]; then
        kill -KILL "${pid[$n]}" 2>/dev/null || true
        echo "cluster.sh: node $n did not start; $d/convd.log says:" >&2
        tail -n 20 "$d/convd.log" >&2
        return 1
    fi
    port[$n]=$p
}

# SIGTERM, then up to $2 s for every pid in $1 (space-separated) to exit, then SIGKILL.
stop_pids() {
    local pids=$1 deadline=$((SECONDS + $2)) left p
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    while :; do
        left=""
        for p in $pids; do
            if kill -0 "$p" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ]; then
                left="$left $p"
            fi
        done
        [ -n "$left" ] || return 0
        [ $SECONDS -lt $deadline ] || break
        sleep 0.1
    done
    echo "cluster.sh: killing$left (still running after $2 s)" >&2
    for p in $left; do kill -KILL "$p" 2>/dev/null || true; done
}

# Renders the router's config for every node in the state (running or not: a node that is
# down answers 502 node_unreachable, as it would in production) and checks it.
render_router() {
    local specs=() n user="# (not root: workers run as the invoking user)"
    for n in "${names[@]}"; do specs+=("$n=127.0.0.1:${port[$n]}"); done
    [ "$(id -u)" -ne 0 ] || user="user root root;"
    mkdir -p "$ngx/logs" "$ngx/temp"
    "$top/deploy/nginx/render.sh" "127.0.0.1:$front_port" "${specs[@]}" >"$ngx/convd.conf.new" ||
        return 1
    mv "$ngx/convd.conf.new" "$ngx/convd.conf"
    sed -e "s#@PREFIX@#$ngx#g" -e "s%@USER@%$user%" "$top/deploy/nginx/standalone.conf.in" \
        >"$ngx/nginx.conf"
    "$nginx_bin" -t -q -p "$ngx/" -c "$ngx/nginx.conf" -e "$ngx/logs/error.log" ||
        die "the rendered router config $ngx/nginx.conf does not pass nginx -t"
}

# Until GET $1 answers 200 (at most $2 s).
wait_200() {
    local deadline=$((SECONDS + $2))
    while [ $SECONDS -lt $deadline ]; do
        curl -fsS -m 2 -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

start_router() {
    local tries=0 fixed=${CLUSTER_PORT:-}
    while :; do
        front_port=${fixed:-$((20000 + RANDOM % 10000))}
        render_router
        if "$nginx_bin" -p "$ngx/" -c "$ngx/nginx.conf" -e "$ngx/logs/error.log" \
            </dev/null >>"$ngx/logs/nginx.out" 2>&1 9>&-; then
            break
        fi
        tries=$((tries + 1))
        if [ -n "$fixed" ] || [ $tries -ge 20 ] ||
            [[ $(tail -n 5 "$ngx/logs/nginx.out") != *"Address already in use"* ]]; then
            tail -n 5 "$ngx/logs/nginx.out" >&2
            die "nginx did not start (its log: $ngx/logs/error.log)"
        fi
    done
    local deadline=$((SECONDS + 5))
    until nginx_runs; do
        [ $SECONDS -lt $deadline ] || die "nginx started but wrote no pid file $ngx/nginx.pid"
        sleep 0.05
    done
}

# The pids of nginx's workers (children of its master).
nginx_workers() {
    local m f pp
    m=$(nginx_pid)
    for f in /proc/[0-9]*/stat; do
        pp=$(awk '{print $4}' "$f" 2>/dev/null) || continue
        [ "$pp" != "$m" ] || { f=${f#/proc/}; echo "${f%/stat}"; }
    done
}

# Reload the router and wait until it routes to node $1 (a new node, or a node on a new
# port). A reload starts new workers, then tells the old ones to stop accepting; until
# they have, a new connection may still get the old config. So wait for every old worker
# to exit or to call itself "shutting down", then for the router to reach $1.
reload_router() {
    local old w deadline=$((SECONDS + 10)) cmd
    old=$(nginx_workers)
    render_router
    "$nginx_bin" -p "$ngx/" -c "$ngx/nginx.conf" -e "$ngx/logs/error.log" -s reload ||
        die "nginx -s reload failed (its log: $ngx/logs/error.log)"
    for w in $old; do
        while cmd=$(tr '\0' ' ' <"/proc/$w/cmdline" 2>/dev/null) && [ -n "$cmd" ] &&
            [[ $cmd != *"shutting down"* ]]; do
            [ $SECONDS -lt $deadline ] ||
                die "nginx's old worker $w still takes requests 10 s after the reload (its log: $ngx/logs/error.log)"
            sleep 0.02
        done
    done
    wait_200 "http://127.0.0.1:$front_port/nodes/$1/healthz" 10 ||
        die "the router does not reach node $1 10 s after the reload (its log: $ngx/logs/error.log)"
}

print_front() {
    echo "front http://127.0.0.1:$front_port"
}

print_node() {
    local p=-
    ! node_runs "$1" || p=${pid[$1]}
    echo "node $1 http://127.0.0.1:${port[$1]} $p"
}

require_cluster() {
    state_read || die "no cluster in $dir (run: cluster.sh up N)"
    nginx_runs || die "the router of $dir is not running (cluster.sh down, then up)"
}

valid_name() {
    printf '%s\n' "$1" | grep -Eqx '[a-z0-9-]{1,40}'
}

cmd_down() {
    state_read || {
        echo "cluster.sh: no cluster in $dir" >&2
        return 0
    }
    local pids="" n np
    for n in "${names[@]}"; do
        ! node_runs "$n" || pids="$pids ${pid[$n]}"
    done
    np=$(nginx_pid)
    if nginx_runs; then
        "$nginx_bin" -p "$ngx/" -c "$ngx/nginx.conf" -e "$ngx/logs/error.log" -s quit ||
            kill -TERM "$np" 2>/dev/null || true
        pids="$pids $np"
    fi
    stop_pids "$pids" 15
    rm -f "$state"
}

cmd_up() {
    local count=${1:-} i n
    printf '%s\n' "$count" | grep -Eqx '[1-9][0-9]?' || die "usage: cluster.sh up N (N = 1..99 nodes)"
    if state_read; then
        for n in "${names[@]}"; do
            ! node_runs "$n" || die "a cluster is running in $dir (cluster.sh down first)"
        done
        ! nginx_runs || die "a cluster is running in $dir (cluster.sh down first)"
        names=()
    fi
    command -v "$nginx_bin" >/dev/null || die "no nginx ($nginx_bin); install it: apt-get install nginx"
    [ -x "$convd" ] || die "no convd binary at $convd (make build/convd, or set CONVD_BIN)"
    # From here on a failure takes down whatever this command started.
    trap 'trap - EXIT; state_write 2>/dev/null; cmd_down' EXIT
    for i in $(seq 1 "$count"); do
        names+=("n$i")
        start_node "n$i" || exit 1
        state_write
    done
    start_router
    state_write
    wait_200 "http://127.0.0.1:$front_port/router/healthz" 10 || die "the router does not answer"
    for n in "${names[@]}"; do
        wait_200 "http://127.0.0.1:$front_port/nodes/$n/healthz" 10 ||
            die "the router does not reach node $n"
    done
    trap - EXIT
    print_front
    for n in "${names[@]}"; do print_node "$n"; done
}

cmd_add() {
    local n=${1:-} i=1
    require_cluster
    if [ -z "$n" ]; then
        while [ -n "${port[n$i]:-}" ]; do i=$((i + 1)); done
        n=n$i
    fi
    valid_name "$n" || die "node name '$n' is not [a-z0-9-]{1,40}"
    [ -z "${port[$n]:-}" ] || die "node $n is already in the cluster (cluster.sh restart $n?)"
    names+=("$n")
    start_node "$n" || exit 1
    state_write
    reload_router "$n"
    print_node "$n"
}

cmd_restart() {
    local n=${1:-}
    require_cluster
    if [ -z "$n" ] || [ -z "${port[$n]:-}" ]; then
        die "usage: cluster.sh restart NAME (a node of this cluster)"
    fi
    ! node_runs "$n" || stop_pids "${pid[$n]}" 15
    start_node "$n" || exit 1
    state_write
    reload_router "$n"
    print_node "$n"
}

cmd_status() {
    local n
    state_read || die "no cluster in $dir"
    print_front
    for n in "${names[@]}"; do print_node "$n"; done
}

case ${1:-} in
up) cmd_up "${2:-}" ;;
add) cmd_add "${2:-}" ;;
restart) cmd_restart "${2:-}" ;;
status) cmd_status ;;
down) cmd_down ;;
*) die "usage: cluster.sh up N | add [NAME] | restart NAME | status | down" ;;
esac
