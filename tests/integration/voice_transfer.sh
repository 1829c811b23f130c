#!/usr/bin/env bash
# Voice notes with real processes:
#  - what cannot be sent (missing, empty, not audio, a folder, over 50 MiB) is refused with
#    one clear line and leaves nothing queued;
#  - the duration of each format (WAV, FLAC, Ogg Vorbis, Ogg Opus, MP3, all made here) is
#    right within 50 ms, on both devices;
#  - a 50 MiB voice note crosses with 5 interruptions (kill -9 of the sending `sync` or of
#    the receiving daemon, mid-transfer), arrives byte-identical, and the receiver took in
#    at most one chunk more per interruption than the blob's size (counted before use, so
#    a crash can only overcount: docs/protocol/blob.md, "Counting");
#  - a byte flipped in a stored chunk of a partial blob is found and exactly the chunks
#    from it on are fetched again; a blob damaged after arrival is refused by `voice save`,
#    fetched again at the next sync, then saved intact;
#  - `voice save` says "not here yet" before the bytes arrive, and with --wait waits while
#    the daemon fetches; voice notes go both ways.
. "$(dirname "$0")/lib.bash"
UNIT=65577                      # a storage unit: the header with chunk 0; other chunks 65553
MIB=1048576
pair_direct a b

# ---- refusals ------------------------------------------------------------------------------
refuse() { # refuse WHY FILE: nonzero, one line on stderr naming the file, nothing queued
    local why=$1 file=$2 err
    if d a voice "$file" >"$W/out" 2>"$W/err"; then fail "voice accepted $why"; fi
    err=$(cat "$W/err")
    [[ $(wc -l <"$W/err") -eq 1 && $err == "duet: voice: "* ]] || fail "$why: not one clear line: $err"
    echo "  $why -> $err"
}
printf 'hello, not a recording\n' >"$W/text.wav"
: >"$W/empty.wav"
truncate -s $((50 * MIB + 1)) "$W/huge.wav"
refuse "a missing file" "$W/nope.wav"
refuse "an empty file" "$W/empty.wav"
refuse "a text file" "$W/text.wav"
refuse "a folder" "$W"
refuse "a file over 50 MiB" "$W/huge.wav"
[[ $(d a inbox --peek | wc -l) -eq 0 ]] || fail "a refused voice note was queued"
[[ -z $(ls -A "$W/a/blobs" 2>/dev/null) ]] || fail "a refused voice note left a blob"
ok "refusals: one clear line each, nothing queued"

