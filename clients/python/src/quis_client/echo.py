"""quis.echo.v1.EchoService: the diagnostic upstream, in all four call shapes."""

from __future__ import annotations

from collections.abc import Iterable

from quis.echo.v1 import echo_pb2 as pb

SERVICE = "quis.echo.v1.EchoService"


class EchoClient:
    def __init__(self, client):
        self._svc = client.service(SERVICE)

    def echo(self, message: str = "", payload: bytes = b"", **kw) -> pb.EchoResponse:
        return self._svc.Echo(pb.EchoRequest(message=message, payload=payload), **kw)

    def expand(self, message: str, count: int, interval_ms: int = 0, **kw):
        """A stream of ExpandResponse."""
        return self._svc.Expand(pb.ExpandRequest(message=message, count=count, interval_ms=interval_ms), **kw)

    def collect(self, payloads: Iterable[bytes], **kw) -> pb.CollectResponse:
        return self._svc.Collect((pb.CollectRequest(payload=p) for p in payloads), **kw)

    def chat(self, messages: Iterable[str], **kw):
        """A stream of ChatResponse, one per message."""
        return self._svc.Chat((pb.ChatRequest(message=m) for m in messages), **kw)
