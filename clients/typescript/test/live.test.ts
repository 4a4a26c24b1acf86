// Live tests: real gRPC calls through the gateway of a running `quis up`
// (scripts/clients-test.sh starts it and exports QUIS_*). Skipped without
// QUIS_GATEWAY; run-tests.sh fails if they were skipped while it is set.
import { create, fromBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { strict as assert } from "node:assert";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, describe, test as nodeTest } from "node:test";
import { promisify } from "node:util";
import { commit, items, opens, Purpose, QuisClient, QuisError, withAccess } from "../src/index.js";
import {
  AccessEventSchema,
  Action,
  Decision,
  LedgerEntrySchema,
  type AccessEvent,
  type EventDetail,
  type StoredEntry,
} from "../src/gen/quis/ledger/v1/ledger_pb.js";
import {
  encodeBase64,
  leafHash,
  TileFetcher,
  verifyCheckpoint,
  verifyConsistency,
  verifyInclusion,
  VerificationError,
  type CheckpointVerifyOptions,
  type VerifiedCheckpoint,
} from "../src/verifier/index.js";
import { need } from "./env.js";

const live = Boolean(process.env["QUIS_GATEWAY"]);
const run = promisify(execFile);

// Each test is skipped (and counted as skipped) without a live suite.
const skip = live ? false : "QUIS_GATEWAY is not set";
const test = (name: string, fn: () => void | Promise<void>) => nodeTest(name, { skip }, fn);

