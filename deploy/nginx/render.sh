#!/bin/sh
# render.sh — print the router's nginx config for a fixed list of convd nodes.
#
#   deploy/nginx/render.sh LISTEN NAME=HOST:PORT [NAME=HOST:PORT]...
#
# LISTEN is what nginx's `listen` takes (8080, 127.0.0.1:8080, [::]:8080). Each NAME is a
# node's node_name ([a-z0-9-]{1,40}), HOST:PORT where that node listens. The output is
# static.conf.in with convd-map.conf and convd-proxy.conf inlined: one file, for
# /etc/nginx/conf.d/ (http context). deploy/cluster.sh uses it; so can an operator.
# Exit 0 with the config on stdout, or 2 with the reason on stderr.
set -eu

here=$(cd "$(dirname "$0")" && pwd)

usage() {
    echo "usage: render.sh LISTEN NAME=HOST:PORT [NAME=HOST:PORT]..." >&2
    exit 2
}
[ $# -ge 2 ] || usage
listen=$1
shift
case $listen in
'' | *[!0-9a-zA-Z.:\[\]]*) echo "render.sh: bad listen address '$listen'" >&2; exit 2 ;;
esac

nl='
'
upstreams=""
all=""
nodemap=""
seen=" "
for spec in "$@"; do
    name=${spec%%=*}
    addr=${spec#*=}
    if ! printf '%s\n' "$name" | grep -Eqx '[a-z0-9-]{1,40}'; then
        echo "render.sh: node name '$name' is not [a-z0-9-]{1,40} (it must be the node's node_name)" >&2
        exit 2
    fi
    if [ "$addr" = "$spec" ] || ! printf '%s\n' "$addr" | grep -Eqx '[A-Za-z0-9.-]+:[0-9]{1,5}|\[[0-9a-fA-F:.]+\]:[0-9]{1,5}'; then
        echo "render.sh: '$spec' is not NAME=HOST:PORT" >&2
        exit 2
    fi
    case $seen in *" $name "*) echo "render.sh: node '$name' is listed twice" >&2; exit 2 ;; esac
    seen="$seen$name "
    upstreams="${upstreams}upstream convd_$name {${nl}    server $addr;${nl}    keepalive 8;${nl}}${nl}"
    all="${all}    server $addr;${nl}"
    nodemap="${nodemap}    $name  convd_$name;${nl}"
done
upstreams="${upstreams}upstream convd_all {${nl}    zone convd_all 64k;${nl}${all}}"
nodemap=${nodemap%"$nl"}

# Inline the includes (indented like the include line), then fill in the @...@ lines.
# Values go through ENVIRON, not -v, so awk does not interpret backslashes in them.
echo "# Rendered by deploy/nginx/render.sh from static.conf.in; edit that, not this file."
LISTEN=$listen UPSTREAMS=$upstreams NODEMAP=$nodemap HERE=$here awk '
    /^[ \t]*include convd-[a-z]+\.conf;[ \t]*$/ {
        ind = $0; sub(/include.*/, "", ind)
        f = $2; sub(/;$/, "", f); f = ENVIRON["HERE"] "/" f
        while ((getline line < f) > 0) print (line == "" ? "" : ind line)
        close(f)
        next
    }
    $1 == "@UPSTREAMS@" { print ENVIRON["UPSTREAMS"]; next }
    $1 == "@NODE_MAP@" { print ENVIRON["NODEMAP"]; next }
    { gsub(/@LISTEN@/, ENVIRON["LISTEN"]); print }
' "$here/static.conf.in"
