// QuisClient: one gRPC (HTTP/2) transport to the gateway with bearer tokens,
// default deadlines and QuisError, and the services of proto/ as typed clients.
import type { DescService } from "@bufbuild/protobuf";
import { VaultClient } from "./vault.js";
import { SentinelClient } from "./sentinel.js";
import { VaultService } from "./gen/quis/vault/v1/vault_pb.js";
import { SentinelService } from "./gen/quis/sentinel/v1/sentinel_pb.js";
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { isIP } from "node:net";
import { EchoService } from "./gen/quis/echo/v1/echo_pb.js";
import { IdentityService } from "./gen/quis/identity/v1/identity_pb.js";
import { LedgerService } from "./gen/quis/ledger/v1/ledger_pb.js";
import { QuisError } from "./errors.js";
import { IdentityClient } from "./identity.js";
import { LedgerClient } from "./ledger.js";

/** A bearer token, or a function that returns the current one (called before every call). */
export type TokenSource = string | (() => string | Promise<string>);

export interface TlsOptions {
  /** PEM CA certificate(s) to trust instead of the system store. */
  ca?: string | Buffer;
  /** PEM client certificate and key, for mutual TLS. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Server name to verify, when it differs from the address's host. */
  servername?: string;
}

export interface QuisClientOptions {
  /** The gateway: `host:port` or a URL; `https://` or tls selects TLS. */
  address: string;
  token?: TokenSource;
  /** TLS settings; without them plaintext HTTP/2 is used, to loopback addresses only. */
  tls?: TlsOptions;
  /** Allow plaintext to a non-loopback address (tests in private networks only). */
  allowInsecure?: boolean;
  /** Deadline of every call unless given per call (`timeoutMs`, 0 for none); default 10 s. `ledger.tail` has none. */
  defaultTimeoutMs?: number;
  /** Extra interceptors, run after the token is set. */
  interceptors?: Interceptor[];
}

export const DEFAULT_TIMEOUT_MS = 10_000;

function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "");
  if (h === "localhost") return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (isIP(h) === 6) return h === "::1";
  return false;
}

/** Sets `authorization: Bearer <token>` from a static token or a provider. */
export function bearerInterceptor(token: TokenSource): Interceptor {
  return (next) => async (req) => {
    const value = typeof token === "string" ? token : await token();
    if (value) req.header.set("authorization", `Bearer ${value}`);
    return next(req);
  };
}

/**
 * A client of service whose every failure is a QuisError: unary and
 * client-streaming calls reject with one, and server and bidi streams throw
 * one while they are read. Wrapping the client rather than the transport also
 * catches what connect raises outside the interceptors (deadlines, aborts).
 */
function withQuisErrors<S extends DescService>(service: S, client: Client<S>): Client<S> {
  const wrapped: Record<string, unknown> = {};
  for (const method of service.methods) {
    const call = (client as Record<string, (...args: unknown[]) => unknown>)[method.localName]!;
    if (method.methodKind === "unary" || method.methodKind === "client_streaming") {
      wrapped[method.localName] = async (...args: unknown[]) => {
        try {
          return await call(...args);
        } catch (e) {
          throw QuisError.from(e);
        }
      };
    } else {
      wrapped[method.localName] = async function* (...args: unknown[]) {
        try {
          yield* call(...args) as AsyncIterable<unknown>;
        } catch (e) {
          throw QuisError.from(e);
        }
      };
    }
  }
  return wrapped as Client<S>;
}

function baseUrl(address: string, tls: boolean, allowInsecure: boolean): string {
  const url = new URL(/^[a-z]+:\/\//.test(address) ? address : `${tls ? "https" : "http"}://${address}`);
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new TypeError(`unsupported scheme ${url.protocol}`);
  if (tls && url.protocol === "http:") throw new TypeError("TLS options given with an http:// address");
  if (url.protocol === "http:" && !allowInsecure && !isLoopback(url.hostname)) {
    // Tokens and personal data must not cross a network in the clear.
    throw new TypeError(`plaintext to ${url.hostname} refused: use TLS, or allowInsecure`);
  }
  return url.origin;
}

/** A client of the Quis gateway. */
export class QuisClient {
  readonly transport: Transport;
  readonly ledger: LedgerClient;
  readonly identity: IdentityClient;
  readonly echo: Client<typeof EchoService>;
  readonly vault: VaultClient;
  readonly sentinel: SentinelClient;

  constructor(options: QuisClientOptions) {
    const url = baseUrl(options.address, options.tls !== undefined, options.allowInsecure ?? false);
    const interceptors: Interceptor[] = [];
    if (options.token !== undefined) interceptors.push(bearerInterceptor(options.token));
    interceptors.push(...(options.interceptors ?? []));
    this.transport = createGrpcTransport({
      baseUrl: url,
      interceptors,
      defaultTimeoutMs: options.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS,
      ...(options.tls ? { nodeOptions: { ...options.tls } } : {}),
    });
    this.ledger = new LedgerClient(this.service(LedgerService));
    this.identity = new IdentityClient(this.service(IdentityService));
    this.echo = this.service(EchoService);
    this.vault = new VaultClient(this.service(VaultService));
    this.sentinel = new SentinelClient(this.service(SentinelService));
  }

  /**
   * A typed client of any generated service (e.g. one added to proto/ after
   * this client was written), whose failures are QuisErrors.
   */
  service<S extends DescService>(service: S): Client<S> {
    return withQuisErrors(service, createClient(service, this.transport));
  }
}
