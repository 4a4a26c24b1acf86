// The vault and sentinel through the gateway of a live suite: a world set up as
// in the Rust e2e tests (staff and a case in policy through an admin token, a
// subject and record through the ingest token), guarded reads, a search, an
// access history with every proof verified here, a decoy touch received on the
// alert watch stream, and the errors bad calls get.
import { toBinary, fromBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { strict as assert } from "node:assert";
import { before, describe, test as nodeTest } from "node:test";
import { field, fieldsOf, QuisClient, QuisError, verifyAccessHistory } from "../src/index.js";
import { CaseStatus, PolicyService, Purpose as PolicyPurpose, StaffStatus } from "../src/gen/quis/policy/v1/policy_pb.js";
import { Decision, LedgerEntrySchema } from "../src/gen/quis/ledger/v1/ledger_pb.js";
import { GetAccessHistoryResponseSchema, Sensitivity } from "../src/gen/quis/vault/v1/vault_pb.js";
import { Severity, AlertState } from "../src/gen/quis/sentinel/v1/sentinel_pb.js";
import { verifyCheckpoint, VerificationError, verifyInclusion, leafHash, type CheckpointVerifyOptions } from "../src/verifier/index.js";
import { need } from "./env.js";

const live = Boolean(process.env["QUIS_GATEWAY"]);
const skip = live ? false : "QUIS_GATEWAY is not set";
const test = (name: string, fn: () => void | Promise<void>) => nodeTest(name, { skip }, fn);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function rejects(p: Promise<unknown>, code: Code): Promise<QuisError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof QuisError, `not a QuisError: ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${Code[code]}`);
}

