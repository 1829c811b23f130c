#!/usr/bin/env bash
# Bad input and damaged stores, through the real binary: each case must end with one clear
# "duet: ..." line on stderr, a nonzero status, and the store exactly as it was.
set -euo pipefail
DUET=${DUET:-$PWD/build/bin/duet}
W=$(mktemp -d "${TMPDIR:-/tmp}/duet-faults.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT
fail() { echo "not ok - $*" >&2; exit 1; }
ok() { echo "ok - $*"; }
d() { local h=$1; shift; "$DUET" --home "$W/$h" --json "$@"; }
count() { d "$1" inbox --peek | wc -l; }
# expect_err HOME PATTERN CMD...: the command fails with exactly one stderr line matching.
expect_err() {
    local home=$1 pat=$2 rc=0; shift 2
    d "$home" "$@" >/dev/null 2>"$W/err" || rc=$?
    [[ $rc != 0 ]] || fail "'$*' succeeded, expected: $pat"
    [[ $(wc -l <"$W/err") == 1 ]] || fail "'$*' printed more than one error line: $(cat "$W/err")"
    grep -q "^duet: .*$pat" "$W/err" || fail "'$*': wanted '$pat', got: $(cat "$W/err")"
}

d a init --name river >/dev/null
d a note "one" >/dev/null
d a note "two" >/dev/null
expect_err a "already initialised" init --name again
[[ $(count a) == 2 ]] || fail "second init changed the store"
ok "second init refused"

rc=0; d a frobnicate >/dev/null 2>&1 || rc=$?; [[ $rc == 2 ]] || fail "unknown command: exit $rc"
rc=0; d a note >/dev/null 2>&1 || rc=$?; [[ $rc == 2 ]] || fail "note without text: exit $rc"
rc=0; d a inbox --limit x >/dev/null 2>&1 || rc=$?; [[ $rc == 2 ]] || fail "bad --limit: exit $rc"
rc=0; d a inbox --frob >/dev/null 2>&1 || rc=$?; [[ $rc == 2 ]] || fail "unknown option: exit $rc"
printf '\xc3\x28' | expect_err a "UTF-8" note -
head -c 70000 /dev/zero | tr '\0' 'x' | expect_err a "64 KiB" note -
printf '' | expect_err a "empty" note -
[[ $(count a) == 2 ]] || fail "bad input changed the store"
ok "usage errors exit 2, bad text refused"

expect_err nothere "not been initialised" status
expect_err nothere "not been initialised" inbox
ok "uninitialised home refused"

# A passphrase-protected home.
printf 'right horse battery\n' >"$W/pass"; printf 'wrong horse battery\n' >"$W/wrong"
d p init --name p --passphrase-file "$W/pass" >/dev/null
"$DUET" --home "$W/p" --passphrase-file "$W/pass" note "behind a passphrase" >/dev/null
rc=0; "$DUET" --home "$W/p" --passphrase-file "$W/wrong" note "x" 2>"$W/err" >/dev/null || rc=$?
[[ $rc == 1 ]] && grep -q '^duet: .*wrong passphrase' "$W/err" || fail "wrong passphrase: $rc $(cat "$W/err")"
rc=0; "$DUET" --home "$W/p" note "x" </dev/null 2>"$W/err" >/dev/null || rc=$?
[[ $rc == 1 ]] && grep -q '^duet: .*passphrase' "$W/err" || fail "no passphrase: $(cat "$W/err")"
n=$(DUET_PASSPHRASE_FILE="$W/pass" "$DUET" --home "$W/p" --json inbox --peek | wc -l)
[[ $n == 1 ]] || fail "passphrase home holds $n items"
if grep -rqa "behind a passphrase" "$W/p"; then fail "passphrase home readable"; fi
ok "wrong or missing passphrase refused, nothing touched"

# A database from a newer duet.
cp -r "$W/a" "$W/newer"
python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("PRAGMA user_version=99"); c.commit()' "$W/newer/duet.db"
expect_err newer "newer duet" inbox
v=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("PRAGMA user_version").fetchone()[0])' "$W/newer/duet.db")
[[ $v == 99 ]] || fail "newer schema was rewritten to $v"
ok "newer schema refused, not downgraded"

