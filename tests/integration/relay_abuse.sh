#!/usr/bin/env bash
# The relay under bad input and abuse, through the real `duet relay serve` and the test
# client duet-relayc: a wrong key in the URL, a wrong capability, garbage, truncated and
# oversized frames, a flood over quota, 1,000 idle connections, slowloris handshakes, the
# connection limits. After each, the relay must still serve an honest client.
. "$(dirname "$0")/lib/relay.sh"

relay_start r --mailbox-items 100 --handshake-timeout-ms 1000 --max-connections 1200 --max-object 65536 \
    --max-connections-per-ip 1100
alive "at start"

# A wrong key in the URL: the handshake fails and the client says so.
key=${RELAY_URL##*/}
first=${key:0:1}; [[ $first == a ]] && other=b || other=a
wrong=${RELAY_URL%/*}/$other${key:1}
out=$("$RELAYC" "$wrong" hello) && fail "a wrong relay key was accepted: $out"
[[ $(kv "$out" error) == ERELAYKEY ]] || fail "wrong key: $out"
grep -q "does not have this relay's key" "$W/r.err" || fail "the relay did not log the bad key"
alive "after a wrong key"
ok "wrong relay key: handshake refused, client reports ERELAYKEY"

# A wrong capability: refused, and the refusal for an existing mailbox is the same, byte for
# byte, as for one that never existed.
"$RELAYC" "$RELAY_URL" upload 7 3 520 "$W/a7.state" >/dev/null || fail "upload for the wrong-cap case"
out=$("$RELAYC" "$RELAY_URL" wrongcap 7) || fail "wrong capability: $out"
[[ $(kv "$out" error) == ECAPABILITY && $(kv "$out" refusals_identical) == 1 ]] || fail "wrongcap: $out"
ok "wrong capability: ECAPABILITY, indistinguishable from no mailbox"

# Garbage before the handshake, a frame length over the maximum, a connection cut in the
# middle of a frame, and junk inside a good session.
python3 - "$RELAY_PORT" <<'PY' || fail "raw socket abuse"
import os, socket, sys, time
port = int(sys.argv[1])
def conn():
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return s
def closed_by_relay(s):
    try:
        return s.recv(100) == b""
    except (ConnectionResetError, socket.timeout):
        return True
for payload in (os.urandom(300), b"\xff\xff" + os.urandom(64), b"\x00\x30" + os.urandom(10),
                b"\x00\x00"):
    s = conn()
    s.sendall(payload)
    if payload[:2] == b"\x00\x30":
        s.shutdown(socket.SHUT_WR)  # truncated: the frame promised 48 bytes
    if not closed_by_relay(s):
        sys.exit("the relay kept a connection that sent %r" % payload[:4])
    s.close()
PY
for kind in random truncated truncmsgpack oversized; do
    out=$("$RELAYC" "$RELAY_URL" junk $kind) || true
    [[ $(kv "$out" error) == EPROTO ]] || fail "junk $kind: $out"
done
out=$("$RELAYC" "$RELAY_URL" junk bigobject) || true
[[ $(kv "$out" error) == ETOOBIG ]] || fail "an object over max-object: $out"
alive "after garbage"
ok "garbage, truncated, oversized frames and objects: refused, the relay goes on"

# A flood over quota: refused with EQUOTA, another mailbox unaffected.
out=$("$RELAYC" "$RELAY_URL" flood 9 400) || fail "flood: $out"
[[ $(kv "$out" ok) == 100 && $(kv "$out" quota) == 300 ]] || fail "flood: $out"
out=$("$RELAYC" "$RELAY_URL" upload 10 50 520 "$W/a10.state") || fail "another mailbox during a full one: $out"
[[ $(kv "$out" uploaded) == 50 ]] || fail "another mailbox: $out"
out=$("$RELAYC" "$RELAY_URL" upload 9 5 520 "$W/a9.state") && fail "the full mailbox took more: $out"
[[ $(kv "$out" upload_error) == EQUOTA ]] || fail "full mailbox, session: $out"
ok "flood over quota: EQUOTA for that mailbox only"

# 1,000 idle connections held open: an honest client still gets low latency.
"$RELAYC" "$RELAY_URL" hold 1000 60 >"$W/hold.out" 2>&1 &
hold_pid=$!
PIDS+=("$hold_pid")
for ((i = 0; i < 300; i++)); do
    [[ $(tail -1 "$W/hold.out" 2>/dev/null) == held=1000 ]] && break
    sleep 0.1
done
[[ $(tail -1 "$W/hold.out") == held=1000 ]] || fail "1000 connections: $(tail -3 "$W/hold.out")"
ping=$("$RELAYC" "$RELAY_URL" ping 500) || fail "ping under 1000 idle: $ping"
p99=$(kv "$ping" p99_us)
(( p99 < 20000 )) || fail "p99 latency with 1000 idle connections: ${p99} us"
out=$("$RELAYC" "$RELAY_URL" upload 11 20 2048 "$W/a11.state") || fail "upload under 1000 idle: $out"
ok "1000 idle connections: a normal client served, ping p50 $(kv "$ping" p50_us)us p99 ${p99}us"
kill "$hold_pid"; wait "$hold_pid" 2>/dev/null || true

# Slowloris: 200 connections that dribble a handshake byte by byte are dropped at the
# handshake timeout (1 s here), and honest clients are served meanwhile.
python3 - "$RELAY_PORT" <<'PY' &
import socket, sys, time
port = int(sys.argv[1])
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
start = time.time()
alive = len(socks)
while alive and time.time() - start < 8:
    alive = 0
    for s in socks:
        try:
            s.send(b"\x00")
            alive += 1
        except OSError:
            pass
    time.sleep(0.25)
sys.exit(0 if alive == 0 else 1)
PY
slow_pid=$!
sleep 0.3
alive "during slowloris"
wait "$slow_pid" || fail "slowloris connections were not dropped at the handshake timeout"
ok "slowloris handshakes dropped at the handshake timeout"
kill "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null || true

# Connection limits: beyond max-connections new clients wait (not refused, not served);
# beyond max-connections-per-ip they are told EBUSY.
relay_start lim --max-connections 40 --max-connections-per-ip 30
out=$("$RELAYC" "$RELAY_URL" hold 35 2) || true
[[ $(kv "$out" welcomed) == 30 && $(kv "$out" busy) == 5 ]] || fail "per-IP limit: $out"
out=$("$RELAYC" "$RELAY_URL" hello) || fail "after the per-IP limit: $out"
ok "per-IP connection limit: the 31st is refused with EBUSY, later ones served"
kill "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null || true
relay_start lim2 --max-connections 20 --max-connections-per-ip 100
"$RELAYC" "$RELAY_URL" hold 20 4 >"$W/hold2.out" 2>&1 &
hold_pid=$!
PIDS+=("$hold_pid")
for ((i = 0; i < 100; i++)); do
    [[ $(tail -1 "$W/hold2.out" 2>/dev/null) == held=20 ]] && break
    sleep 0.05
done
out=$(timeout 2 "$RELAYC" "$RELAY_URL" hello) && fail "the 21st connection was served at once: $out"
wait "$hold_pid" 2>/dev/null || true
alive "once the held connections closed"
ok "connection limit: a client beyond it waits, and is served once there is room"
