// The vault's export, external-record access and break-glass, and sentinel's
// break-glass review queue, through the gateway of a live suite: each answer,
// its ledger entry proved included here, and the exact google.rpc details
// (domain, reason, and each field with its rule) that a bad call gets.
import { fromBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { strict as assert } from "node:assert";
import { before, describe, test as nodeTest } from "node:test";
import { field, fieldsOf, QuisClient, QuisError } from "../src/index.js";
import { CaseStatus, PolicyService, Purpose as PolicyPurpose, StaffStatus } from "../src/gen/quis/policy/v1/policy_pb.js";
import { Action, Decision, LedgerEntrySchema, Purpose } from "../src/gen/quis/ledger/v1/ledger_pb.js";
import { Sensitivity } from "../src/gen/quis/vault/v1/vault_pb.js";
import { ReviewState, type Review } from "../src/gen/quis/sentinel/v1/sentinel_pb.js";
import { equalBytes, leafHash, verifyCheckpoint, type CheckpointVerifyOptions } from "../src/verifier/index.js";
import { need } from "./env.js";

const live = Boolean(process.env["QUIS_GATEWAY"]);
const skip = live ? false : "QUIS_GATEWAY is not set";
const test = (name: string, fn: () => void | Promise<void>) => nodeTest(name, { skip }, fn);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const JUSTIFICATION = "patient unconscious at the front desk, next of kin unknown";
const ID_RULE = "must be 1 to 64 characters of [a-z0-9-]";
const FIELD_NAME_RULE = "must match [a-z][a-z0-9_]* and be at most 64 characters";

/** The QuisError a call fails with, checked for its code, domain and reason. */
async function fails(call: Promise<unknown> | (() => Promise<unknown>), code: Code, domain: string, reason: string) {
  try {
    await (typeof call === "function" ? call() : call);
  } catch (e) {
    assert.ok(e instanceof QuisError, `not a QuisError: ${String(e)}`);
    assert.deepEqual([Code[e.code], e.errorInfo?.domain, e.reason], [Code[code], domain, reason], e.message);
    return e;
  }
  assert.fail(`expected ${Code[code]} ${reason}`);
}

/** {field: rule} of an INVALID_ARGUMENT's BadRequest details. */
async function violations(call: Promise<unknown> | (() => Promise<unknown>), domain: string) {
  const e = await fails(call, Code.InvalidArgument, domain, "INVALID_ARGUMENT");
  return Object.fromEntries(e.fieldViolations.map((v) => [v.field, v.description]));
}

/** Reads a whole server stream. */
async function drain<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const m of stream) out.push(m);
  return out;
}

