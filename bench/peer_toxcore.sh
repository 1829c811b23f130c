#!/usr/bin/env bash
# The closest C peer, c-toxcore, measured in the same `make bench` run as duet, when
# libtoxcore-dev is installed (tools/deps.sh bench installs it). Builds ../shared/peers/
# toxcore/toxbench.c into BUILD/bench/toxbench (never committed), runs its main phases with
# a 50 MiB file, and prints one JSON line per figure with the duet/toxcore ratios next to the
# duet figures already in BUILD/bench/results.jsonl.
set -euo pipefail
build=${1:-build}
src=../shared/peers/toxcore/toxbench.c
if [[ ! -f $src ]] || ! pkg-config --exists toxcore 2>/dev/null; then
    echo "  toxcore    skipped: no ../shared/peers/toxcore or no libtoxcore-dev" >&2
    exit 0
fi
bin=$build/bench/toxbench
cc -O2 -o "$bin" "$src" $(pkg-config --cflags --libs toxcore) -lm
out=$build/bench/toxcore.jsonl
timeout 400 "$bin" -l main -f 50 >"$out" 2>/dev/null || true
python3 - "$out" "$build/bench/results.jsonl" <<'PY'
import json, sys
tox = {}
for l in open(sys.argv[1]):
    try:
        o = json.loads(l)
    except ValueError:
        continue
    tox[o.get("bench")] = o
duet = {}
for l in open(sys.argv[2]):
    try:
        o = json.loads(l)
    except ValueError:
        continue
    if "figure" in o and "value" in o:  # the LAN lines have another shape
        duet[o["figure"]] = o["value"]
def show(label, value, unit):
    print(json.dumps({"bench": "toxcore", "figure": label, "value": value, "unit": unit}))
    sys.stderr.write("  %-10s %-44s %14.6g %s\n" % ("toxcore", label, value, unit))
m = tox.get("tox_msg", {})
f = tox.get("tox_file", {})
if "msgs_per_s" in m:
    show("toxcore 100 B messages (nothing stored)", m["msgs_per_s"], "msgs/s")
    d = duet.get("notes synced over loopback (2 processes)")
    if d:
        show("ratio duet notes/s / toxcore msgs/s", d / m["msgs_per_s"], "x")
if "lat_p99_ms" in m:
    show("toxcore one-way latency p99", m["lat_p99_ms"], "ms")
if "mib_per_s" in f:
    show("toxcore 50 MiB file", f["mib_per_s"], "MiB/s")
    d = duet.get("50 MiB: transfer (target >= 200)")
    if d:
        show("ratio duet/toxcore file throughput", d / f["mib_per_s"], "x")
if "friend_connect_s" in tox.get("tox_connect", {}):
    show("toxcore time to connect", tox["tox_connect"]["friend_connect_s"], "s")
PY
