#!/usr/bin/env bash
# daemon --relay: two daemons that can only meet at a relay stay subscribed; a note written on
# one reaches the other in near real time, read receipts come back, and a daemon that was
# offline catches up when it returns.
. "$(dirname "$0")/lib.bash"
rport=$(free_port)
start "$W/relay.log" "$DUET" --json relay serve --listen "127.0.0.1:$rport" --data "$W/relay"
wait_event "$W/relay.log" listening 20 >/dev/null || fail "relay did not start"
url=$(jget "$(wait_event "$W/relay.log" listening 5)" 'o["url"]')
pair_direct a b
start "$W/da.log" d a daemon --no-lan --relay "$url"
DA=$BG
start "$W/db.log" d b daemon --no-lan --relay "$url"
DB=$BG
wait_event "$W/da.log" relay_online 20 >/dev/null || fail "a's daemon did not reach the relay"
wait_event "$W/db.log" relay_online 20 >/dev/null || fail "b's daemon did not reach the relay"
ok "both daemons subscribed at the relay"

t0=$(date +%s%N)
id=$(jget "$(d a note "through the relay, live")" 'o["id"]')
wait_event "$W/db.log" received 10 >/dev/null || fail "b's daemon did not receive the note"
t1=$(date +%s%N)
grep -q "$id" "$W/db.log" || fail "b received another item"
ok "a note reached the partner's daemon through the relay in $(( (t1 - t0) / 1000000 )) ms"

d b inbox >/dev/null
wait_event "$W/da.log" '"read"' 10 >/dev/null 2>&1 || wait_event "$W/da.log" read 10 >/dev/null || fail "no read receipt back"
ok "the read receipt came back through the relay"

kill -TERM "$DB"; wait "$DB" || true
for i in 1 2 3; do d a note "while b is away $i" >/dev/null; done
sleep 0.5
start "$W/db2.log" d b daemon --no-lan --relay "$url"
for i in $(seq 1 100); do
    n=$(d b inbox --peek | jlines 'sum(1 for x in L if x["from"] == "partner")')
    [[ $n == 4 ]] && break
    sleep 0.1
done
[[ $n == 4 ]] || fail "b caught up with $n of 4 notes"
ok "a daemon that was offline caught up from the relay"
