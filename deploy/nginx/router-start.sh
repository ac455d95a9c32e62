#!/bin/sh
# router-start.sh — start the convd router in a container (Kubernetes, compose): render
# dns.conf.in into nginx's conf.d, check it, and exec nginx in the foreground.
#
# Runs in a stock nginx image (it needs only sh, awk and nginx); the Kubernetes ConfigMap
# or the compose bind mount puts it and the three config files in one directory.
# Environment (CONVD_ANY_NODE or CONVD_NODES, not both):
#   CONVD_ANY_NODE     a DNS name resolving to every ready node (Kubernetes: the headless
#                      Service's FQDN), looked up per request for new sessions
#   CONVD_NODES        the node names, space-separated (compose, where no one name
#                      resolves to every node): new sessions are spread over them
#   CONVD_NODE_SUFFIX  appended to a node's name to make its host name (Kubernetes:
#                      .SERVICE.NAMESPACE.svc.cluster.local; compose: empty)
#   CONVD_NODE_PORT    the port every node listens on (default 8080)
#   CONVD_ROUTER_LISTEN  nginx's listen (default 8080)
#   CONVD_RESOLVER     name servers for nginx (default: the nameserver lines of
#                      /etc/resolv.conf, which is what the cluster's DNS puts there)
#   CONVD_ROUTER_CONF  where the rendered config goes (default /etc/nginx/conf.d/default.conf,
#                      replacing the image's demo server)
# `router-start.sh --render` prints the config instead of starting nginx.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
any=${CONVD_ANY_NODE:-}
nodes=${CONVD_NODES:-}
suffix=${CONVD_NODE_SUFFIX:-}
port=${CONVD_NODE_PORT:-8080}
listen=${CONVD_ROUTER_LISTEN:-8080}
out=${CONVD_ROUTER_CONF:-/etc/nginx/conf.d/default.conf}

die() {
    echo "router-start.sh: $*" >&2
    exit 2
}

resolver=${CONVD_RESOLVER:-$(awk '$1 == "nameserver" { if ($2 ~ /:/) printf "[%s] ", $2; else printf "%s ", $2 }' /etc/resolv.conf 2>/dev/null || true)}
[ -n "${resolver% }" ] || die "no nameserver in /etc/resolv.conf; set CONVD_RESOLVER"
if [ -n "$any" ] && [ -n "$nodes" ]; then
    die "set CONVD_ANY_NODE or CONVD_NODES, not both"
elif [ -n "$any" ]; then
    printf '%s\n' "$any" | grep -Eqx '[a-z0-9.-]+' || die "CONVD_ANY_NODE '$any' is not a host name"
elif [ -z "$nodes" ]; then
    die "CONVD_ANY_NODE is not set (a DNS name that resolves to every node), nor CONVD_NODES (the node names)"
fi
for n in $nodes; do
    printf '%s\n' "$n" | grep -Eqx '[a-z0-9-]{1,40}' || die "CONVD_NODES: '$n' is not a node name ([a-z0-9-]{1,40})"
done
[ -z "$suffix" ] || printf '%s\n' "$suffix" | grep -Eqx '\.[a-z0-9.-]+' ||
    die "CONVD_NODE_SUFFIX '$suffix' must start with a dot (e.g. .convd-nodes.default.svc.cluster.local)"
printf '%s\n' "$port" | grep -Eqx '[0-9]{1,5}' || die "CONVD_NODE_PORT '$port' is not a port"
printf '%s\n' "$listen" | grep -Eqx '[0-9a-zA-Z.:]+|\[[0-9a-fA-F:]+\]:[0-9]+' || die "CONVD_ROUTER_LISTEN '$listen' is not a listen address"

# The any-node target and, with CONVD_NODES, the upstream that lists the nodes.
if [ -n "$any" ]; then
    any_target="$any:$port"
    any_upstream="# (new sessions: $any, looked up per request)"
else
    any_target=convd_any
    any_upstream="upstream convd_any {
    zone convd_any 64k;"
    for n in $nodes; do
        any_upstream="$any_upstream
    server $n$suffix:$port;"
    done
    any_upstream="$any_upstream
}"
fi

render() {
    echo "# Rendered by router-start.sh from dns.conf.in; edit that, not this file."
    RESOLVER=${resolver% } TARGET=$any_target UPSTREAM=$any_upstream SUFFIX=$suffix PORT=$port \
        LISTEN=$listen HERE=$here awk '
        /^[ \t]*include convd-[a-z]+\.conf;[ \t]*$/ {
            ind = $0; sub(/include.*/, "", ind)
            f = $2; sub(/;$/, "", f); f = ENVIRON["HERE"] "/" f
            while ((getline line < f) > 0) print (line == "" ? "" : ind line)
            close(f)
            next
        }
        $1 == "@ANY_UPSTREAM@" { print ENVIRON["UPSTREAM"]; next }
        {
            gsub(/@RESOLVER@/, ENVIRON["RESOLVER"]); gsub(/@ANY_TARGET@/, ENVIRON["TARGET"])
            gsub(/@NODE_SUFFIX@/, ENVIRON["SUFFIX"]); gsub(/@NODE_PORT@/, ENVIRON["PORT"])
            gsub(/@LISTEN@/, ENVIRON["LISTEN"]); print
        }
    ' "$here/dns.conf.in"
}

if [ "${1:-}" = --render ]; then
    render
    exit 0
fi
render >"$out"
nginx -t
exec nginx -g 'daemon off;'
