#!/usr/bin/env bash
# What a relay and the network see: two devices pair at the relay's rendezvous, exchange
# notes of different lengths, read receipts and a check-in answer through it. Then the
# relay's data folder and a capture of the loopback traffic (tcpdump when it can run, else a
# recording proxy between clients and relay) must hold no note text, no display name, no
# device public key (hex or raw, Ed25519 or its X25519 form) and no device id; and the relay
# must have stored only objects of the padding buckets' lengths, so a short note, a receipt
# and a check-in answer are indistinguishable by length.
. "$(dirname "$0")/lib/relay.sh"
export NO_COLOR=1

d() { local home=$1; shift; "$DUET" --home "$W/$home" --json "$@"; }

relay_start r
# The device commands this needs come with the CLI's relay support; until then, say so.
d probe init --name probe >/dev/null
probe=$(d probe sync --relay "$RELAY_URL" --timeout 2 2>&1 || true)
probe+=$(d probe pair --relay "$RELAY_URL" --timeout 1 2>&1 || true)
if grep -qE "not available in this build|pair: not supported" <<<"$probe"; then
    echo "ok - skipped: this build's CLI has no pair/sync --relay yet"
    exit 0
fi

# Record the traffic: tcpdump on the loopback if possible, else clients go through a proxy.
CAP=$W/traffic.pcap
url=$RELAY_URL
tcpdump_pid=
if [[ $(id -u) == 0 ]] && command -v tcpdump >/dev/null; then
    tcpdump -i lo -U -w "$CAP" "tcp port $RELAY_PORT" 2>"$W/tcpdump.err" &
    tcpdump_pid=$!
    PIDS+=("$tcpdump_pid")
    for ((i = 0; i < 50; i++)); do grep -q "listening on" "$W/tcpdump.err" && break; sleep 0.1; done
    grep -q "listening on" "$W/tcpdump.err" || tcpdump_pid=
fi
if [[ -z $tcpdump_pid ]]; then
    CAP=$W/traffic.bin
    pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    python3 - "$pport" "$RELAY_PORT" "$CAP" <<'PY' &
