#!/usr/bin/env bash
# Installs, generates, type-checks and tests the TypeScript client. With
# QUIS_GATEWAY set (scripts/clients-test.sh exports it and the rest of QUIS_*),
# the live tests run against that suite, and a skipped live test fails the run.
set -euo pipefail
cd "$(dirname "$0")"

# npm ci only when the lockfile changed since the last install (from the npm cache when it can).
stamp=node_modules/.quis-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    npm ci --prefer-offline --no-audit --no-fund
    echo "$want" >"$stamp"
fi

npm run --silent generate
npx tsc --noEmit

report=$(mktemp)
trap 'rm -f "$report"' EXIT
status=0
node --import tsx --test --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$report" test/*.test.ts || status=$?
summary() { sed -n "s/^# $1 //p" "$report" | tail -1; }
echo "typescript: $(summary pass) passed, $(summary fail) failed, $(summary skipped) skipped"
if [ "$status" -ne 0 ]; then exit "$status"; fi
if [ -n "${QUIS_GATEWAY:-}" ] && [ "$(summary skipped)" != "0" ]; then
    echo "QUIS_GATEWAY is set but $(summary skipped) tests were skipped" >&2
    exit 1
fi
