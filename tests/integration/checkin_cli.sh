#!/usr/bin/env bash
# Check-ins through the real binary, without a network: two homes paired and synced in one
# process by duet-pairhomes (the real pairing engines and sync hosts). Templates, custom
# rituals, proposal and acceptance, due on both devices, answers sealed and revealed
# together, show, history and its SVG chart, pause and resume, agreements, milestones, the
# inbox lines, and bad input: every failure is one clear "duet: ..." line, a nonzero status,
# and the store as it was.
set -euo pipefail
DUET=${DUET:-$PWD/build/bin/duet}
PAIR=${DUET_BIN_DIR:-$(dirname "$DUET")}/duet-pairhomes
W=$(mktemp -d "${TMPDIR:-/tmp}/duet-checkin.XXXXXX")
trap 'rm -rf "$W"' EXIT
fail() { echo "not ok - $*" >&2; exit 1; }
ok() { echo "ok - $*"; }
trap 'fail "line $LINENO: $BASH_COMMAND"' ERR
d() { local h=$1; shift; "$DUET" --home "$W/$h" --json "$@"; }
sync_ab() { "$PAIR" sync "$W/a" "$W/b" >/dev/null; }
# jq-like: jget JSON EXPR (o is the object)
jget() { python3 -c 'import json,sys; o=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }
# jlines EXPR: L is the list of records read from stdin
jlines() { python3 -c 'import json,sys; L=[json.loads(l) for l in sys.stdin if l.strip()]; print(eval(sys.argv[1]))' "$@"; }
# expect_err HOME STATUS PATTERN CMD...: fails with STATUS and one stderr line matching.
expect_err() {
    local home=$1 want=$2 pat=$3 rc=0; shift 3
    d "$home" "$@" >"$W/out" 2>"$W/err" </dev/null || rc=$?
    [[ $rc == "$want" ]] || fail "'$*': exit $rc, wanted $want ($(cat "$W/err"))"
    [[ $(wc -l <"$W/err") == 1 ]] || fail "'$*': not one error line: $(cat "$W/err")"
    grep -q "^duet: .*$pat" "$W/err" || fail "'$*': wanted '$pat', got: $(cat "$W/err")"
}
# has HOME TEXT: whether any file of the home holds TEXT
has() { grep -rqa -- "$2" "$W/$1"; }

d a init --name river >/dev/null
d b init --name stone >/dev/null

# ---- before pairing --------------------------------------------------------------------
t=$(d a checkin templates)
[[ $(jlines '[x["template"] for x in L]' <<<"$t") == "['weekly', 'daily']" ]] || fail "templates: $t"
[[ $(jlines '[q["id"] for q in L[0]["questions"]]' <<<"$t") == "['felt_good', 'try_next', 'support', 'closeness']" ]] || fail "weekly ids: $t"
[[ $(jlines 'L[0]["questions"][0]["text"]' <<<"$t") == "What felt good this week?" ]] || fail "weekly text"
[[ $(jlines '[q["type"] for q in L[1]["questions"]]' <<<"$t") == "['scale', 'scale', 'scale', 'text']" ]] || fail "daily types: $t"
expect_err a 1 "not paired" checkin start weekly
expect_err a 1 "not paired" pause --note "slow"
expect_err a 1 "not paired" agree add "Rest on Sundays."
expect_err nothere 1 "not been initialised" checkin templates
ok "templates; nothing starts unpaired"

"$PAIR" pair "$W/a" "$W/b"

# ---- propose, accept, due ----------------------------------------------------------------
ritual=$(jget "$(d a checkin start weekly)" 'o["ritual"]')
[[ $(d a checkin list | jlines 'L[0]["state"]') == proposed ]] || fail "a: not proposed"
expect_err a 1 "your partner accepts" checkin accept "$ritual"
[[ -z $(d b checkin list) ]] || fail "b knows it before any sync"
sync_ab
[[ $(d b checkin list | jlines '(L[0]["ritual"], L[0]["state"], L[0]["proposed_by"])') == "('$ritual', 'proposed', 'partner')" ]] || fail "b list"
[[ -z $(d b checkin due) ]] || fail "due before acceptance"
acc=$(d b checkin accept "${ritual:0:6}")
[[ $(jget "$acc" 'o["event"]') == accepted && $(jget "$acc" 'o["ritual"]') == "$ritual" ]] || fail "accept: $acc"
expect_err b 1 "already" checkin accept "$ritual"
sync_ab
[[ $(d a checkin list | jlines 'L[0]["state"]') == active ]] || fail "a: not active"
due_a=$(d a checkin due | jlines 'json.dumps(L[0])')
due_b=$(d b checkin due | jlines 'json.dumps(L[0])')
inst=$(jget "$due_a" 'o["instance"]')
[[ $(jget "$due_b" 'o["instance"]') == "$inst" ]] || fail "instance ids differ: $due_a / $due_b"
[[ $(jget "$due_a" 'o["ritual"]') == "$ritual" ]] || fail "due ritual"
[[ $(jget "$due_a" 'len(o["questions"])') == 4 ]] || fail "due questions"
ok "proposed, accepted, the same instance due on both devices"

# ---- bad answers change nothing ------------------------------------------------------------
count() { d "$1" status | jlines 'L[0]["outbox"]'; }
before=$(count a)
printf '{"felt_good": "x"' >"$W/broken.json"
printf '{"closeness": 6}' >"$W/range.json"
printf '{"closeness": "4"}' >"$W/type.json"
printf '{"nope": "x"}' >"$W/unknown.json"
printf '{}' >"$W/empty.json"
expect_err a 1 "no check-in" checkin answer 0000000000000000 --answers "$W/empty.json"
expect_err a 1 "no check-in" checkin answer zz --answers "$W/empty.json"
expect_err a 1 "JSON object" checkin answer "$inst" --answers "$W/broken.json"
expect_err a 1 "closeness: a whole number from 1 to 5" checkin answer "$inst" --answers "$W/range.json"
expect_err a 1 "closeness: a whole number" checkin answer "$inst" --answers "$W/type.json"
expect_err a 1 "no question 'nope'" checkin answer "$inst" --answers "$W/unknown.json"
expect_err a 1 "nothing answered" checkin answer "$inst" --answers "$W/empty.json"
expect_err a 1 "not found" checkin answer "$inst" --answers "$W/missing.json"
expect_err a 2 "no terminal" checkin answer "$inst"
expect_err a 2 "which check-in" checkin answer
expect_err a 2 "no template 'monthly'" checkin start monthly
expect_err a 2 "--every" checkin start weekly --every fortnightly
expect_err a 2 "no such thing" checkin frobnicate
expect_err a 1 "no check-in" checkin accept 1234abcd
[[ $(count a) == "$before" ]] || fail "a failed answer changed the store"
[[ $(d a checkin show "$inst" | jlines 'L[0]["mine"]') == None ]] || fail "a failed answer was kept"
ok "bad answers refused with one line each, nothing kept"

# ---- answered apart, revealed together ------------------------------------------------------
echo '{"felt_good": "a-secret-answer", "try_next": "tea at four", "closeness": 4}' >"$W/a.json"
r=$(d a checkin answer "$inst" --answers "$W/a.json")
[[ $(jget "$r" 'o["event"]') == answered && $(jget "$r" 'o["instance"]') == "$inst" ]] || fail "answer: $r"
expect_err a 1 "cannot be changed" checkin answer "$inst" --answers "$W/a.json"
[[ -z $(d a checkin due) ]] || fail "still due after answering"
sync_ab
shown=$(d b checkin show "${inst:0:8}")
[[ $(jget "$shown" 'o["partner"]["state"]') == sealed ]] || fail "b: $shown"
[[ $(jget "$shown" 'o["partner"]["answers"]') == None ]] || fail "b reads early: $shown"
[[ $shown != *a-secret-answer* ]] || fail "b's show holds a's answer"
has b a-secret-answer && fail "a's answer readable in b's files"
has a a-secret-answer && fail "a's answer readable in a's own files"
[[ $(jget "$(d a checkin show "$inst")" 'o["partner"]["state"]') == waiting ]] || fail "a: b not waiting"
d b checkin answer "$inst" --answers - <<<'{"felt_good": "b-answer", "closeness": 2, "support": null}' >/dev/null
sync_ab
sa=$(d a checkin show "$inst")
sb=$(d b checkin show "$inst")
[[ $(jget "$sa" 'o["partner"]["state"]') == revealed ]] || fail "a: $sa"
[[ $(jget "$sb" 'o["partner"]["state"]') == revealed ]] || fail "b: $sb"
[[ $(jget "$sb" 'o["partner"]["answers"]["felt_good"]') == a-secret-answer ]] || fail "b: $sb"
[[ $(jget "$sb" 'o["partner"]["answers"]["closeness"]') == 4 ]] || fail "b: $sb"
[[ $(jget "$sa" 'o["mine"]["try_next"]') == "tea at four" ]] || fail "a mine: $sa"
[[ $(jget "$sa" 'o["partner"]["answers"]["support"]') == None ]] || fail "a: skipped: $sa"
has b a-secret-answer && fail "revealed answer stored readable"
ok "sealed until both answered, then revealed on both sides, never readable at rest"

# ---- the inbox lines -------------------------------------------------------------------
ib=$(d b inbox --peek)
[[ $(jlines '[x["kind"] for x in L]' <<<"$ib") == "['checkin', 'checkin']" ]] || fail "inbox: $ib"
[[ $(jlines 'L[0]["checkin"]["instance"]' <<<"$ib") == "$inst" ]] || fail "inbox line: $ib"
"$DUET" --home "$W/b" inbox --peek | grep -q "river answered the weekly check-in" || fail "inbox text"
ok "check-in lines in both inboxes"

# ---- history and the chart --------------------------------------------------------------
h=$(d a checkin history --svg "$W/chart.svg")
[[ $(jlines 'len([x for x in L if "instance" in x])' <<<"$h") == 1 ]] || fail "history: $h"
[[ $(jlines '[x for x in L if "instance" in x][0]["partner"]["answers"]["closeness"]' <<<"$h") == 2 ]] || fail "history: $h"
python3 - "$W/chart.svg" <<'PY' || fail "the chart is not well-formed SVG"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
text = "".join(root.itertext())
for want in ("river", "stone", "How close", "1", "5"):
    assert want in text, want
PY
"$DUET" --home "$W/a" checkin history | grep -q "closeness" || fail "no sparkline row"
expect_err a 1 "no check-in" checkin history --ritual ffffffff
ok "history with both answers, sparklines, a well-formed chart"

# ---- custom rituals --------------------------------------------------------------------
cat >"$W/evening.json" <<'EOF'
{"name": "evening", "every": "daily",
 "questions": [{"id": "mood", "text": "How was your mood?", "type": "scale"},
               {"text": "One word for today"}]}
EOF
cat >"$W/sunday.toml" <<'EOF'
# our Sunday questions
name = "sunday"
every = "weekly:sun"

[[question]]
id = "rest"
text = "Did you get enough rest?"
type = "scale"

[[question]]
text = 'Something you are grateful for'
EOF
printf 'name = "x"\n[[question]]\ntext = unterminated\n' >"$W/bad.toml"
printf '{"name": "x", "questions": [{"text": "a", "type": "number"}]}' >"$W/badtype.json"
d a checkin start "$W/evening.json" >/dev/null
d a checkin start "$W/sunday.toml" >/dev/null
expect_err a 1 "line 3" checkin start "$W/bad.toml"
expect_err a 1 "\"text\" or \"scale\"" checkin start "$W/badtype.json"
l=$(d a checkin list)
[[ $(jlines '[(x["template"], x["every"]) for x in L][1:]' <<<"$l") == "[('evening', 'daily'), ('sunday', 'weekly:sun')]" ]] || fail "custom list: $l"
[[ $(jlines '[q["id"] for q in L[1]["questions"]]' <<<"$l") == "['mood', 'q2']" ]] || fail "custom ids: $l"
ok "custom rituals from JSON and TOML; bad files refused"

# ---- pause, agreements, milestones -------------------------------------------------------
expect_err a 2 "has passed" pause --until 2001-01-01
expect_err a 2 "YYYY-MM-DD" pause --until tomorrow
p=$(d a pause --until 2099-12-31 --note "Scan on Thursday. Gentle days, please.")
[[ $(jget "$p" 'o["event"]') == paused ]] || fail "pause: $p"
sync_ab
"$DUET" --home "$W/b" inbox --peek | head -1 | grep -q "river asked to slow down until 2099-12-31: Scan on Thursday" || fail "no pause banner"
[[ $(d b inbox --peek | jlines '[x for x in L if x["kind"] == "pause"][0]["pause"]["until"]') == 2099-12-31 ]] || fail "pause record"
d b resume --note "Ready when you are." >/dev/null
sync_ab
"$DUET" --home "$W/a" inbox --peek | grep -q "stone is ready to go on again: Ready when you are." || fail "resume line"
"$DUET" --home "$W/b" inbox --peek | head -1 | grep -q "asked to slow down" && fail "banner after resume"

g=$(jget "$(d b agree add "No big talks after 9 pm on treatment days.")" 'o["agreement"]')
sync_ab
[[ $(d a agree list | jlines '(L[0]["agreed"], L[0]["accepted_by_partner"])') == "(False, True)" ]] || fail "agree list a"
d a agree accept "${g:0:6}" >/dev/null
expect_err a 1 "already" agree accept "$g"
sync_ab
[[ $(d b agree list | jlines 'L[0]["agreed"]') == True ]] || fail "not agreed"
c=$(d a agree change "$g" "No big talks after 9 pm, unless one of us asks.")
[[ $(jget "$c" '(o["version"], o["agreed"])') == "(2, False)" ]] || fail "change: $c"
sync_ab
[[ $(d b agree list | jlines '(L[0]["version"], L[0]["agreed"], L[0]["accepted_by_me"])') == "(2, False, False)" ]] || fail "b after change"
d b agree accept "$g" >/dev/null
sync_ab
[[ $(d a agree list | jlines 'L[0]["agreed"]') == True ]] || fail "v2 not agreed"
expect_err a 1 "no agreement" agree accept abcdef12
expect_err a 1 "empty" agree add ""

d b milestone "First walk around the block" >/dev/null
expect_err b 1 "empty" milestone ""
sync_ab
[[ $(d a checkin history | jlines '[x["text"] for x in L if "milestone" in x]') == "['First walk around the block']" ]] || fail "milestone in history"
[[ $(d a inbox --peek | jlines '[x["text"] for x in L if x["kind"] == "milestone"]') == "['First walk around the block']" ]] || fail "milestone in inbox"
has a "First walk around" && fail "milestone readable at rest"
ok "pause and resume, agreements with versions, milestones"

# ---- decline and stop ------------------------------------------------------------------
sync_ab
ev=$(d b checkin list | jlines '[x["ritual"] for x in L if x["template"] == "evening"][0]')
[[ $(jget "$(d b checkin decline "$ev")" 'o["event"]') == declined ]] || fail "decline"
[[ $(jget "$(d a checkin decline "$ritual")" 'o["event"]') == stopped ]] || fail "stop"
sync_ab
[[ $(d b checkin list | jlines '[x["state"] for x in L]') == "['declined', 'declined', 'proposed']" ]] || fail "states: $(d b checkin list)"
[[ -z $(d b checkin due) ]] || fail "due after stop"
ok "decline and stop reach both sides"
