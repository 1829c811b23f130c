#!/usr/bin/env bash
# The Noise engine against the third-party cacophony vectors: every vector of duet's suite
# (25519_ChaChaPoly_BLAKE2b) in a supported pattern must pass, the patterns duet relies on
# must be present, and nothing may fail. See tests/vectors/noise/ and MANIFEST.md.
set -euo pipefail

: "${DUET_BIN_DIR:?set DUET_BIN_DIR to the bin folder of a build}"
VECTORS="${DUET_VECTORS:-tests/vectors}/noise/cacophony.txt"
OUT="$(mktemp)"
trap 'rm -f "$OUT"' EXIT

status=0
"$DUET_BIN_DIR/duet-noise-vectors" --json "$VECTORS" >"$OUT" || status=$?
if [ "$status" -ne 0 ]; then
    echo "noise_vectors: duet-noise-vectors exited with $status" >&2
fi

python3 - "$OUT" "$status" <<'PY'
import json, re, sys

out, status = sys.argv[1], int(sys.argv[2])
lines = open(out).read().splitlines()
if not lines:
    sys.exit("noise_vectors: no output")
summary = lines[-1]
m = re.fullmatch(r"(\d+) passed, (\d+) failed, (\d+) skipped", summary)
if not m:
    sys.exit("noise_vectors: bad summary line: %r" % summary)
results = {}
for line in lines[:-1]:
    rec = json.loads(line)
    results.setdefault(rec["protocol"], []).append(rec["result"])

SUITE = "_25519_ChaChaPoly_BLAKE2b"
BASES = "N K X NN NK NX KN KK KX XN XK XX IN IK IX".split()
# The patterns duet uses or builds on: each must be present at least once.
WANTED = ["Noise_%s%s" % (p, SUITE) for p in ("KK", "NK", "XX", "IK", "XXpsk3")]
# Every vector of the suite in a supported pattern, psk modifiers included, must pass.
SUPPORTED = re.compile(r"Noise_(%s)(psk\d(\+psk\d)*)?%s" % ("|".join(BASES), re.escape(SUITE)))

errors = []
for name in WANTED:
    if name not in results:
        errors.append("missing from the vector file: " + name)
checked = 0
for name, rs in sorted(results.items(), key=lambda kv: str(kv[0])):
    if name is not None and SUPPORTED.fullmatch(name):
        checked += len(rs)
        for r in rs:
            if r != "pass":
                errors.append("%s: %s" % (name, r))
    elif "fail" in rs:
        errors.append("%s: fail" % name)
if int(m.group(2)) != 0:
    errors.append("the summary reports failures: " + summary)
if status != 0:
    errors.append("exit status %d" % status)
if errors:
    print("\n".join("noise_vectors: " + e for e in errors), file=sys.stderr)
    sys.exit(1)
print("noise_vectors: %d vectors of the suite passed (%s)" % (checked, summary))
PY
