#!/usr/bin/env python3
"""Statements per guarded read, by table, from the log of a `quis bench-vault` run.

    QUIS_LOG__LEVEL="sqlx::query=debug,warn" QUIS_LOG__FORMAT=json \\
        quis --data-dir DIR bench-vault --seconds 5 2> sql.log
    python3 scripts/sql-statements.py sql.log

Counts sqlx's statement log (one JSON line per statement, with the time it took on its
connection) over the window from the vault's first record read to its last, and divides
by the number of record reads.
"""
import collections
import json
import re
import sys

RECORD_READ = "SELECT r.version, r.kind"
TABLE = re.compile(r"(vault_\w+|ledger_\w+|policy_\w+|sentinel_\w+|witness_\w+|revocation_\w+|identity_\w+)")


def statements(path):
    """(timestamp, statement with whitespace collapsed, seconds) of every logged statement."""
    with open(path) as log:
        for line in log:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("target") != "sqlx::query":
                continue
            text = event.get("db.statement") or event.get("summary") or ""
            yield event["timestamp"], re.sub(r"\s+", " ", text).strip(), event.get("elapsed_secs", 0.0)


def label(text):
    """(table, kind of statement); the ledger's two reads of `ledger_entries` apart."""
    found = TABLE.search(text)
    table = found.group(1) if found else (text[:30] or "?")
    if "idx, hashes FROM" in text:
        return table, "SELECT hashes"
    if "idx, data FROM" in text:
        return table, "SELECT entry range"
    return table, (text.split() or ["?"])[0]


def main(path):
    rows = list(statements(path))
    reads = [row for row in rows if row[1].startswith(RECORD_READ)]
    if not reads:
        sys.exit(f"{path}: no record reads logged (was QUIS_LOG__LEVEL=sqlx::query=debug set?)")
    start, end = reads[0][0], reads[-1][0]
    count, seconds = collections.Counter(), collections.Counter()
    window = [row for row in rows if start <= row[0] <= end]
    for _, text, elapsed in window:
        key = label(text)
        count[key] += 1
        seconds[key] += elapsed
    n, total = len(reads), sum(seconds.values())
    print("window", start[11:23], "-", end[11:23], "record reads", n)
    print(f"{'table':26s} {'statement':20s} {'count':>6s} {'per read':>8s} {'time ms':>9s} {'share':>6s}")
    for key in sorted(count, key=lambda k: -seconds[k]):
        share = 100 * seconds[key] / total if total else 0.0
        print(f"{key[0]:26s} {key[1]:20s} {count[key]:6d} {count[key] / n:8.2f} {seconds[key] * 1e3:9.1f} {share:5.1f}%")
    print(f"all statements: {len(window)} ({len(window) / n:.2f} per read), {total:.2f} s of statement time in {n} reads")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
