// @quis/client: typed gRPC clients of the Quis suite and an independent ledger verifier.
export { QuisClient, bearerInterceptor, DEFAULT_TIMEOUT_MS } from "./client.js";
export type { QuisClientOptions, TlsOptions, TokenSource } from "./client.js";
export { QuisError } from "./errors.js";
export type { ErrorInfoDetail, FieldViolation } from "./errors.js";
export { withAccess, checkAccessContext, resolvePurpose, Purpose } from "./access.js";
export type { AccessContext } from "./access.js";
export { pages, items } from "./paginate.js";
export { commit, commitmentDigest, opens } from "./commitment.js";
export { LedgerClient } from "./ledger.js";
export { IdentityClient } from "./identity.js";
export * as verifier from "./verifier/index.js";
export * as ledgerpb from "./gen/quis/ledger/v1/ledger_pb.js";
export * as identitypb from "./gen/quis/identity/v1/identity_pb.js";
export * as echopb from "./gen/quis/echo/v1/echo_pb.js";
export * as rpcpb from "./gen/google/rpc/error_details_pb.js";
