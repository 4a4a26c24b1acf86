#!/usr/bin/env bash
# Runs the Python and TypeScript client suites against a live `quis up`:
# a fresh data directory, the gateway on a free loopback port, and tokens for
# each role minted with the data directory's development key. The suites read
# everything they need from the QUIS_* variables exported below.
#
#   bash scripts/clients-test.sh            # both
#   bash scripts/clients-test.sh python     # one
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/quis-target}"
suites=("${@:-python typescript}")
read -r -a suites <<<"${suites[*]}"

cargo build -p quis --locked --quiet
quis="$CARGO_TARGET_DIR/debug/quis"

work=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

data="$work/data"
"$quis" --data-dir "$data" init >/dev/null
QUIS_LOG__FORMAT=json "$quis" --data-dir "$data" up --port 0 --admin-port 0 >"$work/up.out" 2>"$work/up.err" &
pid=$!
for _ in $(seq 1 300); do
    grep -q '^gateway listening on' "$work/up.out" 2>/dev/null && break
    if ! kill -0 "$pid" 2>/dev/null; then cat "$work/up.err" >&2; echo "quis up exited" >&2; exit 1; fi
    sleep 0.1
done
grep -q '^gateway listening on' "$work/up.out" || { cat "$work/up.err" >&2; echo "quis up did not start" >&2; exit 1; }

field() { sed -n "s|^$1||p" "$work/up.out" | head -1; }
token() {
    local ttl=(--ttl 1h)
    case " $* " in *" --ttl "*) ttl=() ;; esac
    "$quis" --data-dir "$data" token "${ttl[@]}" "$@"
}

# Tokens first: the QUIS_* variables exported below would otherwise be read as quis configuration.
QUIS_TOKEN_AUDITOR=$(token --sub audrey --role auditor)
QUIS_TOKEN_INVESTIGATOR=$(token --sub ines --role investigator)
QUIS_TOKEN_ADMIN=$(token --sub adam --role admin)
QUIS_TOKEN_ADMIN2=$(token --sub ada --role admin)
QUIS_TOKEN_CASEWORKER=$(token --sub alice --role caseworker --team north --site hq)
QUIS_TOKEN_PRIVACY=$(token --sub petra --role privacy_officer)
# A service principal carries the service role (the verifier refuses one without it).
QUIS_TOKEN_INGEST=$(token --sub loader --kind service --role ingest --role service)
# Service principals, as the ledger stamps them: each may append only the event kinds it owns.
QUIS_TOKEN_VAULT=$(token --sub vault --kind service --role service)
QUIS_TOKEN_POLICY=$(token --sub policy --kind service --role service)
QUIS_TOKEN_SENTINEL=$(token --sub sentinel --kind service --role service)
QUIS_TOKEN_EXPIRED=$(token --sub alice --role caseworker --ttl 1s)
# The vault and sentinel suites: a caseworker on no case, and one data subject per client suite.
QUIS_TOKEN_CASEWORKER_BOB=$(token --sub bob --role caseworker --team north --site hq)
# A team lead: the default pack lets only team leads and investigators export.
QUIS_TOKEN_TEAM_LEAD=$(token --sub tom --role team_lead --team north --site hq)
QUIS_SUBJECT_PY=cl-py-s1
QUIS_SUBJECT_TS=cl-ts-s1
QUIS_TOKEN_SUBJECT_PY=$(token --sub "$QUIS_SUBJECT_PY" --kind subject)
QUIS_TOKEN_SUBJECT_TS=$(token --sub "$QUIS_SUBJECT_TS" --kind subject)
export QUIS_TOKEN_AUDITOR QUIS_TOKEN_INVESTIGATOR QUIS_TOKEN_ADMIN QUIS_TOKEN_ADMIN2 QUIS_TOKEN_CASEWORKER \
    QUIS_TOKEN_PRIVACY QUIS_TOKEN_INGEST QUIS_TOKEN_VAULT QUIS_TOKEN_POLICY QUIS_TOKEN_SENTINEL QUIS_TOKEN_EXPIRED \
    QUIS_TOKEN_CASEWORKER_BOB QUIS_TOKEN_TEAM_LEAD QUIS_SUBJECT_PY QUIS_SUBJECT_TS QUIS_TOKEN_SUBJECT_PY QUIS_TOKEN_SUBJECT_TS

# A client that runs the quis CLI itself must drop the QUIS_* variables below from its environment.
export QUIS_BIN="$quis"
export QUIS_DATA_DIR="$data"
QUIS_GATEWAY=$(field 'gateway listening on ')
export QUIS_GATEWAY                                   # host:port, plaintext HTTP/2 on loopback
export QUIS_TILES_URL="http://$QUIS_GATEWAY"          # /checkpoint and /tile/... through the gateway
QUIS_ADMIN_URL=$(field 'admin (/livez /readyz /metrics) on ')
export QUIS_ADMIN_URL
# The ledger's own gRPC address: AppendEvents is internal, services append there, not through the gateway.
QUIS_LEDGER_ADDR=$(field 'ledger gRPC (internal, for services): http://')
export QUIS_LEDGER_ADDR
# The log's verifier key(s), space separated, and the local witness's.
QUIS_LOG_VKEY=$(field 'log verifier key: ')
QUIS_WITNESS_VKEY=$(field 'witness verifier key: ')
export QUIS_LOG_VKEY QUIS_WITNESS_VKEY
QUIS_LOG_ORIGIN=${QUIS_LOG_VKEY%%+*}
export QUIS_LOG_ORIGIN
export QUIS_TESTDATA="$root/crates/tlog/tests/vectors"   # copy of ../shared/testdata (rfc6962, c2sp)

for suite in "${suites[@]}"; do
    echo "== $suite client against quis up on $QUIS_GATEWAY"
    bash "clients/$suite/run-tests.sh"
done