describe("export, record access, break-glass and reviews through the gateway", () => {
  const as = (token: string) => new QuisClient({ address: need("QUIS_GATEWAY"), token });
  const suffix = Date.now().toString(36);
  const s = Object.fromEntries(["exp1", "exp2", "ext", "bg", "bg2"].map((k) => [k, `ts-${k}-${suffix}`]));
  const fraudCase = `cases/ts-fraud-${suffix}`;
  const caseworkCase = `cases/ts-work-${suffix}`;
  let trust: CheckpointVerifyOptions;
  let alice: QuisClient, bob: QuisClient, tom: QuisClient, ines: QuisClient, auditor: QuisClient;

  /** The entry at index, read by the auditor and proved included in a witnessed checkpoint verified here. */
  async function provedEntry(index: bigint) {
    let note = "";
    for (let i = 0; ; i++) {
      const cp = await auditor.ledger.checkpoint();
      if (cp.treeSize > index && cp.witnessed) {
        note = cp.checkpoint;
        break;
      }
      assert.ok(i < 300, `no witnessed checkpoint covers entry ${index}`);
      await sleep(100);
    }
    const checkpoint = verifyCheckpoint(note, trust);
    const [stored] = await drain(auditor.ledger.entries(index, index + 1n));
    await auditor.ledger.proveInclusion(stored!, checkpoint);
    return { stored: stored!, entry: fromBinary(LedgerEntrySchema, stored!.data) };
  }

  /** The access event of a proved entry. */
  async function provedAccess(index: bigint) {
    const { stored, entry } = await provedEntry(index);
    const kind = entry.event?.kind;
    assert.equal(kind?.case, "access", `entry ${index} is not an access event`);
    return { stored, access: kind.value };
  }

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
    tom = as(need("QUIS_TOKEN_TEAM_LEAD"));
    ines = as(need("QUIS_TOKEN_INVESTIGATOR"));
    auditor = as(need("QUIS_TOKEN_AUDITOR"));
    // Each subject: a tax return (income, notes and a `health_` field no permit names) and a letter.
    const ingest = as(need("QUIS_TOKEN_INGEST")).vault;
    for (const subject of Object.values(s)) {
      await ingest.createSubject(subject, { givenNames: "Flo", familyName: "Flowman", dateOfBirth: "1975-06-01" });
      await ingest.createRecord(subject, "r1", "tax-return", [
        field("income_2024", "40100.00", Sensitivity.CONFIDENTIAL),
        field("notes", "asked for an instalment plan"),
        field("health_condition", "not for any tax purpose", Sensitivity.SPECIAL_CATEGORY),
      ]);
      await ingest.createRecord(subject, "r2", "letter", { notes: "reminder sent" });
    }
    const staff = (who: string, role: string) => ({
      kind: {
        case: "staff" as const,
        value: { name: `staff/${who}`, team: "teams/north", site: "hq", roles: [role], status: StaffStatus.ACTIVE },
      },
    });
    const openCase = (name: string, subjects: string[], assignee: string, purpose: PolicyPurpose) => ({
      kind: {
        case: "case" as const,
        value: { name, subjects: subjects.map((x) => `subjects/${x}`), assignedStaff: [`staff/${assignee}`], status: CaseStatus.OPEN, purpose },
      },
    });
    await as(need("QUIS_TOKEN_ADMIN"))
      .service(PolicyService)
      .batchUpsertEntities({
        reason: "typescript client live test: export, record access, break-glass",
        entities: [
          staff("alice", "caseworker"),
          staff("bob", "caseworker"),
          staff("tom", "team_lead"),
          openCase(fraudCase, [s["exp1"]!, s["exp2"]!], "tom", PolicyPurpose.FRAUD_INVESTIGATION),
          openCase(caseworkCase, [s["ext"]!], "alice", PolicyPurpose.CASEWORK),
        ],
      });
  });

  // ExportRecords

  test("an export streams minimized records, every message with the one receipt proved in the ledger", async () => {
    const subjects = [s["exp1"]!, s["exp2"]!];
    const ctx = { purpose: "FRAUD_INVESTIGATION" as const, caseRef: fraudCase };
    const batches = await drain(tom.vault.exportRecords(subjects, ctx, { kind: "tax-return" }));
    const records = batches.flatMap((b) => b.records);
    assert.deepEqual(records.map((r) => r.name).sort(), subjects.sort().map((x) => `subjects/${x}/records/r1`));
    // The letters are not of the kind asked; no permit names the `health` tag.
    for (const r of records) assert.deepEqual(Object.keys(fieldsOf(r)).sort(), ["income_2024", "notes"]);
    const receipt = batches[0]!.receipt!;
    assert.ok(batches.every((b) => b.receipt?.ledgerIndex === receipt.ledgerIndex), "one receipt for the stream");
    assert.equal(receipt.decision, Decision.ALLOW);
    assert.ok(receipt.reason.length > 0);

    const { access } = await provedAccess(receipt.ledgerIndex);
    assert.deepEqual([access.action, access.decision, access.purpose], [Action.EXPORT, Decision.ALLOW, Purpose.FRAUD_INVESTIGATION]);
    assert.deepEqual([access.actor?.principal, access.case], ["tom", fraudCase]);
    assert.equal(access.results.length, 2, "one commitment per exported subject");

    const narrowed = (await drain(tom.vault.exportRecords(subjects, ctx, { fields: ["notes"] }))).flatMap((b) => b.records);
    assert.equal(narrowed.length, 4, "both kinds this time");
    for (const r of narrowed) assert.deepEqual(Object.keys(fieldsOf(r)), ["notes"]);
  });

  test("an export outside the export permit is PERMISSION_DENIED while the stream is read", async () => {
    const e = await fails(
      drain(alice.vault.exportRecords([s["ext"]!], { purpose: "CASEWORK", caseRef: caseworkCase })),
      Code.PermissionDenied,
      "quis.vault",
      "ACCESS_DENIED",
    );
    assert.ok(e.rawMessage.length > 0);
  });

  test("a bad export names every field and rule", async () => {
    const dup = `subjects/${s["exp1"]}`;
    const bad = tom.vault.raw.exportRecords({
      subjects: [dup, dup, "people/x"],
      kind: "Tax Return",
      fields: ["Notes"],
      context: { purpose: Purpose.FRAUD_INVESTIGATION },
    });
    assert.deepEqual(await violations(drain(bad), "quis.vault"), {
      "subjects[1]": "is named twice",
      "subjects[2]": "must be subjects/{subject}, an id of [a-z0-9-]{1,64}",
      kind: ID_RULE,
      "context.case": "is required: the case the work belongs to, cases/{case}",
      "fields[0]": FIELD_NAME_RULE,
    });
    assert.deepEqual(await violations(drain(tom.vault.raw.exportRecords({})), "quis.vault"), {
      subjects: "must hold 1 to 1000 subjects",
      "context.purpose": "is required: a known purpose of use",
    });
  });

  // RecordAccess

  test("record access answers the decision and its ledger index, never data; a denial is an answer", async () => {
    const reference = `TC-${suffix}`;
    const record = { system: "tax-core", subject: s["ext"]!, reference, kind: "tax-return" };
    const ctx = { purpose: "CASEWORK" as const, caseRef: caseworkCase };
    const r = await alice.vault.recordAccess(record, Action.READ, ctx, ["notes", "income_2024", "bank_iban"]);
    assert.deepEqual([...r.allowedFields].sort(), ["income_2024", "notes"], "casework never allows bank fields");
    assert.equal(r.receipt?.decision, Decision.ALLOW);
    const { stored, access } = await provedAccess(r.receipt!.ledgerIndex);
    assert.deepEqual([access.action, access.decision, access.actor?.principal], [Action.RECORD_ACCESS, Decision.ALLOW, "alice"]);
    assert.deepEqual([...access.fieldsReturned].sort(), ["income_2024", "notes"]);
    assert.ok(access.record !== undefined, "the record is committed to");
    assert.ok(!Buffer.from(stored.data).includes(reference), "the reference is never in the clear");

    const denied = await bob.vault.recordAccess(record, Action.READ, ctx, ["notes"]);
    assert.equal(denied.receipt?.decision, Decision.DENY);
    assert.deepEqual(denied.allowedFields, []);
    assert.ok(denied.receipt!.reason.length > 0 && denied.receipt!.ledgerIndex > r.receipt!.ledgerIndex);
    const bobs = await provedAccess(denied.receipt!.ledgerIndex);
    assert.deepEqual([bobs.access.decision, bobs.access.actor?.principal], [Decision.DENY, "bob"]);
  });

  test("a bad record access names every field and rule", async () => {
    const bad = alice.vault.raw.recordAccess({ record: { reference: "x".repeat(257) }, action: Action.SEARCH });
    assert.deepEqual(await violations(bad, "quis.vault"), {
      "record.system": ID_RULE,
      "record.subject": "is required: subjects/{subject}, an id of [a-z0-9-]{1,64}",
      "record.reference": "must be 1 to 256 printable characters",
      "record.kind": ID_RULE,
      action: "must be ACTION_READ, ACTION_UPDATE or ACTION_EXPORT",
      "context.purpose": "is required: a known purpose of use",
    });
  });

  // Break-glass

  test("break-glass opens access naming the grant; start, access and end are in the ledger", async () => {
    const record = `subjects/${s["bg"]}/records/r1`;
    const emergencyRead = () => alice.vault.getRecord(record, { purpose: "EMERGENCY", justification: JUSTIFICATION });
    await fails(emergencyRead, Code.PermissionDenied, "quis.vault", "ACCESS_DENIED"); // no case, no grant yet

    const started = await alice.vault.startBreakGlass([s["bg"]!], JUSTIFICATION, 600);
    const grant = started.grant!;
    assert.ok(grant.name.startsWith("grants/"));
    assert.deepEqual([grant.grantee, grant.subjects, grant.ended], ["staff/alice", [`subjects/${s["bg"]}`], false]);
    assert.equal(grant.expireTime!.seconds - grant.startTime!.seconds, 600n);
    assert.deepEqual([started.receipt?.decision, started.receipt?.breakGlassGrant], [Decision.ALLOW, grant.name]);

    const read = await emergencyRead();
    assert.deepEqual([read.receipt?.decision, read.receipt?.breakGlassGrant], [Decision.ALLOW, grant.name]);
    const fields = fieldsOf(read.record);
    assert.ok("notes" in fields && !("health_condition" in fields));

    await fails(bob.vault.endBreakGlass(grant.name), Code.PermissionDenied, "quis.vault", "NOT_GRANTEE");
    const ended = await alice.vault.endBreakGlass(grant.name);
    assert.deepEqual([ended.grant?.name, ended.grant?.ended, ended.receipt?.breakGlassGrant], [grant.name, true, grant.name]);
    await fails(alice.vault.endBreakGlass(grant.name), Code.FailedPrecondition, "quis.vault", "ALREADY_ENDED");
    await fails(emergencyRead, Code.PermissionDenied, "quis.vault", "ACCESS_DENIED"); // gone on the next check

    const steps: [bigint, Action][] = [
      [started.receipt!.ledgerIndex, Action.BREAK_GLASS_START],
      [read.receipt!.ledgerIndex, Action.READ],
      [ended.receipt!.ledgerIndex, Action.BREAK_GLASS_END],
    ];
    for (const [index, action] of steps) {
      const { access } = await provedAccess(index);
      assert.deepEqual(
        [access.action, access.breakGlassGrant, access.purpose, access.actor?.principal],
        [action, grant.name, Purpose.EMERGENCY, "alice"],
        `entry ${index}`,
      );
    }
    const start = await provedAccess(started.receipt!.ledgerIndex);
    assert.ok(start.access.justification !== undefined, "the justification is committed to");
    assert.ok(!Buffer.from(start.stored.data).includes(JUSTIFICATION), "and never in the clear");
  });

  test("break-glass errors: who may start, every field and rule, ending an unknown grant", async () => {
    const ingest = as(need("QUIS_TOKEN_INGEST"));
    await fails(ingest.vault.startBreakGlass([s["bg"]!], JUSTIFICATION), Code.PermissionDenied, "quis.vault", "ROLE_REQUIRED");
    // Staff that policy does not know: denied, and the denial recorded.
    await fails(auditor.vault.startBreakGlass([s["bg"]!], JUSTIFICATION), Code.PermissionDenied, "quis.vault", "ACCESS_DENIED");
    const bad = alice.vault.raw.startBreakGlass({
      subjects: [`subjects/${s["bg"]}`, `subjects/${s["bg2"]}`],
      justification: "too short",
      duration: { seconds: 30n },
      case: "c-1",
    });
    assert.deepEqual(await violations(bad, "quis.vault"), {
      subjects: "must hold exactly one subjects/{subject}, an id of [a-z0-9-]{1,64}",
      justification: "must be 20 to 2000 characters",
      duration: "must be 60 s to 43200 s",
      case: "must be cases/{case} with an id of 1 to 64 characters of [a-z0-9-]",
    });
    assert.deepEqual(await violations(alice.vault.endBreakGlass("bg-123"), "quis.vault"), { name: "must be grants/{grant}" });
    await fails(alice.vault.endBreakGlass("grants/bg-0000000000000000"), Code.NotFound, "quis.vault", "NOT_FOUND");
  });

  // Sentinel's break-glass review queue

  /** The review sentinel queued for grant, once it has tailed the start from the ledger. */
  async function reviewOf(actor: string, grant: string): Promise<Review> {
    for (let i = 0; i < 150; i++) {
      for await (const r of ines.sentinel.reviews({ actor, pageSize: 2 })) if (r.grant === grant) return r;
      await sleep(200);
    }
    assert.fail(`no review of ${grant} within 30 s`);
  }

  test("a break-glass start queues a review, completed once by an investigator and recorded", async () => {
    const started = await bob.vault.startBreakGlass([s["bg2"]!], JUSTIFICATION, 300);
    const grant = started.grant!.name;
    const review = await reviewOf("bob", grant);
    assert.ok(review.name.startsWith("reviews/"));
    assert.deepEqual([review.state, review.justifiedAtStart], [ReviewState.PENDING, true]);
    assert.equal(review.evidence?.index, started.receipt!.ledgerIndex);
    const { stored } = await provedEntry(review.evidence!.index);
    assert.ok(equalBytes(review.evidence!.leafHash, leafHash(stored.data)), "the evidence names the start's exact entry");
    const pending = await drain(auditor.sentinel.reviews({ state: ReviewState.PENDING, actor: "bob" }));
    assert.ok(pending.some((r) => r.name === review.name), "auditors read the queue");

    await fails(auditor.sentinel.completeReview(review.name, "JUSTIFIED", "auditor tries"), Code.PermissionDenied, "quis.auth", "ROLE_REQUIRED");
    const note = "the front desk confirmed the emergency";
    const done = await ines.sentinel.completeReview(review.name, "JUSTIFIED", note);
    assert.deepEqual([done.state, done.reviewedBy, done.note], [ReviewState.JUSTIFIED, "ines", note]);
    assert.ok(done.reviewLedgerIndex > started.receipt!.ledgerIndex);
    const { entry } = await provedEntry(done.reviewLedgerIndex);
    assert.equal(entry.appendedBy, "sentinel");
    const triage = entry.event?.kind;
    assert.equal(triage?.case, "triage");
    assert.deepEqual([triage.value.target, triage.value.state, triage.value.actor?.principal], [review.name, "JUSTIFIED", "ines"]);
    assert.ok(triage.value.note !== undefined, "the note is committed to");
    await fails(ines.sentinel.completeReview(review.name, "UNJUSTIFIED", "second thoughts"), Code.FailedPrecondition, "quis.sentinel", "REVIEW_COMPLETED");
    const justified = await drain(ines.sentinel.reviews({ state: ReviewState.JUSTIFIED, actor: "bob" }));
    assert.ok(justified.some((r) => r.name === review.name));
    await bob.vault.endBreakGlass(grant);
  });

  test("review queue errors: who may read, every field and rule, an unknown review", async () => {
    await fails(alice.sentinel.listReviews(), Code.PermissionDenied, "quis.auth", "ROLE_REQUIRED");
    assert.deepEqual(await violations(ines.sentinel.listReviews({ pageSize: -1, pageToken: "x", state: 99 as ReviewState }), "quis.sentinel"), {
      page_size: "must be 0 to 1000",
      page_token: "must be a next_page_token from a previous response",
      state: "must be a known review state",
    });
    assert.deepEqual(await violations(ines.sentinel.completeReview("r-1", ReviewState.PENDING, " "), "quis.sentinel"), {
      name: "must be reviews/{id} with an id of 1 to 64 characters of [a-z0-9-]",
      outcome: "must be JUSTIFIED or UNJUSTIFIED",
      note: "must be 1 to 2000 characters",
    });
    await fails(ines.sentinel.completeReview("reviews/no-such-review", "JUSTIFIED", "n/a"), Code.NotFound, "quis.sentinel", "NOT_FOUND");
  });
});
