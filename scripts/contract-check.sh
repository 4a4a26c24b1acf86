#!/usr/bin/env bash
# Contract checks on proto/: buf lint, buf breaking of each recent commit of
# main against the one before it (FILE rules: a removed or renumbered field, a
# renamed RPC, a changed type all fail), a self-test that the breaking check
# does fail on a removed field, and a check that no generated code is committed
# (every language generates from proto/ at build time, so nothing can go stale).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x tools/buf/node_modules/.bin/buf ]; then
    (cd tools/buf && npm ci --no-audit --no-fund --loglevel=error)
fi
buf="$PWD/tools/buf/node_modules/.bin/buf"

echo "== buf lint"
"$buf" lint proto

# buf breaking on main's history, not only against HEAD~1: CI runs once per push, a push may
# carry several commits, so HEAD~1 can be a commit of the same push and a break made in an
# earlier one would pass unseen. Instead each commit of a window is checked against its first
# parent (for a merge, the main it joined), so a break is caught whatever commits follow it.
# The window is QUIS_BREAKING_BASE..HEAD when CI knows the push's previous head (e.g. GitHub's
# github.event.before), else the last QUIS_BREAKING_DEPTH commits of main (default 100: one
# working session can push dozens).
# Uncommitted changes are checked against HEAD. A commit whose parent a shallow clone lacks
# fails the check (fetch deeper) instead of passing unchecked.
shallow_file=$(git rev-parse --git-path shallow)
if [ -n "${QUIS_BREAKING_BASE:-}" ]; then
    if ! git rev-parse -q --verify "${QUIS_BREAKING_BASE}^{commit}" >/dev/null; then
        echo "QUIS_BREAKING_BASE=$QUIS_BREAKING_BASE is not in this clone: fetch it (or a deeper history)" >&2
        exit 1
    fi
    window=$(git rev-list --first-parent "$QUIS_BREAKING_BASE..HEAD")
else
    window=$(git rev-list --first-parent --max-count="${QUIS_BREAKING_DEPTH:-100}" HEAD)
fi
broken=0
for commit in $window; do
    subject=$(git log -1 --format='%h %s' "$commit")
    if ! parent=$(git rev-parse -q --verify "$commit^1"); then
        if grep -qx "$commit" "$shallow_file" 2>/dev/null; then
            echo "== buf breaking: the parent of $subject is not in this shallow clone; fetch deeper" >&2
            exit 1
        fi
        continue # the first commit: nothing before it to break
    fi
    git diff --quiet "$parent" "$commit" -- proto && continue
    echo "== buf breaking: $subject, against its parent"
    "$buf" breaking ".git#ref=$commit,subdir=proto" --against ".git#ref=$parent,subdir=proto" || broken=1
done
echo "== buf breaking: the working tree against HEAD"
"$buf" breaking proto --against ".git#ref=$(git rev-parse HEAD),subdir=proto" || broken=1
if [ "$broken" -ne 0 ]; then
    echo "buf breaking: a change above breaks the API (see buf's messages)" >&2
    exit 1
fi

echo "== the breaking check fails when a field is removed"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r proto "$scratch/proto"
victim="$scratch/proto/quis/ledger/v1/ledger.proto"
# Drop LedgerEntry.appended_by: the kind of change a client must never meet unannounced.
sed -i '/^  string appended_by = 2;$/d' "$victim"
if "$buf" breaking "$scratch/proto" --against proto >"$scratch/out" 2>&1; then
    echo "buf breaking accepted a removed field" >&2
    exit 1
fi
grep -q 'Previously present field "2" with name "appended_by" on message "LedgerEntry" was deleted' "$scratch/out" || {
    cat "$scratch/out" >&2
    echo "buf breaking failed, but not with the expected message" >&2
    exit 1
}
cat "$scratch/out"

echo "== no generated code is committed"
tracked=$(git ls-files -- '*_pb2.py' '*_pb2_grpc.py' '*_pb2.pyi' '*_pb.ts' '*_pb.js' 'clients/*/gen/*' 'clients/**/generated/*')
if [ -n "$tracked" ]; then
    echo "generated files are tracked; they are produced from proto/ at build time:" >&2
    echo "$tracked" >&2
    exit 1
fi
echo "contract checks passed"
