#!/bin/sh
# deps.sh — install the Debian packages convd needs, only those that are missing.
# Usage: scripts/deps.sh [build|run|test|bench|fuzz|torch|all]   (default: build)
# build: what `make` needs; run: plus what the README's commands use (curl, python3);
# test: plus the test libraries.
# Idempotent and silent when everything is present; uses sudo when not root.
# Downloads nothing but Debian packages.
set -eu

set_build="gcc make pkg-config libc6-dev libmicrohttpd-dev libcjson-dev libopenblas-dev libsqlite3-dev"
set_run="$set_build curl python3"
# the Python client's tests (tests/python): NumPy, PyTorch, scikit-learn's bundled digits,
# PyYAML for the OpenAPI document, setuptools + venv + pip for the offline install
set_python="python3 python3-numpy python3-torch python3-sklearn python3-yaml python3-setuptools python3-venv python3-pip"
# the deploy tests: nginx (the router), yamllint (+ python3-yaml) for the manifests,
# dnsmasq-base as a private DNS for the Kubernetes/compose router config
set_deploy="nginx yamllint python3-yaml dnsmasq-base"
set_test="$set_run libcmocka-dev libcurl4-openssl-dev openssl $set_python $set_deploy"
set_bench="$set_test wrk"
set_fuzz="$set_test clang libclang-rt-14-dev valgrind"
set_torch="python3 python3-torch"

case "${1:-build}" in
build) pkgs=$set_build ;;
run) pkgs=$set_run ;;
test) pkgs=$set_test ;;
bench) pkgs=$set_bench ;;
fuzz) pkgs=$set_fuzz ;;
torch) pkgs=$set_torch ;;
all) pkgs="$set_bench clang libclang-rt-14-dev valgrind" ;;
*) echo "deps.sh: unknown set '$1' (build|run|test|bench|fuzz|torch|all)" >&2; exit 2 ;;
esac

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "deps.sh: not a Debian system; install the equivalents of: $pkgs" >&2
    exit 0
fi

missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "deps.sh: need root or sudo to install:$missing" >&2
    exit 1
fi

echo "deps.sh: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
# shellcheck disable=SC2086
if ! $SUDO apt-get install -y -q --no-install-recommends $missing >"$log" 2>&1; then
    $SUDO apt-get update -q >>"$log" 2>&1 || true
    # shellcheck disable=SC2086
    if ! $SUDO apt-get install -y -q --no-install-recommends $missing >>"$log" 2>&1; then
        tail -n 30 "$log" >&2
        rm -f "$log"
        echo "deps.sh: apt-get install failed for:$missing" >&2
        exit 1
    fi
fi
rm -f "$log"
