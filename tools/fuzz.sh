#!/usr/bin/env bash
# Run every libFuzzer target for a bounded time from its corpus: tools/fuzz.sh BUILD SECONDS.
# New inputs that raise coverage go to a scratch folder, not the committed corpus; a crash
# leaves its input in BUILD/fuzz/crashes/ and fails the run.
set -euo pipefail
build=${1:-build-fuzz}
secs=${2:-30}
mkdir -p "$build/fuzz/crashes" "$build/fuzz/new"
status=0
for f in "$build"/fuzz/fuzz_*; do
    [[ -x $f ]] || continue
    name=${f##*/fuzz_}
    corpus=tests/fuzz/corpus/$name
    mkdir -p "$build/fuzz/new/$name"
    echo "== $name ($secs s)"
    if ! "$f" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$build/fuzz/crashes/$name-" "$build/fuzz/new/$name" "$corpus" \
        2>"$build/fuzz/$name.log"; then
        echo "fuzz: $name found a crash; see $build/fuzz/$name.log" >&2
        status=1
    fi
    grep -E '^#[0-9]+.*DONE|stat::number_of_executed_units' "$build/fuzz/$name.log" | tail -1 || true
done
exit $status
