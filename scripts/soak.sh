#!/usr/bin/env bash
# A soak: the fault campaign (tests/fault_campaign.rs) for N minutes
# against the real agent binary, then its table: sessions by type and
# outcome, faults injected by kind, reconnects, invariant violations, the
# agent's fds, threads and RSS at start and end, log and audit bytes per
# session. The seed is printed first; give it back with --seed to replay.
#
#   scripts/soak.sh --minutes 60 [--seed S]
#
# Exit status: the campaign's (0: no invariant violated). Root is needed
# for the full-disk fault (a tmpfs state dir); without it that fault is
# left out and the run says so.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    echo "usage: scripts/soak.sh --minutes N [--seed S]" >&2
    exit 2
}

minutes=""
seed=""
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) minutes="${2:-}"; shift 2 || usage ;;
        --seed) seed="${2:-}"; shift 2 || usage ;;
        *) usage ;;
    esac
done
case "$minutes" in ''|*[!0-9]*) usage ;; esac
if [ -n "$seed" ]; then
    case "$seed" in *[!0-9]*) usage ;; esac
else
    seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
fi

table=$(mktemp)
trap 'rm -f "$table"' EXIT
echo "soak: ${minutes} min, seed ${seed} (replay: scripts/soak.sh --minutes ${minutes} --seed ${seed})"
status=0
CAMPAIGN_SEED="$seed" CAMPAIGN_SECONDS=$((minutes * 60)) CAMPAIGN_TABLE="$table" \
    cargo test --locked --test fault_campaign campaign_of_random_faults_keeps_every_invariant \
    -- --exact --nocapture || status=$?
echo
echo "== soak table (seed ${seed}, ${minutes} min) =="
if [ -s "$table" ]; then
    cat "$table"
else
    echo "(no table: the campaign did not get to the end; see above)"
fi
exit "$status"
