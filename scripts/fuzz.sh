#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for FUZZ_SECONDS (default 15) each. The
# machine has only a stable toolchain: RUSTC_BOOTSTRAP lets cargo-fuzz pass
# its nightly flags, and no sanitizer is used (the project forbids unsafe code;
# the targets look for panics and broken round-trips).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-/var/tmp/quis-fuzz-target}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz@0.13.2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for target in $(cargo fuzz list); do
    echo "== fuzz $target"
    if ! cargo fuzz run -s none -O "$target" -- -max_total_time="${FUZZ_SECONDS:-15}" >"$log" 2>&1; then
        tail -40 "$log"
        exit 1
    fi
    grep -E '^Done' "$log"
done
