#!/usr/bin/env bash
# A daemon you can leave running: one per home (a second one names the first one's pid), a
# 0600 control socket, a note written while both daemons run reaches the partner at once
# (nudged, no sync command), `duet watch` streams the events, SIGTERM ends it cleanly.
. "$(dirname "$0")/lib.bash"
pair_direct a b
serve b
# a learns b's address with one sync, then runs its own daemon, which reconnects to b.
d a sync --connect "$ADDR" --timeout 30 >/dev/null || fail "first sync"
start "$W/daemon-a.log" d a daemon --no-lan
DA=$BG
wait_event "$W/daemon-a.log" partner_online 20 >/dev/null || fail "a's daemon did not reach b"
ok "a's daemon reconnected to the partner's last known address"

rc=0; d a daemon --no-lan >/dev/null 2>"$W/second.err" || rc=$?
[[ $rc != 0 ]] && grep -q "another duet daemon is running for this home (pid $DA)" "$W/second.err" \
    || fail "second daemon: rc=$rc $(cat "$W/second.err")"
ok "a second daemon for the same home refuses, naming the running one's pid"

[[ $(stat -c %a "$W/a/control.sock") == 600 ]] || fail "control socket mode $(stat -c %a "$W/a/control.sock")"
ok "the control socket is 0600"

start "$W/watch-b.log" d b watch
WB=$BG
sleep 0.3
t0=$(date +%s%N)
id=$(jget "$(d a note "straight to you")" 'o["id"]')
wait_event "$W/daemon-b.log" received 10 >/dev/null || fail "the note did not reach b's daemon"
t1=$(date +%s%N)
grep -q "$id" "$W/daemon-b.log" || fail "b's daemon received another item"
wait_event "$W/watch-b.log" received 5 >/dev/null || fail "duet watch did not show it"
ok "a note written while both daemons run arrives at once ($(( (t1 - t0) / 1000000 )) ms), and watch shows it"
[[ $(d b inbox --peek | jlines '[x["text"] for x in L if x["from"] == "partner"]') == "['straight to you']" ]] || fail "b's inbox"

# Read receipts flow back without any command: b reads, a's daemon hears it.
d b inbox >/dev/null
wait_event "$W/daemon-a.log" read 10 >/dev/null || fail "read receipt did not reach a's daemon"
ok "read receipts reach the writer's daemon"

kill -TERM "$DA"
rc=0; wait "$DA" || rc=$?
[[ $rc == 0 ]] || fail "daemon exit status after SIGTERM: $rc"
grep -q '"event":"stopped"' "$W/daemon-a.log" || fail "no stopped event"
[[ ! -e "$W/a/control.sock" ]] || fail "control socket left behind"
wait_event "$W/daemon-b.log" partner_offline 10 >/dev/null || fail "b did not see a go offline"
ok "SIGTERM stops the daemon cleanly (exit 0, socket removed); the partner sees it go offline"
kill "$WB" 2>/dev/null || true
