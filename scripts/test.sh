#!/usr/bin/env bash
# Runs every check of catpaw-agent: formatting, lints, the host test suite
# (unit + end-to-end against real wasm guests) and the guests' own unit tests.
# Works on a fresh machine with only rustup: it installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
step() { printf '\n==> [%dm%02ds] %s\n' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60)) "$*"; }

step "toolchain: wasm32-wasip2 target, rustfmt, clippy"
rustup target add wasm32-wasip2
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "componentize-py (Python runners) in target/py-venv"
# The Python runner tests find it there; the example runner itself is built
# by the tests, once per change of its sources (cached in target/python-runner).
if [ ! -x target/py-venv/bin/componentize-py ]; then
    python3 -m venv target/py-venv
    target/py-venv/bin/pip install --quiet "componentize-py==0.25.1"
fi
target/py-venv/bin/componentize-py --version

step "strace (the recorder's replay tests watch with it that a replay starts no program)"
if ! command -v strace >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace
    fi
fi
strace -V | head -1

step "cargo fmt --check"
cargo fmt --all --check
(cd guest-runners && cargo fmt --all --check)

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
(cd guest-runners && cargo clippy --release --target wasm32-wasip2 --all-targets -- -D warnings)

step "guest runners: the hazard, bench and example guests the tests run"
(cd guest-runners && cargo build --release --locked --target wasm32-wasip2 --workspace)

step "guest unit tests (native)"
(cd guest-runners && cargo test --workspace --lib --locked)

step "host tests"
cargo test --all-targets --locked

step "all passed"
