# daemon.sh — sourced by the bench scripts (http.sh, durable.sh, edge.sh): a temporary
# directory removed on exit, and starting and stopping one convd at a time.
# After sourcing: $tmp; start_daemon BIN SCHEME ARGS... runs BIN on a free loopback port
# (no config file, memory only unless ARGS say otherwise: later flags win) and sets $pid
# and $base (SCHEME://ADDR:PORT); stop_daemon stops it.
tmp=$(mktemp -d)
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

start_daemon() {
    bin=$1 scheme=$2
    shift 2
    rm -f "$tmp/convd.log" # a previous daemon's line must not be mistaken for this one's
    # no config file: a baseline build may not know this tree's keys
    "$bin" --config /dev/null --port 0 --log-level warn --state-dir= "$@" 2>"$tmp/convd.log" &
    pid=$!
    i=0
    while ! grep -q '^listening on ' "$tmp/convd.log" 2>/dev/null; do
        i=$((i + 1))
        if [ "$i" -gt 200 ] || ! kill -0 "$pid" 2>/dev/null; then
            cat "$tmp/convd.log" >&2
            echo "$(basename "$0"): convd did not start" >&2
            exit 1
        fi
        sleep 0.05
    done
    base="$scheme://$(sed -n 's/^listening on //p' "$tmp/convd.log" | head -n 1)"
}

stop_daemon() {
    kill "$pid" && wait "$pid" || true
    pid=""
}
