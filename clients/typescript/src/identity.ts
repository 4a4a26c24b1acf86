// IdentityService: the revocation list (administrators only).
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { CallOptions, Client } from "@connectrpc/connect";
import type { IdentityService, Revocation } from "./gen/quis/identity/v1/identity_pb.js";
import { items } from "./paginate.js";

export class IdentityClient {
  constructor(readonly raw: Client<typeof IdentityService>) {}

  async revokeToken(tokenId: string, reason: string, expireTime?: Date, options?: CallOptions): Promise<Revocation> {
    const res = await this.raw.revokeToken(
      { tokenId, reason, ...(expireTime ? { expireTime: timestampFromDate(expireTime) } : {}) },
      options,
    );
    return res.revocation!;
  }

  async suspendPrincipal(principal: string, reason: string, options?: CallOptions): Promise<Revocation> {
    return (await this.raw.suspendPrincipal({ principal, reason }, options)).revocation!;
  }

  async reinstatePrincipal(principal: string, reason: string, options?: CallOptions): Promise<Revocation> {
    return (await this.raw.reinstatePrincipal({ principal, reason }, options)).revocation!;
  }

  /** Every revocation in force, oldest first, over all pages. */
  revocations(pageSize = 0, options?: CallOptions): AsyncGenerator<Revocation, void, undefined> {
    return items((req) => this.raw.listRevocations(req, options), { pageSize, pageToken: "" }, (p) => p.revocations);
  }
}
