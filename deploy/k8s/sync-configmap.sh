#!/bin/sh
# sync-configmap.sh — copy deploy/nginx's router files into router.yaml's ConfigMap.
#
# The ConfigMap carries convd-map.conf, convd-proxy.conf, dns.conf.in and router-start.sh
# as block scalars, byte for byte (test_deploy checks it). Run this after editing any of
# them; it rewrites the lines between `data:` and `# yamllint enable` of router.yaml.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
yaml=$here/router.yaml
tmp=$yaml.tmp

{
    sed -n '1,/^data:$/p' "$yaml"
    for f in convd-map.conf convd-proxy.conf dns.conf.in router-start.sh; do
        echo "  $f: |"
        sed -e 's/^/    /' -e 's/^ *$//' "$here/../nginx/$f"
    done
    sed -n '/^# yamllint enable/,$p' "$yaml"
} >"$tmp"
mv "$tmp" "$yaml"
