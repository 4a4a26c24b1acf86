// Errors as QuisError: the gRPC code and the google.rpc details the services
// attach (ErrorInfo, BadRequest field violations, RetryInfo, ...), decoded
// from grpc-status-details-bin with the generated google.rpc types.
import { createRegistry, type Message } from "@bufbuild/protobuf";
import type { Duration } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  BadRequestSchema,
  DebugInfoSchema,
  ErrorInfoSchema,
  HelpSchema,
  LocalizedMessageSchema,
  PreconditionFailureSchema,
  QuotaFailureSchema,
  RequestInfoSchema,
  ResourceInfoSchema,
  RetryInfoSchema,
} from "./gen/google/rpc/error_details_pb.js";

const detailRegistry = createRegistry(
  ErrorInfoSchema,
  BadRequestSchema,
  RetryInfoSchema,
  DebugInfoSchema,
  QuotaFailureSchema,
  PreconditionFailureSchema,
  RequestInfoSchema,
  ResourceInfoSchema,
  HelpSchema,
  LocalizedMessageSchema,
);

export interface FieldViolation {
  field: string;
  description: string;
  reason: string;
}

export interface ErrorInfoDetail {
  reason: string;
  domain: string;
  metadata: Record<string, string>;
}

function durationMs(d: Duration | undefined): number | undefined {
  return d === undefined ? undefined : Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6);
}

/** A failed call: the gRPC status code and its decoded google.rpc details. */
export class QuisError extends ConnectError {
  // name stays "ConnectError": connect's own code recognizes errors by it and
  // would otherwise wrap a QuisError into an UNKNOWN one.
  /** ErrorInfo: UPPER_SNAKE_CASE reason, domain `quis.<svc>`, metadata. */
  readonly errorInfo: ErrorInfoDetail | undefined;
  /** BadRequest field violations, naming each invalid field and the rule it broke. */
  readonly fieldViolations: FieldViolation[];
  /** RetryInfo's delay, when the server says when to retry. */
  readonly retryDelayMs: number | undefined;
  /** Every detail whose type is a google.rpc error detail. */
  readonly decodedDetails: Message[];

  private constructor(e: ConnectError) {
    super(e.rawMessage, e.code, e.metadata, undefined, e.cause);
    // ConnectError pins its own prototype; restore ours for the getters below.
    Object.setPrototypeOf(this, QuisError.prototype);
    this.details = e.details;
    const info = e.findDetails(ErrorInfoSchema)[0];
    this.errorInfo = info && { reason: info.reason, domain: info.domain, metadata: { ...info.metadata } };
    this.fieldViolations = e
      .findDetails(BadRequestSchema)
      .flatMap((b) => b.fieldViolations.map(({ field, description, reason }) => ({ field, description, reason })));
    this.retryDelayMs = durationMs(e.findDetails(RetryInfoSchema)[0]?.retryDelay);
    this.decodedDetails = e.findDetails(detailRegistry);
  }

  // ConnectError's instanceof accepts any ConnectError-shaped value; a
  // QuisError is only what this class made.
  static override [Symbol.hasInstance](v: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(QuisError, v);
  }

  /** Wraps any thrown value (ConnectError or not) as a QuisError. */
  static override from(reason: unknown): QuisError {
    if (reason instanceof QuisError) return reason;
    return new QuisError(ConnectError.from(reason));
  }

  /** The numeric gRPC status code (Connect's Code has the gRPC numbering). */
  get grpcCode(): number {
    return this.code;
  }

  /** The gRPC code name, e.g. `INVALID_ARGUMENT`. */
  get codeName(): string {
    return Code[this.code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
  }

  /** The reason of the ErrorInfo detail, if any. */
  get reason(): string | undefined {
    return this.errorInfo?.reason;
  }

  /** The field violation naming field, if any. */
  violation(field: string): FieldViolation | undefined {
    return this.fieldViolations.find((v) => v.field === field);
  }
}
