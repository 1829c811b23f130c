#!/bin/sh
# Installs the Debian packages duet needs to build, test and benchmark, if any are missing.
# Idempotent and quiet when everything is there. As root it runs apt-get; otherwise it prints
# the one command to run and fails.
#   tools/deps.sh          build and test dependencies
#   tools/deps.sh bench    also what `make bench` compares against (c-toxcore)
set -eu

pkgs="cmake make gcc pkg-config python3 clang libclang-rt-14-dev
libsodium-dev libuv1-dev libmsgpack-dev libsqlite3-dev libcmocka-dev libjansson-dev
libsndfile1-dev iproute2 tcpdump sox opus-tools lame man-db groff-base"
if [ "${1:-}" = bench ]; then
    pkgs="$pkgs libtoxcore-dev"
fi

missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "duet: missing Debian packages:$missing" >&2
    echo "duet: run this once, then try again:  sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "duet: installing Debian packages:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when an install without it fails (a fresh image has none).
# shellcheck disable=SC2086
if ! apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
