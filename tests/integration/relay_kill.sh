#!/usr/bin/env bash
# SIGKILL of the relay in the middle of real syncs (the duet CLI, real stores): while a
# uploads 400 notes and while b downloads them, the relay is killed and restarted, several
# times. In the end b holds each of a's notes exactly once, in order, and a sees them all
# delivered: nothing the relay acknowledged was lost, nothing reached b's inbox twice.
. "$(dirname "$0")/lib/relay.sh"
export NO_COLOR=1
d() { local home=$1; shift; "$DUET" --home "$W/$home" --json "$@"; }

relay_start r
d a init --name a >/dev/null
d b init --name b >/dev/null
d a pair --relay "$RELAY_URL" --timeout 60 >"$W/pair-a.log" 2>&1 &
pa=$!
PIDS+=("$pa")
for ((i = 0; i < 100; i++)); do grep -q "\"code\"" "$W/pair-a.log" 2>/dev/null && break; sleep 0.1; done
code=$(sed -n 's/.*"code":"\([^"]*\)".*/\1/p' "$W/pair-a.log")
[[ -n $code ]] || fail "no code"
d b pair "$code" --relay "$RELAY_URL" >/dev/null || fail "pairing"
wait "$pa" || fail "pairing (a)"

n=400
for i in $(seq 1 $n); do printf 'kill-test note %03d' "$i" | d a note - >/dev/null; done

# kill_during HOME GROWTH: start HOME's sync, SIGKILL the relay once its write-ahead log has
# grown by GROWTH bytes (the sync is then moving envelopes), restart it; counts the syncs the
# kill cut short in CUT_<HOME>.
CUT_a=0 CUT_b=0
kill_during() {
    local wal=$W/r/relay.db-wal start rc=0 i
    start=$(stat -c %s "$wal" 2>/dev/null || echo 0)
    d "$1" sync --relay "$RELAY_URL" --timeout 20 >"$W/sync.out" 2>&1 &
    local s=$!
    for ((i = 0; i < 4000; i++)); do
        (( $(stat -c %s "$wal" 2>/dev/null || echo 0) > start + $2 )) && break
        kill -0 "$s" 2>/dev/null || break
        sleep 0.002
    done
    kill -KILL "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null || true
    wait "$s" 2>/dev/null || rc=$?
    (( rc == 0 )) || eval "CUT_$1=\$((CUT_$1 + 1))"
    relay_start r
}
kill_during a 20000
kill_during a 60000
kill_during a 100000
(( CUT_a > 0 )) || fail "no kill landed in the middle of a's upload"
d a sync --relay "$RELAY_URL" --timeout 60 >/dev/null || fail "a's last upload"
kill_during b 8000
kill_during b 30000
d b sync --relay "$RELAY_URL" --timeout 60 >/dev/null || fail "b's last download"
d a sync --relay "$RELAY_URL" --timeout 60 >/dev/null || fail "a's acknowledgements"

d b inbox --peek | python3 -c '
import json, sys
texts = [o["text"] for o in map(json.loads, sys.stdin) if o["from"] == "partner"]
want = ["kill-test note %03d" % i for i in range(1, int(sys.argv[1]) + 1)]
if sorted(texts) != want:
    dup = len(texts) - len(set(texts))
    sys.exit("b holds %d notes (%d duplicated, %d missing)" % (len(texts), dup, len(set(want) - set(texts))))
' $n || fail "b's inbox"
[[ $(d a inbox --peek | python3 -c 'import json,sys; print(sum(1 for l in sys.stdin if json.loads(l)["status"] == "queued"))') == 0 ]] ||
    fail "some of a's notes are not delivered"
ok "relay SIGKILLed mid-sync ($CUT_a uploads and $CUT_b downloads cut): $n notes, each in b's inbox once, all delivered"
