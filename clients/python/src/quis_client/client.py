"""The Quis client: one channel, bearer tokens, default deadlines, errors as exceptions."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator, Sequence

import grpc
from google.protobuf.message import Message

from . import services
from .access import apply_access, is_access_request
from .errors import from_rpc_error
from .pagination import pages, paginate

Token = str | Callable[[], str] | None
_DEFAULT = object()


def _host(target: str) -> str:
    host = target.removeprefix("dns:///").removeprefix("ipv4:").removeprefix("ipv6:")
    if host.startswith("["):
        return host[1 : host.index("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(target: str) -> bool:
    host = _host(target)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


class Stream:
    """A server stream: iterate it for messages; failures raise QuisError; `cancel()` ends it."""

    def __init__(self, call, method: str, transform: Callable | None = None):
        self._call = call
        self._method = method
        self._transform = transform

    def __iter__(self) -> Iterator:
        return self

    def __next__(self):
        try:
            message = next(self._call)
        except grpc.RpcError as e:
            raise from_rpc_error(e, self._method) from None
        return self._transform(message) if self._transform else message

    def map(self, transform: Callable) -> Stream:
        """This stream, yielding `transform(message)` instead of each message."""
        self._transform = transform
        return self

    def cancel(self) -> None:
        self._call.cancel()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cancel()


class Method:
    """One RPC of a service. Call it with a request message or with the request's fields."""

    def __init__(self, client: Client, path: str, multicallable, descriptor):
        self._client = client
        self.path = path
        self._call = multicallable
        self.descriptor = descriptor
        self.request_class = services.message_class(descriptor.input_type)

    def request(self, request: Message | None = None, purpose=None, case: str | None = None, **fields) -> Message:
        if request is None:
            request = self.request_class(**fields)
        elif fields:
            raise TypeError("give a request message or its fields, not both")
        if purpose is not None or case is not None or is_access_request(request):
            apply_access(request, purpose, case)
        return request

    def __call__(
        self,
        request=None,
        *,
        timeout=_DEFAULT,
        metadata: Sequence[tuple[str, str]] = (),
        purpose=None,
        case: str | None = None,
        **fields,
    ):
        d = self.descriptor
        streaming = d.server_streaming
        if timeout is _DEFAULT:
            timeout = self._client.stream_timeout if streaming else self._client.timeout
        md = self._client._metadata(metadata)
        if d.client_streaming:
            if fields or purpose is not None or case is not None:
                raise TypeError("a client-streaming call takes an iterable of request messages")
            requests = request
        else:
            requests = self.request(request, purpose, case, **fields)
        try:
            call = self._call(requests, timeout=timeout, metadata=md)
        except grpc.RpcError as e:
            raise from_rpc_error(e, self.path) from None
        return Stream(call, self.path) if streaming else call

    def pages(self, request=None, **kwargs) -> Iterator[Message]:
        """Every response page of a paginated call."""
        call_kwargs = {k: kwargs.pop(k) for k in ("timeout", "metadata") if k in kwargs}
        return pages(lambda r: self(r, **call_kwargs), self.request(request, **kwargs))

    def paginate(self, request=None, items: str | None = None, **kwargs) -> Iterator:
        """Every item of every page of a paginated call."""
        call_kwargs = {k: kwargs.pop(k) for k in ("timeout", "metadata") if k in kwargs}
        return paginate(lambda r: self(r, **call_kwargs), self.request(request, **kwargs), items)


class ServiceClient:
    """Any generated Quis service by full name; its methods are attributes (`svc.GetCheckpoint()`)."""

    def __init__(self, client: Client, full_name: str):
        self.full_name = full_name
        self.descriptor = services.service_descriptor(full_name)
        stub = services.stub_class(full_name)(client._channel)
        self._methods = {
            m.name: Method(client, f"/{full_name}/{m.name}", getattr(stub, m.name), m) for m in self.descriptor.methods
        }

    def __getattr__(self, name: str) -> Method:
        try:
            return self._methods[name]
        except KeyError:
            raise AttributeError(f"{self.full_name} has no method {name}") from None

    def __dir__(self):
        return [*super().__dir__(), *self._methods]


class Client:
    """A connection to a Quis gateway (or one service).

    - `target`: `host:port`. Loopback targets use plaintext unless `tls=True`; any other
      target uses TLS, with the system roots or `ca_file`; plaintext to a non-loopback
      host needs `allow_plaintext=True` (bearer tokens would cross the network in clear).
    - `token`: a bearer JWT, or a callable returning a current one (called on every call,
      so it can refresh).
    - `timeout`: the default deadline of unary calls in seconds; `stream_timeout` that
      of server streams (None: no deadline, e.g. for tailing the ledger).
    """

    def __init__(
        self,
        target: str,
        token: Token = None,
        *,
        tls: bool | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        server_name: str | None = None,
        timeout: float | None = 10.0,
        stream_timeout: float | None = None,
        metadata: Iterable[tuple[str, str]] = (),
        options: Iterable[tuple[str, object]] = (),
        allow_plaintext: bool = False,
    ):
        loopback = is_loopback(target)
        use_tls = (not loopback) if tls is None else tls
        if not use_tls and not loopback and not allow_plaintext:
            raise ValueError(f"refusing plaintext to non-loopback {target}: use TLS or allow_plaintext=True")
        opts = list(options)
        if server_name:
            opts.append(("grpc.ssl_target_name_override", server_name))
        if use_tls:
            creds = grpc.ssl_channel_credentials(_read(ca_file), _read(key_file), _read(cert_file))
            self._channel = grpc.secure_channel(target, creds, options=opts)
        else:
            self._channel = grpc.insecure_channel(target, options=opts)
        self.target = target
        self.tls = use_tls
        self.token = token
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self.extra_metadata = tuple(metadata)
        self._services: dict[str, ServiceClient] = {}

    def _metadata(self, extra: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
        md = [*self.extra_metadata, *extra]
        token = self.token() if callable(self.token) else self.token
        if token:
            md.append(("authorization", f"Bearer {token}"))
        return md

    def service(self, full_name: str) -> ServiceClient:
        """A generated service by full name, e.g. `quis.ledger.v1.LedgerService`."""
        if full_name not in self._services:
            self._services[full_name] = ServiceClient(self, full_name)
        return self._services[full_name]

    @staticmethod
    def services() -> tuple[str, ...]:
        """Every Quis service the generated code knows."""
        return services.service_names()

    def method(self, path: str) -> Method:
        """A method by its gRPC path, `/quis.ledger.v1.LedgerService/GetCheckpoint`, or dotted full name."""
        path = path.lstrip("/")
        service, _, name = path.rpartition("/") if "/" in path else path.rpartition(".")
        return getattr(self.service(service), name)

    @property
    def ledger(self):
        from .ledger import LedgerClient

        return LedgerClient(self)

    @property
    def vault(self):
        from .vault import VaultClient

        return VaultClient(self)

    @property
    def sentinel(self):
        from .sentinel import SentinelClient

        return SentinelClient(self)

    @property
    def identity(self):
        from .identity import IdentityClient

        return IdentityClient(self)

    @property
    def echo(self):
        from .echo import EchoClient

        return EchoClient(self)

    def with_token(self, token: Token) -> Client:
        """A client on the same channel with another token (e.g. another role)."""
        other = object.__new__(Client)
        other.__dict__.update(self.__dict__)
        other.token = token
        other._services = {}
        return other

    def close(self) -> None:
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
