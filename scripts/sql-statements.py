#!/usr/bin/env python3
"""Statements per guarded read, by table, from the log of a `quis bench-vault` run.

    QUIS_LOG__LEVEL="sqlx::query=debug,warn" QUIS_LOG__FORMAT=json \
        quis --data-dir DIR bench-vault --seconds 5 2> sql.log
    python3 scripts/sql-statements.py sql.log

Counts sqlx's statement log (one JSON line per statement, with the time it took on its
connection) over the window from the vault's first record read to its last, and divides
by the number of record reads.
"""
import json,re,collections,sys
rows=[]
for line in open(sys.argv[1]):
    try: j=json.loads(line)
    except: continue
    if j.get('target')!='sqlx::query': continue
    st=re.sub(r'\s+',' ',j.get('db.statement') or j.get('summary') or '').strip()
    rows.append((j['timestamp'],st,j.get('elapsed_secs',0)))
rec=[r for r in rows if r[1].startswith('SELECT r.version, r.kind')]
t0,t1=rec[0][0],rec[-1][0]
print('window',t0[11:23],'-',t1[11:23],'record reads',len(rec))
win=[r for r in rows if t0<=r[0]<=t1]
def table(st):
    m=re.search(r'(vault_\w+|ledger_\w+|policy_\w+|sentinel_\w+|witness_\w+|revocation_\w+|identity_\w+)',st)
    return m.group(1) if m else (st[:30] or '?')
def kind(st):
    if 'idx, hashes FROM' in st: return 'SELECT hashes'
    if 'idx, data FROM' in st: return 'SELECT entry range'
    return (st.split() or ['?'])[0]
c=collections.Counter(); t=collections.Counter()
for ts,st,e in win:
    k=(table(st), kind(st)); c[k]+=1; t[k]+=e
n=len(rec); tot=sum(t.values())
print(f"{'table':26s} {'statement':20s} {'count':>6s} {'per read':>8s} {'time ms':>9s} {'share':>6s}")
for k,v in sorted(c.items(), key=lambda kv:-t[kv[0]]):
    print(f"{k[0]:26s} {k[1]:20s} {v:6d} {v/n:8.2f} {t[k]*1e3:9.1f} {100*t[k]/tot:5.1f}%")
print(f"all statements: {len(win)} ({len(win)/n:.2f} per read), {tot:.2f} s of statement time in {len(rec)} reads")
