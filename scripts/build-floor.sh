#!/usr/bin/env bash
# Times a clean debug build of the build-time floor: the smallest host of a
# wasmtime component (scripts/build-floor/main.rs: compile a component, link
# WASI p2) with the agent's wasmtime version, features and dev profile, all
# taken from ./Cargo.toml and ./Cargo.lock. BENCHMARKS.md "Build" compares
# it with a clean build of the agent. Run on a quiet machine:
#   ./scripts/build-floor.sh [COMPONENT.wasm]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/build-floor
rm -rf "$dir"
mkdir -p "$dir/src"
cp scripts/build-floor/main.rs "$dir/src/main.rs"
cp Cargo.lock "$dir/Cargo.lock"
{
    printf '[package]\nname = "catpaw-build-floor"\nversion = "0.0.0"\nedition = "2024"\npublish = false\n\n[workspace]\n\n[dependencies]\n'
    grep -E '^(anyhow|wasmtime|wasmtime-wasi) = ' Cargo.toml
    echo
    # The dev profile, verbatim.
    awk '/^\[profile\.dev/ { on = 1 } /^\[\[bench\]\]|^\[(dependencies|dev-dependencies|lib|package)\]/ { on = 0 } on' Cargo.toml
} >"$dir/Cargo.toml"
(cd "$dir" && /usr/bin/time -f "build-floor: %e s wall, %U s user, %S s system" cargo build --timings 2>&1 | tail -3)
echo "timing report: $dir/target/cargo-timings/cargo-timing.html"
if [ $# -gt 0 ]; then "$dir/target/debug/catpaw-build-floor" "$1"; fi
