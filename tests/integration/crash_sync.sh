#!/usr/bin/env bash
# Exactly once across crashes, with real processes: 2,000 notes on each side, `sync`
# started again and again while the sender or the receiver is killed with SIGKILL at random
# moments (at least 20 kills); then both inboxes must hold exactly 2,000 partner notes, no
# duplicates, in the same order, and every note must be delivered.
. "$(dirname "$0")/lib.bash"
N=${CRASH_NOTES:-2000}
KILLS=${CRASH_KILLS:-20}
pair_direct a b
for side in a b; do
    seq 1 "$N" | xargs -P 2 -I{} "$DUET" --home "$W/$side" note "$side says {}" >/dev/null
done
ok "$N notes written on each side"

port=$(free_port)
serve b "$port"
kills=0 rounds=0
while ((kills < KILLS && rounds < 200)); do
    rounds=$((rounds + 1))
    start "$W/sync-$rounds.log" d a sync --connect "$ADDR" --timeout 30
    sync_pid=$BG
    # 1 to 60 ms: a full sync of 2 x 2,000 notes takes about 80 ms here, so most kills land
    # mid-way (in the handshake, mid-batch, between commit and ACK...).
    sleep "0.0$((RANDOM % 4))$((RANDOM % 10 + 1))"
    if ! kill -0 "$sync_pid" 2>/dev/null; then
        wait "$sync_pid" || true
        # It finished before the kill: more notes, so there is something to interrupt.
        for i in $(seq 1 40); do "$DUET" --home "$W/a" note "late a $rounds $i" >/dev/null; done
        for i in $(seq 1 40); do "$DUET" --home "$W/b" note "late b $rounds $i" >/dev/null; done
        continue
    fi
    if ((RANDOM % 2)); then
        kill -9 "$sync_pid"          # the sender of a's notes, receiver of b's
    else
        kill -9 "$DAEMON"            # the receiver of a's notes, sender of b's
        wait "$DAEMON" 2>/dev/null || true
        serve b "$port"
    fi
    wait "$sync_pid" 2>/dev/null || true
    kills=$((kills + 1))
done
((kills >= KILLS)) || fail "only $kills kills in $rounds rounds"
ok "$kills processes killed with SIGKILL mid-sync"

synced=""
for i in $(seq 1 10); do
    if d a sync --connect "$ADDR" --timeout 60 >"$W/final.log" 2>&1; then synced=1; break; fi
done
[[ -n $synced ]] || fail "no clean sync after the crashes: $(cat "$W/final.log")"
d a sync --connect "$ADDR" --timeout 60 >/dev/null || fail "second clean sync"

python3 - "$W" <<'PY' || fail "inboxes differ from what was written"
import json, subprocess, sys, os
w = sys.argv[1]
duet = os.environ.get("DUET")
def inbox(h):
    out = subprocess.run([duet, "--home", f"{w}/{h}", "--json", "inbox", "--peek"],
                         capture_output=True, text=True, check=True).stdout
    return [json.loads(l) for l in out.splitlines() if l.strip()]
a, b = inbox("a"), inbox("b")
for name, me, other in (("a", a, b), ("b", b, a)):
    ids = [x["id"] for x in me]
    assert len(ids) == len(set(ids)), f"{name}: duplicate ids"
    mine = [x for x in me if x["from"] == "me"]
    theirs = [x for x in me if x["from"] == "partner"]
    other_mine = [x for x in other if x["from"] == "me"]
    assert len(theirs) == len(other_mine), f"{name}: {len(theirs)} partner notes, partner wrote {len(other_mine)}"
    assert sorted(x["text"] for x in theirs) == sorted(x["text"] for x in other_mine), f"{name}: texts differ"
    bad = [x for x in mine if x["status"] not in ("delivered", "read")]
    assert not bad, f"{name}: {len(bad)} own notes not delivered"
assert [x["id"] for x in a] == [x["id"] for x in b], "conversation order differs"
print(f"a: {len(a)} items, b: {len(b)} items, same order, all delivered")
PY
ok "exactly once: no note lost or doubled, same order, all delivered"
