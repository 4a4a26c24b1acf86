// Purpose and case on access calls. Every guarded call carries a declared
// purpose of use and, for casework, the case it serves. The helper works on any
// request message that has `purpose` / `case` / `justification` fields, found
// through the message descriptor, so services added to proto/ later (the
// vault's read, search and export calls) need no change here.
import { create, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { Purpose } from "./gen/quis/ledger/v1/ledger_pb.js";

export { Purpose };

const CASE_NAME = /^cases\/[a-z0-9-]{1,64}$/;

export interface AccessContext {
  /** The declared purpose: the enum value or its name without prefix, e.g. `CASEWORK`. */
  purpose: Purpose | keyof typeof Purpose;
  /** The case resource name, `cases/{case}`. */
  caseRef?: string;
  /** Free-text justification where policy demands one (break-glass always). */
  justification?: string;
}

/** Resolves and checks a purpose; the client refuses a call that would be refused anyway. */
export function resolvePurpose(purpose: AccessContext["purpose"]): Purpose {
  const value = typeof purpose === "number" ? purpose : Purpose[purpose as keyof typeof Purpose];
  if (value === undefined || Purpose[value] === undefined) throw new TypeError(`unknown purpose ${String(purpose)}`);
  if (value === Purpose.UNSPECIFIED) throw new TypeError("a purpose is required for an access call");
  return value;
}

/** Checks an access context: a known purpose, a well-formed case name, a justification for emergencies. */
export function checkAccessContext(ctx: AccessContext): { purpose: Purpose; caseRef: string; justification: string } {
  const purpose = resolvePurpose(ctx.purpose);
  const caseRef = ctx.caseRef ?? "";
  if (caseRef !== "" && !CASE_NAME.test(caseRef)) throw new TypeError(`case must be cases/{id} with id [a-z0-9-]{1,64}`);
  if (purpose === Purpose.CASEWORK && caseRef === "") throw new TypeError("casework needs a case");
  const justification = ctx.justification ?? "";
  if (purpose === Purpose.EMERGENCY && justification.trim() === "") {
    throw new TypeError("emergency (break-glass) access needs a justification");
  }
  return { purpose, caseRef, justification };
}

/**
 * Builds a message of schema from init with the access context filled into its
 * `purpose` and `case` fields (and `justification` when it is a string field).
 * Throws TypeError if the message has no purpose field: it is not an access call.
 */
export function withAccess<Desc extends DescMessage>(
  schema: Desc,
  init: MessageInitShape<Desc>,
  ctx: AccessContext,
): MessageShape<Desc> {
  const { purpose, caseRef, justification } = checkAccessContext(ctx);
  const field = (name: string) => schema.fields.find((f) => f.name === name);
  const purposeField = field("purpose");
  if (!purposeField || purposeField.fieldKind !== "enum") throw new TypeError(`${schema.typeName} has no purpose field`);
  const message = create(schema, init) as Record<string, unknown>;
  message[purposeField.localName] = purpose;
  const caseField = field("case");
  if (caseRef !== "") {
    if (!caseField) throw new TypeError(`${schema.typeName} has no case field`);
    message[caseField.localName] = caseRef;
  }
  const justificationField = field("justification");
  if (justification !== "" && justificationField?.fieldKind === "scalar") {
    message[justificationField.localName] = justification;
  }
  return message as MessageShape<Desc>;
}
