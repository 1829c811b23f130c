# Helpers for the relay's integration tests (sourced; not a test itself: ctest runs only
# the scripts that call it). Everything runs on 127.0.0.1 in a fresh temporary folder.
set -euo pipefail
DUET=${DUET:-$PWD/build/bin/duet}
BIN=${DUET_BIN_DIR:-$(dirname "$DUET")}
RELAYC=$BIN/duet-relayc
[[ -x $DUET && -x $RELAYC ]] || { echo "relay tests: build first ($DUET, $RELAYC)" >&2; exit 1; }
W=$(mktemp -d "${TMPDIR:-/tmp}/duet-relay.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ -n ${KEEP:-} ]]; then echo "kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
fail() { echo "not ok - $*" >&2; echo "(logs in $W)" >&2; KEEP=1; exit 1; }
ok() { echo "ok - $*"; }

# relay_start NAME ARGS...: run `duet relay serve` on a free port with data in $W/NAME;
# sets RELAY_PID and RELAY_URL.
relay_start() {
    local name=$1 i line
    shift
    "$DUET" --json relay serve --listen 127.0.0.1:${RELAY_PORT:-0} --data "$W/$name" "$@" \
        >"$W/$name.out" 2>>"$W/$name.err" &
    RELAY_PID=$!
    PIDS+=("$RELAY_PID")
    for ((i = 0; i < 100; i++)); do
        line=$(grep -m1 '"listening"' "$W/$name.out" 2>/dev/null || true)
        if [[ -n $line ]]; then
            RELAY_URL=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["url"])' "$line")
            RELAY_PORT=${RELAY_URL#duet://127.0.0.1:}
            RELAY_PORT=${RELAY_PORT%%/*}
            return 0
        fi
        kill -0 "$RELAY_PID" 2>/dev/null || fail "relay $name did not start: $(cat "$W/$name.err")"
        sleep 0.05
    done
    fail "relay $name did not say listening"
}

# kv OUTPUT KEY: the value of KEY=... in duet-relayc's output.
kv() { sed -n "s/^$2=//p" <<<"$1" | tail -1; }

# alive: the relay answers a new client.
alive() {
    local out
    out=$("$RELAYC" "$RELAY_URL" hello) || fail "relay stopped answering ($1): $out"
}
