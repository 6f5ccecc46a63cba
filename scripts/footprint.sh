#!/usr/bin/env bash
# The agent's footprint measured from outside, as issue 27's table does:
# an independent load server (benches/loadserver, its own crate: tokio and
# tokio-tungstenite, no agent code) starts a release agent, speaks the wire
# protocol to it and reads its CPU clock and memory from the kernel. The
# state dir is on disk (the script refuses tmpfs) with the audit on.
#
# Each of RUNS rounds, per binary, with a fresh state dir:
#   cold  built-in runners, first start (empty compile cache): idle RSS
#         and CPU in an idle window, as warm
#   warm  built-in runners, second start: RSS SETTLE s after connecting
#         (idle_rss), then once a second through an IDLE s window
#         (idle_rss_median, idle_rss_max; idle_end_rss at its end, with
#         smaps_end), and the CPU of that window. The agent hands back its
#         file pages 5 s after start and once per 30 s heartbeat period
#         while idle: IDLE of 40 or more shows the steady state.
#   load  the bench guest as diagnose runner (noop/emit plugins), built-in
#         chat: noop session start -> done and CPU per noop session,
#         deltas/s and CPU per delta (one session streaming), ack p50/p99
#         while 3 sessions stream, CHATS chats open then closed (RSS after)
# Figures are printed as min / median / max over the rounds. With BASE set
# to a second agent binary, both run in turn in every round (the order
# alternating) and the ratio AGENT/BASE is the median of the per-round
# ratios: the machine's drift then cancels out.
#
# Usage: scripts/footprint.sh            (quick: RUNS=3 IDLE=10)
#        IDLE=60 CHATS=1000 scripts/footprint.sh   (the issue's table)
#        BASE=/tmp/old-agent scripts/footprint.sh  (before/after)
# Knobs (environment): AGENT BASE RUNS IDLE SETTLE NOOP DELTAS ROUNDS ACKS
# CHATS WORK (where state dirs go; default target/footprint, must be on disk)
# RECORDER (true: every session recorded, the default; false: off)
set -euo pipefail
cd "$(dirname "$0")/.."
AGENT=${AGENT:-target/release/catpaw-agent}
BASE=${BASE:-}
RUNS=${RUNS:-3}
IDLE=${IDLE:-10}
SETTLE=${SETTLE:-2}
NOOP=${NOOP:-1000}
DELTAS=${DELTAS:-200000}
ROUNDS=${ROUNDS:-3}
ACKS=${ACKS:-300}
CHATS=${CHATS:-100}
RECORDER=${RECORDER:-true}
WORK=${WORK:-$PWD/target/footprint}
GUEST=guest-runners/target/wasm32-wasip2/release/catpaw_bench_guest.wasm

die() { echo "footprint.sh: $*" >&2; exit 2; }

[ -x "$AGENT" ] || die "$AGENT is not built: cargo build --release --bin catpaw-agent"
[ -z "$BASE" ] || [ -x "$BASE" ] || die "BASE=$BASE is not an executable"
if [ ! -f "$GUEST" ]; then
    (cd guest-runners && cargo build --release --locked --target wasm32-wasip2 -p catpaw-bench-guest)
fi
cargo build --quiet --release --manifest-path benches/loadserver/Cargo.toml \
    --target-dir target/loadserver
LOAD=target/loadserver/release/catpaw-loadserver

mkdir -p "$WORK"
fs=$(stat -f -c %T "$WORK")
case "$fs" in
    tmpfs|ramfs) die "$WORK is on $fs: the figures are for a state dir on disk (set WORK)";;
esac
out="$WORK/figures.txt"
: > "$out"

config() { # dir, with the bench guest (yes/no)
    local dir=$1 guest=$2
    cat > "$dir/config.toml" <<TOML
state_dir = "$dir/state"
[server]
enabled = true
address = "\${LOAD_ADDR}"
[sandbox]
max_concurrent_sessions = $((CHATS + 8))
$( [ "$guest" = yes ] && echo "diagnose_runner = \"$PWD/$GUEST\"" )
[audit]
# Root could not remove the state dirs afterwards (chattr +a).
append_only = false
[recorder]
enabled = $RECORDER
TOML
}

measure() { # label, binary, round
    local label=$1 bin=$2 round=$3
    local dir="$WORK/$label-$round"
    rm -rf "$dir"
    mkdir -p "$dir/cold" "$dir/load"
    config "$dir/cold" no
    config "$dir/load" yes
    local common=(--settle "$SETTLE" --log)
    "$LOAD" --phases idle --idle "$IDLE" "${common[@]}" "$dir/cold.log" \
        -- "$bin" --config "$dir/cold/config.toml" run | sed "s/^figure /$label $round cold./" >> "$out"
    "$LOAD" --phases idle --idle "$IDLE" "${common[@]}" "$dir/warm.log" \
        -- "$bin" --config "$dir/cold/config.toml" run | sed "s/^figure /$label $round warm./" >> "$out"
    "$LOAD" --phases noop,stream,ack,chat --noop "$NOOP" --deltas "$DELTAS" \
        --rounds "$ROUNDS" --acks "$ACKS" --chats "$CHATS" "${common[@]}" "$dir/load.log" \
        -- "$bin" --config "$dir/load/config.toml" run | sed "s/^figure /$label $round load./" >> "$out"
    rm -rf "$dir/cold/state" "$dir/load/state"
}

echo "state dirs in $WORK ($fs); agent $AGENT${BASE:+, baseline $BASE}; $RUNS rounds, idle window ${IDLE}s"
for round in $(seq 1 "$RUNS"); do
    if [ -n "$BASE" ] && [ $((round % 2)) -eq 0 ]; then
        measure base "$BASE" "$round"; measure agent "$AGENT" "$round"
    elif [ -n "$BASE" ]; then
        measure agent "$AGENT" "$round"; measure base "$BASE" "$round"
    else
        measure agent "$AGENT" "$round"
    fi
    echo "round $round done"
done

awk -v base="$BASE" '
function sortv(a, n,   i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j+1] = a[j]; a[j+1] = t } }
{ v[$1, $3, ++n[$1, $3]] = $4; r[$1, $2, $3] = $4; names[$3] = 1; rounds[$2] = 1 }
END {
    printf "| figure | agent min / median / max |%s\n", base ? " baseline median | agent/baseline (median of per-round ratios) |" : ""
    printf "|---|---|%s\n", base ? "---|---|" : ""
    for (f in names) order[++m] = f
    for (i = 2; i <= m; i++) { t = order[i]; for (j = i - 1; j >= 1 && order[j] > t; j--) order[j+1] = order[j]; order[j+1] = t }
    for (i = 1; i <= m; i++) {
        f = order[i]; k = n["agent", f]; if (!k) continue
        delete a; for (j = 1; j <= k; j++) a[j] = v["agent", f, j]; sortv(a, k)
        line = sprintf("| %s | %s / %s / %s |", f, a[1], a[int((k + 1) / 2)], a[k])
        if (base) {
            kb = n["base", f]; delete b; for (j = 1; j <= kb; j++) b[j] = v["base", f, j]; sortv(b, kb)
            q = 0; delete rr
            for (rd in rounds) if ((("agent", rd, f) in r) && (("base", rd, f) in r) && r["base", rd, f] != 0) rr[++q] = r["agent", rd, f] / r["base", rd, f]
            sortv(rr, q)
            line = line sprintf(" %s | %s |", kb ? b[int((kb + 1) / 2)] : "-", q ? sprintf("%.2f", rr[int((q + 1) / 2)]) : "-")
        }
        print line
    }
}' "$out"
echo "raw figures: $out"
