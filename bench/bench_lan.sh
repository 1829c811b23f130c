#!/usr/bin/env bash
# LAN discovery figures on a namespace LAN (root only): start-to-found time of a seeker when
# its partner already runs (N runs), and when both start together; CPU of a listening probe
# idle and under floods of random beacons; then the real binary: `duet sync --lan` start to
# done against the partner's daemon, and two connected daemons idle (CPU, RSS; BENCH_IDLE_S).
# Prints a table on stderr and JSON lines on stdout.
#   bench/bench_lan.sh [BUILD] [RUNS]
# Uses the namespace set-up of tests/integration/lan_ns.sh (hosts on a bridge, 10.247.76.x).
set -euo pipefail
build=${1:-build}
runs=${2:-30}
if [[ $(id -u) != 0 ]]; then
    echo "bench_lan: needs root for network namespaces; skipped" >&2
    exit 0
fi
export DUET_BIN_DIR=${DUET_BIN_DIR:-$PWD/$build/bin}
LAN_NS_LIB=1 . "$(dirname "$0")/../tests/integration/lan_ns.sh"
trap lan_cleanup EXIT
lan_setup 3 || { echo "bench_lan: cannot create namespaces; skipped" >&2; exit 0; }
W=$LAN_WORK
S=$(python3 -c 'print("c3" * 32)')

stats() { # NAME UNIT < values
    python3 -c '
import json, sys
v = sorted(float(x) for x in sys.stdin.read().split())
if not v:
    raise SystemExit("no samples")
q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
o = {"bench": "lan", "case": sys.argv[1], "unit": sys.argv[2], "n": len(v), "min": v[0],
     "median": q(0.5), "p95": q(0.95), "max": v[-1]}
print(json.dumps(o))
print("%-44s n=%-3d median %9.0f %s  p95 %9.0f  max %9.0f" % (sys.argv[1], len(v), o["median"],
      sys.argv[2], o["p95"], o["max"]), file=sys.stderr)' "$1" "$2"
}

# 1. The partner already runs: a fresh seeker each time, from the same host (so the runs are
# spaced to stay within the per-source rate limit, as a real device restarting would be).
lan_probe "$W/a.log" 1 --secret "$S" --port 5001 --count 0 --timeout-ms 600000
ann=$PID
sleep 0.5
for ((i = 0; i < runs; i++)); do
    lan_probe "$W/s$i.log" 2 --secret "$S" --seek --timeout-ms 3000
    lan_wait "$PID" 5 || { echo "bench_lan: run $i found nothing" >&2; exit 1; }
    lan_json "$W/s$i.log" 'found[0]["us"]'
    sleep 0.5   # the announcer's per-source bucket refills one answer per 500 ms
done | stats "start to found, partner running" us
kill "$ann"; wait "$ann" 2>/dev/null || true

# 2. Both start together (the seeker's query and the announcer's first beacon race).
for ((i = 0; i < runs / 3 + 1; i++)); do
    lan_probe "$W/ta$i.log" 1 --secret "$S" --port 5001 --count 0 --timeout-ms 1500
    a=$PID
    lan_probe "$W/tb$i.log" 2 --secret "$S" --seek --timeout-ms 1500
    lan_wait "$PID" 3 || { echo "bench_lan: together run $i found nothing" >&2; exit 1; }
    lan_wait "$a" 3 || true
    lan_json "$W/tb$i.log" 'found[0]["us"]'
done | stats "start to found, both start together" us

