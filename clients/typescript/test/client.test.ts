// The thin layer's own logic, without a server: access context, pagination,
// address policy and error details decoding.
import { Code, ConnectError } from "@connectrpc/connect";
import { strict as assert } from "node:assert";
import { describe, test } from "node:test";
import { commit, items, opens, pages, Purpose, QuisClient, QuisError, withAccess } from "../src/index.js";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";
import { AccessEventSchema, GetEntriesRequestSchema } from "../src/gen/quis/ledger/v1/ledger_pb.js";

describe("access context", () => {
  test("fills purpose and case into any message that has them", () => {
    const m = withAccess(AccessEventSchema, { compartment: "none" }, { purpose: "CASEWORK", caseRef: "cases/c-1" });
    assert.equal(m.purpose, Purpose.CASEWORK);
    assert.equal(m.case, "cases/c-1");
    assert.equal(m.compartment, "none");
    assert.equal(withAccess(AccessEventSchema, {}, { purpose: Purpose.AUDIT }).purpose, Purpose.AUDIT);
  });
  test("refuses what the server would refuse", () => {
    assert.throws(() => withAccess(AccessEventSchema, {}, { purpose: "UNSPECIFIED" }), TypeError);
    assert.throws(() => withAccess(AccessEventSchema, {}, { purpose: "NOPE" as "AUDIT" }), TypeError);
    assert.throws(() => withAccess(AccessEventSchema, {}, { purpose: "CASEWORK" }), /needs a case/);
    assert.throws(() => withAccess(AccessEventSchema, {}, { purpose: "LEGAL", caseRef: "cases/Bad_Id" }), TypeError);
    assert.throws(() => withAccess(AccessEventSchema, {}, { purpose: "EMERGENCY" }), /justification/);
    assert.throws(() => withAccess(GetEntriesRequestSchema, {}, { purpose: "AUDIT" }), /has no purpose field/);
  });
});

describe("commitments", () => {
  test("a detail opens its commitment and nothing else", () => {
    const { commitment, detail } = commit("subject-1");
    assert.equal(commitment.digest.length, 32);
    assert.ok(opens(commitment.digest, detail.salt, "subject-1"));
    assert.ok(!opens(commitment.digest, detail.salt, "subject-2"));
    assert.throws(() => commit("x", new Uint8Array(8)), RangeError);
  });
});

describe("pagination", () => {
  // A paginated source over 0..9, three per page, with opaque tokens.
  const call = async (req: { pageSize?: number; pageToken?: string }) => {
    const start = req.pageToken ? Number(Buffer.from(req.pageToken, "base64").toString()) : 0;
    const end = Math.min(10, start + (req.pageSize ?? 3));
    const next = end < 10 ? Buffer.from(String(end)).toString("base64") : "";
    return { values: Array.from({ length: end - start }, (_, i) => start + i), nextPageToken: next };
  };
  test("walks every page", async () => {
    const got = [];
    for await (const p of pages(call, { pageSize: 3 })) got.push(p.values.length);
    assert.deepEqual(got, [3, 3, 3, 1]);
    const all = [];
    for await (const v of items(call, { pageSize: 4 }, (p) => p.values)) all.push(v);
    assert.deepEqual(all, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
  test("stops on a repeated token", async () => {
    const loop = async () => ({ nextPageToken: "same" });
    await assert.rejects(async () => {
      for await (const _ of pages(loop, {})) void _;
    }, /repeated a page token/);
  });
});

describe("client", () => {
  test("plaintext only to loopback unless allowed", () => {
    new QuisClient({ address: "127.0.0.1:1" });
    new QuisClient({ address: "localhost:1" });
    new QuisClient({ address: "[::1]:1" });
    assert.throws(() => new QuisClient({ address: "quis.example:443" }), /plaintext/);
    new QuisClient({ address: "quis.example:443", allowInsecure: true });
    new QuisClient({ address: "quis.example:443", tls: {} });
    new QuisClient({ address: "https://quis.example" });
    assert.throws(() => new QuisClient({ address: "http://127.0.0.1:1", tls: {} }), /TLS/);
  });
  test("a connection failure is a QuisError with UNAVAILABLE", async () => {
    // Port 1 on loopback: nothing listens there.
    const c = new QuisClient({ address: "127.0.0.1:1", token: () => Promise.resolve("t") });
    await assert.rejects(c.ledger.checkpoint(), (e: unknown) => e instanceof QuisError && e.code === Code.Unavailable);
  });
});

describe("QuisError", () => {
  test("decodes ErrorInfo, BadRequest and RetryInfo", () => {
    const e = QuisError.from(
      new ConnectError("bad", Code.InvalidArgument, undefined, [
        { desc: ErrorInfoSchema, value: { reason: "INVALID_ARGUMENT", domain: "quis.ledger", metadata: { a: "b" } } },
        { desc: BadRequestSchema, value: { fieldViolations: [{ field: "page_size", description: "1 to 1000" }] } },
        { desc: RetryInfoSchema, value: { retryDelay: { seconds: 2n, nanos: 500_000_000 } } },
      ]),
    );
    assert.equal(e.codeName, "INVALID_ARGUMENT");
    assert.equal(e.grpcCode, 3);
    assert.deepEqual(e.errorInfo, { reason: "INVALID_ARGUMENT", domain: "quis.ledger", metadata: { a: "b" } });
    assert.equal(e.violation("page_size")?.description, "1 to 1000");
    assert.equal(e.retryDelayMs, 2500);
    assert.equal(e.decodedDetails.length, 3);
    assert.equal(e.rawMessage, "bad");
    assert.equal(QuisError.from(e), e);
    assert.equal(QuisError.from(new Error("x")).code, Code.Unknown);
  });
});