describe("live suite through the gateway", () => {
  const gateway = process.env["QUIS_GATEWAY"] ?? "";
  const as = (role: string, token?: string) =>
    new QuisClient({ address: gateway, ...(role === "none" ? {} : { token: token ?? need(`QUIS_TOKEN_${role}`) }) });
  let trust: CheckpointVerifyOptions;
  let vault: QuisClient, auditor: QuisClient, caseworker: QuisClient, admin: QuisClient, anonymous: QuisClient;
  const run1 = `ts-${Date.now().toString(36)}`;
  const appended: { index: bigint; subject: string; detail: EventDetail }[] = [];
  let expiredUsable: Promise<void>;
  let tokenAsks = 0;
  const notes = new Map<bigint, string>(); // raw signed notes by size, as served

  before(() => {
    if (!live) return;
    trust = {
      logKeys: need("QUIS_LOG_VKEY").split(/\s+/).filter(Boolean),
      witnessKeys: need("QUIS_WITNESS_VKEY").split(/\s+/).filter(Boolean),
      witnessQuorum: 1,
      origin: need("QUIS_LOG_ORIGIN"),
    };
    // AppendEvents is internal: the gateway refuses it (checked below), and
    // services call the ledger's own listener, QUIS_LEDGER_ADDR.
    vault = new QuisClient({ address: need("QUIS_LEDGER_ADDR"), token: need("QUIS_TOKEN_VAULT") });
    auditor = as("AUDITOR");
    // The caseworker's token comes from an async provider, asked on every call.
    caseworker = new QuisClient({
      address: gateway,
      token: async () => {
        tokenAsks++;
        return need("QUIS_TOKEN_CASEWORKER");
      },
    });
    admin = as("ADMIN");
    anonymous = as("none");
    // The expired token was minted with a 1 s lifetime; servers allow 30 s of
    // clock leeway, so it is refused only from exp + 30 s on.
    const exp = JSON.parse(Buffer.from(need("QUIS_TOKEN_EXPIRED").split(".")[1]!, "base64url").toString()).exp;
    expiredUsable = new Promise((r) => setTimeout(r, Math.max(0, (exp + 31) * 1000 - Date.now())));
  });

  /** A valid access event without commitments (a search). */
  function accessEvent() {
    const value = withAccess(
      AccessEventSchema,
      { actor: { principal: "alice", kind: "staff" }, action: Action.SEARCH, decision: Decision.ALLOW },
      { purpose: "AUDIT" },
    );
    return { kind: { case: "access" as const, value } };
  }

  /** Appends n access events as the vault; each commits to a fresh subject id. */
  async function appendAccesses(n: number): Promise<bigint[]> {
    const batch = Array.from({ length: n }, (_, i) => {
      const subject = `${run1}-subject-${appended.length + i}`;
      const { commitment, detail } = commit(subject);
      const access = withAccess(
        AccessEventSchema,
        {
          actor: { principal: "alice", kind: "staff", roles: ["caseworker"], team: "north", site: "hq" },
          action: Action.READ,
          subject: commitment,
          decision: Decision.ALLOW,
          fieldsReturned: ["name", "address"],
          requestId: `${run1}-${i}`,
        },
        { purpose: "CASEWORK", caseRef: "cases/c-42" },
      );
      return { subject, detail, event: { kind: { case: "access" as const, value: access } } };
    });
    const res = await vault.ledger.append(
      batch.map((b) => b.event),
      batch.map((b) => b.detail),
    );
    assert.equal(res.indices.length, n);
    res.indices.forEach((index, i) => appended.push({ index, subject: batch[i]!.subject, detail: batch[i]!.detail }));
    assert.ok(res.treeSize > res.indices[n - 1]!);
    return res.indices;
  }

  /** The latest checkpoint once it covers size and is witnessed (the witness cosigns shortly after). */
  async function witnessedCheckpoint(size: bigint): Promise<VerifiedCheckpoint> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const res = await auditor.ledger.checkpoint();
      if (res.witnessed && res.treeSize >= size) {
        const cp = verifyCheckpoint(res.checkpoint, trust);
        assert.equal(cp.size, res.treeSize);
        notes.set(cp.size, res.checkpoint);
        return cp;
      }
      if (Date.now() > deadline) throw new Error(`no witnessed checkpoint of size >= ${size} within 20 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function readBack(start: bigint, end: bigint, pageSize: number): Promise<StoredEntry[]> {
    const out: StoredEntry[] = [];
    for await (const e of auditor.ledger.entries(start, end, pageSize)) out.push(e);
    return out;
  }

  test("echo answers with the verified principal", async () => {
    const res = await caseworker.echo.echo({ message: "hello", payload: Uint8Array.of(1, 2, 3) });
    assert.equal(res.message, "hello");
    assert.deepEqual(res.payload, Uint8Array.of(1, 2, 3));
    assert.equal(res.principal, "alice");
    const seq: number[] = [];
    for await (const m of caseworker.echo.expand({ message: "x", count: 3, intervalMs: 0 })) seq.push(m.sequence);
    assert.deepEqual(seq, [0, 1, 2]);
    assert.equal(tokenAsks, 2);
  });

  let first: VerifiedCheckpoint;
  let second: VerifiedCheckpoint;

  test("the vault appends access events; an auditor reads them back over pages, as stored", async () => {
    const indices = await appendAccesses(3);
    first = await witnessedCheckpoint(indices[2]! + 1n);
    const entries = await readBack(indices[0]!, indices[2]! + 1n, 2);
    assert.deepEqual(entries.map((e) => e.index), indices);
    entries.forEach((e, i) => {
      const entry = fromBinary(LedgerEntrySchema, e.data);
      assert.equal(entry.appendedBy, "vault");
      assert.ok(entry.sequenceTime && entry.sequenceTime.seconds > 0n);
      assert.equal(entry.event?.kind.case, "access");
      const access = entry.event!.kind.value as AccessEvent;
      assert.equal(access.case, "cases/c-42");
      assert.equal(access.purpose, Purpose.CASEWORK);
      assert.equal(access.actor?.principal, "alice");
      assert.ok(opens(access.subject!.digest, appended[i]!.detail.salt, appended[i]!.subject));
    });
  });

  test("an auditor reads the value behind a commitment", async () => {
    const { detail, subject, index } = appended[0]!;
    const entries = await readBack(index, index + 1n, 1);
    const access = fromBinary(LedgerEntrySchema, entries[0]!.data).event!.kind.value as { subject: { digest: Uint8Array } };
    const res = await auditor.ledger.eventDetail(index, access.subject.digest);
    assert.equal(res.value, subject);
    assert.deepEqual(res.salt, detail.salt);
    assert.equal(res.entryIndex, index);
    // A commitment is found in its own entry only.
    await assert.rejects(auditor.ledger.eventDetail(index + 1n, access.subject.digest), (e: unknown) => {
      return e instanceof QuisError && e.reason === "DETAIL_NOT_FOUND";
    });
    const both = await auditor.ledger.eventDetails([
      [index, access.subject.digest],
      [index + 1n, access.subject.digest],
    ]);
    assert.deepEqual(
      both.details.map((d) => d.entryIndex),
      [index],
    );
  });

  test("the checkpoint's log signature and witness cosignature verify; tampering is rejected", () => {
    assert.equal(first.origin, trust.origin);
    assert.ok(first.logSigners.length >= 1);
    assert.ok(first.cosigners.size >= 1);
    const note = notes.get(first.size)!;
    const body = first.body;
    const sigs = note.slice(body.length + 1);
    assert.equal(`${body}\n${sigs}`, note);
    const bumped = body.replace(/\n\d+\n/, `\n${first.size + 1n}\n`);
    assert.throws(() => verifyCheckpoint(`${bumped}\n${sigs}`, trust), VerificationError);
    const otherRoot = body.replace(/\n[A-Za-z0-9+/]{43}=\n/, `\n${encodeBase64(new Uint8Array(32))}\n`);
    assert.notEqual(otherRoot, body);
    assert.throws(() => verifyCheckpoint(`${otherRoot}\n${sigs}`, trust), VerificationError);
    // Without the witness's line the quorum of one is not met.
    const logOnly = sigs
      .split("\n")
      .filter((l) => l.startsWith(`\u2014 ${first.origin} `))
      .map((l) => `${l}\n`)
      .join("");
    verifyCheckpoint(`${body}\n${logOnly}`, { ...trust, witnessQuorum: 0 });
    assert.throws(() => verifyCheckpoint(`${body}\n${logOnly}`, trust), VerificationError);
  });

  test("inclusion proofs of the appended entries verify over the exact stored bytes", async () => {
    const cp = first;
    const entries = await readBack(appended[0]!.index, appended[2]!.index + 1n, 0);
    for (const e of entries) {
      await auditor.ledger.proveInclusion(e, cp);
      const proof = await auditor.ledger.inclusionProof(e.index, cp.size);
      assert.ok(proof.checkpoint.length > 0);
      if (proof.hashes.length > 0) {
        const bad = proof.hashes.map((h) => h.slice());
        bad[0]![0]! ^= 1;
        assert.throws(() => verifyInclusion(leafHash(e.data), e.index, cp.size, bad, cp.root), VerificationError);
      }
      const tampered = e.data.slice();
      tampered[tampered.length - 1]! ^= 1;
      assert.throws(() => verifyInclusion(leafHash(tampered), e.index, cp.size, proof.hashes, cp.root), VerificationError);
    }
  });

  test("the checkpoint of the next batch is consistent with the first; a tampered proof is not", async () => {
    const before = first;
    const indices = await appendAccesses(2);
    second = await witnessedCheckpoint(indices[1]! + 1n);
    assert.ok(second.size > before.size);
    await auditor.ledger.proveConsistency(before, second);
    const proof = await auditor.ledger.consistencyProof(before.size, second.size);
    const bad = proof.hashes.map((h) => h.slice());
    bad[bad.length - 1]![31]! ^= 0x80;
    assert.throws(() => verifyConsistency(before.size, second.size, bad, before.root, second.root), VerificationError);
    assert.throws(
      () => verifyConsistency(before.size, second.size, proof.hashes, second.root, before.root),
      VerificationError,
    );
  });

  test("tiles through the gateway recompute the signed root, from hashes and from entries", async () => {
    // Past 256 entries the log has a full leaf tile and a level-1 tile to check.
    const size = (await auditor.ledger.checkpoint()).treeSize;
    if (size < 300n) await appendAccesses(Number(300n - size));
    const witnessed = await witnessedCheckpoint(300n);
    const tiles = new TileFetcher({ baseUrl: need("QUIS_TILES_URL"), token: need("QUIS_TOKEN_AUDITOR") });
    const cp = verifyCheckpoint(await tiles.checkpoint(), trust);
    assert.ok(cp.size >= witnessed.size);
    assert.equal(encodeBase64(await tiles.recomputeRoot(cp.size)), encodeBase64(cp.root));
    assert.equal(encodeBase64(await tiles.recomputeRoot(cp.size, { entries: true })), encodeBase64(cp.root));
    // Entry bundles need a token; hash tiles do not.
    const open = new TileFetcher({ baseUrl: need("QUIS_TILES_URL") });
    await open.hashTile(0, 0, cp.size);
    await assert.rejects(open.entryBundle(0, cp.size), /HTTP 401/);
  });

  test("the Rust verifier accepts the checkpoint the TypeScript verifier accepts", async () => {
    const cp = await witnessedCheckpoint(second.size);
    const note = (await auditor.ledger.checkpoint()).checkpoint;
    const ours = verifyCheckpoint(note, trust);
    const dir = mkdtempSync(join(tmpdir(), "quis-ts-verify-"));
    try {
      const state = join(dir, "state");
      // Our accepted checkpoint as the Rust verifier's trusted state: it must
      // accept it and prove the latest checkpoint consistent with it.
      writeFileSync(state, note);
      const args = ["verify", "--url", need("QUIS_TILES_URL"), "--state", state, "--full", "--quorum", "1"];
      args.push("--token", need("QUIS_TOKEN_AUDITOR"));
      for (const k of trust.logKeys) args.push("--log-key", String(k));
      for (const k of trust.witnessKeys ?? []) args.push("--witness-key", String(k));
      // quis reads QUIS_* as configuration: give it none of the test's variables.
      const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("QUIS_")));
      const { stdout } = await run(need("QUIS_BIN"), args, { env });
      const m = /verified size (\d+) root (\S+),/.exec(stdout);
      assert.ok(m, stdout);
      const rust = verifyCheckpoint(readFileSync(state, "utf8"), trust);
      assert.equal(rust.size, BigInt(m[1]!));
      assert.equal(encodeBase64(rust.root), m[2]);
      assert.ok(rust.size >= ours.size && ours.size >= cp.size);
      if (rust.size === ours.size) assert.equal(encodeBase64(rust.root), encodeBase64(ours.root));
      else await auditor.ledger.proveConsistency(ours, rust);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("tail replays from an index and follows new entries", async () => {
    const start = appended[0]!.index;
    const abort = new AbortController();
    const seen: StoredEntry[] = [];
    const stored = await readBack(start, appended[appended.length - 1]!.index + 1n, 0);
    const tail = (async () => {
      for await (const e of auditor.ledger.tail(start, { signal: abort.signal })) {
        seen.push(e);
        if (seen.length === stored.length + 1) break;
      }
    })();
    // Wait until the replay has caught up, then append one more and see it arrive.
    const until = Date.now() + 10_000;
    while (seen.length < stored.length && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    const [next] = await appendAccesses(1);
    await Promise.race([tail, new Promise((_, rej) => setTimeout(() => rej(new Error("tail did not deliver")), 10_000))]);
    abort.abort();
    assert.deepEqual(seen.slice(0, stored.length), stored);
    assert.equal(seen[stored.length]!.index, next);
  });

  test("the admin suspends and reinstates a principal and revokes a token; revocations page", async () => {
    const who = `${run1}-mallory`;
    const suspended = await admin.identity.suspendPrincipal(who, "typescript client test");
    assert.equal(suspended.target.case, "principal");
    await admin.identity.revokeToken(`${run1}-jti`, "typescript client test", new Date(Date.now() + 3_600_000));
    const all = [];
    for await (const r of admin.identity.revocations(1)) all.push(r);
    assert.ok(all.some((r) => r.target.case === "principal" && r.target.value === who));
    assert.ok(all.some((r) => r.target.case === "tokenId" && r.target.value === `${run1}-jti`));
    const reinstated = await admin.identity.reinstatePrincipal(who, "done");
    assert.equal(reinstated.name, suspended.name);
    const names = [];
    for await (const r of items((req) => admin.identity.raw.listRevocations(req), { pageSize: 2, pageToken: "" }, (p) => p.revocations)) {
      names.push(r.name);
    }
    assert.ok(!names.includes(suspended.name));
  });

  async function failure(p: Promise<unknown>): Promise<QuisError> {
    try {
      await p;
    } catch (e) {
      assert.ok(e instanceof QuisError, `not a QuisError: ${e}`);
      return e;
    }
    assert.fail("the call succeeded");
  }

  test("the default deadline ends a call, a stream included, with DEADLINE_EXCEEDED", async () => {
    const hasty = new QuisClient({ address: gateway, token: need("QUIS_TOKEN_CASEWORKER"), defaultTimeoutMs: 300 });
    const got: number[] = [];
    const e = await failure(
      (async () => {
        for await (const m of hasty.echo.expand({ message: "slow", count: 10, intervalMs: 100 })) got.push(m.sequence);
      })(),
    );
    assert.equal(e.code, Code.DeadlineExceeded);
    assert.ok(got.length >= 1 && got.length < 10, `${got.length} messages`);
    // A per-call timeout overrides the default.
    const all: number[] = [];
    for await (const m of hasty.echo.expand({ message: "slow", count: 5, intervalMs: 100 }, { timeoutMs: 5_000 })) {
      all.push(m.sequence);
    }
    assert.equal(all.length, 5);
  });

  test("no token: UNAUTHENTICATED with reason TOKEN_MISSING", async () => {
    const e = await failure(anonymous.ledger.checkpoint());
    assert.equal(e.code, Code.Unauthenticated);
    assert.equal(e.codeName, "UNAUTHENTICATED");
    assert.equal(e.reason, "TOKEN_MISSING");
    assert.equal(e.errorInfo?.domain, "quis.auth");
  });

  test("wrong role: PERMISSION_DENIED", async () => {
    const e = await failure(caseworker.ledger.entries(0n, 1n).next());
    assert.equal(e.code, Code.PermissionDenied);
    assert.equal(e.reason, "ROLE_REQUIRED");
    // Only service principals append, and each only the kinds it owns.
    const auditorAtLedger = new QuisClient({ address: need("QUIS_LEDGER_ADDR"), token: need("QUIS_TOKEN_AUDITOR") });
    const e2 = await failure(auditorAtLedger.ledger.append([accessEvent()]));
    assert.equal(e2.code, Code.PermissionDenied);
    const policyAtLedger = new QuisClient({ address: need("QUIS_LEDGER_ADDR"), token: need("QUIS_TOKEN_POLICY") });
    const e3 = await failure(policyAtLedger.ledger.append([accessEvent()]));
    assert.equal(e3.code, Code.PermissionDenied, e3.message);
  });

  test("AppendEvents is internal: the gateway refuses it even to the vault", async () => {
    const e = await failure(as("VAULT").ledger.append([accessEvent()]));
    assert.equal(e.code, Code.Unimplemented);
    assert.equal(e.errorInfo?.domain, "quis.gateway");
  });

  test("bad argument: INVALID_ARGUMENT with a BadRequest violation naming the field", async () => {
    const e = await failure(auditor.ledger.raw.getEntries({ startIndex: 0n, endIndex: 1n, pageSize: 5000 }));
    assert.equal(e.code, Code.InvalidArgument);
    assert.ok(e.violation("page_size"), JSON.stringify(e.fieldViolations));
    const access = create(AccessEventSchema, { actor: { principal: "alice" }, decision: Decision.ALLOW });
    const e2 = await failure(vault.ledger.append([{ kind: { case: "access", value: access } }]));
    assert.equal(e2.code, Code.InvalidArgument);
    assert.ok(e2.violation("events[0].action"), JSON.stringify(e2.fieldViolations));
    assert.ok(e2.violation("events[0].purpose"), JSON.stringify(e2.fieldViolations));
    assert.match(e2.errorInfo?.domain ?? "", /^quis\./);
    assert.match(e2.reason ?? "", /^[A-Z][A-Z0-9_]*$/);
  });

  test("an expired token: UNAUTHENTICATED with reason TOKEN_EXPIRED", async () => {
    await expiredUsable;
    const e = await failure(as("EXPIRED").echo.echo({ message: "late" }));
    assert.equal(e.code, Code.Unauthenticated);
    assert.equal(e.reason, "TOKEN_EXPIRED");
  });
});
