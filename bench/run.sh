#!/usr/bin/env bash
# make bench: every benchmark in one run, so ratios compare figures from the same machine at
# the same moment. Prints a readable table on stderr and JSON lines in BUILD/bench/results.jsonl.
set -euo pipefail
build=${1:-build}
out=$build/bench/results.jsonl
: >"$out"
echo "duet benchmarks on $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%dT%H:%MZ)" >&2
run() { echo "-- $*" >&2; "$@" | tee -a "$out" >/dev/null; }
run "$build/bench/bench_store" "${BENCH_NOTES:-100000}" "${BENCH_INBOX_ITEMS:-1000000}" "$build/bin/duet"
run "$build/bench/bench_sync" "$build/bin/duet" "${BENCH_SYNC_NOTES:-100000}"
# bench_relay: ENVELOPES PAIRS IDLE-CONNECTIONS LATENCY-ROUNDS DUET
run "$build/bench/bench_relay" "${BENCH_RELAY_ENVELOPES:-200000}" 8 "${BENCH_RELAY_IDLE:-10000}" \
    1000 "$build/bin/duet"
for b in "$build"/bench/bench_*; do
    case ${b##*/} in bench_store | bench_sync | bench_relay) continue ;; esac
    [[ -x $b ]] && run "$b" "$build/bin/duet"
done
bash bench/bench_lan.sh "$build" 20 | tee -a "$out" >/dev/null || true
if [[ -x bench/peer_toxcore.sh ]]; then
    bash bench/peer_toxcore.sh "$build" | tee -a "$out" >/dev/null || true
fi
echo "results: $out" >&2
