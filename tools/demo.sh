#!/usr/bin/env bash
# make demo: two devices on this machine, River and Harbor, in a temporary folder removed at
# the end. Each step prints the command a person would type on that device.
set -euo pipefail
DUET=${1:-build/bin/duet}
[[ -x $DUET ]] || { echo "demo: build first (make)" >&2; exit 1; }
DUET=$(cd "$(dirname "$DUET")" && pwd)/$(basename "$DUET")
W=$(mktemp -d "${TMPDIR:-/tmp}/duet-demo.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT
if [[ -t 1 && -z ${NO_COLOR:-} ]]; then B=$'\033[1m' D=$'\033[2m' R=$'\033[0m'; else B= D= R=; fi
step() { printf '\n%s== %s%s\n' "$B" "$*" "$R"; }
say() { printf '%s%s%s\n' "$D" "$*" "$R"; }
run() { local who=$1; shift; printf '%s%s$ duet %s%s\n' "$D" "$who" "$*" "$R"; "$DUET" --home "$W/$who" "$@"; }
has() { "$DUET" "$1" --help >/dev/null 2>&1; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # wait_for FILE PATTERN
    local i; for ((i = 0; i < 100; i++)); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "demo: timed out waiting for '$2' in $1" >&2; return 1
}

step "Two devices: River and Harbor"
run river init --name River
run harbor init --name Harbor

step "A note written before pairing waits in River's outbox"
run river note "Thinking of you before your appointment today."

step "Pairing with a short code (here over 127.0.0.1; at home: 'duet pair', no address)"
p=$(port)
"$DUET" --home "$W/river" pair --listen "127.0.0.1:$p" >"$W/pair.log" 2>&1 &
PIDS+=($!)
wait_for "$W/pair.log" "pairing code"
cat "$W/pair.log"
code=$(grep -o '[0-9]*-[a-z]*-[a-z]*' "$W/pair.log" | head -1)
run harbor pair "$code" --connect "127.0.0.1:$p"
wait "${PIDS[-1]}"
say "Both devices show the same safety number; compare it once, then confirm:"
run river verify --confirm
run harbor verify --confirm

step "Harbor keeps a daemon running; River writes and syncs"
hp=$(port)
"$DUET" --home "$W/harbor" daemon --listen "127.0.0.1:$hp" --no-lan >"$W/daemon.log" 2>&1 &
PIDS+=($!)
HD=$!
wait_for "$W/daemon.log" listening
run river note "Made soup. Saving you a bowl."
run river sync --connect "127.0.0.1:$hp"
printf 'Slept badly, but the walk helped.\nTalk tonight?\n' | run harbor note -
say "(Harbor's daemon was nudged; River's next sync brings the reply)"
run river sync --connect "127.0.0.1:$hp"

step "Both inboxes: the same conversation, in the same order, with delivered/read marks"
run harbor inbox
run river sync --connect "127.0.0.1:$hp" >/dev/null
say "Harbor has read them; River sees it:"
run river inbox --peek

if has voice; then
    step "A voice note, when typing is too much"
    python3 - "$W/hello.wav" <<'PY'
import math, struct, sys, wave
w = wave.open(sys.argv[1], "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
w.writeframes(b"".join(struct.pack("<h", int(6000 * math.sin(2 * math.pi * 330 * i / 16000))) for i in range(24000)))
w.close()
PY
    run river voice "$W/hello.wav" --caption "a little hum for you"
    run river sync --connect "127.0.0.1:$hp"
    id=$("$DUET" --home "$W/harbor" --json inbox --peek | python3 -c 'import json,sys; print([json.loads(l) for l in sys.stdin if "voice" in l][-1]["id"])')
    run harbor voice save "$id" "$W/got.wav"
    cmp -s "$W/hello.wav" "$W/got.wav" && say "the saved file is byte-identical to River's"
fi

if has checkin; then
    step "A weekly check-in, revealed together"
    ritual=$("$DUET" --home "$W/river" --json checkin start weekly | python3 -c 'import json,sys; print(json.loads(sys.stdin.read().splitlines()[-1])["ritual"])')
    say "River proposed ritual $ritual"
    run river sync --connect "127.0.0.1:$hp" >/dev/null
    run harbor checkin accept "$ritual"
    run river sync --connect "127.0.0.1:$hp" >/dev/null
    inst=$("$DUET" --home "$W/river" --json checkin due | python3 -c 'import json,sys; print(json.loads(sys.stdin.read().splitlines()[0])["instance"])')
    # answers WHO SCALE TEXT: WHO's answers to the questions of the instance due for WHO.
    answers() { "$DUET" --home "$W/$1" --json checkin due | python3 -c '
import json, sys
d = [x for x in map(json.loads, sys.stdin.read().splitlines()) if x["instance"] == sys.argv[1]][0]
print(json.dumps({q["id"]: (int(sys.argv[2]) if q["type"] == "scale" else sys.argv[3]) for q in d["questions"]}))' "$inst" "$2" "$3"; }
    answers river 4 "Your laugh on Tuesday." | run river checkin answer "$inst" --answers -
    run river sync --connect "127.0.0.1:$hp" >/dev/null
    say "Harbor sees that River answered, but cannot read it before answering too:"
    run harbor checkin show "$inst"
    answers harbor 3 "The short walks together." | run harbor checkin answer "$inst" --answers -
    run river sync --connect "127.0.0.1:$hp" >/dev/null
    run river sync --connect "127.0.0.1:$hp" >/dev/null
    run river checkin show "$inst"
fi

kill "$HD" 2>/dev/null || true
wait "$HD" 2>/dev/null || true

if has relay; then
    step "Through a relay, while the two are never online together"
    rp=$(port)
    "$DUET" --json relay serve --listen "127.0.0.1:$rp" --data "$W/relay" >"$W/relay.log" 2>&1 &
    PIDS+=($!)
    wait_for "$W/relay.log" listening
    url=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["url"])' "$W/relay.log")
    say "relay: $url"
    run river note "Left this at the relay for when you wake up."
    run river sync --relay "$url"
    say "(River goes offline; later Harbor comes online)"
    run harbor sync --relay "$url"
    run harbor inbox --limit 1
fi

# The LAN part: two network namespaces of this machine joined by a veth pair stand for two
# phones on one Wi-Fi (test-only addresses 10.247.75.1-2, inside the namespaces only).
NA=duet-demo-a-$$ NB=duet-demo-b-$$ VA=ddva$$ VB=ddvb$$
lan_down() { ip netns del "$NA" 2>/dev/null || true; ip netns del "$NB" 2>/dev/null || true
             ip link del "$VA" 2>/dev/null || true; }
lan_up() {
    ip netns add "$NA" 2>/dev/null || return 1
    ip netns add "$NB" && ip link add "$VA" type veth peer name "$VB" &&
        ip link set "$VA" netns "$NA" && ip link set "$VB" netns "$NB" &&
        ip -n "$NA" addr add 10.247.75.1/24 dev "$VA" && ip -n "$NB" addr add 10.247.75.2/24 dev "$VB" &&
        ip -n "$NA" link set lo up && ip -n "$NB" link set lo up &&
        ip -n "$NA" link set "$VA" up multicast on && ip -n "$NB" link set "$VB" up multicast on &&
        ip -n "$NA" route add 224.0.0.0/4 dev "$VA" && ip -n "$NB" route add 224.0.0.0/4 dev "$VB"
}
# lan WHO NS ARGS...: a command on WHO's device, inside its namespace.
lan() { local who=$1 ns=$2; shift 2; printf '%s%s$ duet %s%s\n' "$D" "$who" "$*" "$R"
        ip netns exec "$ns" "$DUET" --home "$W/$who" "$@"; }
if [[ $(id -u) == 0 ]] && command -v ip >/dev/null && lan_up; then
    trap 'cleanup; lan_down' EXIT
    step "At home on one Wi-Fi, no address anywhere: pairing and syncing by LAN discovery"
    say "(two network namespaces of this machine stand for two phones on one network)"
    lan river-home "$NA" init --name River >/dev/null
    lan harbor-home "$NB" init --name Harbor >/dev/null
    printf '%sriver-home$ duet pair%s\n' "$D" "$R"
    ip netns exec "$NA" "$DUET" --home "$W/river-home" pair --timeout 60 >"$W/lanpair.log" 2>&1 &
    PIDS+=($!)
    lanpair=$!
    wait_for "$W/lanpair.log" "pairing code"
    cat "$W/lanpair.log"
    code=$(grep -o '[0-9]*-[a-z]*-[a-z]*' "$W/lanpair.log" | head -1)
    lan harbor-home "$NB" pair "$code"
    wait "$lanpair"
    printf '%sharbor-home$ duet daemon%s\n' "$D" "$R"
    ip netns exec "$NB" "$DUET" --home "$W/harbor-home" daemon >"$W/landaemon.log" 2>&1 &
    PIDS+=($!)
    wait_for "$W/landaemon.log" "listening"
    lan river-home "$NA" note "Found you without an address."
    lan river-home "$NA" sync --lan --timeout 30
    lan harbor-home "$NB" inbox --peek
else
    step "LAN discovery"
    say "skipped here: it needs root to make two network namespaces (make test runs the LAN"
    say "tests as root); on a real home network just run 'duet pair' and 'duet daemon'."
fi

step "Done"
say "Everything above ran in $W, now removed. Next: README.md, docs/rituals.md, man -l docs/duet.1"