import socket, sys, threading
lport, rport, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
log = open(out, "ab", buffering=0)
lock = threading.Lock()
def pipe(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            with lock:
                log.write(data)
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", lport))
srv.listen(64)
while True:
    c, _ = srv.accept()
    r = socket.create_connection(("127.0.0.1", rport))
    threading.Thread(target=pipe, args=(c, r), daemon=True).start()
    threading.Thread(target=pipe, args=(r, c), daemon=True).start()
PY
    PIDS+=("$!")
    sleep 0.3
    url=${RELAY_URL/:$RELAY_PORT\//:$pport/}
fi

marker="privacy-marker-$RANDOM$RANDOM"
name_a="Wintermoss$RANDOM" name_b="Kestrelbay$RANDOM"
d a init --name "$name_a" >/dev/null
d b init --name "$name_b" >/dev/null
"$DUET" --home "$W/a" --json pair --relay "$url" --timeout 60 >"$W/pair-a.log" 2>&1 &
pa=$!
PIDS+=("$pa")
for ((i = 0; i < 100; i++)); do grep -q '"code"' "$W/pair-a.log" && break; sleep 0.1; done
code=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    try: o = json.loads(l)
    except ValueError: continue
    if o.get("event") == "code": print(o["code"])' "$W/pair-a.log")
[[ -n $code ]] || fail "no pairing code: $(cat "$W/pair-a.log")"
d b pair "$code" --relay "$url" >/dev/null || fail "b could not pair through the relay"
wait "$pa" || fail "a did not finish pairing"
ok "paired through the relay"

# Items of different kinds and lengths: they must all be one bucket's length.
d a note "$marker short" >/dev/null
d a note "$marker $(head -c 300 /dev/zero | tr '\0' m)" >/dev/null
d a note "$marker $(head -c 1500 /dev/zero | tr '\0' l)" >/dev/null  # the next bucket
if d a checkin start daily >"$W/ck.out" 2>/dev/null; then checkin=1; else checkin=0; fi
d a sync --relay "$url" --timeout 30 >/dev/null || fail "a upload"

# objects_check WHAT EXPECT: stop the relay, read the lengths of what it holds, check them
# with the Python expression EXPECT (on `env`, the envelope objects' lengths, and `state`),
# start it again on the same port.
objects_check() {
    kill -TERM "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null || true
    python3 - "$W/r/relay.db" "$1" "$2" <<'PY' || fail "object lengths ($1)"
import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
rows = db.execute("SELECT cls, len FROM objects WHERE cls > 0").fetchall()
env = sorted(l for c, l in rows if c == 1)
state = sorted(l for c, l in rows if c == 2)
buckets = {520, 2056, 8200, 32776, 98312}
if not set(env) <= buckets or set(state) - {305} or not eval(sys.argv[3]):
    sys.exit("relay objects (%s): envelopes %s, states %s" % (sys.argv[2], env, state))
print("ok - %s: the relay holds envelopes of %s bytes, states of %s" % (sys.argv[2], env, state))
PY
    relay_start r
}
# a's three notes (2, 300 and 1500 characters) and its check-in proposal: the short ones and
# the proposal are one length, the long one the next bucket's.
objects_check "a's notes and proposal"     "env.count(2056) == 1 and env.count(520) == len(env) - 1 and len(env) >= 3 + $checkin"
d b sync --relay "$url" --timeout 30 >/dev/null || fail "b download"
d b inbox >/dev/null  # marks them read: read receipts go back
if (( checkin )); then
    ritual=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["ritual"])' "$W/ck.out")
    d b checkin accept "$ritual" >/dev/null || checkin=0
fi
d b note "$marker reply" >/dev/null
d b sync --relay "$url" --timeout 30 >/dev/null || fail "b upload"

# b's read receipts, its reply (and its acceptance of the check-in): all one length.
objects_check "b's receipts and reply" "len(env) >= 2 and set(env) == {520}"

d a sync --relay "$url" --timeout 30 >/dev/null || fail "a download"
[[ $(d a inbox --peek | python3 -c 'import json,sys; print(sum(1 for l in sys.stdin if json.loads(l)["from"] == "partner"))') -ge 1 ]] ||
    fail "a did not get b's reply"
ok "notes, receipts and replies through the relay"

# Nothing readable on the relay's disk or on the wire.
[[ -n $tcpdump_pid ]] && { sleep 0.5; kill "$tcpdump_pid"; wait "$tcpdump_pid" 2>/dev/null || true; }
kill -TERM "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null || true
python3 - "$W" "$CAP" "$marker" "$name_a" "$name_b" \
    "$(d a id)" "$(d b id)" <<'PY' || fail "something readable leaked"
import glob, json, os, sys
w, cap, marker, na, nb = sys.argv[1:6]
ids = [json.loads(x) for x in sys.argv[6:8]]
needles = {"note text": [marker.encode()], "display names": [na.encode(), nb.encode()]}
keys = []
for o in ids:
    pk = bytes.fromhex(o["public_key"])
    keys += [o["public_key"].encode(), o["public_key"].upper().encode(), pk]
    needles.setdefault("device ids", []).append(o["device_id"].encode())
    needles["device ids"].append(o["device_id"].replace("-", "").encode())
needles["device public keys"] = keys
blobs = {}
for path in glob.glob(os.path.join(w, "r", "*")):
    blobs[path] = open(path, "rb").read()
blobs[cap] = open(cap, "rb").read() if os.path.exists(cap) else b""
if not blobs[cap]:
    sys.exit("the capture is empty")
for what, items in needles.items():
    for n in items:
        for path, data in blobs.items():
            if n and n in data:
                sys.exit("%s found in %s" % (what, path))
print("ok - relay data (%d files) and %d bytes of traffic hold no note text, names, keys or ids"
      % (len(blobs) - 1, len(blobs[cap])))
PY
