#!/usr/bin/env bash
# Voice notes through a relay, with the real `duet relay serve`: a note sent while the two
# devices are never online together arrives intact through `sync --relay`; the relay's files
# hold neither the recording nor the blob's id; a full mailbox stops the upload with a clear
# message, and once there is room again the upload and the download resume where they
# stopped, no unit sent or taken in twice.
. "$(dirname "$0")/lib.bash"
MIB=1048576
pair_direct a b

relay_up() { # relay_up MAILBOX_BYTES
    start "$W/relay.log" "$DUET" --json relay serve --listen "127.0.0.1:$rport" --data "$W/relay" \
        --mailbox-bytes "$1"
    RELAY=$BG
    url=$(jget "$(wait_event "$W/relay.log" listening 20)" 'o["url"]') || fail "relay did not listen"
}
relay_down() { kill "$RELAY"; wait "$RELAY" 2>/dev/null || true; }
wav() { # wav FILE BYTES: a mono recording of noise, BYTES long
    python3 - "$1" "$2" <<'PY'
import os, sys, wave
w = wave.open(sys.argv[1], "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
w.writeframes(os.urandom(int(sys.argv[2]) - 44)); w.close()
PY
}
row() { d "$1" voice list | jlines 'json.dumps([x for x in L if x["id"] == sys.argv[2]][0])' "$2"; }

rport=$(free_port)
relay_up $((8 * MIB))
wav "$W/one.wav" $((3 * MIB + 777))
one=$(jget "$(d a voice "$W/one.wav" --caption "through the relay")" 'o["id"]') || fail "voice one"
d a sync --relay "$url" --timeout 60 >"$W/a1.log" || fail "a upload: $(cat "$W/a1.log")"
[[ $(jget "$(row a "$one")" 'o["relayed"]') == 49 ]] || fail "not every unit on the relay: $(row a "$one")"
# The relay holds ciphertext only: no stretch of the recording, not the blob's id.
python3 - "$W/one.wav" "$W/relay" "$W/a/blobs" <<'PY' || fail "the relay's files hold the recording or the blob id"
import os, sys
wav = open(sys.argv[1], "rb").read()
ids = [bytes.fromhex(n) for n in os.listdir(sys.argv[3]) if len(n) == 64]
data = b"".join(open(os.path.join(r, f), "rb").read() for r, _, fs in os.walk(sys.argv[2]) for f in fs)
assert ids, "no blob on a"
for off in range(44, len(wav) - 64, len(wav) // 16):
    assert wav[off:off + 64] not in data, "a piece of the recording"
for i in ids:
    assert i not in data and i.hex().encode() not in data, "the blob id"
PY
line=$(d b sync --relay "$url" --timeout 60) || fail "b download: $line"
[[ $(jget "$line" 'o["voice_received"]') == 1 ]] || fail "b's sync: $line"
item=$(d b inbox --peek | jlines 'json.dumps([x for x in L if x["id"] == sys.argv[2]][0])' "$one")
[[ $(jget "$item" 'o["voice"]["available"] and o["voice"]["caption"] == "through the relay"') == True ]] ||
    fail "b's inbox: $item"
d b voice save "$one" "$W/one.got" >/dev/null || fail "save on b"
cmp -s "$W/one.wav" "$W/one.got" || fail "the voice note differs after the relay"
ok "a voice note through the relay, never online together: intact, nothing readable on the relay"

# A second note larger than what the mailbox has room for.
wav "$W/two.wav" $((12 * MIB))
two=$(jget "$(d a voice "$W/two.wav")" 'o["id"]') || fail "voice two"
msg=$(d a sync --relay "$url" --timeout 60 2>&1) && fail "the relay took more than its quota"
[[ $msg == *"full for this couple"* ]] || fail "quota not explained: $msg"
held=$(jget "$(row a "$two")" 'o["relayed"]')
((held > 0 && held < 192)) || fail "units on the relay after the quota: $held"
d b sync --relay "$url" --timeout 60 >/dev/null || fail "b's sync after the quota"
msg=$(d b voice save "$two" "$W/two.got" 2>&1) && fail "saved a voice note that is not all here"
[[ $msg == *"not here yet"* ]] || fail "partial note: $msg"
ok "a full mailbox: upload stopped with a clear message at $held of 192 units, the rest waits"

relay_down
relay_up $((64 * MIB))
d a sync --relay "$url" --timeout 60 >"$W/a3.log" || fail "a resumes: $(cat "$W/a3.log")"
d b sync --relay "$url" --timeout 60 >"$W/b3.log" || fail "b resumes: $(cat "$W/b3.log")"
d b voice save "$two" "$W/two.got" >/dev/null || fail "save two"
cmp -s "$W/two.wav" "$W/two.got" || fail "the second note differs"
r=$(row b "$two")
[[ $(jget "$r" 'o["fetched"] == o["sealed"]') == True ]] || fail "a unit taken in twice: $r"
ok "room again: upload and download resumed where they stopped, nothing twice"
