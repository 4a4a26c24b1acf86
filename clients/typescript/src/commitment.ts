// Commitments to personal values: SHA-256(salt || value) goes in the event, the
// salt and value go beside it as an EventDetail (c.f. DESIGN.md, "Ledger
// entries and personal data").
import { create } from "@bufbuild/protobuf";
import { createHash, randomBytes } from "node:crypto";
import {
  CommitmentSchema,
  EventDetailSchema,
  type Commitment,
  type EventDetail,
} from "./gen/quis/ledger/v1/ledger_pb.js";

/** SHA-256(salt || UTF-8 value). */
export function commitmentDigest(salt: Uint8Array, value: string): Uint8Array {
  return new Uint8Array(createHash("sha256").update(salt).update(Buffer.from(value, "utf8")).digest());
}

/** A fresh 32-byte salt, the commitment to value and the detail that opens it. */
export function commit(value: string, salt: Uint8Array = randomBytes(32)): { commitment: Commitment; detail: EventDetail } {
  if (salt.length < 16 || salt.length > 64) throw new RangeError("a salt is 16 to 64 bytes");
  const bytes = new Uint8Array(salt); // a plain copy, not a Buffer view
  return {
    commitment: create(CommitmentSchema, { digest: commitmentDigest(bytes, value) }),
    detail: create(EventDetailSchema, { salt: bytes, value }),
  };
}

/** Whether a detail (salt and value) opens the commitment digest. */
export function opens(digest: Uint8Array, salt: Uint8Array, value: string): boolean {
  return Buffer.from(commitmentDigest(salt, value)).equals(Buffer.from(digest));
}
