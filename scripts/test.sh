#!/usr/bin/env bash
# Runs every test of the workspace: unit, in-process servers on real sockets,
# the real binary as separate processes, the deploy/ manifest checks, and then
# the Python and TypeScript clients against a live `quis up`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/quis-target}"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi
bash scripts/clients-test.sh
