#!/usr/bin/env bash
# The relay's storage under failure, through the real `duet relay serve`: its key and
# mailboxes survive a restart (same URL); SIGTERM ends it cleanly; a second relay on the
# same folder and a key file others can read are refused; SIGKILL in the middle of an upload
# loses no envelope it acknowledged and duplicates none; a full disk is a clear error, and
# the relay works again once there is room.
. "$(dirname "$0")/lib/relay.sh"

relay_start r
url1=$RELAY_URL
[[ $(stat -c %a "$W/r/relay.key") == 600 && $(stat -c %s "$W/r/relay.key") == 32 ]] ||
    fail "key file: $(stat -c '%a %s' "$W/r/relay.key")"
[[ $(stat -c %a "$W/r") == 700 ]] || fail "data folder mode $(stat -c %a "$W/r")"
out=$("$RELAYC" "$RELAY_URL" upload 1 30 520 "$W/a1.state") || fail "upload: $out"

# A second relay on the same folder is refused, clearly; the first goes on.
rc=0
"$DUET" relay serve --listen 127.0.0.1:0 --data "$W/r" >/dev/null 2>"$W/second.err" || rc=$?
[[ $rc == 1 ]] && grep -q "^duet: relay serve: .*another relay is using this folder" "$W/second.err" ||
    fail "second relay: rc=$rc $(cat "$W/second.err")"
alive "after a second relay was refused"

# SIGTERM: a clean exit, status 0, a final record; the same URL and mailboxes after restart.
kill -TERM "$RELAY_PID"
rc=0; wait "$RELAY_PID" || rc=$?
[[ $rc == 0 ]] || fail "SIGTERM: exit $rc"
grep -q '"event":"stopped"' "$W/r.out" || fail "no stopped record"
relay_start r
[[ $RELAY_URL == "$url1" ]] || fail "URL changed across a restart: $url1 -> $RELAY_URL"
out=$("$RELAYC" "$RELAY_URL" download 1 "$W/b1.state") || fail "download after restart: $out"
[[ $(kv "$out" received) == 30 ]] || fail "after restart: $out"
ok "key and mailboxes survive a restart; SIGTERM exits 0; a second relay is refused"

# A key file that others can read is refused.
kill "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null || true
chmod 644 "$W/r/relay.key"
rc=0
"$DUET" relay serve --listen 127.0.0.1:0 --data "$W/r" >/dev/null 2>"$W/perm.err" || rc=$?
[[ $rc == 1 ]] && grep -q "relay.key: not usable" "$W/perm.err" || fail "readable key: $(cat "$W/perm.err")"
chmod 600 "$W/r/relay.key"
ok "a key file others can read is refused"

# SIGKILL in the middle of an upload, three times over.
relay_start k
n=8000
count_acked() { python3 -c 'import sys; print(sum(open(sys.argv[1],"rb").read()[1:]))' "$W/a5.state"; }
for round in 1 2 3; do
    "$RELAYC" "$RELAY_URL" upload 5 $n 512 "$W/a5.state" >"$W/up$round.out" 2>&1 &
    up=$!
    sleep 0.3
    kill -KILL "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null || true
    wait "$up" 2>/dev/null || true
    acked=$(count_acked)
    (( acked > 0 && acked < n )) || fail "kill $round did not land mid-upload (acked $acked of $n)"
    relay_start k
done
# Every envelope the relay acknowledged before a kill is there.
out=$("$RELAYC" "$RELAY_URL" download 5 "$W/b5.state") || fail "download after kills: $out"
python3 - "$W/a5.state" "$W/b5.state" <<'PY' || fail "an acknowledged envelope was lost"
import sys
a, b = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
lost = [s for s in range(1, len(a)) if a[s] and (s >= len(b) or not b[s])]
sys.exit("lost: %s" % lost[:10] if lost else 0)
PY
# The rest goes up; nothing arrives twice, nothing is damaged.
out=$("$RELAYC" "$RELAY_URL" upload 5 $n 512 "$W/a5.state") || fail "upload after kills: $out"
out=$("$RELAYC" "$RELAY_URL" download 5 "$W/b5.state") || fail "download after kills: $out"
[[ $(kv "$out" stored_total) == "$n" && $(kv "$out" dups) == 0 && $(kv "$out" corrupt) == 0 ]] ||
    fail "after SIGKILLs: $out"
ok "SIGKILL mid-upload x3: $acked acknowledged before the last kill, none lost, none twice"

# A full disk: a small tmpfs in a private mount namespace (root only).
if [[ $(id -u) == 0 ]] && command -v unshare >/dev/null && unshare -m true 2>/dev/null; then
    unshare -m bash -s "$W" "$DUET" "$RELAYC" <<'SH' || fail "full disk case failed at step $?"
set -u
W=$1 DUET=$2 RELAYC=$3
mkdir -p "$W/full" && mount -t tmpfs -o size=4m tmpfs "$W/full" || exit 10
"$DUET" --json relay serve --listen 127.0.0.1:0 --data "$W/full/d" >"$W/full.out" 2>"$W/full.err" &
pid=$!
for i in $(seq 100); do grep -q listening "$W/full.out" && break; sleep 0.05; done
url=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["url"])' "$W/full.out") || exit 11
"$RELAYC" "$url" upload 3 10 2048 "$W/f.state" >/dev/null || exit 12
head -c 8m /dev/zero >"$W/full/filler" 2>/dev/null || true
out=$("$RELAYC" "$url" upload 3 2000 32768 "$W/f.state")
grep -q '^upload_error=ENOSPC' <<<"$out" || { echo "$out" >&2; exit 13; }
"$RELAYC" "$url" hello >/dev/null || exit 14   # still serving
rm -f "$W/full/filler"
out=$("$RELAYC" "$url" download 3 "$W/g.state")
stored=$(sed -n 's/^stored_total=//p' <<<"$out")
acked=$(python3 -c 'import sys; print(sum(open(sys.argv[1],"rb").read()[1:]))' "$W/f.state")
[[ $stored == "$acked" ]] || { echo "acked $acked, delivered $stored" >&2; exit 15; }
"$RELAYC" "$url" upload 3 20 2048 "$W/h.state" >/dev/null || exit 16   # room again
kill "$pid"; wait "$pid"
exit 0
SH
    ok "full disk: ENOSPC to the client, nothing acknowledged is lost, works again with room"
else
    echo "ok - skipped: the full-disk case needs root and unshare"
fi
