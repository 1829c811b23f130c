#!/usr/bin/env bash
# A voice note's envelope can reach the partner's daemon through the relay before its sound
# is there (the sender's blob upload comes in its own session, and may fail and come later).
# The receiving daemon must keep looking, backing off, until the sound arrives: here the
# first relay refuses blob-sized objects, so only the envelope goes up; the relay is then
# replaced (same key, same data) by one that takes them, the sender syncs again, and the
# partner's daemon, which nothing tells that the sound has landed, fetches it.
. "$(dirname "$0")/lib.bash"
rport=$(free_port)
relay_up() { # relay_up LOG [SETTINGS...]
    local log=$1
    shift
    start "$log" "$DUET" --json relay serve --listen "127.0.0.1:$rport" --data "$W/relay" "$@"
    RELAY=$BG
    url=$(jget "$(wait_event "$log" listening 20)" 'o["url"]') || fail "relay did not listen"
}
relay_up "$W/relay1.log" --max-object 32776
pair_direct a b
start "$W/db.log" d b daemon --no-lan --relay "$url"
wait_event "$W/db.log" relay_online 20 >/dev/null || fail "b's daemon did not reach the relay"

python3 - "$W/hum.wav" <<'PY'
import math, struct, sys, wave
w = wave.open(sys.argv[1], "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
w.writeframes(b"".join(struct.pack("<h", int(4000 * math.sin(i / 7))) for i in range(64000)))
w.close()
PY
vid=$(jget "$(d a voice "$W/hum.wav" --caption "later")" 'o["id"]') || fail "voice"
d a sync --relay "$url" >"$W/sync1.log" 2>&1 && fail "a relay that refuses blobs took the sound"
wait_event "$W/db.log" received 20 >/dev/null || fail "b's daemon did not receive the envelope"
avail() { d b inbox --peek | jlines '[x for x in L if x["id"] == sys.argv[2]][0]["voice"]["available"]' "$vid"; }
sleep 1
[[ $(avail) == False ]] || fail "the sound is there before it was uploaded"
ok "the envelope arrived alone; the sound is not at the relay"

kill "$RELAY"; wait "$RELAY" 2>/dev/null || true
relay_up "$W/relay2.log"
d a sync --relay "$url" >"$W/sync2.log" 2>&1 || fail "the second upload failed: $(cat "$W/sync2.log")"
for i in $(seq 1 400); do
    [[ $(avail) == True ]] && break
    sleep 0.1
done
[[ $(avail) == True ]] || fail "b's daemon never fetched the sound that came late"
d b voice save "$vid" "$W/got.wav" >/dev/null || fail "voice save"
cmp -s "$W/hum.wav" "$W/got.wav" || fail "voice bytes differ"
ok "b's daemon looked again and fetched the late sound, byte-identical"
