#!/usr/bin/env bash
# Runs every test of the workspace: unit, in-process servers on real sockets,
# the real binary as separate processes, and the deploy/ manifest checks.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/quis-target}"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi
