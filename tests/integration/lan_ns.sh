#!/usr/bin/env bash
# LAN discovery between real hosts: network namespaces of this machine on one bridge (a
# switch), each host a namespace with a veth into it, 10.247.76.0/24. duet-lanprobe runs the
# real net/discovery on each. Checks: the partner is found in under a second; two couples on
# one LAN each find only their own; discovery works under a flood of 10,000 random
# beacons/s and the probe's CPU stays bounded; a link that goes down and up is found again;
# IPv6 link-local alone works; pairing by nameplate finds only the same nameplate; clock skew
# within a window is tolerated and three windows are not; a capture of the LAN holds no
# secret and no two beacons share bytes.
#
# Needs root (network namespaces); otherwise prints a skip line and exits 0. Everything it
# creates is removed on exit. bench/bench_lan.sh sources this file with LAN_NS_LIB=1 to get
# the set-up functions only.
set -euo pipefail

PROBE=${DUET_BIN_DIR:-$PWD/build/bin}/duet-lanprobe
LAN_ID=${LAN_ID:-$$}
LAN_SW=dsw-$LAN_ID                # the switch namespace
LAN_NET=10.247.76                 # test-only addresses, inside the test namespaces only
LAN_HOSTS=()
LAN_PIDS=()
LAN_WORK=

# lan_host N: the namespace name of host N.
lan_host() { echo "dh$1-$LAN_ID"; }
# lan_if N: host N's interface (inside its namespace; IFNAMSIZ allows 15 bytes).
lan_if() { echo "e$1-$((LAN_ID % 100000))"; }

lan_cleanup() {
    local p h
    for p in "${LAN_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${LAN_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    for h in "${LAN_HOSTS[@]}"; do ip netns del "$h" 2>/dev/null || true; done
    ip netns del "$LAN_SW" 2>/dev/null || true
    if [[ -n $LAN_WORK && -z ${KEEP:-} ]]; then rm -rf "$LAN_WORK"; fi
}

# lan_setup N: a switch and hosts 1..N on it, host i at $LAN_NET.i. Returns 1 if namespaces
# cannot be made here.
lan_setup() {
    local n=$1 i h
    LAN_WORK=$(mktemp -d "${TMPDIR:-/tmp}/duet-lan.XXXXXX")
    ip netns add "$LAN_SW" 2>/dev/null || return 1
    ip -n "$LAN_SW" link add br0 type bridge mcast_snooping 0
    ip -n "$LAN_SW" link set br0 up
    for ((i = 1; i <= n; i++)); do
        h=$(lan_host "$i")
        ip netns add "$h"
        LAN_HOSTS+=("$h")
        # No duplicate address detection: the IPv6 link-local address is usable at once.
        ip netns exec "$h" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 || true
        ip -n "$h" link add "$(lan_if "$i")" type veth peer name "p$i" netns "$LAN_SW"
        ip -n "$LAN_SW" link set "p$i" master br0 up
        ip -n "$h" addr add "$LAN_NET.$i/24" dev "$(lan_if "$i")"
        ip -n "$h" link set lo up
        ip -n "$h" link set "$(lan_if "$i")" up multicast on
    done
}

# lan_probe LOG HOST ARGS...: run duet-lanprobe in host HOST in the background; pid in $PID.
lan_probe() {
    local log=$1 host=$2
    shift 2
    ip netns exec "$(lan_host "$host")" "$PROBE" "$@" >"$log" 2>&1 &
    PID=$!
    LAN_PIDS+=("$PID")
}

