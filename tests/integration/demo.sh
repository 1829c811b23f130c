#!/usr/bin/env bash
# make demo, the first command a newcomer types, end to end: it must exit 0 and show what it
# promises (pairing with one safety number, notes both ways with read marks, a voice note
# saved byte-identical, a check-in revealed together with both answers, a note through the
# relay, and, as root, two namespaces finding each other on a LAN).
. "$(dirname "$0")/lib.bash"
out=$W/demo.out
NO_COLOR=1 TMPDIR=$W bash tools/demo.sh "$DUET" >"$out" 2>&1 || fail "make demo failed: $(tail -5 "$out")"
grep -q "verified: you confirmed it matches" "$out" || fail "no verified safety number"
grep -qE "me +read +Made soup" "$out" || fail "River does not see Harbor's read mark"
grep -q "the saved file is byte-identical" "$out" || fail "voice note not byte-identical"
grep -qE "River +Your laugh on Tuesday" "$out" && grep -qE "Harbor +The short walks together" "$out" ||
    fail "the check-in was not revealed to both"
grep -qE "partner +unread +Left this at the relay" "$out" || fail "no note through the relay"
if [[ $(id -u) == 0 ]] && command -v ip >/dev/null; then
    grep -qE "partner +unread +Found you without an address" "$out" ||
        fail "the LAN part (pairing and sync by discovery, as root) did not deliver"
fi
ok "make demo: pairing, notes, voice, check-in, relay$([[ $(id -u) == 0 ]] && echo ", LAN")"
