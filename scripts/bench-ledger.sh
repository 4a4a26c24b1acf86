#!/usr/bin/env bash
# The ledger's figures (docs/benchmarks.md): durable appends on SQLite and on
# PostgreSQL (64 appenders × 16 events, and single-event calls), the
# acknowledgement latency at 5,000 events/s, the lag of a tail consumer, the
# same events inserted one per statement into a plain PostgreSQL table, and
# inclusion-proof latency on a large log (PROOF_LOG_SIZE entries, default 10 M).
# COMPARE="/path/quis-a /path/quis-b" compares builds side by side instead.
# Loopback only, bounded in time; never run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/quis-target}"
PROOF_LOG_SIZE="${PROOF_LOG_SIZE:-10000000}"
PG="${PG:-postgres://postgres@127.0.0.1:5432}"

# QUIS_BIN: measure an already built binary (e.g. an older commit's) instead of building this tree.
if [ -n "${QUIS_BIN:-}" ]; then QUIS=$QUIS_BIN; else
    cargo build --release -p quis --locked
    QUIS="$CARGO_TARGET_DIR/release/quis"
fi
WORK=$(mktemp -d /tmp/quis-bench-ledger.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
peak_rss() { grep -E 'VmHWM' "/proc/$1/status" | awk '{print $2" kB"}'; }

# start_ledger DIR [STORE_URL] -> sets LEDGER (host:port) and LEDGER_PID
start_ledger() {
    local dir=$1 url=${2:-}
    local port; port=$(free_port)
    "$QUIS" --data-dir "$dir" init >/dev/null
    env QUIS_SERVICES__LEDGER__LISTEN="127.0.0.1:$port" QUIS_SERVICES__LEDGER__ADMIN_LISTEN=127.0.0.1:0 \
        QUIS_LEDGER__HTTP_LISTEN=127.0.0.1:0 QUIS_LOG__LEVEL=warn ${url:+QUIS_STORE__URL=$url} \
        "$QUIS" --data-dir "$dir" serve ledger >"$dir.log" 2>&1 &
    LEDGER_PID=$!
    PIDS+=("$LEDGER_PID")
    LEDGER="127.0.0.1:$port"
    for _ in $(seq 100); do grep -q "ledger listening" "$dir.log" 2>/dev/null && return 0; sleep 0.1; done
    echo "ledger did not start"; cat "$dir.log"; exit 1
}

tokens() {
    VAULT=$("$QUIS" --data-dir "$1" token --sub vault --role service --kind service --ttl 2h)
    AUDITOR=$("$QUIS" --data-dir "$1" token --sub audrey --role auditor --ttl 2h)
}

run() { echo "\$ quis bench-ledger $*"; "$QUIS" bench-ledger --ledger "$LEDGER" --token "$VAULT" --auditor-token "$AUDITOR" "$@"; echo; }

echo "== machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# COMPARE="A B ...": builds side by side instead: twice in turn, each on a fresh SQLite
# ledger, the closed loop at peak and then the open loop at 5,000 events/s.
if [ -n "${COMPARE:-}" ]; then
    for round in 1 2; do
        for QUIS in $COMPARE; do
            echo "== $QUIS, round $round (fresh SQLite ledger, load $(cut -d' ' -f1 /proc/loadavg))"
            start_ledger "$WORK/compare-$round-$(basename "$QUIS")"
            tokens "$WORK/compare-$round-$(basename "$QUIS")"
            run --concurrency 64 --events-per-call 16 --seconds 10 --tail
            run --concurrency 64 --events-per-call 16 --seconds 10 --rate 5000 --tail
            kill "$LEDGER_PID"; wait "$LEDGER_PID" 2>/dev/null || true
        done
    done
    exit 0
fi

echo "== SQLite (embedded default)"
start_ledger "$WORK/sqlite"
tokens "$WORK/sqlite"
run --concurrency 64 --events-per-call 16 --seconds 10 --tail
run --concurrency 64 --events-per-call 1 --seconds 10
run --concurrency 64 --events-per-call 16 --seconds 10 --rate 5000 --tail
echo "ledger peak RSS: $(peak_rss "$LEDGER_PID")"
echo

echo "== PostgreSQL backend, and the plain-table baseline in the same run"
DB="quis_bench_$(date +%s)"
psql "$PG/postgres" -qc "CREATE DATABASE $DB" >/dev/null
start_ledger "$WORK/pg" "$PG/$DB"
tokens "$WORK/pg"
run --concurrency 64 --events-per-call 16 --seconds 10 --postgres-baseline "$PG/$DB"
run --concurrency 64 --events-per-call 1 --seconds 10
kill "$LEDGER_PID"; wait "$LEDGER_PID" 2>/dev/null || true
psql "$PG/postgres" -qc "DROP DATABASE $DB" >/dev/null
echo

echo "== inclusion proofs on a log of $PROOF_LOG_SIZE entries (SQLite)"
start_ledger "$WORK/big"
tokens "$WORK/big"
# Fill with exactly PROOF_LOG_SIZE events in the largest batches, then measure proofs against the signed tree.
"$QUIS" bench-ledger --ledger "$LEDGER" --token "$VAULT" --concurrency 16 --events-per-call 1000 \
    --fill "$PROOF_LOG_SIZE" | sed 's/^/fill: /'
sleep 2
grep VmRSS "/proc/$LEDGER_PID/status" | sed 's/^/ledger after fill: /'
run --concurrency 1 --events-per-call 1 --seconds 1 --proofs 2000
echo "ledger peak RSS: $(peak_rss "$LEDGER_PID"); database: $(du -h "$WORK/big/ledger.db" | cut -f1)"