# lan_wait PID SECONDS: wait for a probe to end, at most SECONDS; its status (124: too long).
lan_wait() {
    local pid=$1 limit=$2 i
    for ((i = 0; i < limit * 20; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" && return 0 || return $?; }
        sleep 0.05
    done
    kill "$pid" 2>/dev/null || true
    return 124
}

# lan_json LOG EXPR: a Python expression over L, the JSON records of LOG.
lan_json() {
    python3 -c 'import json,sys
L=[]
for l in open(sys.argv[1], errors="replace"):
    try: L.append(json.loads(l))
    except ValueError: pass
found=[x for x in L if x.get("event")=="found"]
done=([x for x in L if x.get("event")=="done"] or [{}])[-1]
print(eval(sys.argv[2]))' "$1" "$2"
}

[[ -n ${LAN_NS_LIB:-} ]] && return 0

# ---------------------------------------------------------------------------------------------
if [[ $(id -u) != 0 ]] || ! command -v ip >/dev/null; then
    echo "ok - skipped: needs root and iproute2 for network namespaces"; exit 0
fi
[[ -x $PROBE ]] || { echo "not ok - no probe at $PROBE (build first)"; exit 1; }
trap lan_cleanup EXIT
if ! lan_setup 5; then
    echo "ok - skipped: cannot create network namespaces here"; exit 0
fi
W=$LAN_WORK
fail() { echo "not ok - $*"; for f in "$W"/*.log; do echo "== $f"; cat "$f"; done; exit 1; }
ok() { echo "ok - $*"; }
S1=$(python3 -c 'print("a1" * 32)')      # couple 1's pair secret (a test value)
S2=$(python3 -c 'print("b2" * 32)')      # couple 2's
FAST=(--rescan-ms 300)

# 1. Start to found, both orders.
lan_probe "$W/1a.log" 1 --secret "$S1" --port 5001 --count 0 --timeout-ms 4000 "${FAST[@]}"
a=$PID
sleep 0.5
lan_probe "$W/1b.log" 2 --secret "$S1" --seek --timeout-ms 3000 "${FAST[@]}"
lan_wait "$PID" 5 || fail "seeker did not find the announcer"
ms=$(lan_json "$W/1b.log" 'found[0]["ms"]')
[[ $(lan_json "$W/1b.log" 'found[0]["addr"]+":"+str(found[0]["port"])') == "$LAN_NET.1:5001" ]] ||
    fail "seeker found the wrong address"
((ms < 1000)) || fail "found after $ms ms (target < 1000)"
lan_wait "$a" 6 || true
ok "seeker finds a running announcer in $(lan_json "$W/1b.log" 'found[0]["us"]') µs (the answer to its query)"

lan_probe "$W/1c.log" 2 --secret "$S1" --seek --timeout-ms 5000 "${FAST[@]}"
b=$PID
sleep 1.5
lan_probe "$W/1d.log" 1 --secret "$S1" --port 5001 --count 0 --timeout-ms 2000 "${FAST[@]}"
a=$PID
lan_wait "$b" 7 || fail "announcer started later was not found"
lan_wait "$a" 4 || true
ms=$(lan_json "$W/1c.log" 'found[0]["ms"]')
((ms < 1500 + 1000)) || fail "found $ms ms after start, the announcer started at 1500"
ok "an announcer that starts later is found at once (seeker: $ms ms after its own start, 1500 after the announcer's)"

# 2. Two couples on one LAN, every device seeking and listening at once.
lan_probe "$W/2-1.log" 1 --secret "$S1" --port 5001 --seek --count 0 --timeout-ms 2500
lan_probe "$W/2-2.log" 2 --secret "$S1" --port 5002 --seek --count 0 --timeout-ms 2500
lan_probe "$W/2-3.log" 3 --secret "$S2" --port 6003 --seek --count 0 --timeout-ms 2500
lan_probe "$W/2-4.log" 4 --secret "$S2" --port 6004 --seek --count 0 --timeout-ms 2500
for p in "${LAN_PIDS[@]: -4}"; do lan_wait "$p" 5 || true; done
check_only() { # LOG EXPECTED-ADDR:PORT
    local got
    got=$(lan_json "$1" '" ".join(sorted(set(x["addr"]+":"+str(x["port"]) for x in found if x["family"]==4)))')
    [[ $got == "$2" ]] || fail "$1 found '$got', expected only '$2'"
    got=$(lan_json "$1" '" ".join(sorted(set(str(x["port"]) for x in found)))')
    [[ $got == "${2##*:}" ]] || fail "$1 found ports '$got' (IPv4 and IPv6), expected only ${2##*:}"
    (($(lan_json "$1" 'done["unknown"]') > 0)) || fail "$1 heard no beacon of the other couple"
}
check_only "$W/2-1.log" "$LAN_NET.2:5002"
check_only "$W/2-2.log" "$LAN_NET.1:5001"
check_only "$W/2-3.log" "$LAN_NET.4:6004"
check_only "$W/2-4.log" "$LAN_NET.3:6003"
ok "two couples on one LAN: each device finds only its partner, with the other couple's beacons present"

# 3. A flood of 10,000 random beacon-sized datagrams per second from host 5.
lan_probe "$W/3f.log" 5 --flood 10000 --duration-ms 6000
flood=$PID
sleep 0.5
lan_probe "$W/3a.log" 1 --secret "$S1" --port 5001 --count 0 --timeout-ms 5000 "${FAST[@]}"
a=$PID
sleep 2
lan_probe "$W/3b.log" 2 --secret "$S1" --seek --timeout-ms 2000 "${FAST[@]}"
lan_wait "$PID" 4 || fail "no discovery under the flood"
ms=$(lan_json "$W/3b.log" 'found[0]["ms"]')
((ms < 1000)) || fail "under the flood, found after $ms ms"
ms=$(lan_json "$W/3b.log" 'found[0]["us"] / 1000')
lan_wait "$a" 7 || true
lan_wait "$flood" 8 || fail "flood tool"
read -r recv cpu wall < <(lan_json "$W/3a.log" '" ".join(str(done[k]) for k in ("received", "cpu_ms", "ms"))')
((recv > 30000)) || fail "the flood did not reach the announcer ($recv datagrams)"
pct=$((cpu * 100 / wall))
((pct < ${LAN_FLOOD_CPU_MAX:-40})) || fail "CPU under the flood: $cpu ms in $wall ms ($pct%)"
ok "under 10,000 beacons/s: found in $ms ms; the announcer read $recv datagrams in $wall ms using $cpu ms of CPU ($pct%)"

# 4. The link goes down and comes back.
lan_probe "$W/4a.log" 1 --secret "$S1" --port 5001 --count 0 --timeout-ms 9000 "${FAST[@]}"
a=$PID
sleep 0.3
t0=$(date +%s%3N)
lan_probe "$W/4b.log" 2 --secret "$S1" --seek --count 0 --timeout-ms 8000 "${FAST[@]}"
b=$PID
sleep 1.5
(($(lan_json "$W/4b.log" 'len(found)') >= 1)) || fail "not found before the link went down"
ip -n "$(lan_host 2)" link set "$(lan_if 2)" down
sleep 2
before_up=$(lan_json "$W/4b.log" 'len(found)')
t_up=$(($(date +%s%3N) - t0))
ip -n "$(lan_host 2)" link set "$(lan_if 2)" up
lan_wait "$b" 10 || true
lan_wait "$a" 3 || true
again=$(lan_json "$W/4b.log" "min([x['ms'] for x in found if x['ms'] > $t_up] or [-1])")
((again >= 0)) || fail "not found again after the link came back (up at ${t_up} ms)"
((again - t_up < 2000)) || fail "found again only $((again - t_up)) ms after the link came back"
(($(lan_json "$W/4b.log" 'done["ifaces_removed"]') >= 1)) || fail "the interface was never dropped"
ok "link down then up: found again $((again - t_up)) ms after it came back ($before_up reports before)"

# 5. IPv6 link-local alone.
lan_probe "$W/5a.log" 1 --secret "$S1" --port 5001 --no-ipv4 --count 0 --timeout-ms 1500
a=$PID
sleep 0.3
lan_probe "$W/5b.log" 2 --secret "$S1" --seek --no-ipv4 --timeout-ms 1000
lan_wait "$PID" 4 || fail "no discovery over IPv6"
lan_wait "$a" 4 || true
[[ $(lan_json "$W/5b.log" 'found[0]["family"] == 6 and found[0]["addr"].startswith("fe80:") and found[0]["scope"] > 0 and found[0]["port"] == 5001') == True ]] ||
    fail "IPv6 report lacks a link-local address and scope"
ok "IPv6 link-local: found $(lan_json "$W/5b.log" 'found[0]["addr"]') with its scope id"

# 6. Pairing by nameplate: only the same nameplate answers.
lan_probe "$W/6a.log" 1 --nameplate 8157 --port 7001 --count 0 --timeout-ms 2500
a=$PID
sleep 0.3
lan_probe "$W/6b.log" 2 --nameplate 8157 --seek --timeout-ms 2000
pb=$PID
lan_probe "$W/6c.log" 3 --nameplate 8158 --seek --timeout-ms 2000
pc=$PID
lan_wait "$pb" 4 || fail "joiner with the right nameplate found nothing"
if lan_wait "$pc" 4; then fail "a joiner with another nameplate found something"; fi
[[ $(lan_json "$W/6b.log" 'found[0]["port"]') == 7001 ]] || fail "joiner found the wrong port"
lan_wait "$a" 4 || true
ok "pairing: the joiner finds the listener of its nameplate, another nameplate finds nothing"

# 7. Clock skew (2 s windows): 1.5 s is tolerated, 3 windows are not.
lan_probe "$W/7a.log" 1 --secret "$S1" --port 5001 --window-ms 2000 --skew-ms 1500 --count 0 --timeout-ms 1500
a=$PID
sleep 0.3
lan_probe "$W/7b.log" 2 --secret "$S1" --seek --window-ms 2000 --timeout-ms 1000
lan_wait "$PID" 4 || fail "1.5 s of clock skew with 2 s windows was not tolerated"
lan_wait "$a" 4 || true
lan_probe "$W/7c.log" 1 --secret "$S1" --port 5001 --window-ms 2000 --skew-ms 6000 --announce-ms 200 --count 0 --timeout-ms 2500
a=$PID
sleep 0.3
lan_probe "$W/7d.log" 2 --secret "$S1" --seek --window-ms 2000 --timeout-ms 2000
if lan_wait "$PID" 4; then fail "a clock 3 windows ahead was accepted"; fi
lan_wait "$a" 4 || true
(($(lan_json "$W/7d.log" 'done["unknown"]') > 0)) || fail "the skewed beacons never arrived"
ok "clock skew: 1.5 s tolerated with 2 s windows, 3 windows refused"

# 8. What the LAN sees: capture on the switch.
if command -v tcpdump >/dev/null; then
    ip netns exec "$LAN_SW" tcpdump -i br0 -U -w "$W/lan.pcap" udp >"$W/tcpdump.txt" 2>&1 &
    tcpd=$!
    LAN_PIDS+=("$tcpd")
    sleep 1
    lan_probe "$W/8a.log" 1 --secret "$S1" --port 5001 --seek --count 0 --window-ms 1000 --announce-ms 200 --timeout-ms 4000
    lan_probe "$W/8b.log" 2 --secret "$S1" --port 5002 --seek --count 0 --window-ms 1000 --announce-ms 200 --timeout-ms 4000
    lan_probe "$W/8c.log" 3 --nameplate 8157 --port 7001 --count 0 --window-ms 1000 --announce-ms 200 --timeout-ms 4000
    lan_probe "$W/8d.log" 4 --nameplate 8157 --seek --count 0 --window-ms 1000 --query-ms 300 --timeout-ms 4000
    for p in "${LAN_PIDS[@]: -4}"; do lan_wait "$p" 6 || true; done
    sleep 0.5
    kill "$tcpd" 2>/dev/null || true
    wait "$tcpd" 2>/dev/null || true
    python3 - "$W/lan.pcap" "$S1" 8157 <<'PY' || fail "capture check"
import base64, struct, sys
data = open(sys.argv[1], "rb").read()
secret_hex, nameplate = sys.argv[2], sys.argv[3].encode()
secret = bytes.fromhex(secret_hex)
needles = [secret, secret_hex.encode(), secret_hex.upper().encode(), base64.b64encode(secret),
           base64.b64encode(secret).rstrip(b"=")]
for n in needles:
    assert n not in data, "the capture holds the pair secret"
magic = struct.unpack("<I", data[:4])[0]
assert magic == 0xa1b2c3d4, "unexpected pcap format"
link = struct.unpack("<I", data[20:24])[0]
off, beacons = 24, []
while off + 16 <= len(data):
    sec, usec, incl, _ = struct.unpack("<IIII", data[off:off + 16])
    pkt = data[off + 16:off + 16 + incl]
    off += 16 + incl
    p = pkt[14:] if link == 1 else pkt
    if link == 1 and pkt[12:14] == b"\x81\x00":
        p = pkt[18:]
    if p[:1] and p[0] >> 4 == 4:
        ihl = (p[0] & 15) * 4
        proto, src, l4 = p[9], p[12:16], p[ihl:]
    elif p[:1] and p[0] >> 4 == 6:
        proto, src, l4 = p[6], p[8:24], p[40:]
    else:
        continue
    if proto != 17:
        continue
    payload = l4[8:]
    beacons.append((sec * 1000 + usec // 1000, src, payload))
assert len(beacons) >= 40, f"too few beacons captured: {len(beacons)}"
sizes = {len(b[2]) for b in beacons}
assert sizes == {56}, f"beacon sizes {sizes}"
for _, _, p in beacons:
    assert nameplate not in p, "a beacon holds the nameplate"
    for n in needles:
        assert n not in p
# No two beacons share a run of 5 bytes, in particular none of one device in two windows.
RUN = 5
seen = {}
windows = {}
for i, (ms, src, p) in enumerate(beacons):
    windows.setdefault(src, set()).add(ms // 1000)
    for j in range(len(p) - RUN + 1):
        k = p[j:j + RUN]
        if k in seen and seen[k] != i:
            raise SystemExit(f"beacons {seen[k]} and {i} share the bytes {k.hex()}")
        seen[k] = i
multi = [s for s, w in windows.items() if len(w) >= 3]
assert multi, "no device was captured over three windows"
print(f"{len(beacons)} beacons, all 56 bytes, from {len(windows)} addresses over "
      f"{max(len(w) for w in windows.values())} windows; no shared 5-byte run")
PY
    ok "capture: no secret or nameplate on the wire, every beacon 56 bytes, no two beacons share bytes"
else
    echo "ok - skipped: capture not checked (no tcpdump)"
fi