# 3. CPU of a listening probe for 5 s: idle, then under floods from host 3.
for rate in 0 1000 10000 50000; do
    if ((rate > 0)); then
        lan_probe "$W/f$rate.log" 3 --flood "$rate" --duration-ms 6000
        fl=$PID
        sleep 0.3
    fi
    lan_probe "$W/c$rate.log" 1 --secret "$S" --port 5001 --count 0 --timeout-ms 5000
    lan_wait "$PID" 8 || true
    ((rate > 0)) && { lan_wait "$fl" 8 || true; }
    line=$(lan_json "$W/c$rate.log" '"%d %d %d" % (done["cpu_ms"], done["ms"], done["received"])')
    read -r cpu ms recv <<<"$line"
    # A second seeker check under the heaviest flood is in lan_ns.sh; here only the cost.
    python3 -c 'import json,sys; r,c,m,n=map(int,sys.argv[1:]); print(json.dumps({"bench":"lan","case":"cpu under flood","rate":r,"cpu_ms":c,"wall_ms":m,"received":n,"cpu_pct":round(100*c/m,2),"us_per_datagram":round(1000*c/n,2) if n else None}))' \
        "$rate" "$cpu" "$ms" "$recv"
    printf '%-44s %6d/s: %5d ms CPU in %5d ms (%.1f%%), %d datagrams read\n' \
        "listening probe, flood of" "$rate" "$cpu" "$ms" "$(python3 -c "print(100*$cpu/$ms)")" "$recv" >&2
done

# 4. The real thing: two paired homes, A's daemon (LAN on, an ephemeral port, announcing) on
# host 1, `duet sync --lan` on host 2 with a new note each time: wall time from the command's
# start to its exit (discovery, TCP, Noise KK, the sync, the durable commit, the ack).
DUET=$DUET_BIN_DIR/duet
"$DUET" --home "$W/ha" init --name A >/dev/null
"$DUET" --home "$W/hb" init --name B >/dev/null
"$DUET_BIN_DIR/duet-pairhomes" pair "$W/ha" "$W/hb" >/dev/null
ip netns exec "$(lan_host 1)" "$DUET" --home "$W/ha" --json daemon >"$W/da.log" 2>&1 &
DA=$!
LAN_PIDS+=("$DA")
for ((i = 0; i < 50; i++)); do grep -qs listening "$W/da.log" && break; sleep 0.1; done
for ((i = 0; i < runs / 2 + 1; i++)); do
    "$DUET" --home "$W/hb" note "bench $i" >/dev/null
    t0=$(date +%s%N)
    ip netns exec "$(lan_host 2)" "$DUET" --home "$W/hb" sync --lan --timeout 10 >/dev/null 2>&1 ||
        { echo "bench_lan: sync --lan failed" >&2; exit 1; }
    echo $((($(date +%s%N) - t0) / 1000))
    sleep 0.5   # the daemon answers queries from one source at most every 500 ms
done | stats "duet sync --lan, start to done" us

# 5. Both daemons running and connected, idle for BENCH_IDLE_S seconds (60): CPU and RSS.
ip netns exec "$(lan_host 2)" "$DUET" --home "$W/hb" --json daemon >"$W/db.log" 2>&1 &
DB=$!
LAN_PIDS+=("$DB")
for ((i = 0; i < 100; i++)); do grep -qs partner_online "$W/db.log" && break; sleep 0.1; done
idle=${BENCH_IDLE_S:-60}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
a0=$(ticks "$DA"); b0=$(ticks "$DB")
sleep "$idle"
a1=$(ticks "$DA"); b1=$(ticks "$DB")
for who in A B; do
    if [[ $who == A ]]; then p=$DA; c=$((a1 - a0)); else p=$DB; c=$((b1 - b0)); fi
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$p/status")
    cpu_ms=$((c * 1000 / hz))
    echo "{\"bench\":\"lan\",\"case\":\"daemon idle, partner connected, LAN on\",\"who\":\"$who\",\"seconds\":$idle,\"cpu_ms\":$cpu_ms,\"rss_kib\":$rss}"
    printf '%-44s %s: %5d ms CPU in %d s, RSS %d KiB (target <= 8192)\n' \
        "daemon idle, partner connected, LAN on" "$who" "$cpu_ms" "$idle" "$rss" >&2
done
