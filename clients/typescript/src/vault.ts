// quis.vault.v1.VaultService: guarded reads with a purpose (and case) on every
// access call, ingest, break-glass, and a subject's access history whose every
// proof is checked here, with this package's own verifier.
import { create, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { createHash } from "node:crypto";
import { checkAccessContext, type AccessContext } from "./access.js";
import { pages } from "./paginate.js";
import { LedgerEntrySchema } from "./gen/quis/ledger/v1/ledger_pb.js";
import {
  AccessContextSchema,
  FieldSchema,
  Sensitivity,
  VaultService,
  type AccessHistoryItem,
  type Field,
  type GetAccessHistoryResponse,
  type Record as VaultRecord,
  type SubjectQuery,
  type SubjectSchema,
} from "./gen/quis/vault/v1/vault_pb.js";
import { verifyCheckpoint, type CheckpointVerifyOptions, type VerifiedCheckpoint } from "./verifier/checkpoint.js";
import { equalBytes, leafHash, verifyInclusion, VerificationError } from "./verifier/merkle.js";

export const subjectName = (s: string) => (s.startsWith("subjects/") ? s : `subjects/${s}`);

/** The AccessContext message of an access call (purpose required; checked before sending). */
export function accessContext(ctx: AccessContext) {
  const { purpose, caseRef, justification } = checkAccessContext(ctx);
  return create(AccessContextSchema, { purpose, case: caseRef, justification });
}

/** A record field from a JS value (string, boolean, bigint/number as int, Uint8Array). */
export function field(name: string, value: string | boolean | number | bigint | Uint8Array, sensitivity = Sensitivity.BASIC): Field {
  const v =
    typeof value === "string"
      ? { case: "stringValue" as const, value }
      : typeof value === "boolean"
        ? { case: "boolValue" as const, value }
        : value instanceof Uint8Array
          ? { case: "bytesValue" as const, value }
          : { case: "intValue" as const, value: BigInt(value) };
  return create(FieldSchema, { name, sensitivity, value: v });
}

/** A record's fields as { name: value }. */
export function fieldsOf(record: VaultRecord | undefined): Record<string, unknown> {
  return Object.fromEntries((record?.fields ?? []).map((f) => [f.name, f.value.value]));
}

export interface VerifiedHistory {
  checkpoint: VerifiedCheckpoint;
  items: AccessHistoryItem[];
}

/**
 * Checks a GetAccessHistory page without trusting the vault: the checkpoint's log
 * signature and witness quorum; each item's entry bytes (as served, never
 * re-encoded) hashed as an RFC 6962 leaf and proved included at its index; and the
 * subject commitment SHA-256(salt || subject name) present in the entry's access
 * event (as its subject or among a search's results). Throws VerificationError.
 */
export function verifyAccessHistory(
  response: GetAccessHistoryResponse,
  subject: string,
  trust: CheckpointVerifyOptions,
): VerifiedHistory {
  const name = subjectName(subject);
  const checkpoint = verifyCheckpoint(response.checkpoint, trust);
  if (response.treeSize !== 0n && response.treeSize !== checkpoint.size) {
    throw new VerificationError(`response tree size ${response.treeSize} differs from its checkpoint's ${checkpoint.size}`);
  }
  for (const item of response.items) {
    verifyInclusion(leafHash(item.entry), item.ledgerIndex, checkpoint.size, item.inclusionProof, checkpoint.root);
    let entry;
    try {
      entry = fromBinary(LedgerEntrySchema, item.entry);
    } catch {
      throw new VerificationError(`entry ${item.ledgerIndex} does not decode`);
    }
    if (entry.event?.kind.case !== "access") throw new VerificationError(`entry ${item.ledgerIndex} is not an access event`);
    const access = entry.event.kind.value;
    const digest = new Uint8Array(createHash("sha256").update(item.subjectSalt).update(name).digest());
    const commitments = [access.subject, ...access.results].filter((c) => c !== undefined);
    if (!commitments.some((c) => equalBytes(c.digest, digest))) {
      throw new VerificationError(`entry ${item.ledgerIndex} does not commit to ${name} with the given salt`);
    }
    if (access.action !== item.action || access.decision !== item.decision) {
      throw new VerificationError(`entry ${item.ledgerIndex} says another action or decision than the item`);
    }
  }
  return { checkpoint, items: response.items };
}

type Opts = { fields?: string[]; justification?: string };

/** Typed calls of the vault; every access call takes an AccessContext (purpose required). */
export class VaultClient {
  constructor(readonly raw: Client<typeof VaultService>) {}

  createSubject(subjectId: string, subject: MessageInitShape<typeof SubjectSchema>) {
    return this.raw.createSubject({ subjectId, subject }).then((r) => r.subject!);
  }

  createRecord(subject: string, recordId: string, kind: string, fields: Field[] | Record<string, string>) {
    const list = Array.isArray(fields) ? fields : Object.entries(fields).map(([n, v]) => field(n, v));
    return this.raw
      .createRecord({ parent: subjectName(subject), recordId, record: { kind, fields: list } })
      .then((r) => r.record!);
  }

  getRecord(name: string, ctx: AccessContext, opts: Opts = {}) {
    return this.raw.getRecord({ name, context: accessContext({ ...ctx, ...opts }), fields: opts.fields ?? [] });
  }

  searchSubjects(query: Omit<Partial<SubjectQuery>, "$typeName" | "$unknown">, ctx: AccessContext, page: { pageSize?: number; pageToken?: string } = {}) {
    return this.raw.searchSubjects({ query, context: accessContext(ctx), ...page });
  }

  /** A stream of export batches (records and the receipt). */
  exportRecords(subjects: string[], ctx: AccessContext, opts: Opts & { kind?: string } = {}) {
    return this.raw.exportRecords({
      subjects: subjects.map(subjectName),
      kind: opts.kind ?? "",
      context: accessContext(ctx),
      fields: opts.fields ?? [],
    });
  }

  recordAccess(record: { system: string; subject: string; reference: string; kind?: string }, action: number, ctx: AccessContext, fields: string[] = []) {
    return this.raw.recordAccess({
      record: { ...record, subject: subjectName(record.subject) },
      action,
      context: accessContext(ctx),
      fields,
    });
  }

  startBreakGlass(subjects: string[], justification: string, durationSeconds = 3600, caseRef = "") {
    return this.raw.startBreakGlass({
      subjects: subjects.map(subjectName),
      justification,
      duration: { seconds: BigInt(durationSeconds) },
      case: caseRef,
    });
  }

  endBreakGlass(name: string) {
    return this.raw.endBreakGlass({ name });
  }

  /** One page of a subject's access history; a subject asks for their own without a context. */
  getAccessHistory(subject: string, opts: { pageSize?: number; pageToken?: string; ctx?: AccessContext } = {}) {
    return this.raw.getAccessHistory({
      parent: subjectName(subject),
      pageSize: opts.pageSize ?? 0,
      pageToken: opts.pageToken ?? "",
      ...(opts.ctx ? { context: accessContext(opts.ctx) } : {}),
    });
  }

  /** Every page of a subject's access history. */
  accessHistoryPages(subject: string, opts: { pageSize?: number; ctx?: AccessContext } = {}) {
    return pages((r: { pageToken?: string }) => this.getAccessHistory(subject, { ...opts, ...r }), { pageToken: "" });
  }

  /** Every item of a subject's access history, each page's proofs verified (throws if any fails). */
  async verifiedAccessHistory(subject: string, trust: CheckpointVerifyOptions, opts: { pageSize?: number; ctx?: AccessContext } = {}) {
    const out: AccessHistoryItem[] = [];
    for await (const page of this.accessHistoryPages(subject, opts)) out.push(...verifyAccessHistory(page, subject, trust).items);
    return out;
  }
}
