#!/usr/bin/env bash
# Commands while a sync is in flight: notes written on both devices during a large sync (one
# of them in the home the daemon is writing to) neither fail nor block for long, and nothing
# is corrupted or lost.
. "$(dirname "$0")/lib.bash"
pair_direct a b
seq 1 3000 | xargs -P 2 -I{} "$DUET" --home "$W/a" note "bulk {}" >/dev/null
serve b
start "$W/sync.log" d a sync --connect "$ADDR" --timeout 60
SYNC=$BG
t0=$(date +%s%N)
for i in $(seq 1 20); do
    d a note "during a $i" >/dev/null || fail "note on a during the sync"
    d b note "during b $i" >/dev/null || fail "note on b (the daemon's home) during the sync"
done
t1=$(date +%s%N)
wait "$SYNC" || fail "the sync in flight failed: $(cat "$W/sync.log")"
ms=$(( (t1 - t0) / 1000000 ))
(( ms < 20000 )) || fail "40 notes took $ms ms while syncing: something blocked"
d a sync --connect "$ADDR" --timeout 60 >/dev/null || fail "second sync"
[[ $(d b inbox --peek | jlines 'sum(1 for x in L if x["from"] == "partner")') == 3020 ]] || fail "b should hold 3020 of a's notes"
[[ $(d a inbox --peek | jlines 'sum(1 for x in L if x["from"] == "partner")') == 20 ]] || fail "a should hold b's 20 notes"
for h in a b; do
    python3 -c 'import sqlite3,sys; r=sqlite3.connect(sys.argv[1]).execute("PRAGMA integrity_check").fetchone()[0]; sys.exit(r != "ok")' "$W/$h/duet.db" || fail "$h's database is damaged"
done
ok "40 notes written during a 3,000-note sync in $ms ms; nothing lost, both databases intact"
