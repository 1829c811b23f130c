# Helpers for duet's own integration tests (sourced). Like ../shared/acceptance/lib.sh, but
# part of this repository so the tests run on a clone without ../shared.
set -euo pipefail
DUET=${DUET:-$PWD/build/bin/duet}
[[ -x $DUET ]] || { echo "integration: no duet binary at $DUET" >&2; exit 1; }
W=$(mktemp -d "${TMPDIR:-/tmp}/duet-it.XXXXXX")
BG_PIDS=()
cleanup() {
    local p
    for p in "${BG_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ -n ${KEEP:-} ]]; then echo "kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
fail() { echo "not ok - $*" >&2; echo "(logs in $W)" >&2; KEEP=1; exit 1; }
ok() { echo "ok - $*"; }
d() { local h=$1; shift; ${BG_EXEC:-} "$DUET" --home "$W/$h" --json "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start() { local log=$1; shift; BG_EXEC="exec" "$@" >"$log" 2>&1 & BG=$!; BG_PIDS+=("$BG"); }
wait_event() {
    local log=$1 event=$2 limit=${3:-20} i
    for ((i = 0; i < limit * 20; i++)); do
        if grep -q "\"event\":\"$event\"" "$log" 2>/dev/null; then
            grep -m1 "\"event\":\"$event\"" "$log"; return 0
        fi
        sleep 0.05
    done
    return 1
}
jget() { python3 -c 'import json,sys; o=json.loads(sys.argv[1].strip().splitlines()[-1]); print(eval(sys.argv[2]))' "$1" "$2"; }
jlines() { python3 -c 'import json,sys; L=[json.loads(l) for l in sys.stdin if l.strip()]; print(eval(sys.argv[1]))' "$@"; }
pair_direct() {
    local a=$1 b=$2 port line code
    d "$a" init --name "$a" >/dev/null
    d "$b" init --name "$b" >/dev/null
    port=$(free_port)
    start "$W/pair-$a.log" d "$a" pair --listen "127.0.0.1:$port" --timeout 60
    line=$(wait_event "$W/pair-$a.log" code 20) || fail "pair: no code from $a"
    code=$(jget "$line" 'o["code"]')
    d "$b" pair "$code" --connect "127.0.0.1:$port" >"$W/pair-$b.log" || fail "pair: $b could not join"
    wait "$BG" || fail "pair: $a failed"
}
serve() {
    local a=$1 port=${2:-$(free_port)}
    start "$W/daemon-$a.log" d "$a" daemon --listen "127.0.0.1:$port" --no-lan
    wait_event "$W/daemon-$a.log" listening 20 >/dev/null || fail "daemon $a did not listen"
    ADDR=127.0.0.1:$port
    DAEMON=$BG
}
