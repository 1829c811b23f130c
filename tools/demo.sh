#!/usr/bin/env bash
# make demo: two devices on this machine, side by side, in a temporary folder that is
# removed at the end. Every step prints what a person would type.
set -euo pipefail
DUET=${1:-build/bin/duet}
[[ -x $DUET ]] || { echo "demo: build first (make)" >&2; exit 1; }
DUET=$(cd "$(dirname "$DUET")" && pwd)/$(basename "$DUET")
W=$(mktemp -d "${TMPDIR:-/tmp}/duet-demo.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT
export NO_COLOR=${NO_COLOR:-}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { local who=$1; shift; printf '%s$ duet %s\n' "$who" "$*"; "$DUET" --home "$W/$who" "$@"; }

step "Two devices on this machine: river and harbor"
run river init --name River
run harbor init --name Harbor

step "Notes written before the partners are even paired wait in the outbox"
run river note "Thinking of you before your appointment today."
printf 'Slept badly, but the walk helped.\nTalk tonight?\n' | run harbor note -
run river inbox
run harbor status
