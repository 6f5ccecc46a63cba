#!/usr/bin/env bash
# Fuzzes every parser of untrusted bytes (fuzz/, RELIABILITY.md "Fuzzing"):
#
#   scripts/fuzz.sh --seconds N [TARGET...]
#
# builds the targets once (cargo-fuzz, libFuzzer, AddressSanitizer), runs
# each named target (all when none is named) for N seconds, one process at a
# time, and prints a table: target, executions, corpus size, findings. Exits
# 1 when any target found something, naming the input that shows it
# (fuzz/artifacts/TARGET/...; replay it with
# `fuzz/target/x86_64-unknown-linux-gnu/release/TARGET FILE`).
#
# Works on a fresh machine with only rustup: it installs cargo-fuzz when
# missing. The toolchain is the one the agent builds with, not a nightly:
# the agent's build script builds the guest runners for wasm32-wasip2 with
# the same toolchain, and that target is installed for this one
# (scripts/test.sh). cargo-fuzz's sanitizer flags are nightly-only, so they
# are allowed here with RUSTC_BOOTSTRAP=1; the build lives in fuzz/target,
# apart from the agent's.
#
# Seeds: fuzz/corpus/TARGET (committed, small), plus, for `config`, the
# agent's example config and catpaw's own config files from
# ../shared/fixtures when that folder is there (read at run time, never
# copied into the repository). What the fuzzer finds on top is kept in
# fuzz/target/corpus/TARGET between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    echo "usage: scripts/fuzz.sh --seconds N [TARGET...]" >&2
    exit 2
}

seconds=""
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="${2:-}"; shift 2 || usage ;;
        --seconds=*) seconds="${1#--seconds=}"; shift ;;
        -h|--help) usage ;;
        -*) echo "unknown option $1" >&2; usage ;;
        *) targets+=("$1"); shift ;;
    esac
done
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || usage

all=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^catpaw-agent-fuzz$')
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets <<<"$all"
fi
for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$all" || { echo "no fuzz target $t (there are: $(echo $all))" >&2; exit 2; }
done

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# One set of flags for every build, so the second build reuses the first.
export RUSTC_BOOTSTRAP=1
echo "==> building the fuzz targets (the first build takes a while)"
cargo fuzz build --codegen-units 16 >&2

bin=fuzz/target/x86_64-unknown-linux-gnu/release
declare -a rows
failed=()
for t in "${targets[@]}"; do
    work="fuzz/target/corpus/$t"
    seeds="fuzz/target/seeds/$t"
    artifacts="fuzz/artifacts/$t"
    mkdir -p "$work" "$seeds" "$artifacts"
    rm -f "$seeds"/*
    [ -d "fuzz/corpus/$t" ] && cp fuzz/corpus/"$t"/* "$seeds"/ 2>/dev/null || true
    if [ "$t" = config ]; then
        cp src/config/example.toml "$seeds/example.toml"
        for f in ../shared/fixtures/*.toml; do
            [ -f "$f" ] && cp "$f" "$seeds/"
        done
    fi
    log="fuzz/target/$t.log"
    echo "==> $t: ${seconds}s"
    set +e
    # One process (no -jobs/-fork): the machine is shared. A run that takes
    # over 10 s or 2 GiB is a finding, as a crash is.
    "$bin/$t" "$work" "$seeds" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1
    code=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    corpus=$(find "$work" -type f | wc -l)
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    if [ "$code" -ne 0 ]; then
        found=1
        failed+=("$t: ${artifact:-see $log} (log: $log)")
    else
        found=0
    fi
    rows+=("$(printf '%-16s %12s %8s %9s' "$t" "${execs:-?}" "$corpus" "$found")")
done

echo
printf '%-16s %12s %8s %9s\n' target executions corpus findings
for r in "${rows[@]}"; do echo "$r"; done
if [ ${#failed[@]} -gt 0 ]; then
    echo
    echo "findings (replay one with $bin/TARGET FILE):"
    for f in "${failed[@]}"; do echo "  $f"; done
    exit 1
fi
