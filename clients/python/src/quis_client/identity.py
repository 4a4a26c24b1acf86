"""quis.identity.v1.IdentityService: the revocation list (administrators only)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from google.protobuf import timestamp_pb2
from quis.identity.v1 import identity_pb2 as pb

SERVICE = "quis.identity.v1.IdentityService"


class IdentityClient:
    def __init__(self, client):
        self._svc = client.service(SERVICE)

    def revoke_token(self, token_id: str, reason: str, expire_time: datetime | None = None, **kw) -> pb.Revocation:
        req = pb.RevokeTokenRequest(token_id=token_id, reason=reason)
        if expire_time is not None:
            ts = timestamp_pb2.Timestamp()
            ts.FromDatetime(expire_time)
            req.expire_time.CopyFrom(ts)
        return self._svc.RevokeToken(req, **kw).revocation

    def suspend_principal(self, principal: str, reason: str, **kw) -> pb.Revocation:
        return self._svc.SuspendPrincipal(
            pb.SuspendPrincipalRequest(principal=principal, reason=reason), **kw
        ).revocation

    def reinstate_principal(self, principal: str, reason: str, **kw) -> pb.Revocation:
        req = pb.ReinstatePrincipalRequest(principal=principal, reason=reason)
        return self._svc.ReinstatePrincipal(req, **kw).revocation

    def list_revocations(self, page_size: int = 0, page_token: str = "", **kw) -> pb.ListRevocationsResponse:
        return self._svc.ListRevocations(pb.ListRevocationsRequest(page_size=page_size, page_token=page_token), **kw)

    def iter_revocations(self, page_size: int = 0, **kw) -> Iterator[pb.Revocation]:
        """Every revocation in force, across pages, oldest first."""
        return self._svc.ListRevocations.paginate(pb.ListRevocationsRequest(page_size=page_size), **kw)