describe("vault and sentinel through the gateway", () => {
  const as = (token: string) => new QuisClient({ address: need("QUIS_GATEWAY"), token });
  const suffix = Date.now().toString(36);
  const subject = process.env["QUIS_SUBJECT_TS"] ?? "cl-ts-s1";
  const caseRef = `cases/ts-case-${suffix}`;
  const decoy = `ts-decoy-${suffix}`;
  let record = "";
  let trust: CheckpointVerifyOptions;
  let alice: QuisClient, bob: QuisClient, me: QuisClient, ines: QuisClient, auditor: QuisClient;

  before(async () => {
    if (!live) return;
    trust = {
      logKeys: need("QUIS_LOG_VKEY").split(/\s+/).filter(Boolean),
      witnessKeys: need("QUIS_WITNESS_VKEY").split(/\s+/).filter(Boolean),
      witnessQuorum: 1,
      origin: need("QUIS_LOG_ORIGIN"),
    };
    alice = as(need("QUIS_TOKEN_CASEWORKER"));
    bob = as(need("QUIS_TOKEN_CASEWORKER_BOB"));
    me = as(need("QUIS_TOKEN_SUBJECT_TS"));
    ines = as(need("QUIS_TOKEN_INVESTIGATOR"));
    auditor = as(need("QUIS_TOKEN_AUDITOR"));
    const ingest = as(need("QUIS_TOKEN_INGEST")).vault;
    await ingest.createSubject(subject, { givenNames: "Tess", familyName: "Tsman", dateOfBirth: "1980-02-29" });
    record = (
      await ingest.createRecord(subject, "r1", "tax-return", [
        field("income_2024", "54321.00", Sensitivity.CONFIDENTIAL),
        field("bank_iban", "GB82WEST12345698765432", Sensitivity.RESTRICTED),
        field("notes", "called about a refund"),
      ])
    ).name;
    await ingest.createSubject(decoy, { givenNames: "Dora", familyName: "Tsman", decoy: true });
    await ingest.createRecord(decoy, "r1", "tax-return", { notes: "decoy" });
    const policy = as(need("QUIS_TOKEN_ADMIN")).service(PolicyService);
    await policy.batchUpsertEntities({
      reason: "typescript client live test",
      entities: [
        ...["alice", "bob"].map((who) => ({
          kind: {
            case: "staff" as const,
            value: { name: `staff/${who}`, team: "teams/north", site: "hq", roles: ["caseworker"], status: StaffStatus.ACTIVE },
          },
        })),
        {
          kind: {
            case: "case" as const,
            value: {
              name: caseRef,
              subjects: [`subjects/${subject}`, `subjects/${decoy}`],
              assignedStaff: ["staff/alice"],
              status: CaseStatus.OPEN,
              purpose: PolicyPurpose.CASEWORK,
            },
          },
        },
      ],
    });
  });

  test("a guarded read is allowed, minimized, and its receipt is an entry of the ledger", async () => {
    const r = await alice.vault.getRecord(record, { purpose: "CASEWORK", caseRef });
    const fields = fieldsOf(r.record);
    assert.ok("notes" in fields && !("bank_iban" in fields), JSON.stringify(Object.keys(fields)));
    assert.equal(r.receipt?.decision, Decision.ALLOW);
    const narrowed = await alice.vault.getRecord(record, { purpose: "CASEWORK", caseRef }, { fields: ["notes"] });
    assert.deepEqual(Object.keys(fieldsOf(narrowed.record)), ["notes"]);
    const index = r.receipt!.ledgerIndex;
    // Wait for a witnessed checkpoint covering it, then prove the entry's exact bytes included.
    let proof;
    for (let i = 0; ; i++) {
      const cp = await auditor.ledger.raw.getCheckpoint({});
      if (cp.treeSize > index && cp.witnessed) {
        proof = await auditor.ledger.raw.getInclusionProof({ index, treeSize: cp.treeSize });
        break;
      }
      assert.ok(i < 200, "no witnessed checkpoint covers the read");
      await sleep(100);
    }
    const checkpoint = verifyCheckpoint(proof.checkpoint, trust);
    const page = await auditor.ledger.raw.getEntries({ startIndex: index, endIndex: index + 1n });
    const entry = page.entries[0]!;
    verifyInclusion(leafHash(entry.data), index, checkpoint.size, proof.hashes, checkpoint.root);
    const event = fromBinary(LedgerEntrySchema, entry.data).event?.kind;
    assert.equal(event?.case, "access");
    assert.equal(event.value.actor?.principal, "alice");
    assert.equal(event.value.case, caseRef);
  });

  test("a read without a case assignment is PERMISSION_DENIED with a readable reason", async () => {
    const e = await rejects(bob.vault.getRecord(record, { purpose: "CASEWORK", caseRef }), Code.PermissionDenied);
    assert.equal(e.reason, "ACCESS_DENIED");
    assert.ok(e.rawMessage.length > 0);
    assert.ok(BigInt(e.errorInfo?.metadata["ledger_index"] ?? "0") > 0n, "the entry that recorded the refusal");
  });

  test("a search finds the subject, with a receipt", async () => {
    const found = await alice.vault.searchSubjects({ familyName: "Tsman" }, { purpose: "CASEWORK", caseRef });
    assert.ok(found.matches.some((m) => m.name === `subjects/${subject}`));
    assert.ok(found.receipt!.ledgerIndex > 0n);
  });

  test("a missing purpose is refused by the client and by the vault (INVALID_ARGUMENT naming the field)", async () => {
    assert.throws(() => alice.vault.getRecord(record, { purpose: "UNSPECIFIED" as never, caseRef }), TypeError);
    const e = await rejects(alice.vault.raw.getRecord({ name: record }), Code.InvalidArgument);
    assert.ok(e.fieldViolations.some((v) => v.field.includes("purpose")), JSON.stringify(e.fieldViolations));
  });

  test("the subject's access history: every proof verified here, tampering refused", async () => {
    const read = (await alice.vault.getRecord(record, { purpose: "CASEWORK", caseRef })).receipt!.ledgerIndex;
    let items: { ledgerIndex: bigint }[] = [];
    for (let i = 0; i < 100; i++) {
      items = await me.vault.verifiedAccessHistory(subject, trust, { pageSize: 2 });
      if (items.some((it) => it.ledgerIndex === read)) break;
      await sleep(200);
    }
    assert.ok(items.some((it) => it.ledgerIndex === read), "the read is in the subject's history");
    const page = await me.vault.getAccessHistory(subject, { pageSize: 100 });
    verifyAccessHistory(page, subject, trust);
    const bytes = toBinary(GetAccessHistoryResponseSchema, page);
    const tampered = (edit: (p: typeof page) => void) => {
      const copy = fromBinary(GetAccessHistoryResponseSchema, bytes);
      edit(copy);
      return copy;
    };
    const item0 = page.items[0]!;
    if (item0.inclusionProof.length > 0) {
      const bad = tampered((p) => (p.items[0]!.inclusionProof[0] = new Uint8Array(32)));
      assert.throws(() => verifyAccessHistory(bad, subject, trust), VerificationError);
    }
    const badEntry = tampered((p) => {
      const e = p.items[0]!.entry;
      e[e.length - 1] = e[e.length - 1]! ^ 1;
    });
    assert.throws(() => verifyAccessHistory(badEntry, subject, trust), VerificationError);
    const badSalt = tampered((p) => (p.items[0]!.subjectSalt = new Uint8Array(p.items[0]!.subjectSalt.length)));
    assert.throws(() => verifyAccessHistory(badSalt, subject, trust), VerificationError);
    assert.throws(() => verifyAccessHistory(page, "subjects/someone-else", trust), VerificationError);
  });

  test("a subject reading another subject's history is PERMISSION_DENIED", async () => {
    // Outside their own history a purpose is required (else INVALID_ARGUMENT); given one, refused.
    const e = await rejects(me.vault.getAccessHistory(decoy, { ctx: { purpose: "AUDIT" } }), Code.PermissionDenied);
    assert.equal(e.reason, "ACCESS_DENIED");
  });

  test("touching a decoy raises a critical alert, received on the watch stream and triaged", async () => {
    const watched = ines.sentinel.waitForAlert((a) => a.detectionId === "honeytoken" && a.actor === "alice", 30_000, {
      minSeverity: Severity.HIGH,
    });
    await sleep(500);
    await alice.vault.getRecord(`subjects/${decoy}/records/r1`, { purpose: "CASEWORK", caseRef }).catch(() => undefined);
    const alert = await watched;
    assert.equal(alert.severity, Severity.CRITICAL);
    assert.ok(alert.evidence.length > 0);
    assert.equal((await ines.sentinel.getAlert(alert.name)).name, alert.name);
    const listed = [];
    for await (const a of ines.sentinel.alerts({ pageSize: 2, detectionId: "honeytoken" })) listed.push(a.name);
    assert.ok(listed.includes(alert.name));
    const triaged = await ines.sentinel.triageAlert(alert.name, "ACKNOWLEDGE", "typescript client live test");
    assert.equal(triaged.state, AlertState.ACKNOWLEDGED);
    assert.equal(triaged.triagedBy, "ines");
    for await (const _ of ines.sentinel.incidents({ pageSize: 10 })) break;
  });
});