# Garbage and truncated database files.
cp -r "$W/a" "$W/garbage"; head -c 65536 /dev/urandom >"$W/garbage/duet.db"; rm -f "$W/garbage/duet.db-wal" "$W/garbage/duet.db-shm"
expect_err garbage "damaged" inbox
cp -r "$W/a" "$W/trunc"
for i in $(seq 1 200); do echo "filler note $i ................................................."; done >"$W/fill"
while read -r line; do d trunc note "$line" >/dev/null; done <"$W/fill"
python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("PRAGMA wal_checkpoint(TRUNCATE)")' "$W/trunc/duet.db"
size=$(stat -c %s "$W/trunc/duet.db"); truncate -s $((size / 2)) "$W/trunc/duet.db"
expect_err trunc "damaged" inbox
ok "garbage and truncated databases reported as damaged"

# Locked by another writer for longer than the busy timeout.
python3 - "$W/a/duet.db" >"$W/lock.log" 2>&1 <<'PY' &
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(4)
c.execute("ROLLBACK")
PY
PIDS+=($!)
for _ in $(seq 1 50); do grep -q locked "$W/lock.log" && break; sleep 0.1; done
grep -q locked "$W/lock.log" || fail "could not take the lock"
DUET_BUSY_TIMEOUT_MS=300 expect_err a "locked" note "while locked"
wait "${PIDS[-1]}" || true
[[ $(count a) == 2 ]] || fail "a locked write changed the store"
d a note "after the lock" >/dev/null || fail "note after the lock was released"
ok "locked database: clear error, then works"

if [[ $(id -u) == 0 ]] && command -v unshare >/dev/null && unshare -m true 2>/dev/null; then
    # Read-only: the home bind-mounted read-only in a private mount namespace.
    before=$(count a)
    rc=0
    unshare -m bash -c 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && exec "$2" --home "$1" --json note "on a read-only disk"' _ "$W/a" "$DUET" >/dev/null 2>"$W/err" || rc=$?
    [[ $rc != 0 ]] && grep -q '^duet: ' "$W/err" && [[ $(wc -l <"$W/err") == 1 ]] || fail "read-only: rc=$rc $(cat "$W/err")"
    [[ $(count a) == "$before" ]] || fail "read-only attempt changed the store"
    ok "read-only disk: $(cat "$W/err")"

    # Full disk: a 3 MiB tmpfs, filled up, in a private mount namespace.
    rc=0
    unshare -m bash -c '
        set -e
        mkdir -p "$1/full"; mount -t tmpfs -o size=3m tmpfs "$1/full"
        d() { "$2" --home "$1/full/h" --json "$@"; }
        "$2" --home "$1/full/h" init --name full >/dev/null
        "$2" --home "$1/full/h" note "kept" >/dev/null
        head -c 8m /dev/zero >"$1/full/filler" 2>/dev/null || true
        rc=0; "$2" --home "$1/full/h" note "$(head -c 60000 /dev/zero | tr "\0" y)" >/dev/null 2>"$1/err" || rc=$?
        [ $rc != 0 ] || exit 10
        grep -q "^duet: .*no space left" "$1/err" || exit 11
        rm -f "$1/full/filler"
        [ "$("$2" --home "$1/full/h" --json inbox --peek | wc -l)" = 1 ] || exit 12
        "$2" --home "$1/full/h" note "after" >/dev/null || exit 13
    ' _ "$W" "$DUET" || rc=$?
    [[ $rc == 0 ]] || fail "full disk case failed at step $rc: $(cat "$W/err" 2>/dev/null)"
    ok "full disk: clear error, nothing lost, works again once there is room"
else
    echo "ok - skipped: read-only and full-disk cases need root and unshare"
fi