# ---- formats and durations ------------------------------------------------------------------
python3 - "$W/tone.wav" <<'PY'
import math, struct, sys, wave
w = wave.open(sys.argv[1], "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(44100)
w.writeframes(b"".join(struct.pack("<h", int(9000 * math.sin(2 * math.pi * 330 * i / 44100)))
                       for i in range(int(44100 * 2.5))))
w.close()
PY
sox -q "$W/tone.wav" "$W/tone.flac"
sox -q "$W/tone.wav" -C 3 "$W/tone.ogg"
opusenc --quiet "$W/tone.wav" "$W/tone.opus"
lame --quiet -b 64 "$W/tone.wav" "$W/tone.mp3"
declare -A IDS
for f in tone.wav tone.flac tone.ogg tone.opus tone.mp3; do
    cp "$W/$f" "$W/$f.orig"
    r=$(d a voice "$W/$f" --caption "$f") || fail "voice $f"
    cmp -s "$W/$f" "$W/$f.orig" || fail "voice changed the file it sent: $f"
    [[ $(jget "$r" 'abs(o["duration_ms"] - 2500) <= 50') == True ]] || fail "duration of $f: $r"
    IDS[$f]=$(jget "$r" 'o["id"]')
    echo "  $f -> $(jget "$r" 'o["mime"]'), $(jget "$r" 'o["duration_ms"]') ms"
done
serve b
d a sync --connect "$ADDR" --timeout 60 >"$W/sync0.log" || fail "sync of the formats: $(cat "$W/sync0.log")"
for f in "${!IDS[@]}"; do
    item=$(d b inbox --peek | jlines 'json.dumps([x for x in L if x["id"] == sys.argv[2]][0])' "${IDS[$f]}")
    [[ $(jget "$item" 'o["kind"] == "voice" and o["text"] is None') == True ]] || fail "inbox record: $item"
    [[ $(jget "$item" 'o["voice"]["caption"]') == "$f" ]] || fail "caption: $item"
    [[ $(jget "$item" 'abs(o["voice"]["duration_ms"] - 2500) <= 50') == True ]] || fail "duration on b: $item"
    [[ $(jget "$item" 'o["voice"]["available"]') == True ]] || fail "not here after sync: $item"
    [[ $(jget "$item" 'o["voice"]["bytes"]') == $(stat -c %s "$W/$f") ]] || fail "bytes: $item"
    d b voice save "${IDS[$f]}" "$W/got-$f" >/dev/null || fail "save $f"
    cmp -s "$W/$f" "$W/got-$f" || fail "$f differs after the trip"
done
ok "WAV, FLAC, Ogg Vorbis, Ogg Opus, MP3: durations within 50 ms on both sides, bytes intact"

# ---- 50 MiB with 5 interruptions ------------------------------------------------------------
python3 - "$W/big.wav" <<'PY'
import os, sys, wave
w = wave.open(sys.argv[1], "wb"); w.setnchannels(2); w.setsampwidth(2); w.setframerate(48000)
frames = (50 * 1024 * 1024 - 44) // 4
block = os.urandom(4 * 65536)
while frames > 0:
    k = min(frames, 65536); w.writeframes(block[:4 * k]); frames -= k
w.close()
assert os.path.getsize(sys.argv[1]) == 50 * 1024 * 1024
PY
big=$(jget "$(d a voice "$W/big.wav" --caption "a long one")" 'o["id"]') || fail "voice big.wav"
port=${ADDR##*:}

# interrupt WHO STEP: run a's `sync` and SIGKILL WHO (the sender: that sync; the receiver:
# b's daemon) once b's partial blob has grown by STEP bytes; print its size then. Python
# starts the sync itself, so the watch is on before the first byte moves.
interrupt() {
    python3 - "$W" "$DUET" "$ADDR" "$DAEMON" "$1" "$2" <<'PY'
import glob, os, signal, subprocess, sys, time
w, duet, addr, daemon, who, step = sys.argv[1:7]
def part_size():
    for p in glob.glob(w + "/b/blobs/*.part"):
        try:
            return os.path.getsize(p)
        except OSError:
            pass
    return None
base = part_size() or 0
log = open(f"{w}/sync-{who}-{base}.log", "w")
sync = subprocess.Popen([duet, "--home", w + "/a", "--json", "sync", "--connect", addr,
                         "--timeout", "120"], stdout=log, stderr=subprocess.STDOUT)
victim = sync.pid if who == "sender" else int(daemon)
end = time.time() + 60
while time.time() < end:
    size = part_size()
    if size is not None and size >= base + int(step):
        os.kill(victim, signal.SIGKILL)
        sync.wait()
        print(size)
        sys.exit(0)
    if sync.poll() is not None:
        sys.exit(2)              # it finished first
    time.sleep(0.0002)
sync.kill()
sys.exit(3)
PY
}
kills=0
for who in sender receiver sender receiver sender; do
    size=$(interrupt $who $((7 * MIB))) || fail "the transfer was not interrupted ($who, round $((kills + 1)))"
    if [[ $who == receiver ]]; then
        wait "$DAEMON" 2>/dev/null || true
        serve b "$port"
    fi
    kills=$((kills + 1))
    echo "  killed the $who at $((size / MIB)) MiB of the partial blob"
done
for i in 1 2 3; do
    d a sync --connect "$ADDR" --timeout 120 >"$W/sync-big-final.log" 2>&1 && break
done
[[ $(tail -1 "$W/sync-big-final.log") == *'"synced"'* ]] || fail "final sync: $(cat "$W/sync-big-final.log")"
row=$(d b voice list | jlines 'json.dumps([x for x in L if x["id"] == sys.argv[2]][0])' "$big")
[[ $(jget "$row" 'o["state"]') == available ]] || fail "50 MiB not available: $row"
d b voice save "$big" "$W/big.got" >/dev/null || fail "save 50 MiB"
cmp -s "$W/big.wav" "$W/big.got" || fail "the 50 MiB voice note differs after 5 interruptions"
sealed=$(jget "$row" 'o["sealed"]')
fetched=$(jget "$row" 'o["fetched"]')
extra=$((fetched - sealed))
echo "  sealed $sealed bytes, taken in $fetched: $extra twice ($((extra / UNIT)) chunks) over $kills interruptions"
((extra >= 0 && extra <= kills * UNIT)) || fail "re-sent $extra bytes over $kills interruptions (> one chunk each)"
ok "50 MiB intact after $kills kills (sender and receiver), at most one chunk again per interruption"

# ---- a byte flipped in a stored chunk of a partial blob -------------------------------------
python3 - "$W/mid.wav" <<'PY'
import os, sys, wave
w = wave.open(sys.argv[1], "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
w.writeframes(os.urandom(12 * 1024 * 1024)); w.close()
PY
mid=$(jget "$(d a voice "$W/mid.wav")" 'o["id"]') || fail "voice mid.wav"
interrupt sender $((6 * MIB)) >/dev/null || fail "the 12 MiB transfer was not interrupted"
sleep 0.3 # b's session notices the reset and lets the partial file go
nothere=$(d b voice save "$mid" "$W/mid.got" 2>&1) && fail "saved a voice note that is not here"
[[ $nothere == *"not here yet"* ]] || fail "voice save before arrival: $nothere"
waited=$(d b voice save "$mid" "$W/mid.got" --wait 1 2>&1) && fail "--wait saved what is not here"
[[ $waited == *'"event":"progress"'*"timed out"* ]] || fail "voice save --wait: $waited"
part=$(ls "$W"/b/blobs/*.part)
stored=$(stat -c %s "$part")
bad=$((24 + 65553 * 10))
python3 - "$part" $((bad + 500)) <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); c = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([c[0] ^ 4]))
PY
start "$W/save-wait.log" d b voice save "$mid" "$W/mid.got" --wait 60 # while b's daemon fetches
saver=$BG
d a sync --connect "$ADDR" --timeout 60 >"$W/sync-mid2.log" 2>&1 || fail "sync after the flip: $(cat "$W/sync-mid2.log")"
wait "$saver" || fail "voice save --wait: $(cat "$W/save-wait.log")"
[[ $(tail -1 "$W/save-wait.log") == *'"event":"saved"'* ]] || fail "voice save --wait: $(cat "$W/save-wait.log")"
cmp -s "$W/mid.wav" "$W/mid.got" || fail "12 MiB differs after a flipped byte"
row=$(d b voice list | jlines 'json.dumps([x for x in L if x["id"] == sys.argv[2]][0])' "$mid")
sealed=$(jget "$row" 'o["sealed"]')
fetched=$(jget "$row" 'o["fetched"]')
((fetched == sealed + stored - bad)) ||
    fail "after a flip in chunk 10 of $stored stored bytes: took in $fetched, expected $((sealed + stored - bad))"
ok "a flipped byte in stored chunk 10 of $((stored / MIB)) MiB: exactly chunks 10.. fetched again"

# ---- damaged after arrival ------------------------------------------------------------------
final=${part%.part}
python3 - "$final" 1000000 <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); c = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([c[0] ^ 1]))
PY
msg=$(d b voice save "$mid" "$W/mid.again" 2>&1) && fail "saved a damaged voice note"
[[ $msg == *damaged*"fetched again"* ]] || fail "damage not explained: $msg"
[[ ! -e $W/mid.again ]] || fail "a damaged voice note was half-written"
d a sync --connect "$ADDR" --timeout 60 >/dev/null || fail "sync after damage"
d b voice save "$mid" "$W/mid.again" >/dev/null || fail "save after refetch"
cmp -s "$W/mid.wav" "$W/mid.again" || fail "refetched voice note differs"
ok "damage after arrival: refused, fetched again from the bad chunk, intact"

# ---- the other way: b's voice note fetched by a's sync from b's daemon ----------------------
back=$(jget "$(d b voice "$W/tone.flac" --caption back)" 'o["id"]') || fail "voice on b"
d a sync --connect "$ADDR" --timeout 60 >/dev/null || fail "sync b -> a"
item=$(d a inbox --peek | jlines 'json.dumps([x for x in L if x["id"] == sys.argv[2]][0])' "$back")
[[ $(jget "$item" 'o["voice"]["available"] and o["from"] == "partner"') == True ]] || fail "b's note on a: $item"
d a voice save "$back" "$W/back.flac" >/dev/null || fail "save on a"
cmp -s "$W/tone.flac" "$W/back.flac" || fail "b's voice note differs on a"
ok "both ways: a's sync fetched b's voice note from b's daemon"

# ---- play -----------------------------------------------------------------------------------
if ! command -v paplay >/dev/null && ! command -v pw-play >/dev/null &&
    ! command -v ffplay >/dev/null && ! command -v aplay >/dev/null; then
    msg=$(d b voice play "$big" 2>&1) && fail "play without a player"
    [[ $msg == *"no audio player"* ]] || fail "play: $msg"
    ok "voice play without a player: one clear line"
fi
