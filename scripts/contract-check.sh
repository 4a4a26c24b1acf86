#!/usr/bin/env bash
# Contract checks on proto/: buf lint, buf breaking against the protos of the
# previous commit (FILE rules: a removed or renumbered field, a renamed RPC, a
# changed type all fail), a self-test that the breaking check does fail on a
# removed field, and a check that no generated code is committed (every
# language generates from proto/ at build time, so nothing can go stale).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x tools/buf/node_modules/.bin/buf ]; then
    (cd tools/buf && npm ci --no-audit --no-fund --loglevel=error)
fi
buf="$PWD/tools/buf/node_modules/.bin/buf"

echo "== buf lint"
"$buf" lint proto

against="${QUIS_BREAKING_AGAINST:-HEAD~1}"
if git rev-parse -q --verify "$against^{commit}" >/dev/null; then
    echo "== buf breaking against $against"
    "$buf" breaking proto --against ".git#ref=$(git rev-parse "$against"),subdir=proto"
else
    echo "== buf breaking: no commit $against to compare with (first commit or shallow clone)" >&2
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
